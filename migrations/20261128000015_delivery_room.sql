-- Room on each page for the next version of a row, so that delivery's
-- updates that change no indexed column (the note text and its mark on an
-- event; a card's last seen state) are heap-only: no new index entries,
-- and the new version is written beside the old one. Applies to pages
-- filled from now on (docs/scaling.md).
alter table hook_events set (fillfactor = 70);
alter table entity_states set (fillfactor = 70);

-- Every statement that reads `locked_by` names its events by id (the
-- primary key): this index only cost each claim one more index entry.
drop index if exists hook_events_claimed;
