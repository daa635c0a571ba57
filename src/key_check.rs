//! The encryption key is checked against the database at start. The first
//! process seals a known value (the canary) into `key_check`; every later
//! process must open it with its own key, or refuse to start. Two processes
//! with different keys (a key file generated in two folders, two containers
//! without a shared key) would otherwise each write tokens the other cannot
//! read, and find out only when a decryption fails.

use sqlx::PgPool;

use crate::crypto::Cipher;

const CANARY: &str = "amohook key check";
pub(crate) const CONTEXT: &str = "key_check";

#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    #[error(
        "the encryption key cannot read this database's data ({what}): it was written with \
         another key. Start with the key used before ({source_hint}); a new key cannot read \
         what the old one sealed"
    )]
    WrongKey {
        what: &'static str,
        source_hint: String,
    },
    #[error("the database is unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

/// How the key check passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// The current key reads the canary (or a new canary was written).
    ByCurrentKey,
    /// An old key reads it: a rotation is under way (`amohook reencrypt`).
    ByOldKey,
}

/// Checks `cipher` against the canary, writing the canary when there is
/// none yet. A database from before the canary, that holds tokens, is
/// checked against one of them first. `source_hint` says where the key
/// came from, for the error.
pub async fn check(
    pool: &PgPool,
    cipher: &Cipher,
    source_hint: &str,
) -> Result<Checked, KeyCheckError> {
    let wrong = |what| KeyCheckError::WrongKey {
        what,
        source_hint: source_hint.to_owned(),
    };
    if let Some(canary) = sqlx::query_scalar!("select canary from key_check")
        .fetch_optional(pool)
        .await?
    {
        return match cipher.decrypt(&canary, CONTEXT) {
            Ok(_) if canary.first() == Some(&cipher.current_key_id()) => Ok(Checked::ByCurrentKey),
            Ok(_) => Ok(Checked::ByOldKey),
            Err(_) => Err(wrong("the key check")),
        };
    }
    // No canary yet: a database written before it must still be readable.
    let token = sqlx::query!("select account_id, access_token from account_tokens limit 1")
        .fetch_optional(pool)
        .await?;
    if let Some(row) = token {
        let context = crate::accounts::token_context(row.account_id, "access_token");
        if cipher.decrypt(&row.access_token, &context).is_err() {
            return Err(wrong("the stored tokens"));
        }
    }
    // Two processes starting at once: the first canary wins, and the
    // second is checked against it.
    let written = sqlx::query!(
        "insert into key_check (canary) values ($1) on conflict do nothing",
        cipher.encrypt(CANARY, CONTEXT),
    )
    .execute(pool)
    .await?;
    if written.rows_affected() == 0 {
        return Box::pin(check(pool, cipher, source_hint)).await;
    }
    Ok(Checked::ByCurrentKey)
}
