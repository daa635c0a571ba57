-- A rotated hook key keeps working for a grace period (amoCRM may still be
-- re-sending hooks to the old URL), then answers 404.
alter table accounts
    add column old_hook_key_sha256 text,
    add column old_hook_key_until  timestamptz;
create index accounts_old_hook_key on accounts (old_hook_key_sha256)
    where old_hook_key_sha256 is not null;
