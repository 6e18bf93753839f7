-- Removing one's own second factor (AC-4, AU-1). The gateway checks a current code first, then,
-- in one transaction with the removal's audit entries (`PersonTx`), reads the person's roles
-- and their orgs' `require_mfa` with those rows locked (a promotion or `require_mfa` turned on
-- meanwhile waits for the removal, then sees MFA off), and removes. These run as definers: the
-- runtime role has no direct access to users, sessions or recovery codes.

-- The person's orgs, their role in each and the org's `require_mfa`, locked until the caller's
-- transaction ends: the gateway refuses the removal when any org needs a second factor of them.
create function auth_user_mfa_rules(p_user_id uuid)
    returns table (org_id uuid, role text, require_mfa boolean)
    language plpgsql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
begin
    perform 1 from memberships m where m.user_id = p_user_id order by m.org_id for share;
    perform 1 from org_settings s
        where s.org_id in (select m.org_id from memberships m where m.user_id = p_user_id)
        order by s.org_id for share;
    return query select m.org_id, m.role, coalesce(s.require_mfa, false)
        from memberships m left join org_settings s using (org_id)
        where m.user_id = p_user_id order by m.org_id;
end
$$;

-- Turns MFA off: the seed (and any pending one) and the recovery codes go, open challenges end,
-- and no session of the person counts as verified any more, so a later promotion under
-- `require_mfa` asks for a new second factor. False when MFA was not on.
create function auth_remove_mfa(p_user_id uuid)
    returns boolean
    language plpgsql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
begin
    update users set totp_ciphertext = null, totp_pending_ciphertext = null,
                     mfa_enabled = false, updated_at = now()
     where user_id = p_user_id and mfa_enabled;
    if not found then
        return false;
    end if;
    delete from recovery_codes where user_id = p_user_id;
    update sessions set mfa_verified = false where user_id = p_user_id and mfa_verified;
    update sessions set revoked_at = now()
     where user_id = p_user_id and kind = 'mfa_challenge' and revoked_at is null;
    return true;
end
$$;

-- A session counts as verified only while its person has MFA on: a second step that commits
-- after a concurrent removal cannot leave a verified session behind.
create or replace function auth_session(p_token_hash bytea, p_kind text)
    returns table (session_id uuid, user_id uuid, mfa_verified boolean, expires_at timestamptz,
                   created_at timestamptz, last_seen_at timestamptz)
    language plpgsql volatile security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
declare
    s sessions%rowtype;
    idle integer;
    max_hours integer;
    enabled boolean;
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
    select u.mfa_enabled into enabled from users u where u.user_id = s.user_id;
    return query select s.session_id, s.user_id, s.mfa_verified and coalesce(enabled, false),
                        s.expires_at, s.created_at, s.last_seen_at;
end
$$;

do $$
declare
    f text;
begin
    foreach f in array array['auth_user_mfa_rules(uuid)', 'auth_remove_mfa(uuid)']
    loop
        execute format('revoke execute on function %s from public', f);
        execute format('grant execute on function %s to portcullis_runtime', f);
    end loop;
end
$$;
