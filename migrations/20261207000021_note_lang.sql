-- The language of an account's notes: the installing user's (`lang` of
-- GET /api/v4/users/{id}: ru on amoCRM.ru; en, es or pt on Kommo), changed
-- on the account page or through the admin API. Unset: Russian for
-- amocrm.ru hosts, English for the others.
alter table accounts
    add column note_lang text check (note_lang in ('ru', 'en', 'es', 'pt'));
