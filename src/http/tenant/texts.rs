//! The account page's words, in the four languages amoCRM and Kommo work
//! in (English, Russian, Spanish, Portuguese), chosen by the browser's
//! Accept-Language. `{platform}` stands for amoCRM or Kommo, by the
//! account's host.

use axum::http::{header, HeaderMap};

use crate::{
    amocrm::hooks::EntityKind,
    http::i18n::{TimeWords, TIME_EN, TIME_ES, TIME_PT, TIME_RU},
    inbox::EventState,
};

/// The page's words.
pub struct MyTexts {
    pub lang: &'static str,
    pub title: &'static str,
    pub health: &'static str,
    pub subscribed: &'static str,
    pub not_subscribed: &'static str,
    pub switched_off: &'static str,
    pub missing: &'static str,
    pub last_hook: &'static str,
    pub delivered: &'static str,
    pub pending: &'static str,
    pub failed: &'static str,
    pub retry: &'static str,
    pub settings: &'static str,
    pub cards: &'static str,
    pub leads: &'static str,
    pub contacts: &'static str,
    pub companies: &'static str,
    pub changes: &'static str,
    pub added: &'static str,
    pub changed: &'static str,
    pub stage: &'static str,
    pub responsible: &'static str,
    pub filters: &'static str,
    pub pipelines: &'static str,
    pub stages: &'static str,
    pub ids_hint: &'static str,
    /// Above the pipelines and stages the page knows, with their ids.
    pub known_ids: &'static str,
    pub skip_robots: &'static str,
    pub only_fields: &'static str,
    pub only_fields_hint: &'static str,
    pub language: &'static str,
    pub default: &'static str,
    pub added_template: &'static str,
    pub changed_template: &'static str,
    pub placeholders: &'static str,
    pub preview: &'static str,
    pub save: &'static str,
    pub saved: &'static str,
    pub retried: &'static str,
    pub not_saved: &'static str,
    pub conflict: &'static str,
    pub preview_of: &'static str,
    pub no_event: &'static str,
    pub no_note: &'static str,
    pub notes: &'static str,
    pub card: &'static str,
    pub state: &'static str,
    pub received: &'static str,
    pub note: &'static str,
    pub time: TimeWords,
    /// An event's state: pending, sending, delivered, skipped, failed,
    /// dropped.
    pub states: [&'static str; 6],
    /// Lead, contact, company.
    pub kinds: [&'static str; 3],
}

impl MyTexts {
    pub fn state(&self, state: EventState) -> &'static str {
        let i = match state {
            EventState::Pending => 0,
            EventState::Sending => 1,
            EventState::Delivered => 2,
            EventState::Skipped => 3,
            EventState::Failed => 4,
            EventState::Dropped => 5,
        };
        self.states[i]
    }

    pub fn kind(&self, kind: EntityKind) -> &'static str {
        match kind {
            EntityKind::Lead => self.kinds[0],
            EntityKind::Contact => self.kinds[1],
            EntityKind::Company => self.kinds[2],
        }
    }
}

/// The page's languages, the browser's order of preference deciding: the
/// first of its languages the page has (`es-419,es;q=0.9` is Spanish,
/// `de-DE,de;q=0.9,pt;q=0.8` Portuguese), else English.
pub fn pick(headers: &HeaderMap) -> &'static MyTexts {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    accept
        .split(',')
        .filter_map(|tag| {
            let tag = tag.split(';').next()?.trim();
            let primary = tag.split('-').next()?.to_ascii_lowercase();
            ALL.into_iter().find(|t| t.lang == primary)
        })
        .next()
        .unwrap_or(&EN)
}

pub static ALL: [&MyTexts; 4] = [&EN, &RU, &ES, &PT];

pub static EN: MyTexts = MyTexts {
    lang: "en",
    title: "Notes by amohook",
    health: "Web-hook",
    subscribed: "{platform} sends this account's changes",
    not_subscribed: "not subscribed",
    switched_off: "{platform} switched this hook off",
    missing: "the hook is missing in {platform}",
    last_hook: "Last hook",
    delivered: "Notes written",
    pending: "Waiting",
    failed: "Failed",
    retry: "Send the failed notes again",
    settings: "What the notes say",
    cards: "Cards",
    leads: "Leads",
    contacts: "Contacts",
    companies: "Companies",
    changes: "Changes",
    added: "A card added",
    changed: "Name, budget and fields",
    stage: "Stage moves",
    responsible: "A new responsible user",
    filters: "Filters",
    pipelines: "Only leads in these pipelines",
    stages: "Only leads at these stages",
    ids_hint: "ids, separated by commas; empty: all",
    known_ids: "The account's pipelines and stages, with their ids",
    skip_robots: "Skip changes made by robots, forms and the API",
    only_fields: "Only when one of these fields changed",
    only_fields_hint: "one name or field id a line; empty: any",
    language: "Language of the notes",
    default: "default",
    added_template: "Note of an added card",
    changed_template: "Note of a change",
    placeholders: "Empty: the built-in text. Placeholders: {card} {kind} {id} {link} {responsible} {author} {time} {changes} {field:NAME}; {{ and }} for braces.",
    preview: "Preview",
    save: "Save",
    saved: "Saved: hooks from now on follow these settings.",
    retried: "The failed notes are being sent again.",
    not_saved: "Not saved:",
    conflict: "Not saved: someone saved the settings meanwhile. Reload the page to see them.",
    preview_of: "The latest event would give",
    no_event: "No event yet to preview: change a card in {platform} first.",
    no_note: "no note:",
    notes: "Latest events",
    card: "Card",
    state: "State",
    received: "Received",
    note: "Note",
    time: TIME_EN,
    states: ["waiting", "sending", "written", "skipped", "failed", "dropped"],
    kinds: ["Lead", "Contact", "Company"],
};

pub static RU: MyTexts = MyTexts {
    lang: "ru",
    title: "Примечания amohook",
    health: "Вебхук",
    subscribed: "{platform} присылает изменения аккаунта",
    not_subscribed: "нет подписки",
    switched_off: "{platform} отключил этот вебхук",
    missing: "вебхука нет в {platform}",
    last_hook: "Последний хук",
    delivered: "Примечаний написано",
    pending: "В очереди",
    failed: "С ошибкой",
    retry: "Отправить неотправленные снова",
    settings: "Что пишут примечания",
    cards: "Карточки",
    leads: "Сделки",
    contacts: "Контакты",
    companies: "Компании",
    changes: "Изменения",
    added: "Создание карточки",
    changed: "Название, бюджет и поля",
    stage: "Смена этапа",
    responsible: "Смена ответственного",
    filters: "Фильтры",
    pipelines: "Только сделки этих воронок",
    stages: "Только сделки на этих этапах",
    ids_hint: "id через запятую; пусто — все",
    known_ids: "Воронки и этапы аккаунта с их id",
    skip_robots: "Не писать об изменениях роботов, форм и API",
    only_fields: "Только если изменилось одно из полей",
    only_fields_hint: "по одному названию или id поля в строке; пусто — любые",
    language: "Язык примечаний",
    default: "по умолчанию",
    added_template: "Примечание о создании",
    changed_template: "Примечание об изменении",
    placeholders: "Пусто — встроенный текст. Подстановки: {card} {kind} {id} {link} {responsible} {author} {time} {changes} {field:НАЗВАНИЕ}; {{ и }} — фигурные скобки.",
    preview: "Предпросмотр",
    save: "Сохранить",
    saved: "Сохранено: новые хуки следуют этим настройкам.",
    retried: "Неотправленные примечания отправляются снова.",
    not_saved: "Не сохранено:",
    conflict: "Не сохранено: кто-то уже изменил настройки. Обновите страницу, чтобы их увидеть.",
    preview_of: "Последнее событие дало бы",
    no_event: "Пока нет событий для предпросмотра: измените карточку в {platform}.",
    no_note: "без примечания:",
    notes: "Последние события",
    card: "Карточка",
    state: "Состояние",
    received: "Получено",
    note: "Примечание",
    time: TIME_RU,
    states: ["в очереди", "отправляется", "написано", "пропущено", "ошибка", "отброшено"],
    kinds: ["Сделка", "Контакт", "Компания"],
};

pub static ES: MyTexts = MyTexts {
    lang: "es",
    title: "Notas de amohook",
    health: "Webhook",
    subscribed: "{platform} envía los cambios de esta cuenta",
    not_subscribed: "sin suscripción",
    switched_off: "{platform} desactivó este webhook",
    missing: "el webhook no está en {platform}",
    last_hook: "Último webhook",
    delivered: "Notas escritas",
    pending: "En espera",
    failed: "Con error",
    retry: "Enviar de nuevo las notas con error",
    settings: "Qué dicen las notas",
    cards: "Tarjetas",
    leads: "Leads",
    contacts: "Contactos",
    companies: "Empresas",
    changes: "Cambios",
    added: "Tarjeta creada",
    changed: "Nombre, venta y campos",
    stage: "Cambios de etapa",
    responsible: "Nuevo usuario responsable",
    filters: "Filtros",
    pipelines: "Solo leads de estos embudos",
    stages: "Solo leads en estas etapas",
    ids_hint: "ids separados por comas; vacío: todos",
    known_ids: "Los embudos y etapas de la cuenta, con sus ids",
    skip_robots: "Omitir los cambios de robots, formularios y la API",
    only_fields: "Solo cuando cambió uno de estos campos",
    only_fields_hint: "un nombre o id de campo por línea; vacío: cualquiera",
    language: "Idioma de las notas",
    default: "predeterminado",
    added_template: "Nota de una tarjeta creada",
    changed_template: "Nota de un cambio",
    placeholders: "Vacío: el texto integrado. Marcadores: {card} {kind} {id} {link} {responsible} {author} {time} {changes} {field:NOMBRE}; {{ y }} para las llaves.",
    preview: "Vista previa",
    save: "Guardar",
    saved: "Guardado: los webhooks que lleguen desde ahora siguen esta configuración.",
    retried: "Las notas con error se están enviando de nuevo.",
    not_saved: "No se guardó:",
    conflict: "No se guardó: alguien guardó la configuración mientras tanto. Recargue la página para verla.",
    preview_of: "El último evento daría",
    no_event: "Aún no hay eventos para la vista previa: primero cambie una tarjeta en {platform}.",
    no_note: "sin nota:",
    notes: "Últimos eventos",
    card: "Tarjeta",
    state: "Estado",
    received: "Recibido",
    note: "Nota",
    time: TIME_ES,
    states: ["en espera", "enviando", "escrita", "omitido", "con error", "descartado"],
    kinds: ["Lead", "Contacto", "Empresa"],
};

pub static PT: MyTexts = MyTexts {
    lang: "pt",
    title: "Notas do amohook",
    health: "Webhook",
    subscribed: "{platform} envia as alterações desta conta",
    not_subscribed: "sem assinatura",
    switched_off: "{platform} desativou este webhook",
    missing: "o webhook não está no {platform}",
    last_hook: "Último webhook",
    delivered: "Notas escritas",
    pending: "Aguardando",
    failed: "Com erro",
    retry: "Enviar novamente as notas com erro",
    settings: "O que as notas dizem",
    cards: "Cartões",
    leads: "Leads",
    contacts: "Contatos",
    companies: "Empresas",
    changes: "Alterações",
    added: "Cartão criado",
    changed: "Nome, venda e campos",
    stage: "Mudanças de etapa",
    responsible: "Novo usuário responsável",
    filters: "Filtros",
    pipelines: "Somente leads destes funis",
    stages: "Somente leads nestas etapas",
    ids_hint: "ids separados por vírgulas; vazio: todos",
    known_ids: "Os funis e etapas da conta, com seus ids",
    skip_robots: "Ignorar as alterações de robôs, formulários e da API",
    only_fields: "Somente quando um destes campos mudou",
    only_fields_hint: "um nome ou id de campo por linha; vazio: qualquer um",
    language: "Idioma das notas",
    default: "padrão",
    added_template: "Nota de um cartão criado",
    changed_template: "Nota de uma alteração",
    placeholders: "Vazio: o texto padrão. Marcadores: {card} {kind} {id} {link} {responsible} {author} {time} {changes} {field:NOME}; {{ e }} para chaves.",
    preview: "Pré-visualizar",
    save: "Salvar",
    saved: "Salvo: os webhooks que chegarem a partir de agora seguem estas configurações.",
    retried: "As notas com erro estão sendo enviadas novamente.",
    not_saved: "Não salvo:",
    conflict: "Não salvo: alguém salvou as configurações nesse meio-tempo. Recarregue a página para vê-las.",
    preview_of: "O último evento daria",
    no_event: "Ainda não há eventos para pré-visualizar: primeiro altere um cartão no {platform}.",
    no_note: "sem nota:",
    notes: "Últimos eventos",
    card: "Cartão",
    state: "Estado",
    received: "Recebido",
    note: "Nota",
    time: TIME_PT,
    states: ["aguardando", "enviando", "escrita", "ignorado", "com erro", "descartado"],
    kinds: ["Lead", "Contato", "Empresa"],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn accepting(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_LANGUAGE, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_first_language_of_the_browsers_the_page_has_is_taken() {
        assert_eq!(pick(&HeaderMap::new()).lang, "en");
        assert_eq!(pick(&accepting("ru-RU,ru;q=0.9,en;q=0.8")).lang, "ru");
        assert_eq!(pick(&accepting("es-419,es;q=0.9")).lang, "es");
        assert_eq!(pick(&accepting("pt-BR")).lang, "pt");
        assert_eq!(
            pick(&accepting("de-DE,de;q=0.9,pt;q=0.8,en;q=0.7")).lang,
            "pt"
        );
        assert_eq!(pick(&accepting("de-DE,fr;q=0.5")).lang, "en");
        assert_eq!(pick(&accepting(";;,,-")).lang, "en");
    }

    /// Each language names every placeholder a template may use, and the
    /// platform wherever English does.
    #[test]
    fn every_language_names_every_placeholder_and_the_platform() {
        for t in ALL {
            for name in [
                "{card}",
                "{kind}",
                "{id}",
                "{link}",
                "{responsible}",
                "{author}",
                "{time}",
                "{changes}",
                "{field:",
            ] {
                assert!(t.placeholders.contains(name), "{}: {name}", t.lang);
            }
            for text in [t.subscribed, t.switched_off, t.missing, t.no_event] {
                assert!(text.contains("{platform}"), "{}: {text}", t.lang);
            }
            assert_eq!(t.state(EventState::Failed), t.states[4]);
            assert_eq!(t.kind(EntityKind::Company), t.kinds[2]);
        }
    }
}
