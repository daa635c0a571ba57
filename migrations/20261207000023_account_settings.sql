-- Each account's note settings (account_settings::NoteSettings), every
-- version kept: an event follows the version in force when it was stored
-- (the latest whose saved_at is not after the event's received_at), so a
-- change applies to the hooks that arrive after it. No row: the defaults.
create table account_settings (
    account_id bigint not null references accounts (account_id) on delete cascade,
    version    integer not null check (version > 0),
    settings   jsonb not null,
    saved_at   timestamptz not null default now(),
    -- `admin` (the operator's API or pages) or `user {id}` (the account's
    -- own page, the amoCRM user who opened it).
    saved_by   text not null,
    primary key (account_id, version)
);

-- The account's latest version; 0 while it has none (delivery then skips
-- the lookup).
alter table accounts add column settings_version integer not null default 0;
