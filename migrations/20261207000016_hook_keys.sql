-- Hook keys besides an account's current one (accounts.hook_key_sha256):
--
-- - 'retired': a key rotated out, working until `valid_until` (amoCRM may
--   still re-send hooks to the old URL). Each keeps its own end, so a
--   second rotation within the grace no longer cuts the first key short.
-- - 'candidate': the next key while its URL is being subscribed. It works
--   from before the subscription is asked for, so a hook amoCRM sends there
--   at once is stored; it becomes the current key only once amoCRM accepted
--   the subscription, and is removed when amoCRM refused it.
create table hook_keys (
    hook_key_sha256 text primary key,
    account_id      bigint not null references accounts (account_id) on delete cascade,
    kind            text not null check (kind in ('retired', 'candidate')),
    valid_until     timestamptz not null,
    created_at      timestamptz not null default now()
);
create index hook_keys_account on hook_keys (account_id);

insert into hook_keys (hook_key_sha256, account_id, kind, valid_until)
select old_hook_key_sha256, account_id, 'retired', old_hook_key_until
from accounts
where old_hook_key_sha256 is not null and old_hook_key_until > now()
on conflict do nothing;

drop index if exists accounts_old_hook_key;
alter table accounts
    drop column old_hook_key_sha256,
    drop column old_hook_key_until;

-- Every process caches accounts by hook key: a key that appears, changes or
-- goes is announced as a change of its account.
create function notify_hook_key_change() returns trigger
language plpgsql as $$
begin
    perform pg_notify('amohook_accounts', coalesce(new.account_id, old.account_id)::text);
    return null;
end $$;

create trigger hook_keys_changed
    after insert or update or delete on hook_keys
    for each row
    execute function notify_hook_key_change();
