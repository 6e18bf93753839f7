-- Spend (AV-2, RM-4): org budgets, target prices, budget counters and the per-process leases
-- taken from them, the append-only ledger and daily usage aggregates.
--
-- Money is integer micro-dollars. A counter holds what has been settled against one limit in
-- one period; a lease is a slice of that limit that one gateway process may spend without a
-- round trip. The cap holds across processes because a grant never exceeds
-- cap - spent - (live leases), and a settle moves its cost from the lease to `spent`.

alter table org_settings
    add column budget_micro_usd bigint check (budget_micro_usd >= 0),
    add column budget_period    text check (budget_period in ('total', 'monthly'));

alter table model_routes
    add column cached_input_micro_usd_per_mtok bigint check (cached_input_micro_usd_per_mtok >= 0),
    -- Output tokens reserved when a request does not say `max_tokens`.
    add column max_output_tokens integer check (max_output_tokens between 1 and 10000000);

create table spend_counters (
    org_id       uuid not null references organizations (org_id),
    -- Money for org, team and key; requests and tokens per minute for the rate limits.
    scope        text not null check (scope in ('org', 'team', 'key', 'key_rpm', 'key_tpm')),
    scope_id     uuid not null,
    -- The Unix epoch for a `total` budget, the month's or the minute's start otherwise.
    period_start timestamptz not null,
    spent        bigint not null default 0,
    primary key (org_id, scope, scope_id, period_start)
);

create table spend_leases (
    lease_id     uuid primary key,
    org_id       uuid not null,
    -- The gateway process holding it (a random id per process start).
    holder       uuid not null,
    scope        text not null,
    scope_id     uuid not null,
    period_start timestamptz not null,
    -- Granted minus settled: what the holder may still spend or has in flight.
    amount       bigint not null check (amount >= 0),
    -- Renewed by a live holder; past it the lease counts for nothing (a dead process).
    expires_at   timestamptz not null,
    constraint fk_spend_leases_counter foreign key (org_id, scope, scope_id, period_start)
        references spend_counters (org_id, scope, scope_id, period_start) on delete cascade
);
create index spend_leases_counter on spend_leases (org_id, scope, scope_id, period_start);
-- One lease per process per limit: concurrent grants to a process add up in one row.
create unique index uq_spend_leases_holder_counter
    on spend_leases (holder, org_id, scope, scope_id, period_start);

-- One row per settled request (RM-4). Kept apart from request logs and their content, with its
-- own retention; no route, content retention or data-subject deletion touches it.
create table ledger_entries (
    -- Chosen when the request reserved: a retried settle inserts nothing twice.
    entry_id            uuid primary key,
    org_id              uuid not null references organizations (org_id),
    occurred_at         timestamptz not null,
    request_id          text not null,
    team_id             uuid,
    key_id              uuid not null,
    model               text not null,
    target              text not null,
    input_tokens        bigint not null check (input_tokens >= 0),
    output_tokens       bigint not null check (output_tokens >= 0),
    cached_input_tokens bigint not null check (cached_input_tokens >= 0),
    cost_micro_usd      bigint not null check (cost_micro_usd >= 0),
    -- False when the target had no price (and no budget was in force): cost is then 0.
    priced              boolean not null,
    -- True when the provider reported no usage (a client that left mid-stream): the tokens
    -- are an upper bound from what was produced.
    estimated           boolean not null default false
);
create index ledger_entries_org_time on ledger_entries (org_id, occurred_at, entry_id);

create table usage_daily (
    org_id              uuid not null references organizations (org_id),
    day                 date not null,
    key_id              uuid not null,
    model               text not null,
    team_id             uuid,
    requests            bigint not null default 0,
    input_tokens        bigint not null default 0,
    output_tokens       bigint not null default 0,
    cost_micro_usd      bigint not null default 0,
    primary key (org_id, day, key_id, model)
);

-- Nobody changes a ledger row; only the retention function below removes rows, past the
-- org's ledger retention (it runs as the owner role).
create function ledger_entries_refuse_change() returns trigger
    language plpgsql
    as $$
begin
    if tg_op = 'DELETE' and current_user = 'portcullis_owner'
       and current_setting('portcullis.ledger_retention', true) = 'on' then
        return old;
    end if;
    raise exception 'ledger entries are append-only: % refused', tg_op
        using errcode = 'insufficient_privilege';
end
$$;
create trigger ledger_entries_append_only
    before update or delete on ledger_entries
    for each row execute function ledger_entries_refuse_change();
create trigger ledger_entries_no_truncate
    before truncate on ledger_entries
    for each statement execute function ledger_entries_refuse_change();

alter table spend_counters enable row level security;
alter table spend_counters force row level security;
create policy tenant_isolation on spend_counters
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

alter table spend_leases enable row level security;
alter table spend_leases force row level security;
create policy tenant_isolation on spend_leases
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());
create policy owner_maintenance on spend_leases to portcullis_owner using (true) with check (true);

alter table ledger_entries enable row level security;
alter table ledger_entries force row level security;
create policy tenant_isolation on ledger_entries
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());
create policy owner_retention on ledger_entries for select to portcullis_owner using (true);
create policy owner_retention_delete on ledger_entries for delete to portcullis_owner using (true);

alter table usage_daily enable row level security;
alter table usage_daily force row level security;
create policy tenant_isolation on usage_daily
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

create policy owner_maintenance on spend_counters to portcullis_owner using (true) with check (true);
create policy owner_retention on org_settings for select to portcullis_owner using (true);

grant select, insert, update on spend_counters to portcullis_runtime;
grant select, insert, update, delete on spend_leases to portcullis_runtime;
grant select, insert on ledger_entries to portcullis_runtime;
grant select, insert, update on usage_daily to portcullis_runtime;

-- Keeps a live process's leases alive; an expired lease is never revived (its amount may
-- already be granted to someone else). Returns the leases still live. Cross-tenant because a
-- process holds leases in many orgs; it touches only the caller's own leases (by holder id).
create function spend_renew_leases(p_holder uuid, p_ttl_ms integer)
    returns table (lease_id uuid)
    language sql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ update spend_leases l set expires_at = now() + make_interval(secs => p_ttl_ms / 1000.0)
          where l.holder = p_holder and l.expires_at > now()
          returning l.lease_id $$;

-- Housekeeping, run by one process at a time (advisory lock): removes expired leases and
-- rate-limit counters of past minutes, in every org. Returns how many leases it removed.
create function spend_sweep() returns integer
    language plpgsql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
declare
    removed integer;
begin
    delete from spend_leases where expires_at < now() - interval '1 minute';
    get diagnostics removed = row_count;
    delete from spend_counters
     where scope in ('key_rpm', 'key_tpm') and period_start < now() - interval '2 minutes';
    return removed;
end
$$;

-- RM-4: removes ledger rows older than each org's ledger retention (seven years by default),
-- and nothing else. Returns how many rows it removed.
create function ledger_expire() returns bigint
    language plpgsql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
declare
    removed bigint;
begin
    perform set_config('portcullis.ledger_retention', 'on', true);
    delete from ledger_entries e
     using org_settings s
     where s.org_id = e.org_id
       and e.occurred_at < now() - make_interval(days => s.ledger_retention_days);
    get diagnostics removed = row_count;
    perform set_config('portcullis.ledger_retention', 'off', true);
    return removed;
end
$$;

revoke execute on function spend_renew_leases(uuid, integer) from public;
revoke execute on function spend_sweep() from public;
revoke execute on function ledger_expire() from public;
grant execute on function spend_renew_leases(uuid, integer) to portcullis_runtime;
grant execute on function spend_sweep() to portcullis_runtime;
grant execute on function ledger_expire() to portcullis_runtime;

-- The data plane learns a key's budgets and limits with the key: one look-up, cached.
drop function auth_virtual_key(bytea);
create function auth_virtual_key(p_token_hash bytea)
    returns table (key_id uuid, org_id uuid, team_id uuid, models text[], expires_at timestamptz,
                   key_budget bigint, key_period text, rpm_limit integer, tpm_limit integer,
                   team_budget bigint, team_period text, org_budget bigint, org_period text)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select k.key_id, k.org_id, k.team_id, k.models, k.expires_at,
                 k.budget_micro_usd, k.budget_period, k.rpm_limit, k.tpm_limit,
                 t.budget_micro_usd, t.budget_period, s.budget_micro_usd, s.budget_period
          from virtual_keys k
          left join teams t on t.org_id = k.org_id and t.team_id = k.team_id
          left join org_settings s on s.org_id = k.org_id
          where k.token_hash = p_token_hash and k.revoked_at is null $$;
revoke execute on function auth_virtual_key(bytea) from public;
grant execute on function auth_virtual_key(bytea) to portcullis_runtime;

create policy owner_lookup on teams for select to portcullis_owner using (true);

-- A team's or org's budget changed: every process drops the org's cached keys.
create function notify_budget_change() returns trigger
    language plpgsql
    as $$
begin
    perform pg_notify('portcullis_budgets', new.org_id::text);
    return null;
end
$$;
create trigger teams_budget_changed
    after update of budget_micro_usd, budget_period on teams
    for each row execute function notify_budget_change();
create trigger org_settings_budget_changed
    after update of budget_micro_usd, budget_period on org_settings
    for each row execute function notify_budget_change();
