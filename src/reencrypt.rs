//! `amohook reencrypt`: rewrites every sealed value that is not written
//! with the current key (values of an old key, and values from before key
//! ids were derived from keys), so that the old keys can be removed from
//! `security.old_encryption_keys`.
//!
//! Each column is walked in primary-key order, a batch at a time; a value
//! is replaced only if it is still the one that was read (a refresh that
//! wrote a new pair meanwhile wrote it with the current key anyway), so the
//! command is safe while the service runs. A value no configured key can
//! open is counted and left as it is.

use secrecy::ExposeSecret as _;
use sqlx::PgPool;

use crate::{accounts, crypto::Cipher, key_check};

const BATCH: i64 = 500;

/// What one run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Values now written with the current key.
    pub rewritten: u64,
    /// Values no configured key could open (left as they were).
    pub unreadable: u64,
}

impl Report {
    fn reseal(&mut self, cipher: &Cipher, old: &[u8], context: &str) -> Option<Vec<u8>> {
        match cipher.decrypt(old, context) {
            Ok(plain) => Some(cipher.encrypt(plain.expose_secret(), context)),
            Err(_) => {
                self.unreadable += 1;
                None
            }
        }
    }

    fn count(&mut self, updated: sqlx::postgres::PgQueryResult) {
        self.rewritten += updated.rows_affected();
    }
}

/// Rewrites every value sealed with another key than `cipher`'s current one.
pub async fn run(pool: &PgPool, cipher: &Cipher) -> sqlx::Result<Report> {
    let id = i32::from(cipher.current_key_id());
    let mut report = Report::default();

    let mut after = i64::MIN;
    loop {
        let rows = sqlx::query!(
            "select account_id, hook_key from accounts
             where get_byte(hook_key, 0) <> $1 and account_id > $2
             order by account_id limit $3",
            id,
            after,
            BATCH
        )
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.account_id;
        for row in rows {
            let context = accounts::hook_key_context(row.account_id);
            if let Some(new) = report.reseal(cipher, &row.hook_key, &context) {
                let done = sqlx::query!(
                    "update accounts set hook_key = $2 where account_id = $1 and hook_key = $3",
                    row.account_id,
                    new,
                    row.hook_key
                )
                .execute(pool)
                .await?;
                report.count(done);
            }
        }
    }

    let mut after = i64::MIN;
    loop {
        let rows = sqlx::query!(
            "select account_id, access_token, refresh_token from account_tokens
             where (get_byte(access_token, 0) <> $1 or get_byte(refresh_token, 0) <> $1)
               and account_id > $2
             order by account_id limit $3",
            id,
            after,
            BATCH
        )
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.account_id;
        for row in rows {
            let access = accounts::token_context(row.account_id, "access_token");
            let refresh = accounts::token_context(row.account_id, "refresh_token");
            let (Some(new_access), Some(new_refresh)) = (
                report.reseal(cipher, &row.access_token, &access),
                report.reseal(cipher, &row.refresh_token, &refresh),
            ) else {
                continue;
            };
            // Both columns of the pair in one statement: a pair counts once.
            let done = sqlx::query!(
                "update account_tokens set access_token = $2, refresh_token = $3
                 where account_id = $1 and access_token = $4 and refresh_token = $5",
                row.account_id,
                new_access,
                new_refresh,
                row.access_token,
                row.refresh_token
            )
            .execute(pool)
            .await?;
            report.count(done);
        }
    }

    // Widget installs still waiting: their codes and exchanged tokens.
    let mut after = i64::MIN;
    loop {
        let rows = sqlx::query!(
            "select install_id, referer, code, tokens from pending_installs
             where ((octet_length(code) > 0 and get_byte(code, 0) <> $1)
                    or (tokens is not null and get_byte(tokens, 0) <> $1))
               and install_id > $2
             order by install_id limit $3",
            id,
            after,
            BATCH
        )
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.install_id;
        for row in rows {
            let code = if row.code.is_empty() || row.code[0] == cipher.current_key_id() {
                Some(row.code.clone())
            } else {
                report.reseal(
                    cipher,
                    &row.code,
                    &crate::install::code_context(&row.referer),
                )
            };
            let tokens = match &row.tokens {
                Some(t) if t.first() != Some(&cipher.current_key_id()) => report
                    .reseal(cipher, t, &crate::install::tokens_context(row.install_id))
                    .map(Some),
                other => Some(other.clone()),
            };
            let (Some(code), Some(tokens)) = (code, tokens) else {
                continue;
            };
            let done = sqlx::query!(
                "update pending_installs set code = $2, tokens = $3
                 where install_id = $1 and code = $4 and tokens is not distinct from $5",
                row.install_id,
                code,
                tokens,
                row.code,
                row.tokens
            )
            .execute(pool)
            .await?;
            report.count(done);
        }
    }

    // Last, the canary: the key check then passes by the current key.
    if let Some(canary) = sqlx::query_scalar!("select canary from key_check")
        .fetch_optional(pool)
        .await?
    {
        if canary.first() != Some(&cipher.current_key_id()) {
            if let Some(new) = report.reseal(cipher, &canary, key_check::CONTEXT) {
                let done = sqlx::query!(
                    "update key_check set canary = $1 where canary = $2",
                    new,
                    canary
                )
                .execute(pool)
                .await?;
                report.count(done);
            }
        }
    }
    Ok(report)
}
