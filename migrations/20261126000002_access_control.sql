-- Access control: credentials (master keys, sessions, virtual keys), invitations, MFA.
--
-- Platform tables (master_keys, sessions, recovery_codes) hold no tenant rows: they are under
-- forced RLS with a policy for the owner role only, so the runtime role reaches them solely
-- through the SECURITY DEFINER functions below, each documented in docs/ARCHITECTURE.md.

alter table users
    add column mfa_enabled             boolean not null default false,
    -- TOTP seeds sealed with the key-encryption keyring (AES-256-GCM), bound to the user id.
    add column totp_ciphertext         bytea,
    add column totp_pending_ciphertext bytea,
    -- The last TOTP time step accepted: a code works once.
    add column totp_last_step          bigint not null default 0;

create table master_keys (
    key_id     uuid primary key,
    token_hash bytea not null check (length(token_hash) = 32),
    last4      text not null,
    created_at timestamptz not null default now(),
    revoked_at timestamptz,
    constraint uq_master_keys_token_hash unique (token_hash)
);

create table sessions (
    session_id   uuid primary key,
    user_id      uuid not null references users (user_id),
    token_hash   bytea not null check (length(token_hash) = 32),
    kind         text not null check (kind in ('session', 'mfa_challenge')),
    mfa_verified boolean not null,
    created_at   timestamptz not null default now(),
    expires_at   timestamptz not null,
    revoked_at   timestamptz,
    constraint uq_sessions_token_hash unique (token_hash)
);
create index sessions_user_id on sessions (user_id);

create table recovery_codes (
    user_id   uuid not null references users (user_id),
    lookup    text not null,
    code_hash text not null,
    used_at   timestamptz,
    primary key (user_id, lookup)
);

create table invites (
    invite_id   uuid primary key,
    org_id      uuid not null references organizations (org_id),
    user_id     uuid not null references users (user_id),
    token_hash  bytea not null check (length(token_hash) = 32),
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    accepted_at timestamptz,
    constraint uq_invites_token_hash unique (token_hash)
);

-- Lets keys reference a team of their own org only: foreign keys ignore RLS, so a plain
-- team_id reference would accept another org's team.
alter table teams add constraint uq_teams_org_team unique (org_id, team_id);

create table virtual_keys (
    key_id           uuid primary key,
    org_id           uuid not null references organizations (org_id),
    team_id          uuid,
    owner_user_id    uuid references users (user_id),
    name             text not null check (length(name) between 1 and 200),
    token_hash       bytea not null check (length(token_hash) = 32),
    last4            text not null,
    models           text[],
    budget_micro_usd bigint check (budget_micro_usd >= 0),
    budget_period    text check (budget_period in ('total', 'monthly')),
    rpm_limit        integer check (rpm_limit > 0),
    tpm_limit        integer check (tpm_limit > 0),
    expires_at       timestamptz,
    created_at       timestamptz not null default now(),
    rotated_at       timestamptz,
    revoked_at       timestamptz,
    constraint uq_virtual_keys_token_hash unique (token_hash),
    constraint fk_virtual_keys_team foreign key (org_id, team_id) references teams (org_id, team_id)
);

alter table master_keys enable row level security;
alter table master_keys force row level security;
create policy owner_lookup on master_keys to portcullis_owner using (true) with check (true);

alter table sessions enable row level security;
alter table sessions force row level security;
create policy owner_lookup on sessions to portcullis_owner using (true) with check (true);

alter table recovery_codes enable row level security;
alter table recovery_codes force row level security;
create policy owner_lookup on recovery_codes to portcullis_owner using (true) with check (true);

alter table invites enable row level security;
alter table invites force row level security;
create policy tenant_isolation on invites
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());
create policy owner_lookup on invites for select to portcullis_owner using (true);

alter table virtual_keys enable row level security;
alter table virtual_keys force row level security;
create policy tenant_isolation on virtual_keys
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

-- The owner role updates users through the MFA functions below.
create policy owner_update on users for update to portcullis_owner using (true) with check (true);
create policy owner_lookup on memberships for select to portcullis_owner using (true);

grant select, insert, update on invites to portcullis_runtime;
grant select, insert, update on virtual_keys to portcullis_runtime;

-- Login: now also says whether a second factor follows.
drop function auth_user_by_email(text);
create function auth_user_by_email(p_email text)
    returns table (user_id uuid, password_hash text, mfa_enabled boolean)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select u.user_id, u.password_hash, u.mfa_enabled from users u
          where lower(u.email) = lower(p_email) $$;

-- A person's own profile and second-factor state, by the id their session proved.
create function auth_user(p_user_id uuid)
    returns table (email text, mfa_enabled boolean, totp_ciphertext bytea,
                   totp_pending_ciphertext bytea, totp_last_step bigint)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select u.email, u.mfa_enabled, u.totp_ciphertext, u.totp_pending_ciphertext,
                 u.totp_last_step from users u where u.user_id = p_user_id $$;

-- The orgs a person belongs to, for /auth/v1/me and their org listing.
create function auth_user_memberships(p_user_id uuid)
    returns table (org_id uuid, name text, role text)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select m.org_id, o.name, m.role from memberships m
          join organizations o using (org_id) where m.user_id = p_user_id order by m.org_id $$;

-- Sessions and MFA challenges: created, found by token hash, ended.
create function auth_start_session(p_session_id uuid, p_user_id uuid, p_token_hash bytea,
                                   p_kind text, p_mfa_verified boolean, p_expires_at timestamptz)
    returns void
    language sql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ insert into sessions (session_id, user_id, token_hash, kind, mfa_verified, expires_at)
          values (p_session_id, p_user_id, p_token_hash, p_kind, p_mfa_verified, p_expires_at) $$;

create function auth_session(p_token_hash bytea, p_kind text)
    returns table (session_id uuid, user_id uuid, mfa_verified boolean, expires_at timestamptz)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select s.session_id, s.user_id, s.mfa_verified, s.expires_at from sessions s
          where s.token_hash = p_token_hash and s.kind = p_kind
            and s.revoked_at is null and s.expires_at > now() $$;

create function auth_end_session(p_token_hash bytea)
    returns boolean
    language sql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ update sessions set revoked_at = now()
          where token_hash = p_token_hash and revoked_at is null returning true $$;

create function auth_verify_session_mfa(p_session_id uuid)
    returns void
    language sql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ update sessions set mfa_verified = true where session_id = p_session_id $$;

-- TOTP enrolment: a pending seed, then confirmation with recovery codes.
create function auth_set_totp_pending(p_user_id uuid, p_ciphertext bytea)
    returns void
    language sql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ update users set totp_pending_ciphertext = p_ciphertext, updated_at = now()
          where user_id = p_user_id $$;

create function auth_enable_mfa(p_user_id uuid, p_step bigint, p_lookups text[], p_hashes text[])
    returns boolean
    language plpgsql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
begin
    update users set totp_ciphertext = totp_pending_ciphertext, totp_pending_ciphertext = null,
                     mfa_enabled = true, totp_last_step = p_step, updated_at = now()
     where user_id = p_user_id and totp_pending_ciphertext is not null and not mfa_enabled;
    if not found then
        return false;
    end if;
    delete from recovery_codes where user_id = p_user_id;
    insert into recovery_codes (user_id, lookup, code_hash)
        select p_user_id, l, h from unnest(p_lookups, p_hashes) as t(l, h);
    return true;
end
$$;

-- A TOTP step is claimed once: a replayed code finds the step already used.
create function auth_claim_totp_step(p_user_id uuid, p_step bigint)
    returns boolean
    language sql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ update users set totp_last_step = p_step
          where user_id = p_user_id and totp_last_step < p_step returning true $$;

create function auth_recovery_code_hash(p_user_id uuid, p_lookup text)
    returns text
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select code_hash from recovery_codes
          where user_id = p_user_id and lookup = p_lookup and used_at is null $$;

create function auth_spend_recovery_code(p_user_id uuid, p_lookup text)
    returns boolean
    language sql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ update recovery_codes set used_at = now()
          where user_id = p_user_id and lookup = p_lookup and used_at is null returning true $$;

-- Credentials found by hash before any org is known.
create function auth_master_key(p_token_hash bytea)
    returns uuid
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select key_id from master_keys where token_hash = p_token_hash and revoked_at is null $$;

create function auth_invite(p_token_hash bytea)
    returns table (invite_id uuid, org_id uuid, user_id uuid)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select i.invite_id, i.org_id, i.user_id from invites i
          where i.token_hash = p_token_hash and i.accepted_at is null and i.expires_at > now() $$;

-- Platform: every org with its name (master key listings), and the one-time bootstrap.
drop function platform_org_ids();
create function platform_orgs()
    returns table (org_id uuid, name text, created_at timestamptz)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select o.org_id, o.name, o.created_at from organizations o order by o.org_id $$;

create function platform_create_first_master_key(p_key_id uuid, p_token_hash bytea, p_last4 text)
    returns boolean
    language plpgsql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
begin
    -- Serialises concurrent bootstraps; the second finds the first's key.
    perform pg_advisory_xact_lock(7303001);
    if exists (select 1 from master_keys) then
        return false;
    end if;
    insert into master_keys (key_id, token_hash, last4) values (p_key_id, p_token_hash, p_last4);
    return true;
end
$$;

do $$
declare
    f text;
begin
    foreach f in array array[
        'auth_user_by_email(text)', 'auth_user(uuid)', 'auth_user_memberships(uuid)',
        'auth_start_session(uuid, uuid, bytea, text, boolean, timestamptz)',
        'auth_session(bytea, text)', 'auth_end_session(bytea)', 'auth_verify_session_mfa(uuid)',
        'auth_set_totp_pending(uuid, bytea)', 'auth_enable_mfa(uuid, bigint, text[], text[])',
        'auth_claim_totp_step(uuid, bigint)', 'auth_recovery_code_hash(uuid, text)',
        'auth_spend_recovery_code(uuid, text)', 'auth_master_key(bytea)', 'auth_invite(bytea)',
        'platform_orgs()', 'platform_create_first_master_key(uuid, bytea, text)']
    loop
        execute format('revoke execute on function %s from public', f);
        execute format('grant execute on function %s to portcullis_runtime', f);
    end loop;
end
$$;
