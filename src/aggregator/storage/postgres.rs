//! The PostgreSQL backend: the same schema, migrations and queries as [`super::sqlite`],
//! for clusters that already run PostgreSQL or want the store off the aggregator's disk.
//!
//! One connection (tokio-postgres, no TLS: reach the server over a unix socket or
//! loopback). Each batch is one transaction of `INSERT ... ON CONFLICT (id) DO NOTHING`,
//! committed before the batch is acknowledged. Ids use the "C" collation so that their
//! order is the bytes' order (UUIDv7: time order), whatever the database's locale.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::{Error, Page, Query};
use crate::audit::AuditRecord;
use crate::registry::Secret;

/// The schema, one migration per version; never edit one that shipped.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE records (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    time_unix_nanos BIGINT NOT NULL,
    received_unix_nanos BIGINT NOT NULL,
    node TEXT NOT NULL,
    decision TEXT NOT NULL,
    namespace TEXT NOT NULL,
    image TEXT NOT NULL,
    subject TEXT NOT NULL,
    record BYTEA NOT NULL
);
CREATE INDEX records_by_time ON records (time_unix_nanos);
CREATE INDEX records_by_node ON records (node, id);
CREATE INDEX records_by_namespace ON records (namespace, id);
"#];

/// Time to connect and each statement's limit (`statement_timeout`).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    client: Arc<Mutex<Client>>,
}

// === impl Store ===

impl Store {
    /// Connects with a libpq-style connection string (`host=/run/postgresql
    /// dbname=crigate user=crigate`), which may hold a password and is never logged,
    /// and brings the schema up to date.
    ///
    /// # Errors
    ///
    /// The server cannot be reached, or the schema is newer than this build knows.
    pub async fn connect(url: &Secret) -> Result<Self, Error> {
        let connecting = tokio_postgres::connect(url.expose(), NoTls);
        let (mut client, connection) = tokio::time::timeout(TIMEOUT, connecting)
            .await
            .map_err(|_| Error::PostgresTimeout(TIMEOUT))?
            .map_err(Error::Postgres)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::error!(%error, "postgresql connection ended");
            }
        });
        client
            .batch_execute(&format!("SET statement_timeout = {}", TIMEOUT.as_millis()))
            .await
            .map_err(Error::Postgres)?;
        migrate(&mut client).await?;
        Ok(Self {
            client: Arc::new(Mutex::new(client)),
        })
    }

    /// As [`super::sqlite::Store::insert`].
    ///
    /// # Errors
    ///
    /// The server refused the transaction.
    pub async fn insert(&self, records: Arc<Vec<AuditRecord>>) -> Result<Vec<bool>, Error> {
        let received = crate::audit::now_unix_nanos();
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(Error::Postgres)?;
        let statement = tx
            .prepare(
                "INSERT INTO records
                   (id, time_unix_nanos, received_unix_nanos, node, decision, namespace,
                    image, subject, record)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(Error::Postgres)?;
        let mut new = Vec::with_capacity(records.len());
        for record in records.iter() {
            let changed = tx
                .execute(
                    &statement,
                    &[
                        &record.id,
                        &record.time_unix_nanos,
                        &received,
                        &record.node,
                        &record.decision().code(),
                        &record.namespace,
                        &record.image,
                        &record.subject,
                        &record.encode_to_vec(),
                    ],
                )
                .await
                .map_err(Error::Postgres)?;
            new.push(changed == 1);
        }
        tx.commit().await.map_err(Error::Postgres)?;
        Ok(new)
    }

    /// As [`super::sqlite::Store::query`].
    ///
    /// # Errors
    ///
    /// The server refused the query, or a stored record does not decode.
    pub async fn query(&self, query: Query) -> Result<Page, Error> {
        let limit = query.limit.clamp(1, super::MAX_PAGE);
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let decision = query.decision.map(|d| d.code());
        let client = self.client.lock().await;
        let rows = client
            .query(
                "SELECT id, record FROM records
                 WHERE ($1::text IS NULL OR id > $1)
                   AND ($2::bigint IS NULL OR time_unix_nanos >= $2)
                   AND ($3::text IS NULL OR decision = $3)
                   AND ($4::text IS NULL OR namespace = $4)
                   AND ($5::text IS NULL OR node = $5)
                   AND ($6::text IS NULL OR strpos(image, $6) > 0 OR strpos(subject, $6) > 0)
                 ORDER BY id
                 LIMIT $7",
                &[
                    &query.after_id,
                    &query.since_unix_nanos,
                    &decision,
                    &query.namespace,
                    &query.node,
                    &query.image,
                    &fetch,
                ],
            )
            .await
            .map_err(Error::Postgres)?;
        let mut page = Page::default();
        for row in rows {
            if page.records.len() == limit {
                page.next_after_id = page.records.last().map(|r| r.id.clone());
                break;
            }
            let id: String = row.try_get(0).map_err(Error::Postgres)?;
            let blob: Vec<u8> = row.try_get(1).map_err(Error::Postgres)?;
            let record = AuditRecord::decode(blob.as_slice())
                .map_err(|source| Error::Corrupt { id, source })?;
            page.records.push(record);
        }
        Ok(page)
    }

    /// As [`super::sqlite::Store::delete_before`].
    ///
    /// # Errors
    ///
    /// The server refused the delete.
    pub async fn delete_before(&self, unix_nanos: i64) -> Result<usize, Error> {
        let client = self.client.lock().await;
        let deleted = client
            .execute(
                "DELETE FROM records WHERE time_unix_nanos < $1",
                &[&unix_nanos],
            )
            .await
            .map_err(Error::Postgres)?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("postgres::Store").finish_non_exhaustive()
    }
}

/// Key of the session advisory lock held while migrating (any constant will do; this is
/// "crigate" in ASCII): replicas started together on one database take turns, so a
/// migration runs once and no replica fails on a table another just created.
const MIGRATION_LOCK: i64 = 0x0063_7269_6761_7465;

async fn migrate(client: &mut Client) -> Result<(), Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(Error::Postgres)?;
    let migrated = migrate_locked(client).await;
    // On error the connection is dropped, which releases the lock as well.
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(Error::Postgres)?;
    migrated
}

async fn migrate_locked(client: &mut Client) -> Result<(), Error> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .await
        .map_err(Error::Postgres)?;
    let current: i32 = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(Error::Postgres)?;
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if current > known {
        return Err(Error::NewerSchema {
            path: "postgresql".to_owned(),
            found: i64::from(current),
            known: i64::from(known),
        });
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let tx = client.transaction().await.map_err(Error::Postgres)?;
        tx.batch_execute(sql).await.map_err(Error::Postgres)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(Error::Postgres)?;
        tx.commit().await.map_err(Error::Postgres)?;
        tracing::info!(version, "postgresql schema migrated");
    }
    Ok(())
}
