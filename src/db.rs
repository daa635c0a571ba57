//! The database: connecting, creating it when missing, migrations.

use std::{str::FromStr, time::Duration};

use secrecy::ExposeSecret;
use sqlx::{
    migrate::{MigrateDatabase, Migrator},
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool, Postgres,
};

use crate::config::DatabaseSettings;

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// What to do when PostgreSQL refuses the password: a fresh Debian or
/// Ubuntu cluster asks for one on TCP, and its `postgres` user has none.
pub const PASSWORD_HINT: &str = "PostgreSQL refused the password. On a fresh Debian or Ubuntu \
     the user postgres has none: give it one with \
     `sudo -u postgres psql -c \"alter user postgres password 'postgres'\"` and use \
     postgres://postgres:postgres@127.0.0.1:5432/amohook";

/// A connection error, with [`PASSWORD_HINT`] when the password was refused
/// (SQLSTATE 28P01).
pub fn connection_error(e: sqlx::Error) -> anyhow::Error {
    let refused = match &e {
        sqlx::Error::Database(d) => d.code().as_deref() == Some("28P01"),
        other => other.to_string().contains("password authentication failed"),
    };
    if refused {
        // The message alone: sqlx's database error is also its own source,
        // and the whole chain would print the same words twice.
        anyhow::anyhow!("{e}").context(PASSWORD_HINT)
    } else {
        e.into()
    }
}

/// Creates the database named in the URL when it does not exist yet.
pub async fn create_if_missing(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let url = settings.url.expose_secret();
    if !Postgres::database_exists(url)
        .await
        .map_err(connection_error)?
    {
        Postgres::create_database(url)
            .await
            .map_err(connection_error)?;
        tracing::info!("database created");
    }
    Ok(())
}

/// Connections of the inbox's group commit, which writes one batch at a
/// time (the second stands by while a broken one is replaced). Nothing else
/// uses them: no delivery, refresh, install, page, nor any lookup of a hook
/// key (a flood of made-up keys) can keep a hook from being stored.
pub const INTAKE_CONNECTIONS: u32 = 2;

/// Connections for looking up accounts by hook key, apart from the
/// commit's: a lookup that waits (for a flood of made-up keys, or a slow
/// table) holds one of these, never the connection a hook is stored on.
pub const LOOKUP_CONNECTIONS: u32 = 2;

/// The pools of a process.
#[derive(Clone, Debug)]
pub struct Pools {
    /// Delivery, tokens, installs, pages, background work.
    pub main: PgPool,
    /// The inbox's group commit only.
    pub intake: PgPool,
    /// Hook intake's account lookups only.
    pub lookup: PgPool,
}

/// Opens both pools; the main one holds up to `database.max_connections`.
///
/// The main pool is not sized by the delivery turns: a turn holds a
/// connection only for the moment of each statement (none while it waits on
/// amoCRM; token refreshes, which do, are bounded in `tokens/`), so a
/// few dozen connections serve hundreds of turns, and PostgreSQL's own
/// connection limit is shared by every process.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Pools> {
    let options = PgConnectOptions::from_str(settings.url.expose_secret())?;
    // Both pools keep PostgreSQL's default plan caching (a generic plan
    // after five runs when it costs no more than the custom ones). Forcing
    // a custom plan for every statement of the main pool, as before, spent
    // 40% of delivery's statement time on planning at 1,000 accounts
    // (docs/scaling.md); the one statement whose best plan depends on its
    // parameters, the account claim, asks for a custom plan itself
    // (`delivery/claim.rs`).
    let main = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.clone())
        .await
        .map_err(connection_error)?;
    let intake = PgPoolOptions::new()
        .max_connections(INTAKE_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(options.clone())
        .await
        .map_err(connection_error)?;
    let lookup = PgPoolOptions::new()
        .max_connections(LOOKUP_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(options)
        .await
        .map_err(connection_error)?;
    Ok(Pools {
        main,
        intake,
        lookup,
    })
}

/// Runs `write` until it succeeds, each attempt on a connection of its
/// own, for about two minutes ([`Backoff::STORE`](crate::backoff::Backoff::STORE)):
/// for what must not be lost once amoCRM has answered (a new token pair
/// revokes the old one; a spent authorization code cannot be exchanged
/// again). Each failure is logged, a late success and a loss are counted
/// (`amohook_stored_late_total`, `amohook_store_lost_total`, by `what`).
pub async fn until_stored<T, E, F, Fut>(what: &'static str, write: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    use backon::Retryable as _;
    let started = std::time::Instant::now();
    let mut failures = 0u32;
    let result = write
        .retry(crate::backoff::Backoff::STORE.retries(crate::backoff::STORE_RETRIES))
        .notify(|e, wait| {
            failures += 1;
            tracing::error!(what, error = %e, retry_in = ?wait, "storing what amoCRM answered failed; trying again");
        })
        .await;
    match &result {
        Ok(_) if failures > 0 => {
            metrics::counter!("amohook_stored_late_total", "what" => what).increment(1);
            tracing::warn!(what, failures, after = ?started.elapsed(), "stored after the database failed");
        }
        Ok(_) => {}
        Err(e) => {
            metrics::counter!("amohook_store_lost_total", "what" => what).increment(1);
            tracing::error!(what, error = %e, after = ?started.elapsed(), "could not be stored: lost");
        }
    }
    result
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// How many of this build's migrations the database has not applied.
pub async fn pending_migrations(pool: &PgPool) -> sqlx::Result<usize> {
    // Not checked at build time: the table is sqlx's own bookkeeping, not
    // in migrations/, and it does not exist before the first migration.
    let applied: Vec<i64> =
        match sqlx::query_scalar("select version from _sqlx_migrations where success")
            .fetch_all(pool)
            .await
        {
            Ok(v) => v,
            // No table yet: nothing applied.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(e),
        };
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .count())
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha384};

    /// A database keeps the SHA-384 of every migration it applied, and a
    /// build whose embedded migrations hash otherwise refuses to migrate it:
    /// the checksums must stay those of the files, whatever sqlx computes
    /// them with.
    #[test]
    fn migration_checksums_are_the_sha384_of_their_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), super::MIGRATOR.iter().count());
        for (migration, file) in super::MIGRATOR.iter().zip(&files) {
            let sql = std::fs::read(file).unwrap();
            assert_eq!(
                &*migration.checksum,
                Sha384::digest(&sql).as_slice(),
                "{}",
                file.display()
            );
        }
    }
}
