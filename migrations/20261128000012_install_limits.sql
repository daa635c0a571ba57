-- Installs cannot be used as an amplifier (see src/install/gate.rs).

-- A widget code is exchanged once: a code seen again is found by its
-- SHA-256 (the code itself stays sealed, and is erased once it is useless).
alter table pending_installs add column code_sha256 text;
create unique index pending_installs_code on pending_installs (code_sha256);
-- The per-host limit and the retrier's order count a host's recent codes.
create index pending_installs_referer on pending_installs (referer, received_at);

-- Budget rows are made only for hosts of known accounts.
create index accounts_domain on accounts (domain);

-- States of GET /install are signed values now; a row is written only when
-- one is used, so that it works once.
comment on table oauth_states is 'Used install states (signed values), kept until a day after they expire';
