//! The PostgreSQL backend: the same schema, migrations and queries as [`super::sqlite`],
//! for clusters that already run PostgreSQL or want the store off the aggregator's disk.
//!
//! [`CONNECTIONS`] connections (tokio-postgres; TLS with `sslmode=require`,
//! `verify-full` or `verify-ca`, see [`conninfo`] and [`tls`]). Each batch is one `INSERT ... ON CONFLICT (node, id) DO NOTHING`
//! statement, its rows as arrays, committed before the batch is acknowledged. Ids use
//! the "C" collation so that their order is the bytes' order (UUIDv7: time order),
//! whatever the database's locale.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, NoTls, Statement};

mod conninfo;
mod tls;

use conninfo::RootCert;

use super::{Error, Page, Query};
use crate::audit::AuditRecord;
use crate::registry::Secret;

/// The schema, one migration per version; never edit one that shipped.
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    // 2: a namespace's time window. (namespace, time) serves a bounded window; with the
    // time in (namespace, id), a scan in id order checks `since` in the index and
    // reads only the records it returns.
    "
DROP INDEX records_by_namespace;
CREATE INDEX records_by_namespace ON records (namespace, id, time_unix_nanos);
CREATE INDEX records_by_namespace_time ON records (namespace, time_unix_nanos);
",
    // 3: a record is its node's: keyed by (node, id), so a node cannot take the id of
    // another node's record first and have that record dropped as a duplicate. Pages
    // follow (id, node), which the namespace index now orders by too.
    "
ALTER TABLE records DROP CONSTRAINT records_pkey;
ALTER TABLE records ADD PRIMARY KEY (node, id);
DROP INDEX records_by_node;
CREATE INDEX records_by_id ON records (id, node);
DROP INDEX records_by_namespace;
CREATE INDEX records_by_namespace ON records (namespace, id, node, time_unix_nanos);
",
    // 4: retention follows when the aggregator received a record (see the SQLite
    // schema's 4).
    "
CREATE INDEX records_by_received ON records (received_unix_nanos);
",
];

/// A batch of records as one statement: the columns as arrays ($3 is the time of
/// receipt, shared), answering with the ids that were new.
const INSERT: &str = "
INSERT INTO records
  (id, time_unix_nanos, received_unix_nanos, node, decision, namespace, image, subject, record)
SELECT id, time_unix_nanos, $3::bigint, node, decision, namespace, image, subject, record
FROM unnest($1::text[], $2::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::bytea[])
  AS batch (id, time_unix_nanos, node, decision, namespace, image, subject, record)
ON CONFLICT (node, id) DO NOTHING
RETURNING id, node";

/// Time to connect and each statement's limit (`statement_timeout`).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Connections to the server. Batches from different nodes are stored at once, each on
/// its own connection: while one waits for its commit to reach the disk the server
/// works on the next, and commits waiting together share a WAL flush.
pub const CONNECTIONS: usize = 4;

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    connections: Arc<[Mutex<Connection>]>,
    /// Where the next wait for a busy connection starts, so waiters spread out.
    next: Arc<AtomicUsize>,
    /// Where a closed connection is opened again.
    server: Arc<Server>,
}

/// The server and how to reach it.
struct Server {
    config: tokio_postgres::Config,
    tls: Option<tls::MakeRustls>,
}

/// One connection and its prepared statements.
struct Connection {
    client: Client,
    /// [`INSERT`].
    insert: Statement,
}

/// `value` as a filter column holds it. PostgreSQL's `text` cannot hold the NUL
/// character, which a CRI caller may put in a namespace or an image name: a batch holding
/// one would be refused whole, and the node would send it again and again while its
/// records piled up behind it. The column holds U+FFFD in its place; the record itself
/// (`record`, `bytea`) keeps every byte, and a filter is mapped the same way, so it still
/// finds that record.
fn column_text(value: &str) -> Cow<'_, str> {
    if value.contains('\0') {
        Cow::Owned(value.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(value)
    }
}

// === impl Connection ===

impl Connection {
    /// Connects, migrating the schema first if `migrate_first`, and prepares the
    /// statements.
    async fn open(server: &Server, migrate_first: bool) -> Result<Self, Error> {
        let mut client = connect_one(&server.config, server.tls.clone()).await?;
        if migrate_first {
            migrate(&mut client).await?;
        }
        let insert = client.prepare(INSERT).await.map_err(Error::Postgres)?;
        Ok(Self { client, insert })
    }
}

// === impl Store ===

impl Store {
    /// Connects with a libpq-style connection string (`host=/run/postgresql
    /// dbname=crigate user=crigate`, or a `postgresql://` URI), which may hold a password
    /// and is never logged, and brings the schema up to date.
    ///
    /// With `sslmode=require`, `verify-full` or `verify-ca` the connection is TLS, and
    /// the server's certificate is verified against the CA bundle (`ca_file`, or the
    /// string's `sslrootcert`) or else the system's roots, and but for `verify-ca` its
    /// name against the host (libpq's `verify-full`: crigate's `require` checks as much);
    /// the string's `sslcert` and `sslkey` are presented to a server that authenticates
    /// clients by certificate. With any other `sslmode` it is not encrypted, and no
    /// certificate may be given.
    ///
    /// # Errors
    ///
    /// The connection string is invalid, names a CA bundle twice (`sslrootcert` and
    /// `ca_file`) or without a TLS `sslmode`, the bundle cannot be used, the server
    /// cannot be reached or its certificate is not trusted, or the schema is newer than
    /// this build knows.
    pub async fn connect(url: &Secret, ca_file: Option<&Path>) -> Result<Self, Error> {
        let conninfo = conninfo::split(url.expose())
            .map_err(|error| Error::PostgresConfig(error.to_string()))?;
        let config = conninfo
            .rest
            .parse::<tokio_postgres::Config>()
            // The message names the key or value at fault, never the string itself.
            .map_err(|error| Error::PostgresConfig(error.to_string()))?;
        let ca_file = match (&conninfo.root_cert, ca_file) {
            (Some(_), Some(_)) => {
                return Err(Error::PostgresConfig(
                    "the CA bundle for PostgreSQL is given twice, as postgres_ca_file and as \
                     the connection string's sslrootcert: keep one"
                        .to_owned(),
                ))
            }
            (Some(RootCert::File(path)), None) => Some(path.as_path()),
            (Some(RootCert::System) | None, ca_file) => ca_file,
        };
        let identity = conninfo
            .identity
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()));
        let tls = match (conninfo.verify, ca_file) {
            (Some(verify), ca_file) => Some(tls::MakeRustls::new(
                tls::client_config(verify, ca_file, identity).map_err(Error::PostgresTls)?,
            )),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(Error::PostgresConfig(
                    "a CA file for PostgreSQL is given, but the connection string does not \
                     set sslmode=require, verify-ca or verify-full: the connection would not \
                     use it"
                        .to_owned(),
                ))
            }
        };
        let server = Server { config, tls };
        let mut connections = Vec::with_capacity(CONNECTIONS);
        for n in 0..CONNECTIONS {
            // The first brings the schema up to date before any statement is prepared.
            connections.push(Mutex::new(Connection::open(&server, n == 0).await?));
        }
        Ok(Self {
            connections: connections.into(),
            next: Arc::new(AtomicUsize::new(0)),
            server: Arc::new(server),
        })
    }

    /// A free connection, or else the next one in turn once it is free; opened again
    /// if the server closed it (a restart, a failover, a network cut), so the store
    /// recovers without the aggregator restarting. A batch that failed on the closed
    /// connection was not acknowledged, and its node sends it again.
    async fn connection(&self) -> Result<MutexGuard<'_, Connection>, Error> {
        let mut guard = 'found: {
            for connection in self.connections.iter() {
                if let Ok(guard) = connection.try_lock() {
                    break 'found guard;
                }
            }
            let next = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
            // `next` is below the length, which is CONNECTIONS, not zero.
            #[allow(clippy::indexing_slicing)]
            self.connections[next].lock().await
        };
        if guard.client.is_closed() {
            tracing::warn!("the postgresql connection was closed; connecting again");
            *guard = Connection::open(&self.server, false).await?;
        }
        Ok(guard)
    }

    /// As [`super::sqlite::Store::insert`]. The batch is one statement, so one round
    /// trip: its rows travel as arrays that the server unnests, and the statement
    /// commits (durably: each connection sets `synchronous_commit = on`) before it
    /// returns.
    ///
    /// # Errors
    ///
    /// The server refused the statement.
    pub async fn insert(&self, records: Arc<Vec<AuditRecord>>) -> Result<Vec<bool>, Error> {
        let received = crate::audit::now_unix_nanos();
        // A record delivered twice within one batch is stored by its first copy; the
        // statement must not see a key (node, id) twice.
        let mut seen = HashSet::with_capacity(records.len());
        let first: Vec<bool> = records
            .iter()
            .map(|r| seen.insert((r.node.as_str(), r.id.as_str())))
            .collect();
        // Rows in key order, so that statements on other connections (or replicas) that
        // share keys wait for each other's rows in the same order rather than deadlock.
        let mut rows: Vec<&AuditRecord> = records
            .iter()
            .zip(&first)
            .filter(|(_, f)| **f)
            .map(|(r, _)| r)
            .collect();
        rows.sort_unstable_by(|a, b| (&a.node, &a.id).cmp(&(&b.node, &b.id)));
        let batch = || rows.iter();
        let ids: Vec<&str> = batch().map(|r| r.id.as_str()).collect();
        let times: Vec<i64> = batch().map(|r| r.time_unix_nanos).collect();
        let nodes: Vec<&str> = batch().map(|r| r.node.as_str()).collect();
        let decisions: Vec<&str> = batch().map(|r| r.decision().code()).collect();
        let namespaces: Vec<Cow<str>> = batch().map(|r| column_text(&r.namespace)).collect();
        let images: Vec<Cow<str>> = batch().map(|r| column_text(&r.image)).collect();
        let subjects: Vec<Cow<str>> = batch().map(|r| column_text(&r.subject)).collect();
        let blobs: Vec<Vec<u8>> = batch().map(|r| r.encode_to_vec()).collect();
        let connection = self.connection().await?;
        let stored = connection
            .client
            .query(
                &connection.insert,
                &[
                    &ids,
                    &times,
                    &received,
                    &nodes,
                    &decisions,
                    &namespaces,
                    &images,
                    &subjects,
                    &blobs,
                ],
            )
            .await
            .map_err(Error::Postgres)?;
        drop(connection);
        let stored = stored
            .iter()
            .map(|row| Ok((row.try_get::<_, String>(1)?, row.try_get::<_, String>(0)?)))
            .collect::<Result<HashSet<(String, String)>, _>>()
            .map_err(Error::Postgres)?;
        Ok(records
            .iter()
            .zip(first)
            .map(|(r, first)| first && stored.contains(&(r.node.clone(), r.id.clone())))
            .collect())
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
        let (after_id, after_node) = match query.after_id.as_deref().map(super::parse_page_token) {
            Some((id, node)) => (Some(column_text(id)), node.map(column_text)),
            None => (None, None),
        };
        let namespace = query.namespace.as_deref().map(column_text);
        let node = query.node.as_deref().map(column_text);
        let image = query.image.as_deref().map(column_text);
        let id = query.id.as_deref().map(column_text);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
            &after_id,
            &query.since_unix_nanos,
            &decision,
            &namespace,
            &node,
            &image,
            &fetch,
            &query.until_unix_nanos,
            &after_node,
            &id,
        ];
        let connection = self.connection().await?;
        // Rows are read as they arrive, and no further than the page takes: a page ends
        // at its byte budget, and the rows after it are never held.
        let rows = connection
            .client
            .query_raw(
                "SELECT id, record FROM records
                 WHERE ($1::text IS NULL OR id > $1 OR (id = $1 AND node > $9))
                   AND ($2::bigint IS NULL OR time_unix_nanos >= $2)
                   AND ($3::text IS NULL OR decision = $3)
                   AND ($4::text IS NULL OR namespace = $4)
                   AND ($5::text IS NULL OR node = $5)
                   AND ($6::text IS NULL OR strpos(image, $6) > 0 OR strpos(subject, $6) > 0)
                   AND ($8::bigint IS NULL OR time_unix_nanos < $8)
                   AND ($10::text IS NULL OR id = $10)
                 ORDER BY id, node
                 LIMIT $7",
                params,
            )
            .await
            .map_err(Error::Postgres)?;
        let mut rows = std::pin::pin!(rows);
        let mut page = super::PageFill::new(limit);
        while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows)
            .await
            .map_err(Error::Postgres)?
        {
            let id: String = row.try_get(0).map_err(Error::Postgres)?;
            let blob: Vec<u8> = row.try_get(1).map_err(Error::Postgres)?;
            if !page.takes(blob.len()) {
                break;
            }
            let record = AuditRecord::decode(blob.as_slice())
                .map_err(|source| Error::Corrupt { id, source })?;
            page.push(record, blob.len());
        }
        Ok(page.finish())
    }

    /// As [`super::sqlite::Store::delete_before`].
    ///
    /// # Errors
    ///
    /// The server refused the delete.
    pub async fn delete_before(&self, unix_nanos: i64) -> Result<usize, Error> {
        let connection = self.connection().await?;
        let deleted = connection
            .client
            .execute(
                "DELETE FROM records WHERE received_unix_nanos < $1",
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

/// One connection, with the statement timeout and durable commits set.
async fn connect_one(
    config: &tokio_postgres::Config,
    tls: Option<tls::MakeRustls>,
) -> Result<Client, Error> {
    let client = match tls {
        Some(tls) => spawn_connection(config.connect(tls)).await?,
        None => spawn_connection(config.connect(NoTls)).await?,
    };
    client
        // A batch is acknowledged once its statement returns: it must be on disk by then,
        // whatever the server's default.
        .batch_execute(&format!(
            "SET statement_timeout = {}; SET synchronous_commit = on",
            TIMEOUT.as_millis()
        ))
        .await
        .map_err(Error::Postgres)?;
    Ok(client)
}

/// Connects, and runs the connection on a task of its own.
async fn spawn_connection<S, T>(
    connecting: impl std::future::Future<
        Output = Result<(Client, tokio_postgres::Connection<S, T>), tokio_postgres::Error>,
    >,
) -> Result<Client, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = tokio::time::timeout(TIMEOUT, connecting)
        .await
        .map_err(|_| Error::PostgresTimeout(TIMEOUT))?
        .map_err(Error::Postgres)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::error!(%error, "postgresql connection ended");
        }
    });
    Ok(client)
}

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
        // A migration rebuilds keys and indexes over every record: no statement timeout
        // (the connection's bounds ingest and queries) for it.
        tx.batch_execute("SET LOCAL statement_timeout = 0")
            .await
            .map_err(Error::Postgres)?;
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
