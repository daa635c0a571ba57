-- One account can never hurt another.

-- Two different changes of a card within one second share `changed_at`:
-- the de-duplication key also holds a digest of the snapshot the hook
-- showed (the first 64 bits of its SHA-256, made by amohook), so only an
-- identical re-send is taken for a duplicate. Events stored before this
-- migration have digest 0: a re-send of one of those would be stored
-- again, and rendering finds nothing changed in an update.
alter table hook_events add column snapshot_digest bigint not null default 0;

do $$
declare
    old_key text;
begin
    select conname into old_key from pg_constraint
    where conrelid = 'hook_events'::regclass and contype = 'u';
    execute format('alter table hook_events drop constraint %I', old_key);
end $$;

alter table hook_events add constraint hook_events_change_key
    unique (account_id, entity_type, entity_id, action, changed_at, snapshot_digest);

-- A claimed ('sending') event belongs to the process that claimed it. The
-- process's heartbeat pushes `locked_until` forward every few seconds, so
-- a dead process's claims run out within seconds.
alter table hook_events add column locked_by text;
create index hook_events_claimed on hook_events (locked_by) where state = 'sending';

-- Every process caches accounts by hook key; a change of what the hook path
-- reads (status, hook key, subdomain, pause) is announced at once.
create function notify_account_change() returns trigger
language plpgsql as $$
begin
    perform pg_notify('amohook_accounts', new.account_id::text);
    return new;
end $$;

create trigger accounts_changed
    after update on accounts
    for each row
    when (old.status is distinct from new.status
          or old.hook_key_sha256 is distinct from new.hook_key_sha256
          or old.subdomain is distinct from new.subdomain
          or old.manual_pause is distinct from new.manual_pause)
    execute function notify_account_change();
