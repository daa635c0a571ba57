-- Two integrations (amoCRM's and Kommo's; see src/platform.rs): a refusal
-- of one integration pauses the refreshes of its own accounts only. The
-- fault is cleared at every start, so the old single row need not be kept.
drop table integration_fault;
create table integration_fault (
    integration text primary key check (integration in ('amocrm', 'kommo')),
    error       text not null,
    since       timestamptz not null default now(),
    retry_at    timestamptz not null
);
