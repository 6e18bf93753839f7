-- Privacy (RM-1, RM-2, RM-3, RM-5, CF-3): request logs (metadata) and their content, kept in
-- separate tables; content retention; the org's logging and guardrail settings on the data
-- plane's key look-up.
--
-- A request log row is what happened (who, which model, tokens, cost, latency, status, what the
-- guardrail did); its content row (prompt and completion) exists only at logging level
-- `content`, and is removed by retention while the metadata, the ledger and the daily usage
-- stay. End users are found by a digest of their id, so that deletion works even where the id
-- itself was redacted.

create table request_logs (
    -- UUIDv7, chosen when the request arrived: a retried batch inserts nothing twice.
    log_id          uuid primary key,
    org_id          uuid not null references organizations (org_id),
    created_at      timestamptz not null,
    request_id      text not null,
    key_id          uuid not null,
    team_id         uuid,
    -- The client's `user` as written, or redacted when the org redacts PII.
    end_user        text,
    -- SHA-256 of org id and end user: data-subject look-ups and deletion.
    end_user_digest bytea,
    endpoint        text not null check (endpoint in ('chat', 'embeddings', 'messages')),
    model           text not null,
    target          text,
    stream          boolean not null,
    status          smallint not null,
    error_code      text,
    input_tokens    bigint,
    output_tokens   bigint,
    cost_micro_usd  bigint,
    latency_ms      integer not null,
    -- What the guardrail did: off, passed, redacted or blocked, and the kinds it found.
    guardrail       text not null check (guardrail in ('off', 'passed', 'redacted', 'blocked')),
    pii_types       text[] not null default '{}',
    -- The level in force for this request, and whether its content was redacted when written.
    logging_level   text not null check (logging_level in ('metadata', 'content')),
    redacted        boolean not null,
    constraint uq_request_logs_org_log unique (org_id, log_id)
);
create index request_logs_org_order on request_logs (org_id, log_id);
create index request_logs_request_id on request_logs (org_id, request_id);
create index request_logs_end_user on request_logs (org_id, end_user_digest)
    where end_user_digest is not null;

create table request_contents (
    log_id     uuid primary key,
    org_id     uuid not null references organizations (org_id),
    created_at timestamptz not null,
    -- The request as it left for the provider (after the guardrail), and the answer's text.
    request    text not null,
    response   text,
    -- Either side was cut at the size limit.
    truncated  boolean not null default false,
    -- With the org in the key: content can only belong to a log of its own org (foreign keys
    -- are checked past row-level security).
    constraint fk_request_contents_log foreign key (org_id, log_id)
        references request_logs (org_id, log_id)
);
create index request_contents_age on request_contents (created_at);

alter table request_logs enable row level security;
alter table request_logs force row level security;
create policy tenant_isolation on request_logs
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

alter table request_contents enable row level security;
alter table request_contents force row level security;
create policy tenant_isolation on request_contents
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());
create policy owner_retention on request_contents for select to portcullis_owner using (true);
create policy owner_retention_delete on request_contents for delete to portcullis_owner
    using (true);

-- Delete: data-subject deletion (RM-5), in the org's own context, audited.
grant select, insert, delete on request_logs to portcullis_runtime;
grant select, insert, delete on request_contents to portcullis_runtime;

-- RM-3: removes content older than each org's content retention, and nothing else (metadata,
-- the ledger and usage stay). Cross-tenant because one job serves every org; run by one
-- process at a time (advisory lock). Returns how many content rows it removed.
create function content_expire() returns bigint
    language plpgsql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
declare
    removed bigint;
begin
    delete from request_contents c
     using org_settings s
     where s.org_id = c.org_id
       and c.created_at < now() - make_interval(days => s.content_retention_days);
    get diagnostics removed = row_count;
    return removed;
end
$$;
revoke execute on function content_expire() from public;
grant execute on function content_expire() to portcullis_runtime;

-- The data plane learns the org's logging and guardrail settings with the key.
drop function auth_virtual_key(bytea);
create function auth_virtual_key(p_token_hash bytea)
    returns table (key_id uuid, org_id uuid, team_id uuid, models text[], expires_at timestamptz,
                   key_budget bigint, key_period text, rpm_limit integer, tpm_limit integer,
                   team_budget bigint, team_period text, org_budget bigint, org_period text,
                   logging_level text, pii_redaction boolean, pii_guardrail text)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select k.key_id, k.org_id, k.team_id, k.models, k.expires_at,
                 k.budget_micro_usd, k.budget_period, k.rpm_limit, k.tpm_limit,
                 t.budget_micro_usd, t.budget_period, s.budget_micro_usd, s.budget_period,
                 s.logging_level, s.pii_redaction, s.pii_guardrail
          from virtual_keys k
          left join teams t on t.org_id = k.org_id and t.team_id = k.team_id
          left join org_settings s on s.org_id = k.org_id
          where k.token_hash = p_token_hash and k.revoked_at is null $$;
revoke execute on function auth_virtual_key(bytea) from public;
grant execute on function auth_virtual_key(bytea) to portcullis_runtime;

-- A change of logging or guardrail settings drops the org's cached keys everywhere, as a
-- budget change does (the channel keeps its first name).
create trigger org_settings_privacy_changed
    after update of logging_level, pii_redaction, pii_guardrail on org_settings
    for each row execute function notify_budget_change();
