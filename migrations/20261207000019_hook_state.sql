-- What amoCRM says of an account's web-hook subscription, read back from
-- it (GET /api/v4/webhooks): amoCRM switches a hook off after more than 100
-- failed answers in 2 hours (or on an IP block) and sends nothing more
-- until it is saved again, and a hook can be deleted in its UI. Checked
-- hourly for every active account and on demand.
alter table accounts
    add column webhook_state text
        check (webhook_state in ('subscribed', 'switched_off', 'missing', 'refused')),
    add column webhook_checked_at timestamptz;
update accounts set webhook_state = case when webhooks_subscribed then 'subscribed' else 'refused' end;
create index accounts_webhook_due on accounts (webhook_checked_at nulls first) where status = 'active';
