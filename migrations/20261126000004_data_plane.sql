-- Data plane: virtual keys found by hash, and change notifications that let every gateway
-- process drop cached keys and routes at once (LISTEN/NOTIFY; a short TTL is the backstop).

-- A live virtual key by the SHA-256 of its secret, before its org is known.
create function auth_virtual_key(p_token_hash bytea)
    returns table (key_id uuid, org_id uuid, team_id uuid, models text[], expires_at timestamptz)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select k.key_id, k.org_id, k.team_id, k.models, k.expires_at from virtual_keys k
          where k.token_hash = p_token_hash and k.revoked_at is null $$;
revoke execute on function auth_virtual_key(bytea) from public;
grant execute on function auth_virtual_key(bytea) to portcullis_runtime;

create policy owner_lookup on virtual_keys for select to portcullis_owner using (true);

-- The payload is the hash of the key's old secret: caches are keyed by it.
create function notify_virtual_key_change() returns trigger
    language plpgsql
    as $$
begin
    perform pg_notify('portcullis_keys', encode(old.token_hash, 'hex'));
    return null;
end
$$;
create trigger virtual_keys_changed
    after update or delete on virtual_keys
    for each row execute function notify_virtual_key_change();

-- The payload is the org whose routes or credentials changed.
create function notify_route_change() returns trigger
    language plpgsql
    as $$
begin
    perform pg_notify('portcullis_routes', coalesce(new.org_id, old.org_id)::text);
    return null;
end
$$;
create trigger model_routes_changed
    after insert or update or delete on model_routes
    for each row execute function notify_route_change();
create trigger provider_credentials_changed
    after insert or update or delete on provider_credentials
    for each row execute function notify_route_change();
