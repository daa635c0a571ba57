//! What is wrong with a posted settings form, said in the page's language
//! and with the form's own labels. (The admin API says it in English with
//! the settings' keys: `account_settings::Invalid`.)

use super::texts::MyTexts;
use crate::{
    account_settings::{Invalid, MAX_LIST, MAX_NAME},
    notes::template::{TemplateError, MAX_LEN},
};

/// Why the form cannot be read or saved.
#[derive(Debug)]
pub enum Wrong {
    /// A word of `pipelines` or `stages` that is not a number.
    NotAnId {
        setting: &'static str,
        word: String,
    },
    Invalid(Invalid),
}

/// Each reason as a pattern: `{label}` the form's label, `{word}` what was
/// typed, `{max}` the limit, `{list}` the placeholders there are.
struct Words {
    not_an_id: &'static str,
    empty: &'static str,
    too_long: &'static str,
    unknown: &'static str,
    unclosed: &'static str,
    unopened: &'static str,
    empty_field: &'static str,
    lang: &'static str,
    too_many: &'static str,
    field_name: &'static str,
    ids: &'static str,
}

const EN: Words = Words {
    not_an_id: "{label}: “{word}” is not an id",
    empty: "{label}: the template is empty",
    too_long: "{label}: longer than {max} characters",
    unknown: "{label}: there is no placeholder {{word}}; use one of {list}",
    unclosed: "{label}: a { is not closed (write {{ for a brace)",
    unopened: "{label}: a } has no { (write }} for a brace)",
    empty_field: "{label}: {field:} needs a field's name or id",
    lang: "{label}: choose one of the list",
    too_many: "{label}: at most {max}",
    field_name: "{label}: a line is empty or longer than {max} characters",
    ids: "{label}: ids are numbers above zero",
};

const RU: Words = Words {
    not_an_id: "{label}: «{word}» — не id",
    empty: "{label}: шаблон пуст",
    too_long: "{label}: длиннее {max} символов",
    unknown: "{label}: подстановки {{word}} нет; есть {list}",
    unclosed: "{label}: { не закрыта (фигурная скобка пишется как {{)",
    unopened: "{label}: у } нет { (фигурная скобка пишется как }})",
    empty_field: "{label}: в {field:} нужно название или id поля",
    lang: "{label}: выберите язык из списка",
    too_many: "{label}: не больше {max}",
    field_name: "{label}: строка пуста или длиннее {max} символов",
    ids: "{label}: id — числа больше нуля",
};

const ES: Words = Words {
    not_an_id: "{label}: «{word}» no es un id",
    empty: "{label}: la plantilla está vacía",
    too_long: "{label}: más de {max} caracteres",
    unknown: "{label}: no existe el marcador {{word}}; use uno de {list}",
    unclosed: "{label}: una { no está cerrada (escriba {{ para una llave)",
    unopened: "{label}: una } no tiene { (escriba }} para una llave)",
    empty_field: "{label}: {field:} necesita el nombre o id de un campo",
    lang: "{label}: elija uno de la lista",
    too_many: "{label}: como máximo {max}",
    field_name: "{label}: una línea está vacía o tiene más de {max} caracteres",
    ids: "{label}: los ids son números mayores que cero",
};

const PT: Words = Words {
    not_an_id: "{label}: “{word}” não é um id",
    empty: "{label}: o modelo está vazio",
    too_long: "{label}: mais de {max} caracteres",
    unknown: "{label}: não existe o marcador {{word}}; use um de {list}",
    unclosed: "{label}: uma { não foi fechada (escreva {{ para uma chave)",
    unopened: "{label}: uma } não tem { (escreva }} para uma chave)",
    empty_field: "{label}: {field:} precisa do nome ou id de um campo",
    lang: "{label}: escolha um da lista",
    too_many: "{label}: no máximo {max}",
    field_name: "{label}: uma linha está vazia ou tem mais de {max} caracteres",
    ids: "{label}: ids são números maiores que zero",
};

impl Wrong {
    /// The reason in `t`'s language, naming the form's field.
    pub fn say(&self, t: &MyTexts) -> String {
        let words = match t.lang {
            "ru" => &RU,
            "es" => &ES,
            "pt" => &PT,
            _ => &EN,
        };
        let label = |setting: &str| match setting {
            "pipelines" => t.pipelines,
            "stages" => t.stages,
            "only_fields" => t.only_fields,
            "added" => t.added_template,
            "changed" => t.changed_template,
            "lang" => t.language,
            _ => "",
        };
        let (pattern, setting, word, max) = match self {
            Wrong::NotAnId { setting, word } => (words.not_an_id, *setting, word.as_str(), 0),
            Wrong::Invalid(Invalid::Template { which, error }) => match error {
                TemplateError::Empty => (words.empty, *which, "", 0),
                TemplateError::TooLong => (words.too_long, *which, "", MAX_LEN),
                TemplateError::Unknown(name, _) => (words.unknown, *which, name.as_str(), 0),
                TemplateError::Unclosed => (words.unclosed, *which, "", 0),
                TemplateError::Unopened => (words.unopened, *which, "", 0),
                TemplateError::EmptyField => (words.empty_field, *which, "", 0),
            },
            Wrong::Invalid(Invalid::Lang(_)) => (words.lang, "lang", "", 0),
            Wrong::Invalid(Invalid::TooMany(setting)) => (words.too_many, *setting, "", MAX_LIST),
            Wrong::Invalid(Invalid::FieldName) => (words.field_name, "only_fields", "", MAX_NAME),
            Wrong::Invalid(Invalid::Ids(setting)) => (words.ids, *setting, "", 0),
        };
        let list = match self {
            Wrong::Invalid(Invalid::Template {
                error: TemplateError::Unknown(_, known),
                ..
            }) => known.as_str(),
            _ => "",
        };
        // `{word}` last: what was typed may itself hold `{label}` or `{max}`.
        pattern
            .replace("{label}", label(setting))
            .replace("{max}", &max.to_string())
            .replace("{list}", list)
            .replace("{word}", word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::tenant::texts::{ALL, EN as EN_TEXTS, ES as ES_TEXTS, RU as RU_TEXTS};

    fn template(error: TemplateError) -> Wrong {
        Wrong::Invalid(Invalid::Template {
            which: "changed",
            error,
        })
    }

    #[test]
    fn each_reason_is_said_with_the_forms_label_in_the_pages_language() {
        let unknown = template(TemplateError::Unknown(
            "autor".into(),
            "{card}, {author}".into(),
        ));
        assert_eq!(
            unknown.say(&ES_TEXTS),
            "Nota de un cambio: no existe el marcador {autor}; use uno de {card}, {author}"
        );
        let typed = Wrong::NotAnId {
            setting: "pipelines",
            word: "Продажи".into(),
        };
        assert_eq!(
            typed.say(&RU_TEXTS),
            "Только сделки этих воронок: «Продажи» — не id"
        );
        assert_eq!(
            Wrong::Invalid(Invalid::TooMany("only_fields")).say(&EN_TEXTS),
            "Only when one of these fields changed: at most 200"
        );
        // What was typed is said as typed, never read as a pattern.
        let sly = Wrong::NotAnId {
            setting: "stages",
            word: "{label}{max}".into(),
        };
        assert!(sly.say(&EN_TEXTS).ends_with("“{label}{max}” is not an id"));
    }

    #[test]
    fn every_reason_has_words_in_every_language() {
        let reasons = [
            Wrong::NotAnId {
                setting: "stages",
                word: "x".into(),
            },
            template(TemplateError::Empty),
            template(TemplateError::TooLong),
            template(TemplateError::Unknown("x".into(), "{card}".into())),
            template(TemplateError::Unclosed),
            template(TemplateError::Unopened),
            template(TemplateError::EmptyField),
            Wrong::Invalid(Invalid::Lang("xx".into())),
            Wrong::Invalid(Invalid::TooMany("pipelines")),
            Wrong::Invalid(Invalid::FieldName),
            Wrong::Invalid(Invalid::Ids("stages")),
        ];
        for t in ALL {
            for reason in &reasons {
                let said = reason.say(t);
                assert!(
                    !said.contains("{label}") && !said.contains("{max}") && !said.starts_with(':'),
                    "{}: {said}",
                    t.lang
                );
            }
        }
    }
}
