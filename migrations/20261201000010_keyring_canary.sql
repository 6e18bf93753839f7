-- The keyring's canary (EN-2, AV-4): a value sealed with the key-encryption keyring by the
-- first `bootstrap` or `serve`. Every `serve` opens it before it answers anything and refuses to
-- start when it does not open: a replica started with the wrong key would otherwise wrap new
-- orgs' data keys so that no correctly configured replica could open them.
--
-- A platform table: forced RLS with a policy for the owner role only; the runtime role reaches
-- it through the two SECURITY DEFINER functions below.

create table keyring_canary (
    only_row   boolean primary key default true check (only_row),
    sealed     bytea not null check (length(sealed) between 16 and 1024),
    sealed_at  timestamptz not null default now()
);

alter table keyring_canary enable row level security;
alter table keyring_canary force row level security;
create policy owner_lookup on keyring_canary to portcullis_owner using (true) with check (true);

-- Stores `p_sealed` when there is no canary yet; returns the canary stored.
create function platform_keyring_canary(p_sealed bytea) returns bytea
    language plpgsql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
begin
    insert into keyring_canary (sealed) values (p_sealed) on conflict (only_row) do nothing;
    return (select sealed from keyring_canary);
end
$$;

-- `kek rotate`: the canary sealed anew with the current key, replacing the one it opened.
create function platform_reseal_keyring_canary(p_opened bytea, p_sealed bytea) returns boolean
    language plpgsql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
begin
    update keyring_canary set sealed = p_sealed, sealed_at = now() where sealed = p_opened;
    return found;
end
$$;

revoke execute on function platform_keyring_canary(bytea) from public;
revoke execute on function platform_reseal_keyring_canary(bytea, bytea) from public;
grant execute on function platform_keyring_canary(bytea) to portcullis_runtime;
grant execute on function platform_reseal_keyring_canary(bytea, bytea) to portcullis_runtime;
