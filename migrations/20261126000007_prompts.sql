-- Versioned prompts (CM-2): a prompt has immutable, numbered versions (chat messages whose
-- contents are templates), and labels (such as `production`) that point at one version. Moving
-- a label deploys or rolls back; each change is audited by the gateway in the same transaction.

create table prompts (
    prompt_id  uuid primary key,
    org_id     uuid not null references organizations (org_id),
    name       text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    created_at timestamptz not null default now(),
    constraint uq_prompts_org_name unique (org_id, name),
    constraint uq_prompts_org_id unique (org_id, prompt_id)
);

create table prompt_versions (
    org_id     uuid not null,
    prompt_id  uuid not null,
    version    integer not null check (version >= 1),
    -- [{role, content}], contents are minijinja templates.
    messages   jsonb not null check (jsonb_typeof(messages) = 'array'),
    created_at timestamptz not null default now(),
    primary key (prompt_id, version),
    constraint uq_prompt_versions_org unique (org_id, prompt_id, version),
    constraint fk_prompt_versions_prompt foreign key (org_id, prompt_id)
        references prompts (org_id, prompt_id)
);

create table prompt_labels (
    org_id     uuid not null,
    prompt_id  uuid not null,
    label      text not null check (label ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    version    integer not null,
    updated_at timestamptz not null default now(),
    primary key (prompt_id, label),
    -- The org is part of every key: a label can only point at its own org's version.
    constraint fk_prompt_labels_version foreign key (org_id, prompt_id, version)
        references prompt_versions (org_id, prompt_id, version)
);

-- A version, once written, is what it is: nobody changes or removes one.
create function prompt_versions_refuse_change() returns trigger
    language plpgsql
    as $$
begin
    raise exception 'prompt versions are immutable: % refused', tg_op
        using errcode = 'insufficient_privilege';
end
$$;
create trigger prompt_versions_immutable
    before update or delete on prompt_versions
    for each row execute function prompt_versions_refuse_change();
create trigger prompt_versions_no_truncate
    before truncate on prompt_versions
    for each statement execute function prompt_versions_refuse_change();

alter table prompts enable row level security;
alter table prompts force row level security;
create policy tenant_isolation on prompts
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

alter table prompt_versions enable row level security;
alter table prompt_versions force row level security;
create policy tenant_isolation on prompt_versions
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

alter table prompt_labels enable row level security;
alter table prompt_labels force row level security;
create policy tenant_isolation on prompt_labels
    using (org_id = portcullis_current_org())
    with check (org_id = portcullis_current_org());

grant select, insert on prompts to portcullis_runtime;
grant select, insert on prompt_versions to portcullis_runtime;
grant select, insert, update on prompt_labels to portcullis_runtime;
