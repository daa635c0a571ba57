-- A value sealed with the encryption key the first time a process starts
-- on this database: a later process whose key cannot open it refuses to
-- start, before it could write tokens no other process can read.
create table key_check (
    one        boolean primary key default true check (one),
    canary     bytea not null,
    created_at timestamptz not null default now()
);
