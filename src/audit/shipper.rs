//! The node's shipper: streams spooled records to the aggregator and advances the spool
//! cursor as the aggregator acknowledges them.
//!
//! One batch is in flight at a time: the shipper reads up to [`BATCH_RECORDS`] records
//! from the cursor, sends them on the `AuditIngest.Ship` stream, waits for the answer
//! naming exactly their ids, then acknowledges them in the spool (an fsynced cursor).
//! A record is therefore sent at least once; the aggregator stores it once. Any failure
//! (connect, TLS, stream, a late or wrong answer) ends the stream; the shipper connects
//! again after an exponential backoff with jitter and resumes from the cursor, which
//! also survives restarts.
//!
//! It runs as a task on the daemon's runtime; spool reads and cursor writes go to the
//! blocking pool.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use super::proto::audit_ingest_client::AuditIngestClient;
use super::proto::ShipRequest;
use super::spool::{self, Spool};
use super::tls;
use super::AuditRecord;
use crate::config::Shipping;
use crate::telemetry::ErrorChain;

/// Most records per batch: large enough that a backlog drains quickly, small enough that
/// one batch is one short SQLite transaction.
pub const BATCH_RECORDS: usize = 500;
/// About the most bytes of records per batch (it may pass this by one record, at most
/// 256 KiB), well under the aggregator's 8 MiB message limit.
pub const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Time to connect and finish the TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the aggregator has to acknowledge a batch before the stream is abandoned.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// With nothing to send, the spool is checked this often even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// First and longest wait between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Largest answer decoded: a batch's ids, a few tens of kilobytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The aggregator's address: `https://host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AggregatorUrl {
    host: String,
    port: u16,
}

/// Why shipping stopped; the shipper logs it and connects again.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("TLS material")]
    Tls(#[from] tls::Error),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("cannot connect to the aggregator at {url}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the aggregator refused the stream")]
    Refused(#[source] tonic::Status),
    #[error("the aggregator closed the stream")]
    Closed,
    #[error("the aggregator did not acknowledge batch {batch} within {timeout:?}")]
    AckTimeout { batch: u64, timeout: Duration },
    #[error(
        "the aggregator answered batch {got} with {ids} ids; expected batch {expected} with {want}"
    )]
    Mismatch {
        expected: u64,
        got: u64,
        want: usize,
        ids: usize,
    },
    #[error(
        "the client certificate {cert} names node {named:?}, but this node's records carry \
         {node:?}: the aggregator would refuse every record (set [audit] node, or issue the \
         certificate with a DNS SAN of {node:?})"
    )]
    NodeMismatch {
        cert: std::path::PathBuf,
        named: Option<String>,
        node: String,
    },
    #[error("spool")]
    Spool(#[from] spool::Error),
    #[error("a spool task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Why an `aggregator` value is not an address.
#[derive(Debug, thiserror::Error)]
#[error("{value:?}: expected https://host:port")]
pub struct UrlError {
    value: String,
}

// === impl AggregatorUrl ===

impl AggregatorUrl {
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl TryFrom<String> for AggregatorUrl {
    type Error = UrlError;

    fn try_from(value: String) -> Result<Self, UrlError> {
        let fail = || UrlError {
            value: value.clone(),
        };
        let url = url::Url::parse(&value).map_err(|_| fail())?;
        if url.scheme() != "https"
            || url.path() != "/" && !url.path().is_empty()
            || url.query().is_some()
            || !url.username().is_empty()
        {
            return Err(fail());
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(fail()),
        };
        let port = url.port_or_known_default().ok_or_else(fail)?;
        Ok(Self { host, port })
    }
}

impl std::fmt::Display for AggregatorUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "https://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "https://{}:{}", self.host, self.port)
        }
    }
}

/// Ships one spool to one aggregator.
pub struct Shipper {
    spool: Spool,
    /// The node the client certificate names, which every record shipped must name.
    node: String,
    url: AggregatorUrl,
    server_name: ServerName<'static>,
    tls: TlsConnector,
}

// === impl Shipper ===

impl Shipper {
    /// A shipper of `spool` to `url`, verifying the aggregator's certificate against
    /// `ca_file` for `server_name` (default: the URL's host) and presenting `cert_file`
    /// and `key_file`.
    ///
    /// # Errors
    ///
    /// A file cannot be used, or the server name is invalid.
    pub fn new(spool: Spool, to: &Shipping<'_>, node: &str) -> Result<Self, Error> {
        let (server_name, config) = connection(to, node)?;
        Ok(Self {
            spool,
            node: node.to_owned(),
            url: to.url.clone(),
            server_name,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// `records` split into those that name this node and those that name another.
    /// Records made under another node name (the node renamed with a backlog) are
    /// refused by the aggregator, whose check of the certificate's node they would fail
    /// for good, holding back every record after them: they are acknowledged unshipped,
    /// then [`Shipper::passed_over`].
    fn split_by_node(&self, records: Vec<AuditRecord>) -> (Vec<AuditRecord>, Vec<AuditRecord>) {
        records
            .into_iter()
            .partition(|record| record.node == self.node)
    }

    /// Counts as dropped, and logs, records naming another node that were acknowledged
    /// without being shipped: once each, as the cursor has moved past them. The journal
    /// keeps them.
    fn passed_over(&self, others: &[AuditRecord]) {
        let Some(other) = others.first() else {
            return;
        };
        tracing::error!(
            records = others.len(),
            named = %other.node,
            node = %self.node,
            "audit records in the spool name another node than this one, which the \
             aggregator refuses; they are not shipped (the journal holds them)"
        );
        self.spool.count_dropped(others.len() as u64);
    }

    /// Checks the settings [`Shipper::new`] takes, without a spool: the files load and the
    /// server name is valid, as `crigate policy check` needs to say before a start does.
    ///
    /// # Errors
    ///
    /// As [`Shipper::new`].
    pub fn check(to: &Shipping<'_>, node: &str) -> Result<(), Error> {
        connection(to, node).map(drop)
    }

    /// Ships until `cancel`, reconnecting after each failure.
    ///
    /// # Cancel safety
    ///
    /// Stopping between a batch's answer and its acknowledgment in the spool only means
    /// the batch is sent again.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Backoff::default();
        loop {
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                result = self.session(&mut backoff) => result,
            };
            if let Err(error) = result {
                tracing::warn!(
                    aggregator = %self.url,
                    error = %ErrorChain(&error),
                    "audit shipping interrupted; reconnecting"
                );
            }
            let delay = backoff.next_delay();
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One stream: connect, then ship batches until something fails.
    async fn session(&self, backoff: &mut Backoff) -> Result<(), Error> {
        let tls = self.tls.clone();
        let server_name = self.server_name.clone();
        let addr = (self.url.host().to_owned(), self.url.port());
        let connector = tower::service_fn(move |_: http::Uri| {
            let tls = tls.clone();
            let server_name = server_name.clone();
            let addr = addr.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let stream = tls.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        // The connector dials the configured address with TLS; the URI is only the
        // requests' :authority.
        let endpoint =
            Endpoint::from_static("http://crigate-aggregator").connect_timeout(CONNECT_TIMEOUT);
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|source| Error::Connect {
                url: self.url.to_string(),
                source,
            })?;
        let mut client =
            AuditIngestClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
        let (requests, outbound) = mpsc::channel(1);
        let mut answers = client
            .ship(ReceiverStream::new(outbound))
            .await
            .map_err(Error::Refused)?
            .into_inner();
        tracing::info!(aggregator = %self.url, "audit shipping connected");
        let mut position = self.spool.cursor();
        let mut number = 0u64;
        loop {
            let appended = self.spool.appended();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let spool = self.spool.clone();
            let batch = tokio::task::spawn_blocking(move || {
                spool.read(position, BATCH_RECORDS, BATCH_BYTES)
            })
            .await??;
            // Past what was read, records or not: a corrupt frame skipped is not read
            // (and counted as dropped) again.
            position = batch.next;
            if batch.records.is_empty() {
                tokio::select! {
                    () = appended => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            let (records, others) = self.split_by_node(batch.records);
            if records.is_empty() {
                let spool = self.spool.clone();
                let next = batch.next;
                tokio::task::spawn_blocking(move || spool.acknowledge(next)).await??;
                self.passed_over(&others);
                continue;
            }
            number += 1;
            let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
            let request = ShipRequest {
                batch: number,
                records,
                spool_dropped_records: self.spool.dropped_records(),
                spool_depth_bytes: self.spool.depth_bytes(),
            };
            if requests.send(request).await.is_err() {
                return Err(Error::Closed);
            }
            let answer = match tokio::time::timeout(ACK_TIMEOUT, answers.message()).await {
                Err(_) => {
                    return Err(Error::AckTimeout {
                        batch: number,
                        timeout: ACK_TIMEOUT,
                    })
                }
                Ok(Err(status)) => return Err(Error::Refused(status)),
                Ok(Ok(None)) => return Err(Error::Closed),
                Ok(Ok(Some(answer))) => answer,
            };
            if answer.batch != number || answer.ids != ids {
                return Err(Error::Mismatch {
                    expected: number,
                    got: answer.batch,
                    want: ids.len(),
                    ids: answer.ids.len(),
                });
            }
            let spool = self.spool.clone();
            let next = batch.next;
            tokio::task::spawn_blocking(move || spool.acknowledge(next)).await??;
            self.passed_over(&others);
            position = next;
            backoff.reset();
            tracing::debug!(
                batch = number,
                records = ids.len(),
                "audit records acknowledged"
            );
        }
    }
}

/// The server name and TLS settings for reaching the aggregator, as `node`.
///
/// The aggregator takes only records of the node the client certificate names (its first
/// DNS SAN, else its CN): a certificate naming another node than the records carry would
/// leave every record in the spool, so it is refused here, at start.
fn connection(
    to: &Shipping<'_>,
    node: &str,
) -> Result<(ServerName<'static>, rustls::ClientConfig), Error> {
    let name = to.server_name.unwrap_or(to.url.host()).to_owned();
    let server_name = ServerName::try_from(name.clone()).map_err(|_| Error::ServerName(name))?;
    let config = tls::client_config(
        to.ca_file,
        Some((to.cert_file, to.key_file)),
        &[tls::ALPN_H2],
    )?;
    let named = tls::certificates(to.cert_file)?
        .first()
        .and_then(|cert| crate::aggregator::tls::node_name(cert));
    if named.as_deref() != Some(node) {
        return Err(Error::NodeMismatch {
            cert: to.cert_file.to_path_buf(),
            named,
            node: node.to_owned(),
        });
    }
    Ok((server_name, config))
}

/// Exponential backoff with jitter: each wait is drawn from the upper half of a window
/// that doubles from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], so a fleet of nodes does not
/// reconnect to a restarted aggregator in step.
#[derive(Debug)]
struct Backoff {
    window: Duration,
}

// === impl Backoff ===

impl Default for Backoff {
    fn default() -> Self {
        Self {
            window: BACKOFF_MIN,
        }
    }
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let window = self.window;
        self.window = (window * 2).min(BACKOFF_MAX);
        let half = window / 2;
        half + half.mul_f64(fastrand::f64())
    }

    fn reset(&mut self) {
        self.window = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregator_urls_must_be_https_host_and_port() {
        let url = AggregatorUrl::try_from("https://agg.example:7443".to_owned()).unwrap();
        assert_eq!((url.host(), url.port()), ("agg.example", 7443));
        assert_eq!(url.to_string(), "https://agg.example:7443");
        let default = AggregatorUrl::try_from("https://agg.example".to_owned()).unwrap();
        assert_eq!(default.port(), 443);
        for bad in [
            "http://agg.example:7443",
            "agg.example:7443",
            "https://agg.example:7443/path",
            "https://user@agg.example:7443",
            "",
        ] {
            assert!(AggregatorUrl::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let mut last_window = Duration::ZERO;
        for _ in 0..20 {
            let window = backoff.window;
            let delay = backoff.next_delay();
            assert!(
                delay >= window / 2 && delay <= window,
                "{delay:?} in {window:?}"
            );
            assert!(window >= last_window);
            last_window = window;
        }
        assert_eq!(backoff.window, BACKOFF_MAX);
        backoff.reset();
        assert_eq!(backoff.window, BACKOFF_MIN);
    }

    #[test]
    fn a_client_certificate_naming_another_node_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["node-a".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_file, key_file) = (dir.path().join("node.pem"), dir.path().join("node.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let url = AggregatorUrl::try_from("https://agg.example:7443".to_owned()).unwrap();
        let to = Shipping {
            url: &url,
            server_name: None,
            ca_file: &cert_file,
            cert_file: &cert_file,
            key_file: &key_file,
        };
        assert!(Shipper::check(&to, "node-a").is_ok());
        let error = Shipper::check(&to, "node-b").unwrap_err();
        assert!(
            matches!(&error, Error::NodeMismatch { named: Some(named), node, .. }
                if named == "node-a" && node == "node-b"),
            "{error}"
        );

        // Records naming another node are split from this node's, and counted as dropped
        // when passed over.
        let spool =
            Spool::open(spool::SpoolConfig::new(dir.path().join("spool"), 1 << 20)).unwrap();
        let shipper = Shipper::new(spool.clone(), &to, "node-a").unwrap();
        let record = |node: &str| AuditRecord {
            node: node.to_owned(),
            ..AuditRecord::default()
        };
        let batch = vec![record("node-old"), record("node-a"), record("node-old")];
        let (ours, others) = shipper.split_by_node(batch);
        assert_eq!(ours, vec![record("node-a")]);
        assert_eq!(others, vec![record("node-old"), record("node-old")]);
        shipper.passed_over(&[]);
        assert_eq!(spool.dropped_records(), 0);
        shipper.passed_over(&others);
        assert_eq!(spool.dropped_records(), 2);
    }
}
