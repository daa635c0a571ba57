-- When amoCRM was last asked to confirm an uninstall call for the account:
-- a replayed call (its signature never changes) is checked at most once in
-- a few minutes, and otherwise only schedules a check.
alter table accounts add column uninstall_checked_at timestamptz;
