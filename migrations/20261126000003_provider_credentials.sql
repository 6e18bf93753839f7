-- Provider credentials and model routes, with envelope encryption (EN-2).
--
-- Each org has data keys (DEKs), stored only wrapped by the key-encryption key, which lives
-- outside the database. A provider key is sealed with its org's DEK, bound by associated data
-- to its org and credential id: copied to another row or org, it no longer opens.

create table org_data_keys (
    dek_id      uuid primary key,
    org_id      uuid not null references organizations (org_id),
    -- The KEK version that wrapped it (also in the ciphertext's header), for rotation.
    kek_version bigint not null,
    wrapped_key bytea not null,
    created_at  timestamptz not null default now(),
    rewrapped_at timestamptz,
    constraint uq_org_data_keys_org_dek unique (org_id, dek_id)
);

create table provider_credentials (
    credential_id uuid primary key,
    org_id        uuid not null references organizations (org_id),
    name          text not null check (length(name) between 1 and 200),
    provider      text not null check (provider in
                      ('openai', 'openai_compatible', 'azure', 'anthropic', 'gemini', 'mock')),
    base_url      text check (length(base_url) <= 2048),
    dek_id        uuid not null,
    ciphertext    bytea not null,
    last4         text not null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint uq_provider_credentials_org_name unique (org_id, name),
    constraint fk_provider_credentials_dek foreign key (org_id, dek_id)
        references org_data_keys (org_id, dek_id)
);

create table model_routes (
    org_id                    uuid not null references organizations (org_id),
    alias                     text not null check (length(alias) between 1 and 200),
    -- [{credential_id, model, weight}], checked by the gateway against this org's credentials.
    targets                   jsonb not null,
    fallback                  text[] not null default '{}',
    timeout_ms                integer check (timeout_ms between 100 and 600000),
    input_micro_usd_per_mtok  bigint check (input_micro_usd_per_mtok >= 0),
    output_micro_usd_per_mtok bigint check (output_micro_usd_per_mtok >= 0),
    created_at                timestamptz not null default now(),
    updated_at                timestamptz not null default now(),
    primary key (org_id, alias)
);

alter table org_data_keys enable row level security;
alter table org_data_keys force row level security;
create policy tenant_isolation on org_data_keys
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

alter table provider_credentials enable row level security;
alter table provider_credentials force row level security;
create policy tenant_isolation on provider_credentials
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

alter table model_routes enable row level security;
alter table model_routes force row level security;
create policy tenant_isolation on model_routes
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

grant select, insert, update on org_data_keys to portcullis_runtime;
grant select, insert, update, delete on provider_credentials to portcullis_runtime;
grant select, insert, update, delete on model_routes to portcullis_runtime;

-- Key-encryption-key rotation re-seals TOTP seeds, which belong to people, not orgs: every
-- sealed seed, and a compare-and-swap that replaces one only if it did not change meanwhile.
create function platform_sealed_totp_seeds()
    returns table (user_id uuid, totp_ciphertext bytea, totp_pending_ciphertext bytea)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select u.user_id, u.totp_ciphertext, u.totp_pending_ciphertext from users u
          where u.totp_ciphertext is not null or u.totp_pending_ciphertext is not null $$;

create function platform_reseal_totp(p_user_id uuid, p_old bytea, p_new bytea,
                                     p_old_pending bytea, p_new_pending bytea)
    returns boolean
    language sql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ update users set totp_ciphertext = p_new, totp_pending_ciphertext = p_new_pending
          where user_id = p_user_id
            and totp_ciphertext is not distinct from p_old
            and totp_pending_ciphertext is not distinct from p_old_pending
          returning true $$;

revoke execute on function platform_sealed_totp_seeds() from public;
revoke execute on function platform_reseal_totp(uuid, bytea, bytea, bytea, bytea) from public;
grant execute on function platform_sealed_totp_seeds() to portcullis_runtime;
grant execute on function platform_reseal_totp(uuid, bytea, bytea, bytea, bytea) to portcullis_runtime;
