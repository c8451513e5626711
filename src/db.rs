use std::time::Duration;

use anyhow::Context;
use sqlx::{
    PgPool, Postgres,
    migrate::{MigrateDatabase, Migrator},
    postgres::PgPoolOptions,
};

/// The schema of the whole product; applied by `chatty migrate` and, unless disabled, by
/// `chatty serve` at start. sqlx holds a PostgreSQL advisory lock while migrating, so
/// nodes starting together apply each migration once.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Creates the database when it does not exist yet (dev machines, tests, first deploys).
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let exists = Postgres::database_exists(url)
        .await
        .context("cannot reach PostgreSQL at DATABASE_URL")?;
    if !exists {
        // Another node may create it at the same moment; only a still-missing database is an error.
        if let Err(e) = Postgres::create_database(url).await {
            if !Postgres::database_exists(url).await.unwrap_or(false) {
                return Err(e).context("cannot create the database named in DATABASE_URL");
            }
        }
    }
    Ok(())
}

pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .context("cannot connect to PostgreSQL at DATABASE_URL")
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("applying migrations")
}
