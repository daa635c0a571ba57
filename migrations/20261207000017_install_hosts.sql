-- The per-host limit of install codes counts both paths: widget codes
-- (pending_installs) and browser installs, whose used state now records
-- the host it named. Codes amoCRM refused count no more: forged codes
-- naming a real account must not lock its real install out.
alter table oauth_states
    add column referer text,
    add column refused boolean not null default false;
create index oauth_states_referer on oauth_states (referer, used_at) where referer is not null;
