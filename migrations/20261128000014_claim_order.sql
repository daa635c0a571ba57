-- The delivery's account claim takes the least recently served account with
-- due events. With this index PostgreSQL can walk accounts in that order and
-- stop at the first with a due event, instead of reading every account and
-- every due event for each claim (44 ms a claim with 10,000 accounts due,
-- 0.05 ms with the index; docs/scaling.md). When few accounts have due
-- events the planner still starts from the due events.
create index accounts_last_served on accounts (last_served_at nulls first);
