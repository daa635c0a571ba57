//! The durable inbox: hook events written to PostgreSQL with group commit.
//!
//! Each hook waits for a commit before its 200. Hooks that arrive while a
//! commit is under way are written together in the next one: one statement,
//! one commit, however many hooks are waiting. At light load a batch is one
//! hook and nothing waits longer than before; under load the commit rate no
//! longer bounds the hook rate.
//!
//! A batch is shared by many accounts, so one hook must never fail the
//! others: when the batch statement fails, each hook of the batch is written
//! on its own, and only a hook that cannot be stored by itself is refused:
//! [`StoreError::Rejected`] when its content is the reason (sending it again
//! would fail the same way), [`StoreError::Unavailable`] when the database
//! is. A hook whose sender has stopped waiting (it was answered 503) is not
//! written at all.

//! A statement holds at most [`MAX_ROWS`] rows, chosen account by account
//! in turn: each account with hooks waiting gets one hook (or the next
//! [`MAX_ROWS`] rows of a big one) before any account gets a second. A hook
//! with many cards is written in parts over several statements, between
//! other accounts' hooks, and answered once all of it is committed. One
//! account's big or many hooks thus cost the other accounts one statement
//! of waiting at most: before, a 920 KB hook of 21,692 cards was one
//! statement, and every other account's hooks waited behind it past the
//! store deadline (answered 503).
//!
use std::collections::HashMap;

use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::amocrm::hooks::HookEvent;

mod queue;

use queue::{Job, Queue};

/// The channel signalled with the account id when events wait for
/// delivery (stored hooks, retried events); `listen.rs` wakes delivery.
pub const EVENTS: &str = "amohook_events";

/// Rows written in one statement at most (about 25 ms of PostgreSQL's time
/// on the benchmark machine); a hook with more is written in parts.
pub const MAX_ROWS: usize = 256;

/// Where a stored event stands (the column `hook_events.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum EventState {
    /// Waits for its note (or for its next attempt).
    Pending,
    /// A note request is (or was, before a crash) under way.
    Sending,
    Delivered,
    /// Nothing visible changed, or a newer change was already handled.
    Skipped,
    /// amoCRM refused the note, or retries ran out.
    Failed,
    /// The account was disconnected.
    Dropped,
}

impl EventState {
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Pending => "pending",
            EventState::Sending => "sending",
            EventState::Delivered => "delivered",
            EventState::Skipped => "skipped",
            EventState::Failed => "failed",
            EventState::Dropped => "dropped",
        }
    }

    pub const ALL: [EventState; 6] = [
        EventState::Pending,
        EventState::Sending,
        EventState::Delivered,
        EventState::Skipped,
        EventState::Failed,
        EventState::Dropped,
    ];
}

impl std::str::FromStr for EventState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EventState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown event state `{text}`"))
    }
}

/// One event to store, with the state it starts in.
pub struct Row {
    pub account_id: i64,
    pub event: HookEvent,
    /// `Pending`, or `Dropped` for a disconnected account.
    pub state: EventState,
    /// The snapshot as stored, and the first 64 bits of its SHA-256: made
    /// where the hook is read, on its request's own task, so that the
    /// committer (one for every account's hooks) only binds them.
    snapshot: String,
    digest: i64,
}

impl Row {
    pub fn new(account_id: i64, mut event: HookEvent, state: EventState) -> Row {
        event.snapshot.without_nul();
        // The snapshot is a struct with a fixed field order and lists in
        // the hook's order: the same body always encodes the same way.
        let snapshot = serde_json::to_string(&event.snapshot).expect("a snapshot always encodes");
        Row {
            account_id,
            digest: snapshot_digest(&snapshot),
            snapshot,
            event,
            state,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The database refuses this hook's content; a re-send fails the same way.
    #[error("the hook cannot be stored: {0}")]
    Rejected(String),
    /// The database cannot store anything now; a re-send may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

/// Hands rows to the committer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Inbox {
    jobs: mpsc::Sender<Job>,
    /// The committer's connections (`db::INTAKE_CONNECTIONS`).
    pool: PgPool,
}

/// What makes an event unique: the card, the change, and a digest of what
/// the hook showed (two different changes within one second share
/// `changed_at`; amoCRM's re-send of the same body shares all of it).
type Key = (i64, String, i64, String, i64, i64);

impl Inbox {
    /// Starts the committer; it stops when every `Inbox` is dropped.
    pub fn start(pool: PgPool) -> Inbox {
        let (jobs, rx) = mpsc::channel(4096);
        tokio::spawn(commit_loop(pool.clone(), rx));
        Inbox { jobs, pool }
    }

    /// Closes the committer's connections (at the end of a shutdown).
    pub async fn close_pool(&self) {
        self.pool.close().await;
    }

    /// Stores the rows (all of one account); returns how many were new (the
    /// rest were stored before: re-sent hooks).
    pub async fn store(&self, rows: Vec<Row>) -> Result<u64, StoreError> {
        let Some(first) = rows.first() else {
            return Ok(0);
        };
        let account_id = first.account_id;
        let closed = || StoreError::Unavailable("the inbox is closed".into());
        let (reply, answer) = oneshot::channel();
        let job = Job {
            account_id,
            rows,
            reply,
            written: 0,
            new: 0,
        };
        self.jobs.send(job).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

async fn commit_loop(pool: PgPool, mut rx: mpsc::Receiver<Job>) {
    let mut queue = Queue::default();
    let mut unfinished = Vec::new();
    loop {
        if queue.is_empty() && unfinished.is_empty() {
            match rx.recv().await {
                Some(job) => queue.push(job),
                None => return,
            }
        }
        while let Ok(job) = rx.try_recv() {
            queue.push(job);
        }
        // Hooks that arrived during the last statement took their turn
        // above, before the rest of a big one.
        for job in unfinished.drain(..) {
            queue.push_front(job);
        }
        let parts = queue.next_statement();
        unfinished = commit(&pool, parts).await;
    }
}

/// Writes a statement's parts and answers each hook written in full (or
/// failed); returns the hooks with rows still to write.
async fn commit(pool: &PgPool, parts: Vec<(Job, usize)>) -> Vec<Job> {
    if parts.is_empty() {
        return Vec::new();
    }
    let slices: Vec<&[Row]> = parts
        .iter()
        .map(|(job, take)| &job.rows[job.written..job.written + take])
        .collect();
    let results = write_group(pool, &slices, |i| !parts[i].0.reply.is_closed()).await;
    drop(slices);
    let mut unfinished = Vec::new();
    for ((mut job, take), result) in parts.into_iter().zip(results) {
        match result {
            Ok(new) => {
                job.written += take;
                job.new += new;
                if job.written < job.rows.len() {
                    unfinished.push(job);
                } else {
                    let _ = job.reply.send(Ok(job.new));
                }
            }
            Err(e) => {
                let _ = job.reply.send(Err(e));
            }
        }
    }
    unfinished
}

/// Writes several hooks' rows in one statement and counts the new rows of
/// each. When the statement fails, each hook is written on its own, so that
/// only a hook that cannot be stored by itself fails; a hook whose sender
/// is no longer `waiting` is then left out.
pub async fn write_group(
    pool: &PgPool,
    hooks: &[&[Row]],
    waiting: impl Fn(usize) -> bool,
) -> Vec<Result<u64, StoreError>> {
    let all = hooks;
    match write(pool, all).await {
        Ok(counts) => counts.into_iter().map(Ok).collect(),
        Err(e) if all.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(error = %e, hooks = all.len(), "group commit failed; storing its hooks one by one");
            let mut results = Vec::with_capacity(all.len());
            for (index, one) in all.iter().enumerate() {
                results.push(if waiting(index) {
                    write(pool, &[one]).await.map(|counts| counts[0])
                } else {
                    Err(StoreError::Unavailable("its sender stopped waiting".into()))
                });
            }
            results
        }
    }
}

/// The first 64 bits of the snapshot's SHA-256.
fn snapshot_digest(encoded: &str) -> i64 {
    let hash = Sha256::digest(encoded.as_bytes());
    i64::from_be_bytes(hash[..8].try_into().expect("8 bytes"))
}

/// Writes every job's rows in one statement (with one NOTIFY per account
/// that got something to deliver) and counts the new rows per job.
async fn write(pool: &PgPool, jobs: &[&[Row]]) -> Result<Vec<u64>, StoreError> {
    let n: usize = jobs.iter().map(|j| j.len()).sum();
    let mut accounts = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut actions = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut snapshots = Vec::with_capacity(n);
    let mut digests = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut owner: HashMap<Key, usize> = HashMap::with_capacity(n);
    for (index, job) in jobs.iter().enumerate() {
        for row in job.iter() {
            let e = &row.event;
            accounts.push(row.account_id);
            kinds.push(e.entity.as_str());
            ids.push(e.entity_id);
            actions.push(e.action.as_str());
            times.push(e.changed_at);
            snapshots.push(row.snapshot.as_str());
            digests.push(row.digest);
            states.push(row.state.as_str());
            owner
                .entry((
                    row.account_id,
                    e.entity.as_str().into(),
                    e.entity_id,
                    e.action.as_str().into(),
                    e.changed_at,
                    row.digest,
                ))
                .or_insert(index);
        }
    }
    let stored = sqlx::query!(
        "with stored as (
             insert into hook_events (account_id, entity_type, entity_id, action, changed_at, snapshot,
                                      snapshot_digest, state, last_error, finished_at)
             select t.account_id, t.kind, t.id, t.action, t.at, t.snapshot::json, t.digest, t.state,
                    case when t.state = 'dropped' then 'account disconnected' end,
                    case when t.state = 'dropped' then now() end
             from unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[],
                         $7::bigint[], $8::text[])
                  as t(account_id, kind, id, action, at, snapshot, digest, state)
             on conflict (account_id, entity_type, entity_id, action, changed_at, snapshot_digest)
                 do nothing
             returning account_id, entity_type, entity_id, action, changed_at, snapshot_digest, state),
         woke as (
             select pg_notify($9, account_id::text)
             from (select distinct account_id from stored where state = 'pending') a)
         select account_id, entity_type, entity_id, action, changed_at, snapshot_digest
         from stored, (select count(*) from woke) w",
        &accounts,
        // `as _`: text[] bound from `&str`s, which the macro's type check does
        // not know (it names `String`).
        &kinds as _,
        &ids,
        &actions as _,
        &times,
        &snapshots as _,
        &digests,
        &states as _,
        EVENTS,
    )
    .fetch_all(pool)
    .await
    .map_err(classify)?;
    let mut counts = vec![0u64; jobs.len()];
    for row in stored {
        let key: Key = (
            row.account_id,
            row.entity_type,
            row.entity_id,
            row.action,
            row.changed_at,
            row.snapshot_digest,
        );
        if let Some(index) = owner.get(&key) {
            counts[*index] += 1;
        }
    }
    Ok(counts)
}

/// Whose fault a failed statement is: the data's (SQLSTATE classes 22 data
/// exception, 23 integrity violation, 54 program limit exceeded) or the
/// database's (anything else: connections, timeouts, shutdown).
fn classify(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        if let Some(code) = db.code() {
            if ["22", "23", "54"]
                .iter()
                .any(|class| code.starts_with(class))
            {
                return StoreError::Rejected(db.message().to_owned());
            }
        }
    }
    StoreError::Unavailable(error.to_string())
}
