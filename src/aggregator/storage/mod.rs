//! Where the aggregator keeps records: the query model shared by every backend, the
//! SQLite backend ([`sqlite`], the default) and the PostgreSQL one ([`postgres`]).

use std::sync::Arc;

use crate::audit::{AuditRecord, DecisionKind};

pub mod postgres;
pub mod sqlite;

pub use sqlite::Store;

/// The configured backend.
#[derive(Clone, Debug)]
pub enum Storage {
    Sqlite(sqlite::Store),
    Postgres(postgres::Store),
}

/// Most records one query page returns.
pub const MAX_PAGE: usize = 1000;
/// Records per page when the query names no limit.
pub const DEFAULT_PAGE: usize = 100;
/// Encoded bytes of records a page takes before it ends, whatever its limit. A record is
/// a few hundred bytes, but a node may send up to its spool's limit, 256 KiB, and a
/// page of [`MAX_PAGE`] such records would be held several times over (records, their
/// JSON) by the aggregator answering it.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create the database directory {path}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database {path} has schema version {found}, newer than this build's {known}")]
    NewerSchema {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("stored record {id} cannot be decoded")]
    Corrupt {
        id: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("the database task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("postgresql")]
    Postgres(#[source] tokio_postgres::Error),
    #[error("postgresql: invalid connection string: {0}")]
    PostgresConfig(String),
    #[error("postgresql: TLS material")]
    PostgresTls(#[source] crate::audit::tls::Error),
    #[error("postgresql did not answer within {0:?}")]
    PostgresTimeout(std::time::Duration),
}

// === impl Storage ===

impl Storage {
    /// Stores `records`, returning whether each was new; see [`sqlite::Store::insert`].
    ///
    /// # Errors
    ///
    /// The backend refused the transaction.
    pub async fn insert(&self, records: Arc<Vec<AuditRecord>>) -> Result<Vec<bool>, Error> {
        match self {
            Storage::Sqlite(store) => store.insert(records).await,
            Storage::Postgres(store) => store.insert(records).await,
        }
    }

    /// One page of records matching `query`.
    ///
    /// # Errors
    ///
    /// The backend refused the query.
    pub async fn query(&self, query: Query) -> Result<Page, Error> {
        match self {
            Storage::Sqlite(store) => store.query(query).await,
            Storage::Postgres(store) => store.query(query).await,
        }
    }

    /// Deletes records received before `unix_nanos`, by the aggregator's clock.
    ///
    /// # Errors
    ///
    /// The backend refused the delete.
    pub async fn delete_before(&self, unix_nanos: i64) -> Result<usize, Error> {
        match self {
            Storage::Sqlite(store) => store.delete_before(unix_nanos).await,
            Storage::Postgres(store) => store.delete_before(unix_nanos).await,
        }
    }
}

/// A query over stored records: every filter that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Records decided at or after this time, nanoseconds since the Unix epoch.
    pub since_unix_nanos: Option<i64>,
    /// Records decided before this time, nanoseconds since the Unix epoch.
    pub until_unix_nanos: Option<i64>,
    pub decision: Option<DecisionKind>,
    /// The record's id: the one a denial names (`audit id ...`).
    pub id: Option<String>,
    pub namespace: Option<String>,
    pub node: Option<String>,
    /// A substring of the image as sent or of the resolved subject.
    pub image: Option<String>,
    /// Records per page, 1 to [`MAX_PAGE`].
    pub limit: usize,
    /// Records after the previous page's last ([`Page::next_after_id`]): a page token.
    pub after_id: Option<String>,
}

/// One page of a query's answer, in id (time) order, then node.
#[derive(Debug, Default)]
pub struct Page {
    pub records: Vec<AuditRecord>,
    /// The page token to continue after, when more records match: the last record's
    /// id and node ([`page_token`]).
    pub next_after_id: Option<String>,
}

/// A page being filled from the rows a query read, in order: it takes records up to its
/// limit and [`MAX_PAGE_BYTES`], and at least one.
pub(crate) struct PageFill {
    page: Page,
    limit: usize,
    bytes: usize,
}

impl PageFill {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            page: Page::default(),
            limit,
            bytes: 0,
        }
    }

    /// Whether the next row, of `size` encoded bytes, belongs on this page. When it does
    /// not, the page ends, its token naming where the next one starts.
    pub(crate) fn takes(&mut self, size: usize) -> bool {
        let full = self.page.records.len() == self.limit
            || (!self.page.records.is_empty() && self.bytes + size > MAX_PAGE_BYTES);
        if full {
            self.page.next_after_id = self.page.records.last().map(page_token);
        }
        !full
    }

    pub(crate) fn push(&mut self, record: AuditRecord, size: usize) {
        self.bytes += size;
        self.page.records.push(record);
    }

    pub(crate) fn finish(self) -> Page {
        self.page
    }
}

/// The page token of `record`, the last of a page: `<id>/<node>`. Records are keyed by
/// node and id, and two nodes' records may share an id, so the id alone cannot say
/// where a page ended. An id holds no `/`, so the first `/` ends it whatever the node
/// is called.
pub(crate) fn page_token(record: &AuditRecord) -> String {
    format!("{}/{}", record.id, record.node)
}

/// A page token's id and node; a token without a node (as earlier versions gave) is an
/// id, continued after.
pub(crate) fn parse_page_token(token: &str) -> (&str, Option<&str>) {
    match token.split_once('/') {
        Some((id, node)) => (id, Some(node)),
        None => (token, None),
    }
}
