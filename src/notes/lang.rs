//! The languages of notes, and their words for values. The sentences are
//! in `templates/notes/`, one file per language.
//!
//! amoCRM.ru's users work in Russian; Kommo's in English, Spanish or
//! Portuguese (`lang` of a user: en, es, pt; ru on amoCRM.ru;
//! developers.kommo.com users-list). An account's notes take the language
//! of the user who installed amohook, and the account page or the admin
//! API can change it.

/// A note language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ru,
    En,
    Es,
    Pt,
}

impl Lang {
    pub const ALL: [Lang; 4] = [Lang::Ru, Lang::En, Lang::Es, Lang::Pt];

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
            Lang::Es => "es",
            Lang::Pt => "pt",
        }
    }

    /// The language's own name, for a choice on a page.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Ru => "Русский",
            Lang::En => "English",
            Lang::Es => "Español",
            Lang::Pt => "Português",
        }
    }

    /// `ru`, `en`, `es` or `pt` (a user's `lang` may carry a region:
    /// `pt_BR`, `es-MX`).
    pub fn parse(text: &str) -> Option<Lang> {
        let code = text.trim().get(..2)?.to_ascii_lowercase();
        Lang::ALL.into_iter().find(|l| l.as_str() == code)
    }

    /// Without a stored language: Russian for amocrm.ru accounts, English
    /// for Kommo and amocrm.com ones.
    pub fn for_domain(domain: &str) -> Lang {
        if domain.ends_with(".amocrm.ru") {
            Lang::Ru
        } else {
            Lang::En
        }
    }

    /// The account's stored language, else the domain's.
    pub fn of_account(stored: Option<&str>, domain: &str) -> Lang {
        stored
            .and_then(Lang::parse)
            .unwrap_or_else(|| Lang::for_domain(domain))
    }

    pub(crate) fn words(self) -> &'static Vocabulary {
        match self {
            Lang::Ru => &RU,
            Lang::En => &EN,
            Lang::Es => &ES,
            Lang::Pt => &PT,
        }
    }
}

/// The words of values in one language.
pub(crate) struct Vocabulary {
    /// amoCRM's user 0: nobody is responsible.
    pub not_assigned: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    /// Month names as a birthday reads them ("13 января", "13 de enero").
    pub months: [&'static str; 12],
    /// A birthday: day and month, no year.
    pub birthday: fn(u32, &'static str) -> String,
    /// The types of phones and e-mails, by the codes of amoCRM's built-in
    /// PHONE and EMAIL fields.
    pub contact_kinds: [(&'static str, &'static str); 7],
    /// A lead, a contact, a company, as a template's `{kind}` names them.
    pub kinds: [&'static str; 3],
    /// The built-in fields as a change list names them: name, the lead's
    /// budget, stage, responsible (the words of the sentences in
    /// `templates/notes/changed.*.txt`).
    pub labels: [&'static str; 4],
    /// Who made a change that amoCRM credits to user 0: robots, forms,
    /// integrations.
    pub automation: &'static str,
}

impl Vocabulary {
    pub fn contact_kind(&self, code: &str) -> Option<&'static str> {
        self.contact_kinds
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, word)| *word)
    }
}

fn day_month(day: u32, month: &'static str) -> String {
    format!("{day} {month}")
}

fn month_day(day: u32, month: &'static str) -> String {
    format!("{month} {day}")
}

fn day_de_month(day: u32, month: &'static str) -> String {
    format!("{day} de {month}")
}

static RU: Vocabulary = Vocabulary {
    not_assigned: "не назначен",
    yes: "да",
    no: "нет",
    months: [
        "января",
        "февраля",
        "марта",
        "апреля",
        "мая",
        "июня",
        "июля",
        "августа",
        "сентября",
        "октября",
        "ноября",
        "декабря",
    ],
    birthday: day_month,
    contact_kinds: [
        ("WORK", "рабочий"),
        ("WORKDD", "рабочий прямой"),
        ("MOB", "мобильный"),
        ("FAX", "факс"),
        ("HOME", "домашний"),
        ("PRIV", "личный"),
        ("OTHER", "другой"),
    ],
    kinds: ["сделка", "контакт", "компания"],
    labels: ["Название", "Бюджет", "Этап", "Ответственный"],
    automation: "робот или интеграция",
};

static EN: Vocabulary = Vocabulary {
    not_assigned: "not assigned",
    yes: "yes",
    no: "no",
    months: [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    birthday: month_day,
    contact_kinds: [
        ("WORK", "work"),
        ("WORKDD", "work direct"),
        ("MOB", "mobile"),
        ("FAX", "fax"),
        ("HOME", "home"),
        ("PRIV", "private"),
        ("OTHER", "other"),
    ],
    kinds: ["lead", "contact", "company"],
    labels: ["Name", "Budget", "Stage", "Responsible"],
    automation: "a robot or an integration",
};

/// Spanish as Kommo's Spanish-speaking users write it (Latin America).
static ES: Vocabulary = Vocabulary {
    not_assigned: "sin asignar",
    yes: "sí",
    no: "no",
    months: [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ],
    birthday: day_de_month,
    contact_kinds: [
        ("WORK", "trabajo"),
        ("WORKDD", "trabajo directo"),
        ("MOB", "móvil"),
        ("FAX", "fax"),
        ("HOME", "casa"),
        ("PRIV", "personal"),
        ("OTHER", "otro"),
    ],
    kinds: ["lead", "contacto", "empresa"],
    labels: ["Nombre", "Venta", "Etapa", "Responsable"],
    automation: "un robot o una integración",
};

/// Portuguese as Kommo's Brazilian users write it.
static PT: Vocabulary = Vocabulary {
    not_assigned: "não atribuído",
    yes: "sim",
    no: "não",
    months: [
        "janeiro",
        "fevereiro",
        "março",
        "abril",
        "maio",
        "junho",
        "julho",
        "agosto",
        "setembro",
        "outubro",
        "novembro",
        "dezembro",
    ],
    birthday: day_de_month,
    contact_kinds: [
        ("WORK", "trabalho"),
        ("WORKDD", "trabalho direto"),
        ("MOB", "celular"),
        ("FAX", "fax"),
        ("HOME", "residencial"),
        ("PRIV", "pessoal"),
        ("OTHER", "outro"),
    ],
    kinds: ["lead", "contato", "empresa"],
    labels: ["Nome", "Venda", "Etapa", "Responsável"],
    automation: "um robô ou uma integração",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_parse_from_a_users_lang_with_or_without_a_region() {
        assert_eq!(Lang::parse("pt"), Some(Lang::Pt));
        assert_eq!(Lang::parse("pt_BR"), Some(Lang::Pt));
        assert_eq!(Lang::parse("es-MX"), Some(Lang::Es));
        assert_eq!(Lang::parse("RU"), Some(Lang::Ru));
        assert_eq!(Lang::parse("de"), None);
        assert_eq!(Lang::parse(""), None);
        assert_eq!(Lang::parse("é"), None);
        assert_eq!(Lang::of_account(None, "a.amocrm.ru"), Lang::Ru);
        assert_eq!(Lang::of_account(None, "a.kommo.com"), Lang::En);
        assert_eq!(Lang::of_account(Some("es"), "a.amocrm.ru"), Lang::Es);
        for lang in Lang::ALL {
            assert_eq!(Lang::parse(lang.as_str()), Some(lang));
            assert_eq!(lang.words().contact_kinds.len(), 7);
        }
    }
}
