//! The account as amoCRM describes it: `GET /api/v4/account`.

use serde::Deserialize;

/// The account as `GET /api/v4/account?with=datetime_settings` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct AccountInfo {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub subdomain: String,
    /// `RUB`, `USD`, ... (the official SDK's AccountModel reads both).
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub currency_symbol: Option<String>,
    /// The user the token speaks for: at an install, the installing user.
    #[serde(default)]
    pub current_user_id: Option<i64>,
    #[serde(default, rename = "_embedded")]
    embedded: AccountEmbedded,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct AccountEmbedded {
    #[serde(default)]
    datetime_settings: Option<DatetimeSettings>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DatetimeSettings {
    #[serde(default)]
    timezone: Option<String>,
    /// `d.m.Y`: PHP date() letters (the SDK's DateTimeSettings).
    #[serde(default)]
    short_date_pattern: Option<String>,
    /// `H:i`.
    #[serde(default)]
    short_time_pattern: Option<String>,
}

impl AccountInfo {
    /// The account's IANA time zone, when amoCRM named one.
    pub fn timezone(&self) -> Option<&str> {
        self.embedded
            .datetime_settings
            .as_ref()
            .and_then(|d| d.timezone.as_deref())
            .filter(|tz| !tz.is_empty())
    }

    /// How the account writes dates (`d.m.Y`) and times (`H:i`).
    pub fn date_patterns(&self) -> (Option<String>, Option<String>) {
        let settings = self.embedded.datetime_settings.as_ref();
        let given = |p: Option<&Option<String>>| p.cloned().flatten().filter(|p| !p.is_empty());
        (
            given(settings.map(|s| &s.short_date_pattern)),
            given(settings.map(|s| &s.short_time_pattern)),
        )
    }
}
