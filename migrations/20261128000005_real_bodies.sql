-- Notes right on the bodies amoCRM really sends.

-- Status and responsible hooks (`leads[status]`, `*[responsible]`, and the
-- digital pipeline's short bodies) are kept apart from updates: their note
-- says only the stage or the responsible change.
alter table hook_events drop constraint hook_events_action_check;
alter table hook_events add constraint hook_events_action_check
    check (action in ('add', 'update', 'status', 'responsible'));

-- The account's custom field definitions (by entity, each with the time it
-- was fetched: type, name, choices, currency) and settings (currency, date
-- format; also written at install), so values read in the account's words.
-- Refreshed like users and pipelines.
alter table account_directory
    add column fields              jsonb not null default '{}',
    add column settings            jsonb not null default '{}',
    add column settings_fetched_at timestamptz;
