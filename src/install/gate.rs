//! The install gate: every exchange of an authorization code passes here.
//!
//! The install endpoints are public by necessity (amoCRM's widget installs
//! come server to server, with no state), so anyone can make amohook send
//! made-up codes to amoCRM's token endpoint with the client secret, and
//! amoCRM restricts an integration that keeps sending bad requests: then
//! every account's notes stop. So exchanges are bounded twice:
//!
//! - a global rate (`install.exchanges_per_second`), counted across every
//!   process in the shared request-budget table under a name no account
//!   host can have;
//! - a number of exchanges one process runs at once
//!   (`install.concurrent_exchanges`), a semaphore.
//!
//! What comes before the gate bounds what is stored: a widget code seen
//! again is not stored again, a host may leave `install.codes_per_host`
//! codes in 10 minutes, and at most `install.waiting_max` widget installs
//! wait at once (see `pending.rs`). Browser installs need a state signed by
//! this service (see `states.rs`).

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    amocrm::budget::{Budget, BudgetError},
    config::InstallSettings,
};

/// The name of the global rate's row in `api_budget`: not a host.
pub const RATE_KEY: &str = "*install code exchanges*";

#[derive(Clone, Debug)]
pub struct Gate {
    concurrent: Arc<Semaphore>,
    rate: Budget,
}

/// A turn to exchange one code; the process's slot is freed on drop.
#[derive(Debug)]
pub struct Pass {
    _slot: OwnedSemaphorePermit,
}

impl Gate {
    pub fn new(pool: PgPool, settings: &InstallSettings) -> Self {
        Gate {
            concurrent: Arc::new(Semaphore::new(settings.concurrent_exchanges as usize)),
            rate: Budget::global(pool, settings.exchanges_per_second),
        }
    }

    /// Waits at most `within` for a turn. None when none came in time: the
    /// caller keeps the code for later, or asks the user to try again.
    pub async fn enter(&self, within: Duration) -> sqlx::Result<Option<Pass>> {
        let deadline = tokio::time::Instant::now() + within;
        let slot = match tokio::time::timeout_at(deadline, self.concurrent.clone().acquire_owned())
            .await
        {
            Ok(Ok(slot)) => slot,
            // Timed out (a closed semaphore cannot happen: it is never
            // closed).
            _ => return Ok(self.busy()),
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match self.rate.acquire_within(RATE_KEY, left).await {
            // The global rate is this service's own pace, not a host's
            // limit: a late exchange needs no slot moved.
            Ok(_slot) => {
                metrics::counter!("amohook_install_gate_total", "result" => "passed").increment(1);
                Ok(Some(Pass { _slot: slot }))
            }
            Err(BudgetError::Timeout(_)) => Ok(self.busy()),
            Err(BudgetError::Database(e)) => Err(e),
        }
    }

    fn busy(&self) -> Option<Pass> {
        metrics::counter!("amohook_install_gate_total", "result" => "busy").increment(1);
        None
    }
}
