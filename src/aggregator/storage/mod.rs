//! Where the aggregator keeps records: the query model shared by every backend, and the
//! SQLite backend ([`sqlite`]).

use crate::audit::{AuditRecord, DecisionKind};

pub mod sqlite;

pub use sqlite::Store;

/// Most records one query page returns.
pub const MAX_PAGE: usize = 1000;
/// Records per page when the query names no limit.
pub const DEFAULT_PAGE: usize = 100;

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
}

/// A query over stored records: every filter that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Records decided at or after this time, nanoseconds since the Unix epoch.
    pub since_unix_nanos: Option<i64>,
    pub decision: Option<DecisionKind>,
    pub namespace: Option<String>,
    pub node: Option<String>,
    /// A substring of the image as sent or of the resolved subject.
    pub image: Option<String>,
    /// Records per page, 1 to [`MAX_PAGE`].
    pub limit: usize,
    /// Records with ids after this one (the previous page's last id).
    pub after_id: Option<String>,
}

/// One page of a query's answer, in id (time) order.
#[derive(Debug, Default)]
pub struct Page {
    pub records: Vec<AuditRecord>,
    /// The id to continue after, when more records match.
    pub next_after_id: Option<String>,
}
