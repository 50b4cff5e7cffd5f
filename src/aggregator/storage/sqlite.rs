//! The SQLite backend: one file in WAL mode, a writer connection and a reader
//! connection, each used from the blocking pool only.
//!
//! Ingest is `INSERT ... ON CONFLICT(node, id) DO NOTHING` in one transaction per batch with
//! `synchronous = FULL`, so a batch acknowledged to a node is on disk, and a record
//! delivered twice (at-least-once) is stored once. The schema is versioned: each entry
//! of `MIGRATIONS` runs once, in order, recorded in `schema_version`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};

use super::{Error, Page, Query};
use crate::audit::AuditRecord;

/// The schema, one migration per version (version = index + 1). Never edit one that
/// shipped; add the next.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE records (
    id TEXT PRIMARY KEY NOT NULL,
    time_unix_nanos INTEGER NOT NULL,
    received_unix_nanos INTEGER NOT NULL,
    node TEXT NOT NULL,
    decision TEXT NOT NULL,
    namespace TEXT NOT NULL,
    image TEXT NOT NULL,
    subject TEXT NOT NULL,
    record BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX records_by_time ON records (time_unix_nanos);
CREATE INDEX records_by_node ON records (node, id);
CREATE INDEX records_by_namespace ON records (namespace, id);
",
    // 2: a namespace's time window. (namespace, time) serves a bounded window; with the
    // time in (namespace, id), a scan in id order checks `since` in the index and
    // reads only the records it returns.
    "
DROP INDEX records_by_namespace;
CREATE INDEX records_by_namespace ON records (namespace, id, time_unix_nanos);
CREATE INDEX records_by_namespace_time ON records (namespace, time_unix_nanos);
",
    // 3: a record is its node's: keyed by (node, id), so a node cannot take the id of
    // another node's record first and have that record dropped as a duplicate. SQLite
    // cannot change a primary key, so the table is rebuilt. Pages follow (id, node),
    // which the namespace index now orders by too.
    "
CREATE TABLE records_v3 (
    id TEXT NOT NULL,
    time_unix_nanos INTEGER NOT NULL,
    received_unix_nanos INTEGER NOT NULL,
    node TEXT NOT NULL,
    decision TEXT NOT NULL,
    namespace TEXT NOT NULL,
    image TEXT NOT NULL,
    subject TEXT NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (node, id)
) WITHOUT ROWID;
INSERT INTO records_v3
  SELECT id, time_unix_nanos, received_unix_nanos, node, decision, namespace, image,
         subject, record
  FROM records;
DROP TABLE records;
ALTER TABLE records_v3 RENAME TO records;
CREATE INDEX records_by_id ON records (id, node);
CREATE INDEX records_by_time ON records (time_unix_nanos);
CREATE INDEX records_by_namespace ON records (namespace, id, node, time_unix_nanos);
CREATE INDEX records_by_namespace_time ON records (namespace, time_unix_nanos);
",
    // 4: retention follows when the aggregator received a record, by its own clock: a
    // node's clock set back (a reset RTC before NTP) would have its records deleted at
    // the next pass, one set ahead would keep them for ever.
    "
CREATE INDEX records_by_received ON records (received_unix_nanos);
",
];

/// How long a statement waits for the other connection's lock (a retention delete,
/// a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The record store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

// === impl Store ===

impl Store {
    /// Opens (creating) the database at `path` and brings its schema up to date.
    /// Blocking: call before serving or from `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened, or its schema is newer than this build knows.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let fail = |source| Error::Sqlite {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut writer = Connection::open(path).map_err(fail)?;
        writer.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(fail)?;
        migrate(&mut writer, path)?;
        let reader = Connection::open(path).map_err(fail)?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
            }),
        })
    }

    /// Stores `records` (those already stored are left as they are) and returns, once
    /// the transaction is durable, whether each was new.
    ///
    /// # Errors
    ///
    /// The database refused the transaction.
    pub async fn insert(&self, records: Arc<Vec<AuditRecord>>) -> Result<Vec<bool>, Error> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.insert(records))
            .await
            .map_err(Error::Task)?
    }

    /// One page of records matching `query`.
    ///
    /// # Errors
    ///
    /// The database refused the query, or a stored record does not decode.
    pub async fn query(&self, query: Query) -> Result<Page, Error> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.query(&query))
            .await
            .map_err(Error::Task)?
    }

    /// Deletes records received before `unix_nanos` (the aggregator's clock, whatever the
    /// node's said), returning how many went.
    ///
    /// # Errors
    ///
    /// The database refused the delete.
    pub async fn delete_before(&self, unix_nanos: i64) -> Result<usize, Error> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            inner
                .writer()
                .execute(
                    "DELETE FROM records WHERE received_unix_nanos < ?1",
                    params![unix_nanos],
                )
                .map_err(|source| inner.error(source))
        })
        .await
        .map_err(Error::Task)?
    }

    /// Every stored id, in order (tests and diagnostics). Blocking.
    ///
    /// # Errors
    ///
    /// The database refused the query.
    pub fn ids(&self) -> Result<Vec<String>, Error> {
        let conn = self.inner.reader();
        let mut statement = conn
            .prepare("SELECT id FROM records ORDER BY id")
            .map_err(|source| self.inner.error(source))?;
        let rows = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(|source| self.inner.error(source))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|source| self.inner.error(source))
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

// === impl Inner ===

impl Inner {
    fn error(&self, source: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-statement leaves SQLite's own state consistent; the connection
        // is still usable.
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, records: Arc<Vec<AuditRecord>>) -> Result<Vec<bool>, Error> {
        let received = crate::audit::now_unix_nanos();
        let mut new = Vec::with_capacity(records.len());
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(|e| self.error(e))?;
        {
            let mut statement = tx
                .prepare_cached(
                    "INSERT INTO records
                       (id, time_unix_nanos, received_unix_nanos, node, decision, namespace,
                        image, subject, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (node, id) DO NOTHING",
                )
                .map_err(|e| self.error(e))?;
            for record in records.iter() {
                let changed = statement
                    .execute(params![
                        record.id,
                        record.time_unix_nanos,
                        received,
                        record.node,
                        record.decision().code(),
                        record.namespace,
                        record.image,
                        record.subject,
                        record.encode_to_vec(),
                    ])
                    .map_err(|e| self.error(e))?;
                new.push(changed == 1);
            }
        }
        tx.commit().map_err(|e| self.error(e))?;
        Ok(new)
    }

    fn query(&self, query: &Query) -> Result<Page, Error> {
        let limit = query.limit.clamp(1, super::MAX_PAGE);
        // One more than asked, to know whether another page follows.
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let decision = query.decision.map(|d| d.code());
        let after = query.after_id.as_deref().map(super::parse_page_token);
        let (sql, params) = select(query, &after, decision.as_ref(), &fetch);
        let conn = self.reader();
        let mut statement = conn.prepare_cached(&sql).map_err(|e| self.error(e))?;
        let rows = statement
            .query_map(params.as_slice(), |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .map_err(|e| self.error(e))?;
        let mut page = super::PageFill::new(limit);
        for row in rows {
            let (id, blob) = row.map_err(|e| self.error(e))?;
            if !page.takes(blob.len()) {
                break;
            }
            let record = AuditRecord::decode(blob.as_slice()).map_err(|source| Error::Corrupt {
                id: id.clone(),
                source,
            })?;
            page.push(record, blob.len());
        }
        Ok(page.finish())
    }
}

/// The statement of `query` and its parameters. Only the filters that are set become
/// terms: SQLite plans a statement once, whatever it is bound to, and cannot serve a
/// `(?1 IS NULL OR namespace = ?1)` term from an index, so such a statement scanned
/// every record in id order to find a namespace's last hour.
///
/// The ids are chosen first, in a subquery, and only their records are read: filtered
/// by namespace and time, the subquery reads the (namespace, id, time) index alone, in
/// id order, testing the time there, and no record it does not return. Read through
/// the (namespace, time) index instead, every record of the window would be sorted to
/// find the oldest page: half a second for a window of days over 10 million records.
fn select<'q>(
    query: &'q Query,
    after: &'q Option<(&'q str, Option<&'q str>)>,
    decision: Option<&'q &'static str>,
    fetch: &'q i64,
) -> (String, Vec<&'q dyn rusqlite::ToSql>) {
    let mut sql = String::from("SELECT id, node FROM records WHERE true");
    let mut params: Vec<&dyn rusqlite::ToSql> = Vec::new();
    if let Some((id, node)) = &after {
        // The range stays on `id`, which the indexes order by.
        sql.push_str(" AND id >= ?");
        params.push(id);
        match node {
            Some(node) => {
                sql.push_str(" AND (id > ? OR node > ?)");
                params.push(id);
                params.push(node);
            }
            None => {
                sql.push_str(" AND id > ?");
                params.push(id);
            }
        }
    }
    if let Some(since) = &query.since_unix_nanos {
        sql.push_str(" AND time_unix_nanos >= ?");
        params.push(since);
    }
    if let Some(until) = &query.until_unix_nanos {
        sql.push_str(" AND time_unix_nanos < ?");
        params.push(until);
    }
    if let Some(decision) = decision {
        sql.push_str(" AND decision = ?");
        params.push(decision);
    }
    if let Some(id) = &query.id {
        sql.push_str(" AND id = ?");
        params.push(id);
    }
    if let Some(namespace) = &query.namespace {
        sql.push_str(" AND namespace = ?");
        params.push(namespace);
    }
    if let Some(node) = &query.node {
        sql.push_str(" AND node = ?");
        params.push(node);
    }
    if let Some(image) = &query.image {
        sql.push_str(" AND (instr(image, ?) > 0 OR instr(subject, ?) > 0)");
        params.push(image);
        params.push(image);
    }
    sql.push_str(" ORDER BY id, node LIMIT ?");
    params.push(fetch);
    let sql =
        format!("SELECT id, record FROM records WHERE (id, node) IN ({sql}) ORDER BY id, node");
    (sql, params)
}

/// Brings the schema of `conn` to the last of [`MIGRATIONS`].
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    let fail = |source| Error::Sqlite {
        path: path.display().to_string(),
        source,
    };
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(fail)?;
    let current: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .optional()
        .map_err(fail)?
        .flatten()
        .unwrap_or(0);
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(Error::NewerSchema {
            path: path.display().to_string(),
            found: current,
            known,
        });
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let tx = conn.transaction().map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![version],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(database = %path.display(), version, "database schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregator::storage::Query;
    use crate::audit::{new_id, DecisionKind};

    fn record(node: &str, namespace: &str, decision: DecisionKind, time: i64) -> AuditRecord {
        let mut record = AuditRecord {
            id: new_id(),
            node: node.to_owned(),
            namespace: namespace.to_owned(),
            image: format!("registry.example/{namespace}/app:v1"),
            time_unix_nanos: time,
            ..Default::default()
        };
        record.set_decision(decision);
        record
    }

    /// Every record, read in pages of `limit` that each continue after the last.
    async fn every_page(store: &Store, limit: usize) -> Vec<AuditRecord> {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .query(Query {
                    limit,
                    after_id: after.take(),
                    ..Default::default()
                })
                .await
                .unwrap();
            seen.extend(page.records);
            match page.next_after_id {
                Some(token) => after = Some(token),
                None => return seen,
            }
        }
    }

    /// Large records (a node may send up to its spool's 256 KiB limit) end a page at its
    /// byte budget, whatever its record limit; the next page goes on where it ended.
    #[tokio::test]
    async fn a_page_of_large_records_ends_at_its_byte_budget_and_the_next_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).unwrap();
        let batch: Vec<_> = (0..40)
            .map(|n| AuditRecord {
                reason: "x".repeat(200 * 1024),
                ..record("node-1", "prod", DecisionKind::Deny, n)
            })
            .collect();
        let ids: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
        store.insert(Arc::new(batch)).await.unwrap();
        let first = store
            .query(Query {
                limit: super::super::MAX_PAGE,
                ..Default::default()
            })
            .await
            .unwrap();
        let bytes: usize = first.records.iter().map(prost::Message::encoded_len).sum();
        assert!(bytes <= super::super::MAX_PAGE_BYTES, "{bytes} bytes");
        assert_eq!(
            first.records.len(),
            super::super::MAX_PAGE_BYTES / (200 * 1024 + 100)
        );
        assert!(first.next_after_id.is_some());
        let all = every_page(&store, super::super::MAX_PAGE).await;
        let seen: Vec<String> = all.into_iter().map(|r| r.id).collect();
        assert_eq!(seen, ids);
    }

    #[tokio::test]
    async fn a_record_delivered_twice_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).unwrap();
        let batch: Vec<_> = (0..10)
            .map(|n| record("node-1", "prod", DecisionKind::Allow, n))
            .collect();
        let ids: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
        let batch = Arc::new(batch);
        assert_eq!(store.insert(batch.clone()).await.unwrap(), vec![true; 10]);
        assert_eq!(store.insert(batch).await.unwrap(), vec![false; 10]);
        assert_eq!(store.ids().unwrap(), ids);
    }

    #[tokio::test]
    async fn reopening_keeps_records_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let r = record("node-1", "prod", DecisionKind::Deny, 1);
        Store::open(&path)
            .unwrap()
            .insert(Arc::new(vec![r.clone()]))
            .await
            .unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.ids().unwrap(), vec![r.id]);
        let versions: i64 = store
            .inner
            .reader()
            .query_row("SELECT COUNT(*) FROM schema_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(versions, MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn queries_filter_and_page_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).unwrap();
        let mut all = Vec::new();
        for n in 0..25 {
            let decision = if n % 5 == 0 {
                DecisionKind::Deny
            } else {
                DecisionKind::Allow
            };
            let node = if n % 2 == 0 { "node-a" } else { "node-b" };
            all.push(record(node, "prod", decision, 1000 + n));
        }
        store.insert(Arc::new(all.clone())).await.unwrap();
        let denies = store
            .query(Query {
                decision: Some(DecisionKind::Deny),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(denies.records.len(), 5);
        assert!(denies.next_after_id.is_none());

        // Pages of 10 cover everything once, in id order.
        let seen: Vec<_> = every_page(&store, 10)
            .await
            .into_iter()
            .map(|r| r.id)
            .collect();
        let expected: Vec<_> = all.iter().map(|r| r.id.clone()).collect();
        assert_eq!(seen, expected);

        let recent_b = store
            .query(Query {
                since_unix_nanos: Some(1020),
                node: Some("node-b".to_owned()),
                image: Some("prod/app".to_owned()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(recent_b.records.len(), 2); // 1021, 1023

        let window = store
            .query(Query {
                since_unix_nanos: Some(1005),
                until_unix_nanos: Some(1010),
                namespace: Some("prod".to_owned()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let times: Vec<i64> = window.records.iter().map(|r| r.time_unix_nanos).collect();
        assert_eq!(times, vec![1005, 1006, 1007, 1008, 1009]);
    }

    #[test]
    fn a_namespace_and_time_window_is_read_from_an_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).unwrap();
        let query = Query {
            namespace: Some("prod".to_owned()),
            since_unix_nanos: Some(1000),
            limit: 100,
            ..Default::default()
        };
        let fetch = 101;
        let (sql, params) = select(&query, &None, None, &fetch);
        let conn = store.inner.reader();
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> = statement
            .query_map(params.as_slice(), |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(
                |step| step.contains("USING COVERING INDEX records_by_namespace (namespace=?)")
            ),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn a_record_is_its_nodes_and_another_node_cannot_take_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).unwrap();
        let first = record("node-a", "prod", DecisionKind::Deny, 1);
        let mut taken = record("node-b", "prod", DecisionKind::Allow, 2);
        taken.id = first.id.clone();
        let later = record("node-a", "prod", DecisionKind::Allow, 3);
        // node-b stores node-a's id first; node-a's record is stored all the same.
        assert_eq!(
            store.insert(Arc::new(vec![taken.clone()])).await.unwrap(),
            [true]
        );
        assert_eq!(
            store
                .insert(Arc::new(vec![first.clone(), later.clone()]))
                .await
                .unwrap(),
            [true, true]
        );
        assert_eq!(
            store.insert(Arc::new(vec![first.clone()])).await.unwrap(),
            [false]
        );
        // Pages of one meet each record once, the two sharing an id in node order.
        let seen: Vec<_> = every_page(&store, 1)
            .await
            .into_iter()
            .map(|r| (r.id, r.node))
            .collect();
        let mut expected = vec![
            (first.id.clone(), "node-a".to_owned()),
            (first.id.clone(), "node-b".to_owned()),
            (later.id.clone(), "node-a".to_owned()),
        ];
        expected.sort();
        assert_eq!(seen, expected);
        // A node's query sees its own record under the shared id, not the other's.
        let a = store
            .query(Query {
                node: Some("node-a".to_owned()),
                decision: Some(DecisionKind::Deny),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(a.records, [first]);
    }

    #[tokio::test]
    async fn a_version_2_database_is_migrated_keeping_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let kept = record("node-a", "prod", DecisionKind::Deny, 7);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL);
                 INSERT INTO schema_version VALUES (1), (2);",
            )
            .unwrap();
            for sql in &MIGRATIONS[..2] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute(
                "INSERT INTO records VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    kept.id,
                    kept.time_unix_nanos,
                    1,
                    kept.node,
                    kept.decision().code(),
                    kept.namespace,
                    kept.image,
                    kept.subject,
                    kept.encode_to_vec(),
                ],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let page = store
            .query(Query {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.records, std::slice::from_ref(&kept));
        let mut other = record("node-b", "prod", DecisionKind::Allow, 8);
        other.id = kept.id.clone();
        assert_eq!(store.insert(Arc::new(vec![other])).await.unwrap(), [true]);
        let version: i64 = store
            .inner
            .reader()
            .query_row("SELECT MAX(version) FROM schema_version", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(version, i64::try_from(MIGRATIONS.len()).unwrap());
        let received_index: i64 = store
            .inner
            .reader()
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'records_by_received'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(received_index, 1);
    }

    #[tokio::test]
    async fn retention_follows_when_records_arrived_not_the_nodes_clock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).unwrap();
        // One node's clock far behind (a reset RTC), another's far ahead.
        let behind = record("n", "ns", DecisionKind::Allow, 10);
        let ahead = record("n", "ns", DecisionKind::Allow, i64::MAX / 2);
        store
            .insert(Arc::new(vec![behind.clone(), ahead.clone()]))
            .await
            .unwrap();
        let between = crate::audit::now_unix_nanos();
        let later = record("n", "ns", DecisionKind::Allow, 20);
        store.insert(Arc::new(vec![later.clone()])).await.unwrap();
        let hour = 3_600_000_000_000;
        assert_eq!(store.delete_before(between - hour).await.unwrap(), 0);
        assert_eq!(store.ids().unwrap().len(), 3);
        assert_eq!(store.delete_before(between).await.unwrap(), 2);
        assert_eq!(store.ids().unwrap(), vec![later.id]);
    }
}
