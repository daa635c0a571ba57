-- The durable inbox of hook events, what was last seen of every card, the
-- per-account caches and leases of the delivery worker, and the shared
-- per-account request budget.

create table hook_events (
    event_id        bigserial primary key,
    account_id      bigint not null references accounts (account_id) on delete cascade,
    entity_type     text not null check (entity_type in ('lead', 'contact', 'company')),
    entity_id       bigint not null,
    action          text not null check (action in ('add', 'update')),
    -- The entity's updated_at (unix seconds) as the hook gave it.
    changed_at      bigint not null,
    -- The card as the hook showed it (hooks::Snapshot).
    snapshot        jsonb not null,
    received_at     timestamptz not null default now(),
    -- pending: waits for its note; sending: a note request is (or was,
    -- before a crash) under way; delivered; skipped (nothing visible
    -- changed, or superseded); failed (amoCRM refused it, or retries ran
    -- out); dropped (the account was disconnected).
    state           text not null default 'pending'
                    check (state in ('pending', 'sending', 'delivered', 'skipped', 'failed', 'dropped')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    -- A 'sending' event belongs to its sender until then.
    locked_until    timestamptz,
    -- A note request for it may have reached amoCRM (a crash, a timeout, a
    -- 5xx): before sending again, look whether the note exists.
    maybe_sent      boolean not null default false,
    sent_at         timestamptz,
    first_failure_at timestamptz,
    last_error      text,
    -- Rendered once, together with the entity state update, so a retry
    -- sends exactly the same text.
    note_text       text,
    note_id         bigint,
    finished_at     timestamptz,
    -- amoCRM re-sends hooks: the same change of the same card is stored once.
    unique (account_id, entity_type, entity_id, action, changed_at)
);

create index hook_events_due on hook_events (account_id, next_attempt_at)
    where state in ('pending', 'sending');
create index hook_events_recent on hook_events (account_id, received_at desc);

-- The last state seen of each card, to tell what changed.
create table entity_states (
    account_id  bigint not null references accounts (account_id) on delete cascade,
    entity_type text not null,
    entity_id   bigint not null,
    changed_at  bigint not null,
    snapshot    jsonb not null,
    primary key (account_id, entity_type, entity_id)
);

-- Users and pipelines of an account, to name responsibles and stages.
create table account_directory (
    account_id           bigint primary key references accounts (account_id) on delete cascade,
    users                jsonb not null default '{}',
    users_fetched_at     timestamptz,
    -- amoCRM lists users to administrators only; when refused, notes show ids.
    users_forbidden      boolean not null default false,
    pipelines            jsonb not null default '{}',
    pipelines_fetched_at timestamptz
);

-- Delivery: one process at a time works on an account (the lease), and an
-- account blocked by amoCRM pauses.
alter table accounts
    add column lease_owner    text,
    add column lease_until    timestamptz,
    add column last_served_at timestamptz,
    add column paused_until   timestamptz,
    add column pause_reason   text,
    add column manual_pause   boolean not null default false;

-- Calls to each account host in the last second, shared by every process.
create table api_budget (
    domain text primary key,
    recent timestamptz[] not null default '{}'
);
