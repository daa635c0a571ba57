//! The sandbox panel's words, in English and Russian.

/// The panel's words.
pub(crate) struct Words {
    pub heading: &'static str,
    pub intro: &'static str,
    pub change_title: &'static str,
    pub card: &'static str,
    pub name: &'static str,
    pub price: &'static str,
    pub stage: &'static str,
    pub responsible: &'static str,
    pub unchanged: &'static str,
    pub leads_only: &'static str,
    pub save: &'static str,
    pub notes_title: &'static str,
    pub no_notes: &'static str,
    pub reload: &'static str,
    pub faults_title: &'static str,
    pub faults_hint: &'static str,
    pub no_fault: &'static str,
    pub new: [&'static str; 3],
    pub change: &'static str,
    pub entity: [&'static str; 3],
    pub switches: [&'static str; 5],
    pub widget_title: &'static str,
    pub widget_hint: &'static str,
    pub widget_open: &'static str,
}

pub(super) const EN: Words = Words {
    heading: "Sandbox: the simulated amoCRM account",
    intro: "What you save here is saved in the simulated amoCRM, which then sends amoCRM's \
            web-hook to this account's hook URL, exactly as amoCRM does.",
    change_title: "Add or change a card",
    card: "Card",
    name: "Name",
    price: "Budget",
    stage: "Stage",
    responsible: "Responsible",
    unchanged: "(as it is)",
    leads_only: "leads only",
    save: "Save in amoCRM",
    notes_title: "Notes in amoCRM",
    no_notes: "No notes yet. amohook writes one for every change it receives.",
    reload: "Reload",
    faults_title: "Faults of the simulated amoCRM",
    faults_hint: "Then save a card and watch the events: a 429 is tried again in 1 to 3 s; \
                  5xx answers and outages back off from 5 s; a revoked grant turns the account \
                  to “needs reinstall” at its next call, and the Install button at the top \
                  installs it again.",
    no_fault: "None: the simulated amoCRM answers normally (at most 7 calls a second).",
    new: ["New lead", "New contact", "New company"],
    change: "Change",
    entity: ["Lead", "Contact", "Company"],
    switches: [
        "429 Too Many Requests for 10 s",
        "502 for the next 2 calls",
        "Outage: 503 for 30 s",
        "Revoke the grant",
        "Clear faults",
    ],
    widget_title: "The account's own page",
    widget_hint: "What the account's administrator sees in amoCRM: the widget's settings \
                  (amohook's own script.js, as `amohook widget` packs it) ask amohook for the \
                  account's page with amoCRM's signed token. Open the link it gives to choose \
                  what the notes say, preview them and save.",
    widget_open: "Open amoCRM's widget settings",
};

pub(super) const RU: Words = Words {
    heading: "Песочница: имитация аккаунта amoCRM",
    intro: "То, что вы сохраните здесь, сохраняется в имитации amoCRM, и она отправляет \
            веб-хук amoCRM на адрес хука этого аккаунта, как это делает amoCRM.",
    change_title: "Добавить или изменить карточку",
    card: "Карточка",
    name: "Название",
    price: "Бюджет",
    stage: "Этап",
    responsible: "Ответственный",
    unchanged: "(как есть)",
    leads_only: "только для сделок",
    save: "Сохранить в amoCRM",
    notes_title: "Примечания в amoCRM",
    no_notes: "Примечаний пока нет. amohook пишет одно на каждое полученное изменение.",
    reload: "Обновить",
    faults_title: "Сбои имитации amoCRM",
    faults_hint: "Затем сохраните карточку и следите за событиями: на 429 запрос повторяется \
                  через 1–3 с; на 5xx и при недоступности — с нарастающей паузой от 5 с; после \
                  отзыва доступа аккаунт при следующем обращении станет «нужна переустановка», \
                  а кнопка установки вверху установит его снова.",
    no_fault: "Нет: имитация amoCRM отвечает как обычно (не больше 7 запросов в секунду).",
    new: ["Новая сделка", "Новый контакт", "Новая компания"],
    change: "Изменить",
    entity: ["Сделка", "Контакт", "Компания"],
    switches: [
        "429 Too Many Requests на 10 с",
        "502 на 2 следующих запроса",
        "Недоступность: 503 на 30 с",
        "Отозвать доступ",
        "Убрать сбои",
    ],
    widget_title: "Собственная страница аккаунта",
    widget_hint: "То, что видит администратор аккаунта в amoCRM: настройки виджета (собственный \
                  script.js amohook, как его упаковывает `amohook widget`) запрашивают у amohook \
                  страницу аккаунта с подписанным токеном amoCRM. Откройте выданную ссылку, чтобы \
                  выбрать, что пишут примечания, посмотреть их и сохранить.",
    widget_open: "Открыть настройки виджета в amoCRM",
};
