//! One error type for every handler: a status and a message a person can
//! act on, shown as JSON `{"status", "message"}` (the API, hooks, the
//! uninstall hook) or, wrapped in [`PageError`], as the HTML error page.
//! What went wrong inside (a database error, a bug) is logged once, inside
//! the request's span, when the response is made; its text never reaches a
//! client.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use super::pages::{ErrorPage, Page};
use crate::account_settings::store::SaveError;

#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    message: String,
    /// The heading of the HTML page; by status when not given.
    title: Option<&'static str>,
    /// Logged when the response is made, never shown.
    cause: Option<anyhow::Error>,
    /// Ask for HTTP Basic credentials (401 on the admin pages).
    challenge: bool,
    /// `Retry-After`, in seconds.
    retry_after: Option<u32>,
}

impl AppError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
            title: None,
            cause: None,
            challenge: false,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::NOT_FOUND, message)
    }

    /// The database cannot answer now; the client may try again.
    pub fn unavailable(cause: impl Into<anyhow::Error>) -> AppError {
        AppError {
            cause: Some(cause.into()),
            ..AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is not available right now. Please try again in a minute.",
            )
        }
    }

    /// A failure on our side.
    pub fn internal(cause: impl Into<anyhow::Error>) -> AppError {
        AppError {
            cause: Some(cause.into()),
            ..AppError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The error has been logged. Please try again in a minute.",
            )
        }
    }

    /// The heading of the HTML error page.
    pub fn titled(mut self, title: &'static str) -> AppError {
        self.title = Some(title);
        self
    }

    /// Adds `WWW-Authenticate: Basic`, so that a browser asks for the token.
    pub fn with_challenge(mut self) -> AppError {
        self.challenge = true;
        self
    }

    /// Adds `Retry-After: {seconds}`.
    pub fn retry_after(mut self, seconds: u32) -> AppError {
        self.retry_after = Some(seconds);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    fn log(&self) {
        if let Some(cause) = &self.cause {
            tracing::error!(error = %format!("{cause:#}"), status = self.status.as_u16(), "request failed");
        }
    }

    fn finish(&self, mut response: Response) -> Response {
        if self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"amohook\", charset=\"UTF-8\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> AppError {
        AppError::unavailable(e)
    }
}

impl From<SaveError> for AppError {
    fn from(e: SaveError) -> AppError {
        match e {
            SaveError::Invalid(invalid) => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Settings not saved: {invalid}."),
            ),
            SaveError::Conflict(_) => {
                AppError::new(StatusCode::CONFLICT, format!("Settings not saved: {e}."))
            }
            SaveError::NoAccount => AppError::not_found("No such account."),
            SaveError::Db(e) => AppError::unavailable(e),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.log();
        let body = Json(json!({ "status": self.status.as_u16(), "message": self.message }));
        self.finish((self.status, body).into_response())
    }
}

/// An [`AppError`] shown as the HTML error page, for handlers that serve
/// pages. Anything that converts into an `AppError` converts into this, so
/// `?` works the same in both kinds of handler.
#[derive(Debug)]
pub struct PageError(pub AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(e: E) -> PageError {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let error = self.0;
        error.log();
        let title = error.title.unwrap_or(match error.status {
            StatusCode::UNAUTHORIZED => "Sign in",
            StatusCode::INTERNAL_SERVER_ERROR => "Something went wrong on our side",
            StatusCode::SERVICE_UNAVAILABLE => "The service is busy",
            _ => "Not available",
        });
        let page = Page(
            error.status,
            ErrorPage {
                title: title.into(),
                message: error.message.clone(),
            },
        );
        error.finish(page.into_response())
    }
}
