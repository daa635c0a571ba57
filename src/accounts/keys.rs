//! Hook keys: the secret in each account's hook URL, the keys that still
//! work beside the current one (`hook_keys`), and the intake's cache of
//! accounts by key.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use super::{hook_key_context, Account, AccountStatus};
use crate::crypto::{self, Cipher};

/// How long a key whose subscription is under way works without being
/// made current: longer than the subscription call can take. Past it, a
/// key whose process died mid-way stops working; amoCRM sent its hooks to
/// the current key's URL too, which was still subscribed.
const CANDIDATE_FOR: Duration = Duration::from_secs(15 * 60);

/// The account whose current or still-working hook key has this SHA-256
/// (hex).
pub async fn find_by_hook_digest(db: &PgPool, digest: &str) -> sqlx::Result<Option<Account>> {
    select_account!(
        "where hook_key_sha256 = $1
            or account_id = (select account_id from hook_keys
                             where hook_key_sha256 = $1 and valid_until > now())",
        digest
    )
    .fetch_optional(db)
    .await
}

/// The account a hook key belongs to.
pub async fn find_by_hook_key(db: &PgPool, hook_key: &str) -> sqlx::Result<Option<Account>> {
    find_by_hook_digest(db, &crypto::sha256_hex(hook_key)).await
}

/// A new key for the account that works at once beside its current one,
/// for [`CANDIDATE_FOR`]: the URL to subscribe before it becomes current.
pub async fn add_candidate(db: &PgPool, account_id: i64) -> sqlx::Result<SecretString> {
    let key = crypto::random_token(24);
    sqlx::query!(
        "insert into hook_keys (hook_key_sha256, account_id, kind, valid_until)
         values ($1, $2, 'candidate', now() + $3::interval)",
        crypto::sha256_hex(&key),
        account_id,
        // `as _`: an interval (see tokens/mod.rs).
        chrono::Duration::from_std(CANDIDATE_FOR).expect("small") as _,
    )
    .execute(db)
    .await?;
    Ok(SecretString::from(key))
}

/// Removes a candidate whose subscription amoCRM refused.
pub async fn drop_candidate(db: &PgPool, key: &SecretString) -> sqlx::Result<()> {
    sqlx::query!(
        "delete from hook_keys where hook_key_sha256 = $1 and kind = 'candidate'",
        crypto::sha256_hex(key.expose_secret()),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Makes a subscribed candidate the account's current key; the key it
/// replaces keeps working for `grace` (amoCRM may still re-send to its
/// URL). Returns the replaced key, to unsubscribe its URL.
pub async fn make_current(
    db: &PgPool,
    cipher: &Cipher,
    account_id: i64,
    key: &SecretString,
    grace: Duration,
) -> anyhow::Result<SecretString> {
    let mut tx = db.begin().await?;
    let current = sqlx::query!(
        "select hook_key_sha256, hook_key from accounts where account_id = $1 for update",
        account_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let digest = crypto::sha256_hex(key.expose_secret());
    sqlx::query!("delete from hook_keys where hook_key_sha256 = $1", &digest)
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "update accounts set hook_key_sha256 = $2, hook_key = $3, updated_at = now()
         where account_id = $1",
        account_id,
        &digest,
        cipher.encrypt(key.expose_secret(), &hook_key_context(account_id)),
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "insert into hook_keys (hook_key_sha256, account_id, kind, valid_until)
         values ($1, $2, 'retired', now() + $3::interval)",
        current.hook_key_sha256,
        account_id,
        chrono::Duration::from_std(grace)? as _,
    )
    .execute(&mut *tx)
    .await?;
    let replaced = cipher.decrypt(&current.hook_key, &hook_key_context(account_id))?;
    tx.commit().await?;
    Ok(replaced)
}

/// Deletes the keys that stopped working a day ago (a day's rows stay for
/// support). Returns how many.
pub async fn prune(db: &PgPool) -> sqlx::Result<u64> {
    Ok(
        sqlx::query!("delete from hook_keys where valid_until < now() - interval '1 day'")
            .execute(db)
            .await?
            .rows_affected(),
    )
}

/// Accounts by hook key, remembered so that a burst of hooks for one
/// account costs one lookup, and keys found to be nobody's, so that a
/// flood of one made-up key costs one lookup a minute.
///
/// Every process's cache is kept right by the database: triggers announce
/// each change of an account's status, hook keys, subdomain or pause
/// (`amohook_accounts`), and `listen::run` forgets that account, and every
/// key remembered as nobody's, at once. While that listener is not
/// connected the cache is not used at all, and a cached account that is
/// not connected is always read again, so a reinstalled account's hooks
/// are never taken for a disconnected one's.
#[derive(Debug, Default)]
pub struct KeyCache {
    known: Mutex<HashMap<String, (Account, Instant)>>,
    /// Digests of keys that were nobody's, and when that was read.
    unknown: Mutex<HashMap<String, Instant>>,
    live: AtomicBool,
}

impl KeyCache {
    /// A backstop only: changes arrive through the listener.
    pub const TTL: Duration = Duration::from_secs(60);
    const MAX: usize = 20_000;
    /// Made-up keys remembered at most; past it the oldest half goes.
    const MAX_UNKNOWN: usize = 10_000;

    pub async fn account(&self, db: &PgPool, hook_key: &str) -> sqlx::Result<Option<Account>> {
        let digest = crypto::sha256_hex(hook_key);
        let live = self.live.load(Ordering::Acquire);
        if live {
            let known = self.known.lock().expect("not poisoned");
            if let Some((account, at)) = known.get(&digest) {
                if at.elapsed() < Self::TTL && account.status != AccountStatus::Disconnected {
                    return Ok(Some(account.clone()));
                }
            }
            drop(known);
            let unknown = self.unknown.lock().expect("not poisoned");
            if unknown
                .get(&digest)
                .is_some_and(|at| at.elapsed() < Self::TTL)
            {
                metrics::counter!("amohook_hook_key_lookups_total", "result" => "unknown_cached")
                    .increment(1);
                return Ok(None);
            }
        }
        let found = find_by_hook_digest(db, &digest).await?;
        metrics::counter!("amohook_hook_key_lookups_total",
            "result" => if found.is_some() { "found" } else { "unknown" })
        .increment(1);
        if live {
            match &found {
                Some(account) => {
                    let mut known = self.known.lock().expect("not poisoned");
                    if known.len() >= Self::MAX {
                        known.clear();
                    }
                    known.insert(digest, (account.clone(), Instant::now()));
                }
                None => {
                    let mut unknown = self.unknown.lock().expect("not poisoned");
                    if unknown.len() >= Self::MAX_UNKNOWN {
                        forget_oldest_half(&mut unknown);
                    }
                    unknown.insert(digest, Instant::now());
                }
            }
        }
        Ok(found)
    }

    /// Drops what is remembered of one account (it changed), and every key
    /// remembered as nobody's (the change may have given it a new key).
    pub fn forget(&self, account_id: i64) {
        self.known
            .lock()
            .expect("not poisoned")
            .retain(|_, (account, _)| account.account_id != account_id);
        self.unknown.lock().expect("not poisoned").clear();
    }

    /// Called by the listener: while changes reach this process the cache
    /// is used; when they may not (not yet listening, connection lost), it
    /// is emptied and bypassed.
    pub fn set_live(&self, live: bool) {
        self.known.lock().expect("not poisoned").clear();
        self.unknown.lock().expect("not poisoned").clear();
        self.live.store(live, Ordering::Release);
    }
}

/// Keeps the newer half of the entries.
fn forget_oldest_half(map: &mut HashMap<String, Instant>) {
    let mut times: Vec<Instant> = map.values().copied().collect();
    let middle = times.len() / 2;
    let (_, cut, _) = times.select_nth_unstable(middle);
    let cut = *cut;
    map.retain(|_, at| *at >= cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_set_of_unknown_keys_keeps_its_newer_half() {
        let start = Instant::now();
        let mut map: HashMap<String, Instant> = (0..10u64)
            .map(|i| (i.to_string(), start + Duration::from_millis(i)))
            .collect();
        forget_oldest_half(&mut map);
        let mut kept: Vec<u64> = map.keys().map(|k| k.parse().unwrap()).collect();
        kept.sort();
        assert_eq!(kept, [5, 6, 7, 8, 9]);
    }
}
