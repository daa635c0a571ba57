-- Accounts that installed the integration, their tokens, and the install flow.

create table accounts (
    -- amoCRM's own account id.
    account_id          bigint primary key,
    -- The account's host, e.g. acme.amocrm.ru; every API call goes there.
    domain              text not null,
    subdomain           text not null,
    name                text not null default '',
    -- IANA zone from datetime_settings; null when amoCRM did not say.
    timezone            text,
    status              text not null default 'active'
                        check (status in ('active', 'reauth_required', 'disconnected')),
    -- Why the status is what it is (e.g. amoCRM's hint on a revoked token).
    status_reason       text,
    -- The hook key is a secret: rows are found by its SHA-256, and the key
    -- itself is kept encrypted so the hook URL can be shown again.
    hook_key_sha256     text not null unique,
    hook_key            bytea not null,
    webhooks_subscribed boolean not null default false,
    webhooks_error      text,
    installed_at        timestamptz not null default now(),
    connected_at        timestamptz not null default now(),
    disconnected_at     timestamptz,
    updated_at          timestamptz not null default now()
);

create index accounts_status on accounts (status);

create table account_tokens (
    account_id    bigint primary key references accounts (account_id) on delete cascade,
    -- AES-256-GCM: key id, nonce, ciphertext (see src/crypto.rs).
    access_token  bytea not null,
    refresh_token bytea not null,
    expires_at    timestamptz not null,
    refreshed_at  timestamptz not null default now()
);

create index account_tokens_refreshed_at on account_tokens (refreshed_at);

-- States handed out by GET /install: single use, short lived.
create table oauth_states (
    state      text primary key,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at    timestamptz
);

-- Installs that arrived without a browser (from_widget). amoCRM sends them
-- once and does not wait, so the code is kept and the exchange retried
-- until the code expires.
create table pending_installs (
    install_id      bigserial primary key,
    referer         text not null,
    code            bytea not null,
    received_at     timestamptz not null default now(),
    expires_at      timestamptz not null,
    state           text not null default 'pending'
                    check (state in ('pending', 'done', 'failed', 'expired')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    locked_until    timestamptz,
    account_id      bigint,
    last_error      text,
    updated_at      timestamptz not null default now()
);

create index pending_installs_due on pending_installs (next_attempt_at) where state = 'pending';
