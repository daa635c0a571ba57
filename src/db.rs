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

/// Creates the database named in the URL when it does not exist yet.
pub async fn create_if_missing(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let url = settings.url.expose_secret();
    if !Postgres::database_exists(url).await? {
        Postgres::create_database(url).await?;
        tracing::info!("database created");
    }
    Ok(())
}

pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(settings.url.expose_secret())?;
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?;
    Ok(pool)
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// How many of this build's migrations the database has not applied.
pub async fn pending_migrations(pool: &PgPool) -> sqlx::Result<usize> {
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
