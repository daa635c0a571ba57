-- amoCRM refused the integration itself (a wrong client secret, a changed
-- redirect_uri): refreshes pause for every account, one probe every few
-- minutes, instead of marking hundreds of accounts for a new install.
create table integration_fault (
    one      boolean primary key default true check (one),
    error    text not null,
    since    timestamptz not null default now(),
    retry_at timestamptz not null
);
