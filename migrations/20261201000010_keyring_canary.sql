-- The keyring's canaries (EN-2, AV-4): one value per key-encryption key version, sealed by the
-- first `bootstrap` or `serve` that uses that version. Every `serve` opens each canary whose
-- version its keyring holds before it answers anything, and refuses to start when one does not
-- open: a replica started with the wrong key (or a wrong key under a version others use) would
-- otherwise wrap new orgs' data keys so that no correctly configured replica could open them.
--
-- A platform table: forced RLS with a policy for the owner role only; the runtime role reaches
-- it through the SECURITY DEFINER function below, which can add a version's canary but never
-- change or remove one.

create table keyring_canaries (
    kek_version bigint primary key check (kek_version between 0 and 4294967295),
    sealed      bytea not null check (length(sealed) between 16 and 1024),
    sealed_at   timestamptz not null default now()
);

alter table keyring_canaries enable row level security;
alter table keyring_canaries force row level security;
create policy owner_lookup on keyring_canaries to portcullis_owner using (true) with check (true);

-- Stores `p_sealed` as version `p_version`'s canary when that version has none; returns every
-- canary.
create function platform_keyring_canaries(p_version bigint, p_sealed bytea)
    returns table (kek_version bigint, sealed bytea)
    language plpgsql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
begin
    insert into keyring_canaries (kek_version, sealed) values (p_version, p_sealed)
        on conflict on constraint keyring_canaries_pkey do nothing;
    return query select c.kek_version, c.sealed from keyring_canaries c order by c.kek_version;
end
$$;

revoke execute on function platform_keyring_canaries(bigint, bytea) from public;
grant execute on function platform_keyring_canaries(bigint, bytea) to portcullis_runtime;
