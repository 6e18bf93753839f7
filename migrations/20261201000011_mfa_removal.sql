-- Removing one's own second factor (AC-4, AU-1): the person proves a current code first (the
-- gateway checks it with the existing functions), then these run as definers, since the
-- runtime role has no direct access to users, sessions or recovery codes.

-- The orgs where a person's role and the org's `require_mfa` are read together: the gateway
-- refuses the removal when any of them needs a second factor of this person.
create function auth_user_mfa_rules(p_user_id uuid)
    returns table (org_id uuid, role text, require_mfa boolean)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select m.org_id, m.role, coalesce(s.require_mfa, false)
          from memberships m left join org_settings s using (org_id)
          where m.user_id = p_user_id order by m.org_id $$;

-- Turns MFA off: the seed (and any pending one) and the recovery codes go, and no session of
-- the person counts as verified any more, so a later promotion under `require_mfa` asks for a
-- new second factor. False when MFA was not on.
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
    return true;
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
