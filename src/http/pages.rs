//! Server-rendered pages (askama) and the HTML error page.

use askama::Template;
use axum::{
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
};

/// Renders a template with a status; a template that fails to render (a
/// bug, never input) becomes a plain 500 without details.
pub struct Page<T>(pub StatusCode, pub T);

impl<T: Template> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        match self.1.render() {
            Ok(html) => (self.0, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "template failed to render");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub title: String,
    pub message: String,
}

/// An error shown to a person: a status and words they understand. The
/// message never carries secrets or internal details.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
}

impl PageError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        PageError {
            status: StatusCode::BAD_REQUEST,
            title: "This install link is not valid",
            message: message.into(),
        }
    }

    pub fn bad_gateway(message: impl Into<String>) -> Self {
        PageError {
            status: StatusCode::BAD_GATEWAY,
            title: "amoCRM did not complete the connection",
            message: message.into(),
        }
    }

    pub fn internal() -> Self {
        PageError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            title: "Something went wrong on our side",
            message: "The error has been logged. Please try again in a minute.".into(),
        }
    }

    pub fn unavailable() -> Self {
        PageError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            title: "The service is busy",
            message:
                "The service cannot reach its database right now. Please try again in a minute."
                    .into(),
        }
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error");
        PageError::unavailable()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        Page(
            self.status,
            ErrorPage {
                title: self.title.into(),
                message: self.message,
            },
        )
        .into_response()
    }
}

pub const STYLESHEET: &str = include_str!("../../templates/static/style.css");

pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
}
