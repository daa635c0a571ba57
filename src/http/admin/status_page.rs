//! The status page: every account in a sortable, filtered table.

use askama::Template;
use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::Utc;

use super::{Admin, ListParams};
use crate::{
    http::{
        error::PageError,
        i18n::{self, Texts},
        pages::Page,
        AppState,
    },
    platform::Platform,
    stats::{self, AccountRow, ListQuery, StatusFilter, PAGE_SIZE, SORTS},
};

pub(super) struct RowView {
    pub(super) account_id: i64,
    pub(super) domain: String,
    pub(super) platform: &'static str,
    pub(super) name: String,
    pub(super) status: String,
    pub(super) status_word: &'static str,
    pub(super) status_reason: String,
    pub(super) connected_rel: String,
    pub(super) connected_abs: String,
    pub(super) expires_rel: String,
    pub(super) expires_abs: String,
    pub(super) hooks_24h: i64,
    pub(super) hooks_total: i64,
    pub(super) delivered: i64,
    pub(super) pending: i64,
    pub(super) failed: i64,
    pub(super) last_hook_rel: String,
    pub(super) last_hook_abs: String,
    pub(super) last_error: String,
    pub(super) last_error_rel: String,
    pub(super) last_error_abs: String,
}

impl RowView {
    pub(super) fn new(r: &AccountRow, t: &Texts) -> RowView {
        let now = Utc::now();
        let reason = match r.display_status.as_str() {
            "paused" => r.pause_reason.clone().unwrap_or_default(),
            "active" => String::new(),
            _ => r.status_reason.clone().unwrap_or_default(),
        };
        RowView {
            account_id: r.account_id,
            domain: r.domain.clone(),
            platform: Platform::of_host(&r.domain).title(),
            name: r.name.clone(),
            status: r.display_status.clone(),
            status_word: t.status_word(&r.display_status),
            status_reason: reason,
            connected_rel: t.relative(Some(r.connected_at), now),
            connected_abs: i18n::absolute(Some(r.connected_at)),
            expires_rel: t.relative(r.token_expires_at, now),
            expires_abs: i18n::absolute(r.token_expires_at),
            hooks_24h: r.hooks_24h,
            hooks_total: r.hooks_total,
            delivered: r.delivered,
            pending: r.pending,
            failed: r.failed,
            last_hook_rel: t.relative(r.last_hook_at, now),
            last_hook_abs: i18n::absolute(r.last_hook_at),
            last_error: r
                .last_error
                .as_deref()
                .map(|e| e.chars().take(120).collect())
                .or_else(|| r.webhooks_error.clone())
                .unwrap_or_default(),
            last_error_rel: if r.last_error_at.is_some() {
                t.relative(r.last_error_at, now)
            } else {
                String::new()
            },
            last_error_abs: i18n::absolute(r.last_error_at),
        }
    }
}

pub(super) struct SortLink {
    key: &'static str,
    label: &'static str,
    href: String,
    arrow: &'static str,
}

pub(super) struct FilterLink {
    label: &'static str,
    href: String,
    current: bool,
    count: i64,
}

#[derive(Template)]
#[template(path = "status.html")]
pub(super) struct StatusPage {
    t: &'static Texts,
    totals: stats::Totals,
    rows: Vec<RowView>,
    sorts: Vec<SortLink>,
    filters: Vec<FilterLink>,
    platform_filters: Vec<FilterLink>,
    installs: Vec<InstallLink>,
    page: i64,
    pages: i64,
    previous: Option<String>,
    next: Option<String>,
    hook_pattern: String,
    /// amoCRM refuses the integration itself: refreshes wait.
    fault: Option<String>,
}

/// The link to the table as `q` shows it, changed by `change`.
pub(super) fn list_href(q: &ListQuery, change: impl FnOnce(&mut ListQuery)) -> String {
    let mut q = q.clone();
    change(&mut q);
    let mut href = format!(
        "/status?sort={}&dir={}",
        q.sort,
        if q.descending { "desc" } else { "asc" }
    );
    if let Some(s) = q.status {
        href.push_str(&format!("&status={}", s.as_str()));
    }
    if let Some(p) = q.platform {
        href.push_str(&format!("&platform={}", p.as_str()));
    }
    if q.page > 1 {
        href.push_str(&format!("&page={}", q.page));
    }
    href
}

/// An install button of the page's header: one per platform the
/// deployment installs on.
pub(super) struct InstallLink {
    pub(super) href: String,
    pub(super) label: String,
}

pub(super) fn install_links(state: &AppState, t: &Texts) -> Vec<InstallLink> {
    state
        .api
        .integrations()
        .install_platforms()
        .into_iter()
        .map(|platform| InstallLink {
            href: format!("/install?platform={}", platform.as_str()),
            label: format!("{} {}", t.install_in, platform.title()),
        })
        .collect()
}

pub(super) async fn status_page(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Response, PageError> {
    let t = i18n::texts(&headers);
    let q = params.query();
    let (rows, total) = stats::list(&state.pool, &q).await?;
    let totals = stats::totals(&state.pool).await?;
    let faults = crate::fault::current(&state.pool).await?;
    let fault = (!faults.is_empty()).then(|| {
        faults
            .iter()
            .map(|f| {
                format!(
                    "{}.*: {} (since {})",
                    f.integration,
                    f.error,
                    f.since.format("%Y-%m-%d %H:%M UTC")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    });
    // The columns that matter first, so that the table fits a laptop's
    // screen; an account's other figures are on its page (and every sort
    // key stays in the API).
    let columns = [
        ("domain", t.domain),
        ("status", t.status),
        ("hooks_24h", t.hooks_24h),
        ("delivered", t.delivered),
        ("pending", t.pending),
        ("failed", t.failed),
        ("last_hook_at", t.last_hook),
    ];
    debug_assert!(columns
        .iter()
        .all(|(key, _)| SORTS.iter().any(|(k, _)| k == key)));
    let sorts = columns
        .into_iter()
        .map(|(key, label)| {
            let current = q.sort == key;
            // A click on the current column flips the order.
            let descending = current && !q.descending;
            SortLink {
                key,
                label,
                href: list_href(&q, |q| {
                    q.sort = key;
                    q.descending = descending;
                    q.page = 1;
                }),
                arrow: match (current, q.descending) {
                    (true, false) => "▲",
                    (true, true) => "▼",
                    _ => "",
                },
            }
        })
        .collect();
    let counts = [
        totals.active,
        totals.paused,
        totals.reauth_required,
        totals.disconnected,
    ];
    let mut filters = vec![FilterLink {
        label: t.all,
        href: list_href(&q, |q| {
            q.status = None;
            q.page = 1;
        }),
        current: q.status.is_none(),
        count: totals.accounts,
    }];
    for (filter, count) in StatusFilter::ALL.into_iter().zip(counts) {
        filters.push(FilterLink {
            label: t.status_word(filter.as_str()),
            href: list_href(&q, |q| {
                q.status = Some(filter);
                q.page = 1;
            }),
            current: q.status == Some(filter),
            count,
        });
    }
    // The platform filter; the counts are of all statuses.
    let platform_filters = [
        (None, t.all_platforms, totals.accounts),
        (
            Some(Platform::Amocrm),
            Platform::Amocrm.title(),
            totals.accounts - totals.kommo,
        ),
        (Some(Platform::Kommo), Platform::Kommo.title(), totals.kommo),
    ]
    .into_iter()
    .map(|(platform, label, count)| FilterLink {
        label,
        href: list_href(&q, |q| {
            q.platform = platform;
            q.page = 1;
        }),
        current: q.platform == platform,
        count,
    })
    .collect();
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = StatusPage {
        t,
        rows: rows.iter().map(|r| RowView::new(r, t)).collect(),
        totals,
        sorts,
        filters,
        page: q.page,
        pages,
        previous: (q.page > 1).then(|| list_href(&q, |q| q.page -= 1)),
        next: (q.page < pages).then(|| list_href(&q, |q| q.page += 1)),
        platform_filters,
        installs: install_links(&state, t),
        hook_pattern: format!("{}/hooks/{{hook_key}}", state.settings.http.public_url),
        fault,
    };
    Ok(Page(StatusCode::OK, page).into_response())
}
