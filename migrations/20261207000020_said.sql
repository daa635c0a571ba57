-- What amohook's notes have said of each card: the stage and responsible
-- user its latest notes named. A stage move or responsible change given by
-- a hook's own old values is noted unless a note already said it; the
-- stored state alone does not tell (a first-seen update whose note could
-- list nothing stores the new stage, and the status hook of that move must
-- still be noted). Cards noted before this are taken to have had their
-- stored stage and responsible said, as the rule was then.
alter table entity_states add column said jsonb;
update entity_states set said = jsonb_build_object(
    'pipeline', snapshot -> 'pipeline_id',
    'status', snapshot -> 'status_id',
    'responsible', snapshot -> 'responsible_user_id');
