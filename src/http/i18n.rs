//! The admin pages' words in Russian and English, chosen by the browser's
//! Accept-Language, and times in the viewer's terms.

use axum::http::{header, HeaderMap};
use chrono::{DateTime, Utc};

pub struct Texts {
    pub lang: &'static str,
    pub title: &'static str,
    pub install: &'static str,
    /// "Install in" before a platform's name.
    pub install_in: &'static str,
    pub platform: &'static str,
    pub all_platforms: &'static str,
    pub hook_pattern: &'static str,
    pub accounts: &'static str,
    pub all: &'static str,
    pub active: &'static str,
    pub paused: &'static str,
    pub reauth_required: &'static str,
    pub disconnected: &'static str,
    pub hooks_24h: &'static str,
    pub delivered: &'static str,
    pub pending: &'static str,
    pub failed: &'static str,
    pub domain: &'static str,
    pub account_id: &'static str,
    pub status: &'static str,
    pub connected_since: &'static str,
    pub token_expires: &'static str,
    pub hooks_total: &'static str,
    pub last_hook: &'static str,
    pub last_error: &'static str,
    pub details: &'static str,
    pub page: &'static str,
    pub of: &'static str,
    pub previous: &'static str,
    pub next: &'static str,
    pub nothing: &'static str,
    pub back: &'static str,
    pub events: &'static str,
    pub card: &'static str,
    pub action: &'static str,
    pub received: &'static str,
    pub finished: &'static str,
    pub note: &'static str,
    pub retry_failed: &'static str,
    pub resubscribe: &'static str,
    pub pause: &'static str,
    pub resume: &'static str,
    pub webhooks: &'static str,
    pub subscribed: &'static str,
    pub not_subscribed: &'static str,
    pub switched_off: &'static str,
    pub hook_missing: &'static str,
    pub check_hook: &'static str,
    pub checked: &'static str,
    pub note_language: &'static str,
    pub by_domain: &'static str,
    pub set: &'static str,
    pub timezone: &'static str,
    pub paused_until: &'static str,
    pub done: &'static str,
    pub integration_refused: &'static str,
    pub rotate_hook_key: &'static str,
    pub reinstall_link: &'static str,
    pub time: TimeWords,
}

/// How a time is told relative to now: "5 min ago", "in 3 h".
pub struct TimeWords {
    /// `{}` is the amount and unit: "{} ago", "hace {}".
    pub past: &'static str,
    pub future: &'static str,
    pub just_now: &'static str,
    /// Seconds, minutes, hours, days.
    pub units: [&'static str; 4],
}

pub const TIME_EN: TimeWords = TimeWords {
    past: "{} ago",
    future: "in {}",
    just_now: "just now",
    units: ["s", "min", "h", "d"],
};

pub const TIME_RU: TimeWords = TimeWords {
    past: "{} назад",
    future: "через {}",
    just_now: "только что",
    units: ["с", "мин", "ч", "д"],
};

pub const TIME_ES: TimeWords = TimeWords {
    past: "hace {}",
    future: "en {}",
    just_now: "ahora mismo",
    units: ["s", "min", "h", "d"],
};

pub const TIME_PT: TimeWords = TimeWords {
    past: "há {}",
    future: "em {}",
    just_now: "agora mesmo",
    units: ["s", "min", "h", "d"],
};

pub const EN: Texts = Texts {
    lang: "en",
    title: "amohook status",
    install: "Install in an amoCRM account",
    install_in: "Install in",
    platform: "Platform",
    all_platforms: "All platforms",
    hook_pattern: "Hook URL of an account",
    accounts: "Accounts",
    all: "All",
    active: "active",
    paused: "paused",
    reauth_required: "needs reinstall",
    disconnected: "disconnected",
    hooks_24h: "Hooks, 24 h",
    delivered: "Notes delivered",
    pending: "Pending",
    failed: "Failed",
    domain: "Account",
    account_id: "ID",
    status: "Status",
    connected_since: "Connected",
    token_expires: "Token expires",
    hooks_total: "Hooks, total",
    last_hook: "Last hook",
    last_error: "Last error",
    details: "details",
    page: "Page",
    of: "of",
    previous: "← Previous",
    next: "Next →",
    nothing: "No accounts here yet.",
    back: "← All accounts",
    events: "Recent events",
    card: "Card",
    action: "Action",
    received: "Received",
    finished: "Finished",
    note: "Note or reason",
    retry_failed: "Retry failed events",
    resubscribe: "Subscribe web-hooks again",
    pause: "Pause delivery",
    resume: "Resume delivery",
    webhooks: "Web-hooks",
    subscribed: "subscribed",
    not_subscribed: "not subscribed",
    switched_off: "amoCRM switched this hook off",
    hook_missing: "hook missing in amoCRM",
    check_hook: "Check the hook in amoCRM",
    checked: "checked",
    note_language: "Notes in",
    by_domain: "default",
    set: "Set",
    timezone: "Time zone",
    paused_until: "Paused until",
    done: "Done",
    rotate_hook_key: "New hook key",
    integration_refused: "amoCRM refuses an integration itself, so token refreshes of its accounts wait (check client_id, client_secret and redirect_uri in the section named, then restart)",
    reinstall_link: "To connect this account again, send its administrator this link",
    time: TIME_EN,
};

pub const RU: Texts = Texts {
    lang: "ru",
    title: "amohook: состояние",
    install: "Установить в аккаунт amoCRM",
    install_in: "Установить в",
    platform: "Платформа",
    all_platforms: "Все платформы",
    hook_pattern: "Адрес хука аккаунта",
    accounts: "Аккаунты",
    all: "Все",
    active: "активен",
    paused: "на паузе",
    reauth_required: "нужна переустановка",
    disconnected: "отключён",
    hooks_24h: "Хуков за 24 ч",
    delivered: "Примечаний доставлено",
    pending: "В очереди",
    failed: "С ошибкой",
    domain: "Аккаунт",
    account_id: "ID",
    status: "Состояние",
    connected_since: "Подключён",
    token_expires: "Токен истекает",
    hooks_total: "Хуков всего",
    last_hook: "Последний хук",
    last_error: "Последняя ошибка",
    details: "подробнее",
    page: "Страница",
    of: "из",
    previous: "← Назад",
    next: "Вперёд →",
    nothing: "Аккаунтов пока нет.",
    back: "← Все аккаунты",
    events: "Последние события",
    card: "Карточка",
    action: "Действие",
    received: "Получено",
    finished: "Завершено",
    note: "Примечание или причина",
    retry_failed: "Повторить ошибочные",
    resubscribe: "Подписать хуки заново",
    pause: "Приостановить доставку",
    resume: "Возобновить доставку",
    webhooks: "Веб-хуки",
    subscribed: "подписаны",
    not_subscribed: "не подписаны",
    switched_off: "amoCRM отключил этот хук",
    hook_missing: "хука нет в amoCRM",
    check_hook: "Проверить хук в amoCRM",
    checked: "проверено",
    note_language: "Язык примечаний",
    by_domain: "по умолчанию",
    set: "Сохранить",
    timezone: "Часовой пояс",
    paused_until: "На паузе до",
    done: "Готово",
    rotate_hook_key: "Новый ключ хука",
    integration_refused: "amoCRM отказывает самой интеграции, поэтому обновление токенов её аккаунтов ждёт (проверьте client_id, client_secret и redirect_uri в названном разделе и перезапустите)",
    reinstall_link: "Чтобы подключить аккаунт снова, отправьте его администратору эту ссылку",
    time: TIME_RU,
};

/// The texts of `lang` (`ru`; English otherwise).
pub fn by_lang(lang: &str) -> &'static Texts {
    if lang == "ru" {
        &RU
    } else {
        &EN
    }
}

/// Russian when the browser prefers it, English otherwise.
pub fn texts(headers: &HeaderMap) -> &'static Texts {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // The first language named wins; weights are rarely out of order.
    let first = accept
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if first.starts_with("ru") {
        &RU
    } else {
        &EN
    }
}

impl Texts {
    pub fn status_word(&self, status: &str) -> &'static str {
        match status {
            "active" => self.active,
            "paused" => self.paused,
            "reauth_required" => self.reauth_required,
            _ => self.disconnected,
        }
    }

    /// "5 min ago" / "in 3 h"; a dash for none.
    pub fn relative(&self, at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
        self.time.relative(at, now)
    }
}

impl TimeWords {
    /// "5 min ago" / "in 3 h"; a dash for none.
    pub fn relative(&self, at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
        let Some(at) = at else {
            return "—".into();
        };
        let secs = (now - at).num_seconds();
        let (n, unit) = match secs.unsigned_abs() {
            s if s < 10 => return self.just_now.into(),
            s if s < 60 => (s, self.units[0]),
            s if s < 3600 => (s / 60, self.units[1]),
            s if s < 86_400 => (s / 3600, self.units[2]),
            s => (s / 86_400, self.units[3]),
        };
        let amount = format!("{n} {unit}");
        let pattern = if secs >= 0 { self.past } else { self.future };
        pattern.replace("{}", &amount)
    }
}

/// The absolute time, shown on hover.
pub fn absolute(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_language_and_tells_times_relatively() {
        let mut headers = HeaderMap::new();
        assert_eq!(texts(&headers).lang, "en");
        headers.insert(
            header::ACCEPT_LANGUAGE,
            "ru-RU,ru;q=0.9,en;q=0.8".parse().unwrap(),
        );
        assert_eq!(texts(&headers).lang, "ru");
        let now = Utc::now();
        assert_eq!(
            EN.relative(Some(now - chrono::Duration::minutes(5)), now),
            "5 min ago"
        );
        assert_eq!(
            RU.relative(Some(now + chrono::Duration::hours(3)), now),
            "через 3 ч"
        );
        assert_eq!(EN.relative(None, now), "—");
        // Spanish and Portuguese put the word before the amount.
        assert_eq!(
            TIME_ES.relative(Some(now - chrono::Duration::days(2)), now),
            "hace 2 d"
        );
        assert_eq!(
            TIME_PT.relative(Some(now + chrono::Duration::seconds(30)), now),
            "em 30 s"
        );
        assert_eq!(
            TIME_PT.relative(Some(now - chrono::Duration::seconds(3)), now),
            "agora mesmo"
        );
    }
}
