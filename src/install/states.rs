//! States of `GET /install`: signed values, so that handing one out stores
//! nothing (anyone may ask for states as fast as they like). A state is
//! base64url of `expires_at (8 bytes, big-endian Unix seconds) ‖ nonce (16
//! random bytes) ‖ tag (the first 16 bytes of HMAC-SHA256 of the rest under
//! a key derived from the encryption key)`. A row is written only when a
//! state is used, so that it works once; used states are pruned a day
//! after they expire.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Utc};
use rand::Rng as _;

use super::{Installer, STATE_TTL};

const SIGNED_LEN: usize = 8 + 16;
const TAG_LEN: usize = 16;

impl Installer {
    /// A new single-use state for GET /install.
    pub fn new_state(&self) -> String {
        self.state_expiring_at(Utc::now() + STATE_TTL)
    }

    /// A state that expires at `at` (tests make expired ones this way).
    pub fn state_expiring_at(&self, at: DateTime<Utc>) -> String {
        let mut value = Vec::with_capacity(SIGNED_LEN + TAG_LEN);
        value.extend_from_slice(&at.timestamp().to_be_bytes());
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        value.extend_from_slice(&nonce);
        let tag = self.cipher.sign(&value);
        value.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(value)
    }

    /// Whether a state is one of ours and not expired; nothing is written
    /// (a state is used up by [`Installer::use_state`], once the install
    /// has a turn at the gate).
    pub fn state_is_valid(&self, state: &str) -> bool {
        self.state_expiry(state)
            .is_some_and(|expires_at| expires_at > Utc::now())
    }

    /// Uses up a valid state for an install naming `referer`. False when it
    /// is not valid or was used before.
    pub(super) async fn use_state(&self, state: &str, referer: &str) -> sqlx::Result<bool> {
        let Some(expires_at) = self.state_expiry(state).filter(|at| *at > Utc::now()) else {
            return Ok(false);
        };
        let taken = sqlx::query!(
            "insert into oauth_states (state, expires_at, used_at, referer)
             values ($1, $2, now(), $3)
             on conflict (state) do nothing",
            state,
            expires_at,
            referer,
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    /// A used state whose code amoCRM refused: it no longer counts against
    /// its host (see `hosts.rs`).
    pub(super) async fn state_refused(&self, state: &str) -> sqlx::Result<()> {
        sqlx::query!(
            "update oauth_states set refused = true where state = $1",
            state
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The expiry a state of ours carries; None when it is not ours.
    fn state_expiry(&self, state: &str) -> Option<DateTime<Utc>> {
        let value = URL_SAFE_NO_PAD.decode(state).ok()?;
        if value.len() != SIGNED_LEN + TAG_LEN {
            return None;
        }
        let (signed, tag) = value.split_at(SIGNED_LEN);
        if !self.cipher.verify(signed, tag) {
            return None;
        }
        let seconds = i64::from_be_bytes(signed[..8].try_into().ok()?);
        DateTime::from_timestamp(seconds, 0)
    }
}
