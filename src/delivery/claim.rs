//! Claims: one process at a time per account (a lease), and each due event
//! locked to its sender; both kept alive by the heartbeat.

use sqlx::types::Json;

use super::{AccountRef, Claimed, Worker, CLAIM_TTL, ROUND};
use crate::{
    accounts::AccountStatus,
    amocrm::hooks::{Action, EntityKind, Snapshot},
};

impl Worker {
    /// Pushes the lease of every account whose turn is under way in this
    /// process, and the lock of every event its rounds have in hand,
    /// [`CLAIM_TTL`] ahead. Nothing else: a lease or a lock this process
    /// failed to give back (the database gone at that moment) runs out.
    ///
    /// Rows a round is writing at that moment are skipped (`skip locked`):
    /// the round renews or finishes them itself. Waiting for them instead
    /// deadlocked with the round's own many-row updates, which lock the
    /// same rows in another order (seen in the benchmark: PostgreSQL broke
    /// the deadlock by failing the round's statement).
    pub async fn renew_claims(&self) -> sqlx::Result<()> {
        let ttl = claim_ttl();
        let ids = |set: &std::sync::Mutex<std::collections::HashSet<i64>>| -> Vec<i64> {
            set.lock().expect("not poisoned").iter().copied().collect()
        };
        let (in_hand, turns) = (ids(&self.in_hand), ids(&self.turns));
        sqlx::query!(
            "update accounts set lease_until = now() + $2
             where account_id in (select account_id from accounts
                                  where account_id = any($3) and lease_owner = $1
                                  for update skip locked)",
            &self.owner,
            // `as _`: an interval. chrono's Duration encodes as one, but the macro's
            // type check knows only PgInterval for it.
            ttl as _,
            &turns,
        )
        .execute(&self.pool)
        .await?;
        sqlx::query!(
            "update hook_events set locked_until = now() + $2
             where event_id in (select event_id from hook_events
                                where event_id = any($3) and locked_by = $1 and state = 'sending'
                                for update skip locked)",
            &self.owner,
            ttl as _,
            &in_hand,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Leases up to `n` due accounts, those served longest ago first.
    ///
    /// Finding it by walking accounts in service order (the
    /// `accounts_last_served` index) stops at the first due account: quick
    /// when many are due, but when one is (the one just served, whose
    /// backlog is being worked off) the walk looked at every account
    /// first: 21 ms a claim with 10,000 accounts, on every turn and every
    /// idle loop's poll. So the claim first lists the accounts with pending
    /// or claimed events (at most [`FEW_WAITING_ACCOUNTS`]); when that is all of
    /// them, it chooses among those only, and walks accounts only when many
    /// are waiting.
    pub(super) async fn claim_accounts(&self, n: usize) -> sqlx::Result<Vec<AccountRef>> {
        // The accounts with pending or claimed events, one index probe
        // each (a skip scan of `hook_events_due`), however many events
        // each has; the recursion stops at the limit.
        let waiting = sqlx::query_scalar!(
            r#"with recursive waiting(account_id) as (
                 (select account_id from hook_events
                  where state in ('pending', 'sending')
                  order by account_id limit 1)
                 union all
                 select (select e.account_id from hook_events e
                         where e.state in ('pending', 'sending') and e.account_id > w.account_id
                         order by e.account_id limit 1)
                 from waiting w where w.account_id is not null)
               select account_id as "account_id!" from waiting
               where account_id is not null
               limit $1"#,
            FEW_WAITING_ACCOUNTS,
        )
        .fetch_all(&self.pool)
        .await?;
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let among = (waiting.len() < FEW_WAITING_ACCOUNTS as usize).then_some(waiting);
        // This statement alone is planned for its parameters every time: with
        // `among` set the plan starts from those accounts' keys, without it
        // from the walk in service order, and a generic plan made once (on
        // a fresh database, from empty tables) read every due event once
        // per account: 9.5 s a claim with 10,000 accounts (docs/scaling.md).
        // The rest of the main pool keeps PostgreSQL's generic plans (`db.rs`).
        let mut tx = self.pool.begin().await?;
        sqlx::query("set local plan_cache_mode = force_custom_plan")
            .execute(&mut *tx)
            .await?;
        let claimed = sqlx::query_as!(
            AccountRef,
            r#"with candidate as (
                 select a.account_id from accounts a
                 where ($3::bigint[] is null or a.account_id = any($3))
                   and a.status in ('active', 'disconnected')
                   and not a.manual_pause
                   and (a.paused_until is null or a.paused_until <= now())
                   and (a.lease_until is null or a.lease_until < now())
                   and exists (
                       select 1 from hook_events e
                       where e.account_id = a.account_id
                         and ((e.state = 'pending' and e.next_attempt_at <= now())
                              or (e.state = 'sending' and e.locked_until < now())))
                 order by a.last_served_at nulls first
                 limit $4
                 for update skip locked)
             update accounts a
             set lease_owner = $1, lease_until = now() + $2, last_served_at = now()
             from candidate where a.account_id = candidate.account_id
             returning a.account_id, a.domain, a.status as "status: AccountStatus", a.timezone,
                       a.note_lang, a.settings_version, a.paused_until is not null as "paused!""#,
            &self.owner,
            claim_ttl() as _,
            among.as_deref(),
            i64::try_from(n).unwrap_or(i64::MAX),
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Extends this process's lease on the account; false when it was lost.
    pub(super) async fn renew(&self, account_id: i64) -> sqlx::Result<bool> {
        let renewed = sqlx::query!(
            "update accounts set lease_until = now() + $3
             where account_id = $1 and lease_owner = $2",
            account_id,
            &self.owner,
            claim_ttl() as _,
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    pub(super) async fn claim_events(&self, account_id: i64) -> sqlx::Result<Vec<Claimed>> {
        let mut events = sqlx::query_as!(
            Claimed,
            r#"with due as (
                 select event_id from hook_events
                 where account_id = $1
                   and ((state = 'pending' and next_attempt_at <= now())
                        or (state = 'sending' and locked_until < now()))
                 order by changed_at, event_id
                 limit $2
                 for update skip locked)
             update hook_events e set state = 'sending', locked_until = now() + $3, locked_by = $4
             from due where e.event_id = due.event_id
             returning e.event_id, e.entity_type as "entity_type: EntityKind", e.entity_id,
                       e.action as "action: Action", e.changed_at,
                       e.snapshot as "snapshot: Json<Snapshot>", e.received_at, e.note_text, e.maybe_sent,
                       e.sent_at, false as "marked!""#,
            account_id,
            ROUND,
            claim_ttl() as _,
            &self.owner,
        )
        .fetch_all(&self.pool)
        .await?;
        events.sort_by_key(|e| (e.changed_at, e.event_id));
        Ok(events)
    }

    /// Gives claimed events back untouched, due now.
    pub(super) async fn requeue(&self, ids: &[i64]) -> sqlx::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query!(
            "update hook_events set state = 'pending', locked_until = null
             where event_id = any($1) and state = 'sending' and locked_by = $2",
            ids,
            &self.owner,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The most accounts with pending or claimed events the claim looks up to
/// choose among them (an index probe each); past it many accounts are
/// waiting, and the walk in service order finds a due one early. 1,000
/// cost every claim during a backlog over 10,000 accounts 1,000 probes
/// before the walk (ingest 665 against 880 hooks/s in one run).
const FEW_WAITING_ACCOUNTS: i64 = 64;

pub(super) fn claim_ttl() -> chrono::Duration {
    chrono::Duration::from_std(CLAIM_TTL).expect("small")
}
