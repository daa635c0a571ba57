//! How a call to amoCRM failed, sorted the way amoCRM actually answers:
//! problem+json bodies on 4xx, a non-JSON 429 on the rate limit, an nginx HTML
//! 403 when an account or IP is blocked, 401 when a token has expired.

use reqwest::StatusCode;

use super::{budget, Problem};

#[derive(Debug, thiserror::Error)]
pub enum AmoError {
    /// 401: the access token is expired or revoked (or, at the token
    /// endpoint, the grant or the client was refused).
    #[error("amoCRM refused the credentials (401): {0}")]
    Unauthorized(Box<Problem>),
    /// Any other 4xx that is not a block or the rate limit.
    #[error("amoCRM refused the request ({status}): {problem}")]
    Refused { status: u16, problem: Box<Problem> },
    /// 429: the per-account request budget was exceeded.
    #[error("amoCRM rate limit reached (429)")]
    RateLimited,
    /// An HTML 403 from amoCRM's front servers: the account or our IP is
    /// blocked, usually for minutes.
    #[error("amoCRM blocked access (HTML 403)")]
    Blocked,
    /// 5xx.
    #[error("amoCRM is unavailable ({status})")]
    Unavailable { status: u16 },
    /// Timeouts, refused or dropped connections.
    #[error("amoCRM could not be reached: {0}")]
    Transport(String),
    /// A 2xx whose body is not what the API documents.
    #[error("amoCRM answered in an unexpected form: {0}")]
    Unexpected(String),
    /// The shared request budget (kept in PostgreSQL) could not be checked,
    /// or had no free slot in time: nothing was sent to amoCRM.
    #[error("{0}")]
    Budget(#[source] budget::BudgetError),
}

impl AmoError {
    /// Worth trying again later with the same input.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AmoError::RateLimited
                | AmoError::Blocked
                | AmoError::Unavailable { .. }
                | AmoError::Transport(_)
                | AmoError::Budget(_)
        )
    }

    /// The answer of the token endpoint when a refresh token or code is dead:
    /// used twice, revoked by the account, expired. Nothing but a new install
    /// helps. A refused *client* (wrong secret) is not this: that is our
    /// configuration, not the account's grant.
    pub fn is_dead_grant(&self) -> bool {
        let problem = match self {
            AmoError::Unauthorized(p) => p,
            AmoError::Refused {
                status: 400,
                problem,
            } => problem,
            _ => return false,
        };
        !problem.is_client_error()
    }

    /// The token endpoint blames the integration (its client id, secret
    /// or redirect URI), not the account's grant.
    pub fn blames_the_client(&self) -> bool {
        match self {
            AmoError::Unauthorized(p) | AmoError::Refused { problem: p, .. } => p.is_client_error(),
            _ => false,
        }
    }

    pub(super) fn from_response(
        status: StatusCode,
        content_type: Option<&str>,
        body: &[u8],
    ) -> AmoError {
        let json = content_type.is_some_and(|ct| ct.contains("json"));
        let problem = || Box::new(Problem::parse(body));
        match status.as_u16() {
            401 => AmoError::Unauthorized(problem()),
            429 => AmoError::RateLimited,
            403 if !json => AmoError::Blocked,
            code @ 500..=599 => AmoError::Unavailable { status: code },
            code => AmoError::Refused {
                status: code,
                problem: problem(),
            },
        }
    }
}

impl From<reqwest::Error> for AmoError {
    fn from(error: reqwest::Error) -> Self {
        // Without the URL: it names only the account host, but keeping error
        // texts free of addresses makes them safe to show on any page.
        AmoError::Transport(error.without_url().to_string())
    }
}
