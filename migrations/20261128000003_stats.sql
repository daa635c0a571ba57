-- Figures for the status page, kept as they happen so that a page of
-- thousands of accounts reads a few small rows per account instead of
-- counting the event table.

create table account_stats (
    account_id      bigint primary key references accounts (account_id) on delete cascade,
    hooks_received  bigint not null default 0,
    last_hook_at    timestamptz,
    notes_delivered bigint not null default 0,
    last_error      text,
    last_error_at   timestamptz
);

-- Hooks received per account and hour, for "last 24 hours".
create table hook_hourly (
    account_id bigint not null references accounts (account_id) on delete cascade,
    hour       timestamptz not null,
    received   bigint not null default 0,
    primary key (account_id, hour)
);

create index hook_events_failed on hook_events (account_id) where state = 'failed';

insert into account_stats (account_id) select account_id from accounts on conflict do nothing;
