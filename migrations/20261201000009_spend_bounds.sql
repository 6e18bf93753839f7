-- A budget bounds what the provider can bill (AV-2): what a route allows that changes what a
-- request may cost, and the kinds of token the ledger records beside its totals.

alter table model_routes
    -- A target with no price is refused unless its route says so (and the change is audited).
    add column unpriced boolean not null default false,
    -- Most choices (`n`) one request may ask for; 8 when unset.
    add column max_choices integer check (max_choices between 1 and 128),
    -- File parts (documents) are refused unless the route sets their worst case in tokens.
    add column file_part_tokens integer check (file_part_tokens between 1 and 10000000),
    -- A stream may go quiet this long between pieces, and last this long in all (AV-4).
    add column stream_idle_ms integer check (stream_idle_ms between 1000 and 3600000),
    add column stream_max_ms integer check (stream_max_ms between 1000 and 86400000);

alter table ledger_entries
    add column cache_write_tokens bigint not null default 0 check (cache_write_tokens >= 0),
    add column reasoning_tokens bigint not null default 0 check (reasoning_tokens >= 0);
