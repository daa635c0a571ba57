-- A stored event's snapshot is written once, by intake, and read whole by
-- delivery; nothing queries inside it. As `json` it is kept as the text it
-- came as (checked to be JSON): no binary form is built on every insert,
-- nor turned back into text on every claim. On a real 2.1 KB lead hook
-- that was a measurable share of PostgreSQL's time per hook (README,
-- Benchmark). The rewrite takes as long as the table is large (30 days of
-- events by default).
alter table hook_events alter column snapshot type json using snapshot::json;
