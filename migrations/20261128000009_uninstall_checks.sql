-- An uninstall call is believed only when amoCRM confirms it (the grant is
-- dead). While amoCRM cannot be asked, the check is retried with back-off.
alter table accounts
    add column uninstall_check_at  timestamptz,
    add column uninstall_checks    integer not null default 0;
create index accounts_uninstall_due on accounts (uninstall_check_at)
    where uninstall_check_at is not null;
