-- The web-hook events each account is subscribed to, as amohook last asked
-- amoCRM for them. Accounts subscribed before companies were asked for
-- (`add_company`, `update_company`) hold none here and are subscribed again
-- once, by every process's maintenance (install::resubscribe_outdated).
alter table accounts add column webhooks_events text[] not null default '{}';
