-- A person's own live sessions, for their profile (the console's "sessions"): when each began
-- and was last used, never a token or its hash. Only the person asks, through their session.
create function auth_user_sessions(p_user_id uuid)
    returns table (session_id uuid, created_at timestamptz, last_seen_at timestamptz,
                   expires_at timestamptz, mfa_verified boolean)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select s.session_id, s.created_at, s.last_seen_at, s.expires_at, s.mfa_verified
          from sessions s
          where s.user_id = p_user_id and s.kind = 'session'
            and s.revoked_at is null and s.expires_at > now()
          order by s.created_at desc $$;

revoke execute on function auth_user_sessions(uuid) from public;
grant execute on function auth_user_sessions(uuid) to portcullis_runtime;
