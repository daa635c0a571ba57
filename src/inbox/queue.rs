//! The committer's queue: hooks waiting by account, served in turn, and the
//! rows each statement takes (at most [`MAX_ROWS`], one account's hook or part
//! of it at a time).

use std::collections::{HashMap, VecDeque};

use tokio::sync::oneshot;

use super::{Row, StoreError, MAX_ROWS};

/// Hooks written in one statement at most.
const MAX_BATCH: usize = 256;

pub(super) struct Job {
    pub(super) account_id: i64,
    pub(super) rows: Vec<Row>,
    pub(super) reply: oneshot::Sender<Result<u64, StoreError>>,
    /// Rows committed so far, and how many of them were new.
    pub(super) written: usize,
    pub(super) new: u64,
}

/// The hooks waiting for the committer, by account, served in turn.
#[derive(Default)]
pub(super) struct Queue {
    by_account: HashMap<i64, VecDeque<Job>>,
    /// The accounts with hooks waiting, in the order they are served.
    turn: VecDeque<i64>,
}

impl Queue {
    pub(super) fn push(&mut self, job: Job) {
        self.line_of(job.account_id).push_back(job);
    }

    /// Puts a hook written in part back first in its account's line.
    pub(super) fn push_front(&mut self, job: Job) {
        self.line_of(job.account_id).push_front(job);
    }

    /// The account's line of hooks; an account that had none takes its
    /// turn after the others.
    fn line_of(&mut self, account_id: i64) -> &mut VecDeque<Job> {
        let jobs = self.by_account.entry(account_id).or_default();
        if jobs.is_empty() {
            self.turn.push_back(account_id);
        }
        jobs
    }

    pub(super) fn is_empty(&self) -> bool {
        self.turn.is_empty()
    }

    /// The next statement's parts: each account in turn gives its first
    /// hook (or as many of its rows as there is room for) until the
    /// statement has [`MAX_ROWS`] rows or [`MAX_BATCH`] hooks. A hook whose
    /// sender stopped waiting (it was answered 503) is dropped unwritten:
    /// amoCRM sends it again, and writing it now would only race with that.
    pub(super) fn next_statement(&mut self) -> Vec<(Job, usize)> {
        let mut parts = Vec::new();
        let mut rows = 0;
        while rows < MAX_ROWS && parts.len() < MAX_BATCH {
            let Some(account_id) = self.turn.pop_front() else {
                break;
            };
            let Some(jobs) = self.by_account.get_mut(&account_id) else {
                continue;
            };
            let job = jobs.pop_front();
            if jobs.is_empty() {
                self.by_account.remove(&account_id);
            } else {
                self.turn.push_back(account_id);
            }
            let Some(job) = job else { continue };
            if job.reply.is_closed() {
                continue;
            }
            let take = (job.rows.len() - job.written).min(MAX_ROWS - rows);
            rows += take;
            parts.push((job, take));
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amocrm::hooks::{Action, EntityKind, HookEvent, Snapshot};
    use crate::inbox::EventState;

    fn job(account_id: i64, rows: usize) -> (Job, oneshot::Receiver<Result<u64, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let rows = (0..rows)
            .map(|i| {
                let event = HookEvent {
                    entity: EntityKind::Lead,
                    action: Action::Add,
                    entity_id: i as i64,
                    changed_at: 1,
                    snapshot: Snapshot::default(),
                };
                Row::new(account_id, event, EventState::Pending)
            })
            .collect();
        let job = Job {
            account_id,
            rows,
            reply,
            written: 0,
            new: 0,
        };
        (job, answer)
    }

    /// (account, rows) of each part.
    fn shape(parts: &[(Job, usize)]) -> Vec<(i64, usize)> {
        parts
            .iter()
            .map(|(j, take)| (j.account_id, *take))
            .collect()
    }

    #[test]
    fn a_big_hook_is_written_in_parts_between_other_accounts_hooks() {
        let mut queue = Queue::default();
        let mut answers = Vec::new();
        // One account's two hooks of 20,000 cards, then two other accounts'.
        for (account, rows) in [(1, 20_000), (1, 20_000), (2, 1), (3, 2), (2, 1)] {
            let (job, answer) = job(account, rows);
            queue.push(job);
            answers.push(answer);
        }
        let first = queue.next_statement();
        // Its account came first: its first part fills the statement.
        assert_eq!(shape(&first), vec![(1, MAX_ROWS)]);
        // Its rest goes back first in its account's line; the others come
        // before its next part.
        for (mut job, take) in first {
            job.written += take;
            queue.push_front(job);
        }
        let second = queue.next_statement();
        assert_eq!(shape(&second)[..3], [(2, 1), (3, 2), (1, MAX_ROWS - 3)]);
        let rows: usize = second.iter().map(|(_, take)| take).sum();
        assert_eq!(rows, MAX_ROWS);
    }

    #[test]
    fn every_account_gets_a_turn_before_any_gets_a_second() {
        let mut queue = Queue::default();
        let mut answers = Vec::new();
        for account in [1, 1, 1, 1, 2, 3] {
            let (job, answer) = job(account, 1);
            queue.push(job);
            answers.push(answer);
        }
        let parts = queue.next_statement();
        assert_eq!(
            shape(&parts),
            vec![(1, 1), (2, 1), (3, 1), (1, 1), (1, 1), (1, 1)]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn a_hook_whose_sender_stopped_waiting_is_not_written() {
        let mut queue = Queue::default();
        let (gone, answer) = job(1, 3);
        drop(answer);
        let (waiting, _answer) = job(2, 1);
        queue.push(gone);
        queue.push(waiting);
        assert_eq!(shape(&queue.next_statement()), vec![(2, 1)]);
        assert!(queue.is_empty());
    }
}
