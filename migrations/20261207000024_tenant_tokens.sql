-- Widget tokens and entry links to an account's own page, each usable once:
-- an id is kept until shortly after its token runs out (tenant.rs).
create table tenant_tokens_spent (
    token_id   text primary key,
    expires_at timestamptz not null
);
create index tenant_tokens_spent_expiry on tenant_tokens_spent (expires_at);
