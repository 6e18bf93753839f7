-- Foundation: organizations, settings, users, memberships, teams and the audit chain.
--
-- Runs as portcullis_owner (see crates/storage/src/migrate.rs), which owns every object here.
-- The gateway connects as a login role that is a member of portcullis_runtime: not superuser,
-- not owner, NOBYPASSRLS. Every table has row-level security ENABLED and FORCED.
--
-- Tenant rule: a row of a table with `org_id` is visible only inside a transaction that set
-- `portcullis.org_id` to that org with set_config(..., true). Unset means no rows at all.

-- The org of the current transaction, or NULL. NULLIF because a reused pooled connection
-- reports '' (not NULL) for a setting that an earlier transaction set locally.
create function portcullis_current_org() returns uuid
    language sql stable parallel safe
    as $$ select nullif(current_setting('portcullis.org_id', true), '')::uuid $$;

create table organizations (
    org_id     uuid primary key,
    name       text not null check (length(name) between 1 and 200),
    created_at timestamptz not null default now()
);

create table org_settings (
    org_id                 uuid primary key references organizations (org_id),
    logging_level          text not null default 'metadata'
                           check (logging_level in ('metadata', 'content')),
    pii_redaction          boolean not null default false,
    pii_guardrail          text not null default 'off'
                           check (pii_guardrail in ('off', 'redact', 'block')),
    content_retention_days integer not null default 30
                           check (content_retention_days between 1 and 3650),
    -- Seven years by default: financial records outlive content (RM-4).
    ledger_retention_days  integer not null default 2557
                           check (ledger_retention_days between 365 and 36500),
    require_mfa            boolean not null default false,
    updated_at             timestamptz not null default now()
);

-- People are global (one person, several orgs); an org sees only its own members.
create table users (
    user_id       uuid primary key,
    email         text not null check (length(email) between 3 and 320),
    -- argon2id PHC string; NULL until an invited user sets a password.
    password_hash text,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create unique index uq_users_email on users (lower(email));

create table memberships (
    org_id     uuid not null references organizations (org_id),
    user_id    uuid not null references users (user_id),
    role       text not null check (role in ('owner', 'admin', 'member', 'viewer')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (org_id, user_id)
);
create index memberships_user_id on memberships (user_id);

create table teams (
    team_id          uuid primary key,
    org_id           uuid not null references organizations (org_id),
    name             text not null check (length(name) between 1 and 200),
    budget_micro_usd bigint check (budget_micro_usd >= 0),
    budget_period    text check (budget_period in ('total', 'monthly')),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    -- Scoped by org so that a duplicate name never reveals another org's team.
    constraint uq_teams_org_name unique (org_id, name)
);

-- Append-only, hash-chained per org (AU-3). See crates/core/src/audit.rs for the hash.
create table audit_events (
    org_id      uuid not null references organizations (org_id),
    seq         bigint not null check (seq >= 1),
    event_id    uuid not null unique,
    occurred_at timestamptz not null,
    actor_type  text not null check (actor_type in ('user', 'master_key', 'virtual_key', 'system')),
    actor_id    text not null,
    action      text not null,
    target_type text not null,
    target_id   text not null,
    client_ip   inet,
    user_agent  text,
    request_id  text,
    details     jsonb not null,
    prev_hash   bytea not null check (length(prev_hash) = 32),
    hash        bytea not null check (length(hash) = 32),
    primary key (org_id, seq)
);
create index audit_events_org_action on audit_events (org_id, action, seq);

create function audit_events_refuse_change() returns trigger
    language plpgsql
    as $$
begin
    raise exception 'audit events are append-only: % refused', tg_op
        using errcode = 'insufficient_privilege';
end
$$;

-- For everyone, owner and superuser included: only disabling the trigger (itself a DDL
-- change a DBA must make on purpose) lets a row change, and the hash chain then shows it.
create trigger audit_events_append_only
    before update or delete on audit_events
    for each row execute function audit_events_refuse_change();
create trigger audit_events_no_truncate
    before truncate on audit_events
    for each statement execute function audit_events_refuse_change();

-- Row-level security: enabled and forced on every table, one fail-closed policy each.
alter table organizations enable row level security;
alter table organizations force row level security;
create policy tenant_isolation on organizations
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

alter table org_settings enable row level security;
alter table org_settings force row level security;
create policy tenant_isolation on org_settings
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

alter table memberships enable row level security;
alter table memberships force row level security;
create policy tenant_isolation on memberships
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

alter table teams enable row level security;
alter table teams force row level security;
create policy tenant_isolation on teams
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

alter table audit_events enable row level security;
alter table audit_events force row level security;
create policy tenant_isolation on audit_events
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

-- A user row is visible and changeable only from an org the user belongs to. The subquery
-- reads memberships under that table's own policy, so it sees the current org only.
alter table users enable row level security;
alter table users force row level security;
create policy member_of_current_org on users
    using (exists (select 1 from memberships m where m.user_id = users.user_id));
-- A new user is created inside an org's transaction (an invitation), before the membership.
create policy insert_within_an_org on users for insert
    with check (portcullis_current_org() is not null);

-- Look-ups that must cross tenants run as the owner through the SECURITY DEFINER functions
-- below, and only those read past the tenant policies. Each policy is for the owner role alone.
create policy owner_lookup on users for select to portcullis_owner using (true);
create policy owner_lookup on organizations for select to portcullis_owner using (true);

-- Login: the user with this email, before any org is known. Returns the password hash to
-- compare in the gateway, never to a client. Documented in docs/ARCHITECTURE.md (tenancy).
create function auth_user_by_email(p_email text)
    returns table (user_id uuid, password_hash text)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select u.user_id, u.password_hash from users u where lower(u.email) = lower(p_email) $$;

-- Platform operations (the master key, `portcullis audit verify` over all orgs): the ids of
-- every org and nothing else.
create function platform_org_ids()
    returns table (org_id uuid)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select o.org_id from organizations o order by o.org_id $$;

revoke execute on function auth_user_by_email(text) from public;
revoke execute on function platform_org_ids() from public;
grant execute on function auth_user_by_email(text) to portcullis_runtime;
grant execute on function platform_org_ids() to portcullis_runtime;

-- Privileges of the runtime role: what the gateway does, nothing more. The audit table gets
-- INSERT and SELECT only.
grant select, insert, update on organizations to portcullis_runtime;
grant select, insert, update on org_settings to portcullis_runtime;
grant select, insert, update on users to portcullis_runtime;
grant select, insert, update, delete on memberships to portcullis_runtime;
grant select, insert, update, delete on teams to portcullis_runtime;
grant select, insert on audit_events to portcullis_runtime;
