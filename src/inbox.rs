//! The durable inbox: hook events written to PostgreSQL with group commit.
//!
//! Each hook waits for a commit before its 200. Hooks that arrive while a
//! commit is under way are written together in the next one: one statement,
//! one commit, however many hooks are waiting. At light load a batch is one
//! hook and nothing waits longer than before; under load the commit rate no
//! longer bounds the hook rate. A failed statement fails every hook of its
//! batch (each is answered 503 and re-sent by amoCRM); none is answered 200
//! without being stored.

use std::collections::HashMap;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::{hooks::HookEvent, worker::CHANNEL};

/// Hooks written in one statement at most.
const MAX_BATCH: usize = 256;

/// One event to store, with the state it starts in.
pub struct Row {
    pub account_id: i64,
    pub event: HookEvent,
    /// `pending`, or `dropped` for a disconnected account.
    pub state: &'static str,
}

struct Job {
    rows: Vec<Row>,
    reply: oneshot::Sender<Result<u64, String>>,
}

/// Hands rows to the committer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Inbox {
    jobs: mpsc::Sender<Job>,
}

type Key = (i64, String, i64, String, i64);

impl Inbox {
    /// Starts the committer; it stops when every `Inbox` is dropped.
    pub fn start(pool: PgPool) -> Inbox {
        let (jobs, rx) = mpsc::channel(4096);
        tokio::spawn(commit_loop(pool, rx));
        Inbox { jobs }
    }

    /// Stores the rows; returns how many were new (the rest were stored
    /// before: re-sent hooks).
    pub async fn store(&self, rows: Vec<Row>) -> Result<u64, String> {
        if rows.is_empty() {
            return Ok(0);
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { rows, reply })
            .await
            .map_err(|_| "the inbox is closed".to_owned())?;
        answer.await.map_err(|_| "the inbox stopped".to_owned())?
    }
}

async fn commit_loop(pool: PgPool, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        match write(&pool, &jobs).await {
            Ok(stored) => {
                for (job, n) in jobs.into_iter().zip(stored) {
                    let _ = job.reply.send(Ok(n));
                }
            }
            Err(e) => {
                let text = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(text.clone()));
                }
            }
        }
    }
}

/// Writes every job's rows in one statement (with one NOTIFY per account
/// that got something to deliver) and counts the new rows per job.
async fn write(pool: &PgPool, jobs: &[Job]) -> sqlx::Result<Vec<u64>> {
    let n: usize = jobs.iter().map(|j| j.rows.len()).sum();
    let mut accounts = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut actions = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut snapshots = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut owner: HashMap<Key, usize> = HashMap::with_capacity(n);
    for (index, job) in jobs.iter().enumerate() {
        for row in &job.rows {
            let e = &row.event;
            accounts.push(row.account_id);
            kinds.push(e.entity.as_str());
            ids.push(e.entity_id);
            actions.push(e.action.as_str());
            times.push(e.changed_at);
            snapshots.push(sqlx::types::Json(&e.snapshot));
            states.push(row.state);
            owner
                .entry((
                    row.account_id,
                    e.entity.as_str().into(),
                    e.entity_id,
                    e.action.as_str().into(),
                    e.changed_at,
                ))
                .or_insert(index);
        }
    }
    let stored: Vec<(i64, String, i64, String, i64, i64)> = sqlx::query_as(
        "with stored as (
             insert into hook_events (account_id, entity_type, entity_id, action, changed_at, snapshot,
                                      state, last_error, finished_at)
             select t.account_id, t.kind, t.id, t.action, t.at, t.snapshot, t.state,
                    case when t.state = 'dropped' then 'account disconnected' end,
                    case when t.state = 'dropped' then now() end
             from unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::jsonb[], $7::text[])
                  as t(account_id, kind, id, action, at, snapshot, state)
             on conflict (account_id, entity_type, entity_id, action, changed_at) do nothing
             returning account_id, entity_type, entity_id, action, changed_at, state),
         woke as (
             select pg_notify($8, account_id::text)
             from (select distinct account_id from stored where state = 'pending') a)
         select account_id, entity_type, entity_id, action, changed_at, (select count(*) from woke)
         from stored",
    )
    .bind(&accounts)
    .bind(&kinds)
    .bind(&ids)
    .bind(&actions)
    .bind(&times)
    .bind(&snapshots)
    .bind(&states)
    .bind(CHANNEL)
    .fetch_all(pool)
    .await?;
    let mut counts = vec![0u64; jobs.len()];
    for (account, kind, id, action, at, _) in stored {
        if let Some(index) = owner.get(&(account, kind, id, action, at)) {
            counts[*index] += 1;
        }
    }
    Ok(counts)
}
