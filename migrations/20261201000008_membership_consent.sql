-- Access with consent, ended with membership (AC-6).
--
-- An invitation offers an email a role in an org; a membership exists only once a person
-- accepts it: a new person with a password, a person with an account from their own session.
-- Until then nothing in the org knows of the person, and no event of theirs lands there.
-- Sessions carry their last use so that idle and absolute timeouts hold on every request: each
-- org's limits in that org (the gateway's guard), the most permissive of them everywhere else
-- (here), so that no org can end a person's sessions in another. A membership can end its
-- person's sessions in its org alone.

-- The data conversion below runs as the owner, which forced RLS would hold to its own
-- policies; FORCE is restored at the end of this file (the catalog test checks it).
alter table invites no force row level security;
alter table memberships no force row level security;
alter table users no force row level security;

alter table invites
    add column email text check (length(email) between 3 and 320),
    add column role text check (role in ('owner', 'admin', 'member', 'viewer')),
    add column revoked_at timestamptz,
    -- The person who invited (NULL: the master key). An invitation is only as good as its
    -- inviter's right to grant the role, checked again when it is accepted.
    add column invited_by_user uuid references users (user_id);
alter table invites rename column user_id to accepted_user_id;
alter table invites alter column accepted_user_id drop not null;

-- Invitations made before: their email and role, from the person and membership made at the
-- time. A pending one loses that membership (it granted access without consent) and the
-- password-less person made for it.
update invites i set email = u.email from users u where u.user_id = i.accepted_user_id;
update invites i set role = m.role
    from memberships m where m.org_id = i.org_id and m.user_id = i.accepted_user_id;
update invites set role = 'viewer' where role is null;
delete from memberships m using invites i, users u
    where i.accepted_at is null and m.org_id = i.org_id and m.user_id = i.accepted_user_id
      and u.user_id = i.accepted_user_id and u.password_hash is null;
-- A person who never set a password never consented to any org: the old add put such people
-- in other orgs at once. Those memberships go too (their orgs invite them again).
delete from memberships m using users u
    where u.user_id = m.user_id and u.password_hash is null;
update invites set accepted_user_id = null where accepted_at is null;
delete from users u
    where u.password_hash is null
      and not exists (select 1 from memberships m where m.user_id = u.user_id)
      and not exists (select 1 from invites i where i.accepted_user_id = u.user_id)
      and not exists (select 1 from sessions s where s.user_id = u.user_id)
      and not exists (select 1 from virtual_keys k where k.owner_user_id = u.user_id);
alter table invites alter column email set not null, alter column role set not null;

-- One open invitation per org and email: inviting again replaces it (the gateway revokes the
-- old one first).
create unique index uq_invites_open_email on invites (org_id, lower(email))
    where accepted_at is null and revoked_at is null;

alter table org_settings
    add column session_idle_minutes integer not null default 30
        check (session_idle_minutes between 5 and 1440),
    add column session_max_hours integer not null default 12
        check (session_max_hours between 1 and 720),
    add column invite_ttl_days integer not null default 7
        check (invite_ttl_days between 1 and 90);

alter table sessions add column last_seen_at timestamptz not null default now();

-- Sessions of the person that began before this are refused in this org (an admin ended them,
-- or the person's role was lowered).
alter table memberships add column sessions_valid_after timestamptz;

alter table invites force row level security;
alter table memberships force row level security;
alter table users force row level security;

-- `notify_budget_change` reads `new`, which a delete does not have.
create function notify_budget_change_old() returns trigger
    language plpgsql
    as $$
begin
    perform pg_notify('portcullis_budgets', old.org_id::text);
    return null;
end
$$;

-- A membership removed or changed drops the org's cached keys on every process: a key whose
-- owner left stops at once, even before its revocation (which the gateway writes too).
create trigger memberships_changed
    after update of role or delete on memberships
    for each row execute function notify_budget_change_old();

-- An open invitation by its token: not accepted, revoked or expired.
drop function auth_invite(bytea);
create function auth_invite(p_token_hash bytea)
    returns table (invite_id uuid, org_id uuid, email text, role text, invited_by_user uuid)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select i.invite_id, i.org_id, i.email, i.role, i.invited_by_user from invites i
          where i.token_hash = p_token_hash and i.accepted_at is null
            and i.revoked_at is null and i.expires_at > now() $$;

-- The open invitations addressed to a person's email, for /auth/v1/me.
create function auth_user_invitations(p_user_id uuid)
    returns table (invite_id uuid, org_id uuid, name text, role text, expires_at timestamptz)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select i.invite_id, i.org_id, o.name, i.role, i.expires_at
          from users u
          join invites i on lower(i.email) = lower(u.email)
          join organizations o on o.org_id = i.org_id
          where u.user_id = p_user_id and i.accepted_at is null and i.revoked_at is null
            and i.expires_at > now()
          order by i.created_at $$;

-- The most permissive session limits over a person's orgs (defaults without any): what holds
-- a session outside any org. Each org holds the session to its own limits in that org.
create function auth_session_limits(p_user_id uuid)
    returns table (idle_minutes integer, max_hours integer)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select coalesce(max(s.session_idle_minutes), 30), coalesce(max(s.session_max_hours), 12)
          from memberships m join org_settings s on s.org_id = m.org_id
          where m.user_id = p_user_id $$;

-- A live session: not ended, not expired, and within the most permissive limits of its
-- person's orgs. A session found past them is ended for good, so that no later change of
-- settings revives it. Its last use is returned as it was: the caller checks an org's own
-- limits against it, then records this use (`auth_touch_session`), so that a refused request
-- does not count as use.
drop function auth_session(bytea, text);
create function auth_session(p_token_hash bytea, p_kind text)
    returns table (session_id uuid, user_id uuid, mfa_verified boolean, expires_at timestamptz,
                   created_at timestamptz, last_seen_at timestamptz)
    language plpgsql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
declare
    s sessions%rowtype;
    idle integer;
    max_hours integer;
begin
    select * into s from sessions x
        where x.token_hash = p_token_hash and x.kind = p_kind
          and x.revoked_at is null and x.expires_at > now();
    if not found then
        return;
    end if;
    if p_kind = 'session' then
        select l.idle_minutes, l.max_hours into idle, max_hours
            from auth_session_limits(s.user_id) l;
        if s.last_seen_at <= now() - make_interval(mins => idle)
           or s.created_at <= now() - make_interval(hours => max_hours) then
            update sessions x set revoked_at = now() where x.session_id = s.session_id;
            return;
        end if;
    end if;
    return query select s.session_id, s.user_id, s.mfa_verified, s.expires_at, s.created_at,
                        s.last_seen_at;
end
$$;

-- Records a use of a session that was let through (at most every ten seconds).
create function auth_touch_session(p_session_id uuid)
    returns void
    language sql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ update sessions set last_seen_at = now()
          where session_id = p_session_id and revoked_at is null
            and last_seen_at < now() - interval '10 seconds' $$;

-- Ends every live session of a person (their own "sign out everywhere"); how many ended.
create function auth_end_user_sessions(p_user_id uuid)
    returns integer
    language sql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ with ended as (
              update sessions set revoked_at = now()
              where user_id = p_user_id and revoked_at is null returning 1)
          select count(*)::integer from ended $$;

do $$
declare
    f text;
begin
    foreach f in array array[
        'auth_invite(bytea)', 'auth_user_invitations(uuid)', 'auth_session_limits(uuid)',
        'auth_session(bytea, text)', 'auth_touch_session(uuid)', 'auth_end_user_sessions(uuid)']
    loop
        execute format('revoke execute on function %s from public', f);
        execute format('grant execute on function %s to portcullis_runtime', f);
    end loop;
end
$$;

-- A key whose owner is no longer a member of its org, or only a viewer, carries no traffic,
-- whatever its own state: the gateway revokes such keys too, this is the backstop.
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
          where k.token_hash = p_token_hash and k.revoked_at is null
            and (k.owner_user_id is null
                 or exists (select 1 from memberships m
                            where m.org_id = k.org_id and m.user_id = k.owner_user_id
                              and m.role <> 'viewer')) $$;
revoke execute on function auth_virtual_key(bytea) from public;
grant execute on function auth_virtual_key(bytea) to portcullis_runtime;

-- Revoking a removed member's keys and ending their sessions in the org run in the
-- admin's tenant transaction: the runtime role already may update virtual_keys and
-- memberships there.
