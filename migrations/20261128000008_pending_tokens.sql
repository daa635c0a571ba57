-- A widget install's tokens, sealed, the moment the code is exchanged: a
-- later failure (the account call, the database) retries from them and
-- never spends the single-use code again.
alter table pending_installs add column tokens bytea;
