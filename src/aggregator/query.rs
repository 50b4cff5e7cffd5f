//! The query endpoint: `GET /v1/records` and `GET /metrics` ([`super::metrics`]),
//! HTTP/1.1 over TLS, bearer token.
//!
//! Parameters (all optional): `since` and `until` (nanoseconds since the Unix epoch; a
//! record decided at `since` is in, one at `until` is not), `decision`
//! (`allow`, `deny`, `audit-deny`, `error`), `id` (a record's id, as a denial names it),
//! `namespace`, `node` (exact), `image` (a
//! substring of the image or the resolved subject), `limit` (1 to 1000, default 100),
//! `page_token` (the previous page's `next_page_token`). An unknown parameter is an
//! error, so a typo never widens a query.
//!
//! The answer is [`RecordsPage`] as JSON (version 1: fields are added, never renamed).
//! Errors are `{"error": "..."}` with a 4xx or 5xx status; details are logged, not sent.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::metrics::Metrics;
use super::storage::{self, Query, Storage};
use crate::audit::{AuditRecord, DecisionKind};
use crate::registry::Secret;

/// The path of the records query.
pub const RECORDS_PATH: &str = "/v1/records";
/// The path of the Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

/// Version of the JSON format, in every answer.
pub const FORMAT_VERSION: u32 = 1;

/// One page of records.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordsPage {
    pub version: u32,
    pub records: Vec<RecordJson>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// An audit record in JSON: the protobuf's fields, enums as their stable codes.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordJson {
    pub id: String,
    pub time_unix_nanos: i64,
    pub node: String,
    pub phase: String,
    pub decision: String,
    pub action: String,
    pub api_version: String,
    pub namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub container_name: String,
    pub image: String,
    pub user_specified_image: String,
    pub subject: String,
    pub digest: String,
    pub pinned: String,
    pub verifier: String,
    pub signer: String,
    pub allowlisted_by: String,
    pub policy: String,
    pub mode: String,
    pub fingerprint: String,
    pub reason_code: String,
    pub reason: String,
    pub cached: bool,
    pub latency_micros: u64,
    pub caller_pid: i32,
    pub caller_uid: u32,
    /// Absent from an aggregator that predates image volumes.
    #[serde(default)]
    pub volume_path: String,
}

/// What the query handler needs.
pub struct QueryService {
    store: Storage,
    token: Secret,
    metrics: Arc<Metrics>,
    /// Queries running in the database at once ([`QUERIES`]).
    running: Arc<tokio::sync::Semaphore>,
}

/// Queries the database runs at once. A query may read many records (a filter no index
/// serves), and it runs to its end even when its client has gone; past this, queries
/// wait their turn, and the database's threads and connections stay free for the nodes'
/// batches.
pub const QUERIES: usize = 2;

// === impl QueryService ===

impl QueryService {
    pub fn new(store: Storage, token: Secret, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            store,
            token,
            metrics,
            running: Arc::new(tokio::sync::Semaphore::new(QUERIES)),
        })
    }

    /// Answers one HTTP request.
    pub async fn handle<B>(
        self: Arc<Self>,
        request: Request<B>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        Ok(self.answer(request).await.unwrap_or_else(|e| e))
    }

    async fn answer<B>(
        &self,
        request: Request<B>,
    ) -> Result<Response<Full<Bytes>>, Response<Full<Bytes>>> {
        let path = request.uri().path();
        if path != RECORDS_PATH && path != METRICS_PATH {
            return Err(error(
                StatusCode::NOT_FOUND,
                "no such endpoint; try GET /v1/records",
            ));
        }
        if request.method() != Method::GET {
            return Err(error(StatusCode::METHOD_NOT_ALLOWED, "use GET"));
        }
        if !self.authorized(&request) {
            tracing::warn!(path, "query refused: missing or wrong bearer token");
            let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            // The connection is not kept for a caller without the token: connections
            // are few (see `QUERY_CONNECTIONS`), and one kept alive would hold one.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return Err(response);
        }
        if request.uri().path() == METRICS_PATH {
            let mut response = Response::new(Full::new(Bytes::from(self.metrics.render())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return Ok(response);
        }
        let query = parse_query(request.uri().query().unwrap_or(""))
            .map_err(|reason| error(StatusCode::BAD_REQUEST, &reason))?;
        let failed = || {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the query failed; see the aggregator's log",
            )
        };
        let permit = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| failed())?;
        // A task of its own, holding its turn until the database is done with it, even
        // if this request is dropped (its client gone) meanwhile.
        let store = self.store.clone();
        let page = tokio::spawn(async move {
            let _permit = permit;
            store.query(query).await
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "query task failed");
            failed()
        })?
        .map_err(|e| {
            tracing::error!(error = %e, "query failed");
            failed()
        })?;
        let body = RecordsPage {
            version: FORMAT_VERSION,
            records: page.records.iter().map(RecordJson::from).collect(),
            next_page_token: page.next_after_id,
        };
        Ok(json(StatusCode::OK, &body))
    }

    /// The request carries `Authorization: Bearer <token>` with the configured token,
    /// compared in constant time.
    fn authorized<B>(&self, request: &Request<B>) -> bool {
        let Some(value) = request.headers().get(header::AUTHORIZATION) else {
            return false;
        };
        let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
            return false;
        };
        bool::from(given.ct_eq(self.token.expose().as_bytes()))
    }
}

/// Parses the query string into a [`Query`]; the error is for the client.
fn parse_query(raw: &str) -> Result<Query, String> {
    let mut query = Query {
        limit: storage::DEFAULT_PAGE,
        ..Default::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        // Each parameter is one condition, all of them ANDed: a repeated one, which a
        // reader might take for an OR, is refused rather than one of its values dropped.
        if !seen.insert(key.clone()) {
            return Err(format!("{key}: given more than once"));
        }
        let value = value.into_owned();
        match &*key {
            "since" => {
                query.since_unix_nanos =
                    Some(value.parse().map_err(|_| {
                        "since: expected nanoseconds since the Unix epoch".to_owned()
                    })?);
            }
            "until" => {
                query.until_unix_nanos =
                    Some(value.parse().map_err(|_| {
                        "until: expected nanoseconds since the Unix epoch".to_owned()
                    })?);
            }
            "decision" => {
                query.decision = Some(DecisionKind::from_code(&value).ok_or_else(|| {
                    "decision: expected allow, deny, audit-deny, error or unspecified".to_owned()
                })?);
            }
            "id" => query.id = Some(value),
            "namespace" => query.namespace = Some(value),
            "node" => query.node = Some(value),
            "image" => query.image = Some(value),
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=storage::MAX_PAGE).contains(n))
                    .ok_or_else(|| format!("limit: expected 1 to {}", storage::MAX_PAGE))?;
            }
            "page_token" => {
                // The node part is a bound parameter, whatever name a certificate gave.
                let (id, _) = storage::parse_page_token(&value);
                let canonical =
                    uuid::Uuid::parse_str(id).is_ok_and(|uuid| uuid.hyphenated().to_string() == id);
                if !canonical {
                    return Err("page_token: not a token from a previous page".to_owned());
                }
                query.after_id = Some(value);
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(query)
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}

// === impl RecordJson ===

impl From<&AuditRecord> for RecordJson {
    fn from(r: &AuditRecord) -> Self {
        Self {
            id: r.id.clone(),
            time_unix_nanos: r.time_unix_nanos,
            node: r.node.clone(),
            phase: r.phase().code().to_owned(),
            decision: r.decision().code().to_owned(),
            action: r.action().code().to_owned(),
            api_version: r.api_version.clone(),
            namespace: r.namespace.clone(),
            pod_name: r.pod_name.clone(),
            pod_uid: r.pod_uid.clone(),
            container_name: r.container_name.clone(),
            image: r.image.clone(),
            user_specified_image: r.user_specified_image.clone(),
            subject: r.subject.clone(),
            digest: r.digest.clone(),
            pinned: r.pinned.clone(),
            verifier: r.verifier.clone(),
            signer: r.signer.clone(),
            allowlisted_by: r.allowlisted_by.clone(),
            policy: r.policy.clone(),
            mode: r.mode.clone(),
            fingerprint: r.fingerprint.clone(),
            reason_code: r.reason_code.clone(),
            reason: r.reason.clone(),
            cached: r.cached,
            latency_micros: r.latency_micros,
            caller_pid: r.caller_pid,
            volume_path: r.volume_path.clone(),
            caller_uid: r.caller_uid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(dir: &std::path::Path) -> Arc<QueryService> {
        QueryService::new(
            Storage::Sqlite(storage::Store::open(&dir.join("audit.db")).unwrap()),
            Secret::new("s3cret-token"),
            Arc::default(),
        )
    }

    fn get(uri: &str, token: Option<&str>) -> Request<()> {
        let mut builder = Request::get(uri);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        builder.body(()).unwrap()
    }

    #[tokio::test]
    async fn the_token_is_required_and_compared_whole() {
        let dir = tempfile::tempdir().unwrap();
        let service = service(dir.path());
        for token in [
            None,
            Some("wrong"),
            Some("s3cret-toke"),
            Some("s3cret-token2"),
        ] {
            let response = service
                .clone()
                .handle(get("/v1/records", token))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        }
        let response = service
            .clone()
            .handle(get("/v1/records", Some("s3cret-token")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        for (token, status) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("s3cret-token"), StatusCode::OK),
        ] {
            let response = service
                .clone()
                .handle(get("/metrics", token))
                .await
                .unwrap();
            assert_eq!(response.status(), status);
        }
    }

    #[test]
    fn an_image_volumes_path_is_in_the_json_and_optional_when_read() {
        let record = AuditRecord {
            id: "01".to_owned(),
            volume_path: "/models".to_owned(),
            ..Default::default()
        };
        let json = serde_json::to_value(RecordJson::from(&record)).unwrap();
        assert_eq!(json["volume_path"], "/models");
        // An aggregator that predates image volumes sends no such field.
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("volume_path");
        let read: RecordJson = serde_json::from_value(old).unwrap();
        assert_eq!(read.volume_path, "");
        let read: RecordJson = serde_json::from_value(json).unwrap();
        assert_eq!(read.volume_path, "/models");
    }

    #[test]
    fn parameters_parse_and_typos_are_refused() {
        let query = parse_query("since=5&until=9&decision=deny&namespace=prod&limit=1000").unwrap();
        assert_eq!(query.since_unix_nanos, Some(5));
        let by_id = parse_query("id=01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
        assert_eq!(
            by_id.id.as_deref(),
            Some("01890a5d-ac96-774b-bcce-b302099a8057")
        );
        assert_eq!(query.until_unix_nanos, Some(9));
        assert!(parse_query("until=soon").is_err());
        assert_eq!(query.decision, Some(DecisionKind::Deny));
        assert_eq!(query.limit, 1000);
        assert!(parse_query("limit=0").is_err());
        assert!(parse_query("limit=1001").is_err());
        assert!(parse_query("limit=1").is_ok());
        assert!(parse_query("decison=deny").is_err());
        assert!(parse_query("decision=maybe").is_err());
        // Filed so by an aggregator that does not know a newer node's decision kind.
        assert_eq!(
            parse_query("decision=unspecified").unwrap().decision,
            Some(DecisionKind::Unspecified)
        );
        // Repeated, a parameter would read as an OR it is not.
        for repeated in [
            "decision=deny&decision=error",
            "namespace=a&since=1&namespace=b",
        ] {
            let refused = parse_query(repeated).unwrap_err();
            assert!(
                refused.contains("given more than once"),
                "{repeated}: {refused}"
            );
        }
        assert!(parse_query("page_token=x").is_err());
        let id = "01890a5d-ac96-774b-bcce-b302099a8057";
        for (token, ok) in [
            (id.to_owned(), true),
            (format!("{id}/node-a"), true),
            (format!("{id}/node%20a"), true),
            ("x/node-a".to_owned(), false),
            // A page ends at a stored id, which is always in the form nodes write; an id
            // in another spelling sorts elsewhere, and would resume the wrong page.
            (format!("{}/node-a", id.to_uppercase()), false),
            (format!("{}/node-a", id.replace('-', "")), false),
        ] {
            assert_eq!(
                parse_query(&format!("page_token={token}")).is_ok(),
                ok,
                "{token}"
            );
        }
    }
}
