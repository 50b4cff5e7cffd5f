//! The HTTP client: requests with timeouts, bounded bodies, redirects, authentication, and
//! the manifest and blob endpoints (OCI distribution spec v1.1, "Pulling manifests",
//! "Pulling blobs").

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, USER_AGENT, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioExecutor;
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use url::Url;

use super::auth::{
    Challenge, Credentials, CriCredentials, DockerAuths, Secret, TokenCache, TokenKey,
    TokenResponse, MAX_TOKEN_RESPONSE_BYTES,
};
use super::containerd::ContainerdRegistry;
use super::hosts::{self, Capability, Host, HostsConfig, HostsError, Scheme};
use super::{Error, RegistryConfig};
use crate::egress;
use crate::oci::manifest::{off_thread, ManifestError};
use crate::oci::{Descriptor, Digest, ImageRef, Manifest, Repository, MAX_MANIFEST_BYTES};

/// The largest CA file read: a bundle of a few hundred certificates.
pub const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// What crigate accepts when fetching a manifest: OCI and Docker manifests and indexes
/// (OCI distribution spec, "Pulling manifests": the client SHOULD send the types it takes).
pub(super) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";
/// The header naming a manifest's digest (OCI distribution spec, "Pulling manifests").
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
/// Sent with every request.
const USER_AGENT_VALUE: &str = concat!("crigate/", env!("CARGO_PKG_VERSION"));
/// The OAuth2 client id sent when exchanging a refresh token (token spec, "OAuth2 Token":
/// `client_id` is required).
const OAUTH_CLIENT_ID: &str = "crigate";

type HttpClient =
    hyper_util::client::legacy::Client<HttpsConnector<egress::Connector>, Full<Bytes>>;

/// A registry client. Cheap to clone; clones share connections and the token cache.
///
/// [`Client::with_credentials`] gives a view that authenticates with a CRI request's
/// credentials; without them, the Docker `config.json` of the configuration (if any)
/// supplies credentials per registry, else requests are anonymous.
///
/// # Cancel safety
///
/// Every async method is cancel safe: dropping its future abandons the request and leaves
/// nothing half done (a token is cached only once it has been read whole).
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    credentials: Option<CriCredentials>,
}

/// A manifest or index fetched by digest: its descriptor, the parsed document, and the
/// exact bytes (which hash to the descriptor's digest).
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    pub raw: Bytes,
}

struct Shared {
    http: HttpClient,
    /// The connector the clients use, asked for a proxy's credentials per request.
    egress: egress::Connector,
    /// One client per [`HostsConfig::tls`] entry, for the hosts that name TLS files.
    host_http: Vec<HttpClient>,
    config: RegistryConfig,
    /// `config.plain_http`, each as a registry name and as a URL endpoint
    /// ([`http_authority`]), normalised once.
    plain_http: Vec<(String, String)>,
    hosts: HostsConfig,
    tokens: TokenCache,
    docker_auths: DockerAuths,
}

/// A response whose body has been read within its limit.
pub(super) struct Fetched {
    pub(super) url: Url,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// One GET (or HEAD) as the client sends it.
pub(super) struct Fetch<'a> {
    /// `GET`, or `HEAD` for the headers alone.
    pub(super) method: Method,
    pub(super) repo: &'a Repository,
    /// Where it is sent.
    pub(super) host: &'a Host,
    pub(super) url: Url,
    pub(super) accept: Option<&'static str>,
    /// What is fetched, for errors: `manifest docker.io/library/nginx@sha256:…`.
    pub(super) what: String,
    pub(super) limit: usize,
}

// === impl Client ===

impl Client {
    /// Builds a client: system trust roots plus `config.ca_file`, and the credentials of
    /// `config.docker_config`. Reads those files (blocking); call it at start-up.
    ///
    /// # Errors
    ///
    /// [`Error::CaFile`], [`Error::DockerConfig`] when a configured file cannot be read or
    /// parsed; [`Error::Tls`] when the TLS configuration cannot be built.
    pub fn new(config: RegistryConfig) -> Result<Self, Error> {
        Self::build(config, egress::Connector::from_env)
    }

    /// As [`Client::new`], through the proxies `proxies` names (loopback included) rather
    /// than those of the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`).
    ///
    /// # Errors
    ///
    /// As [`Client::new`].
    pub fn with_proxies(config: RegistryConfig, proxies: Matcher) -> Result<Self, Error> {
        Self::build(config, |direct| egress::Connector::new(direct, proxies))
    }

    fn build(
        config: RegistryConfig,
        connector: impl FnOnce(HttpConnector) -> egress::Connector,
    ) -> Result<Self, Error> {
        let mut docker_auths = match &config.docker_config {
            Some(path) => DockerAuths::load(path)?,
            None => DockerAuths::default(),
        };
        let hosts = match (&config.hosts_dir, &config.containerd_config) {
            (Some(_), Some(path)) => {
                return Err(Error::Hosts(HostsError::Invalid {
                    path: path.clone(),
                    reason: "hosts_dir and containerd_config both name the registry hosts: \
                             set one"
                        .to_owned(),
                }))
            }
            (Some(roots), None) => HostsConfig::load(roots)?,
            (None, Some(path)) => {
                let registry = ContainerdRegistry::load(path)?;
                let credentials = registry.credentials().map_err(|reason| {
                    Error::Hosts(HostsError::Invalid {
                        path: path.clone(),
                        reason,
                    })
                })?;
                for (host, credentials) in credentials {
                    docker_auths.add_missing(host, credentials);
                }
                HostsConfig::from_containerd(path, &registry)?
            }
            (None, None) => HostsConfig::default(),
        };
        let mut direct = HttpConnector::new();
        direct.enforce_http(false);
        direct.set_connect_timeout(Some(config.connect_timeout));
        direct.set_nodelay(true);
        let connector = connector(direct);
        let egress = connector.clone();
        // Plain HTTP is let through the connector; `check_scheme` allows it per host.
        let client = |tls| {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(connector.clone());
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https)
        };
        for host in &hosts.skip_verify {
            if config.honour_skip_verify {
                tracing::warn!(host = %host,
                    "skip_verify honoured: this host's certificate is not checked");
            } else {
                tracing::warn!(host = %host,
                    "skip_verify is not honoured: this host's certificate is checked \
                     ([registry] honour_skip_verify is off)");
            }
        }
        let http = client(tls_config(config.ca_file.iter(), &[], false)?);
        let host_http = hosts
            .tls
            .iter()
            .map(|own| {
                Ok(client(tls_config(
                    config.ca_file.iter().chain(&own.ca),
                    &own.client,
                    own.skip_verify && config.honour_skip_verify,
                )?))
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            shared: Arc::new(Shared {
                http,
                egress,
                host_http,
                plain_http: config
                    .plain_http
                    .iter()
                    .map(|host| (http_authority(host, false), http_authority(host, true)))
                    .collect(),
                config,
                hosts,
                tokens: TokenCache::default(),
                docker_auths,
            }),
            credentials: None,
        })
    }

    /// This client, authenticating with `credentials` (from a CRI `PullImageRequest`)
    /// instead of the Docker config's. Shares connections and the token cache; tokens are
    /// cached per credentials.
    pub fn with_credentials(&self, credentials: impl Into<CriCredentials>) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            credentials: Some(credentials.into()),
        }
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &RegistryConfig {
        &self.shared.config
    }

    /// The descriptor of the manifest or index `image` names. With a digest, the manifest
    /// is fetched by that digest and must hash to it. With a tag, the digest is computed
    /// (SHA-256) from the bytes read, never taken from `Docker-Content-Digest`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the registry has no such manifest; any fetch error of
    /// [`Client::manifest`].
    #[tracing::instrument(name = "registry", skip_all, fields(image = %image))]
    pub async fn resolve(&self, image: &ImageRef) -> Result<Descriptor, Error> {
        Ok(self.resolve_manifest(image).await?.descriptor)
    }

    /// As [`Client::resolve`], also returning the document and its bytes. A tag is
    /// resolved on the hosts that may resolve ([`Client::hosts`]), the first that has it
    /// giving the answer.
    ///
    /// # Errors
    ///
    /// As [`Client::resolve`].
    pub async fn resolve_manifest(&self, image: &ImageRef) -> Result<FetchedManifest, Error> {
        let repo = image.repo();
        match image.digest() {
            Some(digest) => self.manifest(repo, digest).await,
            None => {
                let reference = &image.manifest_reference();
                self.ask_hosts(repo, Capability::Resolve, |host| async move {
                    self.fetch_manifest(&host, repo, reference, None).await
                })
                .await
            }
        }
    }

    /// The digest `image` names: its own, or the one its tag points at on the first host
    /// that may resolve it and has it. A tag is resolved as containerd's resolver resolves
    /// it: a `HEAD` of the manifest and its `Docker-Content-Digest` header (OCI
    /// distribution spec, "Checking if content exists in the registry"), and a GET and
    /// the digest of the bytes read when the header is missing or malformed or the HEAD
    /// is refused. A HEAD transfers no manifest and is not counted as a pull by registries
    /// that limit pulls (Docker Hub counts manifest GETs).
    ///
    /// Taking the header is safe because the digest is only a name here: a tag's target
    /// is the registry's to choose anyway, and whatever is verified or run under the
    /// digest is fetched by it and checked against it.
    ///
    /// # Errors
    ///
    /// As [`Client::resolve`].
    #[tracing::instrument(name = "registry", skip_all, fields(image = %image))]
    pub async fn resolve_digest(&self, image: &ImageRef) -> Result<Digest, Error> {
        if let Some(digest) = image.digest() {
            return Ok(digest.clone());
        }
        let repo = image.repo();
        let reference = &image.manifest_reference();
        self.ask_hosts(repo, Capability::Resolve, |host| async move {
            match self.head_manifest(&host, repo, reference).await? {
                Some(digest) => Ok(digest),
                None => Ok(self
                    .fetch_manifest(&host, repo, reference, None)
                    .await?
                    .descriptor
                    .digest),
            }
        })
        .await
    }

    /// The digest a HEAD of manifest `reference` names in `Docker-Content-Digest`;
    /// `None` when the answer has no well-formed one or the HEAD is refused with a status
    /// other than 401, 403 and 404.
    async fn head_manifest(
        &self,
        host: &Host,
        repo: &Repository,
        reference: &str,
    ) -> Result<Option<Digest>, Error> {
        let what = describe(host, format!("manifest {repo}:{reference}"));
        let url = self.endpoint(host, repo, &format!("manifests/{reference}"))?;
        let headed = self
            .get(Fetch {
                method: Method::HEAD,
                repo,
                host,
                url,
                accept: Some(MANIFEST_ACCEPT),
                what,
                limit: MAX_MANIFEST_BYTES,
            })
            .await;
        let fetched = match headed {
            Ok(fetched) => fetched,
            // Busy after its retries: a GET would count against the same limit.
            Err(
                error @ Error::Status {
                    code: 408 | 429, ..
                },
            ) => return Err(error),
            Err(Error::Status { what, code }) => {
                tracing::debug!(%what, code, "HEAD refused; reading the manifest instead");
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let digest = fetched
            .headers
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<Digest>().ok());
        if digest.is_none() {
            tracing::debug!(url = %fetched.url, "no usable Docker-Content-Digest; reading the manifest instead");
        }
        Ok(digest)
    }

    /// The manifest or index `digest` of `repo`, checked against the digest before it is
    /// parsed.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::TooLarge`] past [`MAX_MANIFEST_BYTES`];
    /// [`Error::DigestMismatch`]; [`Error::Manifest`] when the bytes are not a manifest of
    /// the type the registry claimed; transport, auth and timeout errors.
    #[tracing::instrument(name = "registry", skip_all, fields(%repo, %digest))]
    pub async fn manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<FetchedManifest, Error> {
        let reference = &digest.to_string();
        self.ask_hosts(repo, Capability::Pull, |host| async move {
            self.fetch_manifest(&host, repo, reference, Some(digest))
                .await
        })
        .await
    }

    /// The blob `digest` of `repo`, at most `limit` bytes, checked against the digest.
    /// Redirects (to blob storage) are followed within the configured bound.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::TooLarge`] past `limit`, whatever `Content-Length`
    /// said; [`Error::DigestMismatch`]; transport, auth and timeout errors.
    #[tracing::instrument(name = "registry", skip_all, fields(%repo, %digest, limit))]
    pub async fn blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        limit: usize,
    ) -> Result<Bytes, Error> {
        self.ask_hosts(repo, Capability::Pull, |host| async move {
            self.blob_on(&host, repo, digest, limit).await
        })
        .await
    }

    async fn blob_on(
        &self,
        host: &Host,
        repo: &Repository,
        digest: &Digest,
        limit: usize,
    ) -> Result<Bytes, Error> {
        let what = describe(host, format!("blob {repo}@{digest}"));
        let url = self.endpoint(host, repo, &format!("blobs/{digest}"))?;
        let fetched = self
            .get(Fetch {
                method: Method::GET,
                repo,
                host,
                url,
                accept: None,
                what: what.clone(),
                limit,
            })
            .await?;
        // OCI distribution spec, "Pulling blobs": the client SHOULD verify the digest.
        digest
            .check(&fetched.body)
            .map_err(|source| Error::DigestMismatch { what, source })?;
        Ok(fetched.body)
    }

    /// Fetches a manifest by tag or digest from `host`. With `expected`, the bytes must
    /// hash to it; without, their SHA-256 is the digest.
    pub(super) async fn fetch_manifest(
        &self,
        host: &Host,
        repo: &Repository,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<FetchedManifest, Error> {
        let separator = if expected.is_some() { "@" } else { ":" };
        let what = describe(host, format!("manifest {repo}{separator}{reference}"));
        let url = self.endpoint(host, repo, &format!("manifests/{reference}"))?;
        let fetched = self
            .get(Fetch {
                method: Method::GET,
                repo,
                host,
                url,
                accept: Some(MANIFEST_ACCEPT),
                what: what.clone(),
                limit: MAX_MANIFEST_BYTES,
            })
            .await?;
        let content_type = fetched
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        // A Docker schema 1 manifest is refused as the kind it is before its digest is
        // checked: a registry gives a signed one the digest of its payload without the
        // signatures (containerd strips them to compare), never of the bytes it serves,
        // and a digest mismatch would read as tampering.
        if let Some(schema1) = content_type.filter(|t| is_schema1(t)) {
            return Err(Error::Manifest {
                what,
                source: ManifestError::UnknownMediaType(schema1.to_owned()),
            });
        }
        // OCI distribution spec, "Pulling manifests": the digest is that of the bytes
        // received; a client that pulls by digest MUST verify it. Checked, then parsed,
        // in one piece of work (off the relaying thread for a large document).
        let (body, expected) = (fetched.body.clone(), expected.cloned());
        let content_type = content_type.map(str::to_owned);
        let checked = off_thread(body.len(), move || {
            let digest = match expected {
                Some(expected) => expected.check(&body).map(|()| expected),
                None => Ok(Digest::sha256(&body)),
            };
            digest.map(|digest| (digest, Manifest::parse(content_type.as_deref(), &body)))
        })
        .await
        .ok_or_else(|| Error::Malformed {
            what: what.clone(),
            reason: "checking its digest did not finish".to_owned(),
        })?;
        let (digest, parsed) = checked.map_err(|source| Error::DigestMismatch {
            what: what.clone(),
            source,
        })?;
        let manifest = parsed.map_err(|source| Error::Manifest {
            what: what.clone(),
            source,
        })?;
        let mut descriptor = Descriptor::new(
            manifest.kind().media_type(),
            digest,
            fetched.body.len() as u64,
        );
        descriptor.artifact_type = manifest.artifact_type().map(str::to_owned);
        Ok(FetchedManifest {
            descriptor,
            manifest,
            raw: fetched.body,
        })
    }

    /// Asks the hosts `repo` is reached through that may be asked for `capability`, in
    /// order ([`Client::hosts`]), until one has what is asked for. When none has it, the
    /// first "not there" is the answer, and only when no host could answer is the first
    /// failure the error (as containerd returns it): a host that cannot be reached never
    /// turns another's "not there" into an error a policy's `on_error` could let through.
    /// A plain-HTTP probe of a loopback registry ([`Host::probe`]) that only found the
    /// registry does not speak plain HTTP ([`not_plain_http`]) gives way to the HTTPS
    /// host after it, whose failure is then the one reported.
    ///
    /// # Errors
    ///
    /// [`Error::NoHost`]; the first host's failure when every host failed.
    pub(super) async fn ask_hosts<T, F, Fut>(
        &self,
        repo: &Repository,
        capability: Capability,
        mut ask: F,
    ) -> Result<T, Error>
    where
        T: Answer,
        F: FnMut(Host) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let (first, rest) = self.hosts(repo, capability)?;
        let mut failed = None;
        let mut probe = first.probe;
        let mut best = ask_logged(&mut ask, first, &mut failed).await;
        for host in rest {
            if rank(&best) == Rank::Found {
                break;
            }
            let next_probe = host.probe;
            let answer = ask_logged(&mut ask, host, &mut failed).await;
            let gives_way = probe
                && rank(&answer) == rank(&best)
                && best.as_ref().err().is_some_and(not_plain_http);
            if rank(&answer) > rank(&best) || gives_way {
                best = answer;
                probe = next_probe;
            }
        }
        // One host's "not there" stands over another's failure; the failure may have
        // hidden what is asked for (a signature behind refused credentials), so say so.
        if let (Rank::Absent, Some((host, error))) = (rank(&best), failed) {
            tracing::warn!(%repo, %host, %error, "a registry host failed and another had nothing: answered as nothing");
        }
        best
    }

    /// The hosts `repo` is reached through that may be asked for `capability`, in the
    /// order to ask them: the mirrors the hosts directory names for its registry
    /// (`[registry] hosts_dir`, containerd's `hosts.toml`), then the registry itself, or
    /// the registry alone. HTTPS for the registry unless it is listed in `plain_http`.
    ///
    /// # Errors
    ///
    /// [`Error::NoHost`] when no host may be asked for `capability`.
    pub(super) fn hosts(
        &self,
        repo: &Repository,
        capability: Capability,
    ) -> Result<(Host, Vec<Host>), Error> {
        let scheme = if self.plain_http_allowed(repo.api_host(), false) {
            Scheme::Http
        } else {
            Scheme::Https
        };
        let mut hosts = self
            .shared
            .hosts
            .hosts(repo, scheme)
            .into_iter()
            .filter(|host| host.can(capability));
        let first = hosts.next().ok_or_else(|| Error::NoHost {
            registry: repo.domain().to_owned(),
            capability,
        })?;
        Ok((first, hosts.collect()))
    }

    /// `<host prefix>/<repo path>/<rest>`, with `ns=<registry>` for a mirror.
    pub(super) fn endpoint(
        &self,
        host: &Host,
        repo: &Repository,
        rest: &str,
    ) -> Result<Url, Error> {
        let text = format!("{}/{}/{rest}", host.prefix, repo.path());
        let mut url = Url::parse(&text).map_err(|e| Error::Malformed {
            what: format!("URL {text}"),
            reason: e.to_string(),
        })?;
        // containerd sends a mirror the registry it stands in for (`addNamespace`).
        if let Some(namespace) = &host.namespace {
            url.query_pairs_mut().append_pair("ns", namespace);
        }
        Ok(url)
    }

    /// Whether plain HTTP is allowed to `authority`: a registry's name (its port as
    /// written) or, when `endpoint`, the authority of a URL about to be asked.
    fn plain_http_allowed(&self, authority: &str, endpoint: bool) -> bool {
        let name = http_authority(authority, endpoint);
        self.shared
            .plain_http
            .iter()
            .any(|(as_name, as_endpoint)| *if endpoint { as_endpoint } else { as_name } == name)
            || self
                .shared
                .hosts
                .allows_plain_http(&http_authority(authority, true))
    }

    /// Only https, or http to a host listed in `plain_http` or named with `http://` in
    /// the hosts directory; asking `host`, a loopback registry no file names over plain
    /// HTTP ([`hosts::loopback_http`]), http to loopback hosts too.
    fn check_scheme(&self, url: &Url, host: &Host) -> Result<(), Error> {
        let authority = hosts::authority(url);
        match url.scheme() {
            "https" => Ok(()),
            "http"
                if self.plain_http_allowed(&authority, true)
                    || (host.probe && hosts::loopback_http(&authority)) =>
            {
                Ok(())
            }
            _ => Err(Error::InsecureScheme {
                url: url.to_string(),
            }),
        }
    }

    /// The credentials for `repo` on `host`: the CRI request's (none when they name
    /// another host, as containerd's `ParseAuth` withholds them), else the Docker
    /// config's best match for the host's name and the repository's path, else none.
    fn credentials_for(&self, host: &Host, repo: &Repository) -> Credentials {
        match &self.credentials {
            Some(credentials) => credentials.for_host(&host.authority),
            None => self
                .shared
                .docker_auths
                .credentials(&host.credentials_key, repo.path())
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// GETs (or HEADs) `fetch.url`: authenticates on a 401 challenge (once), follows
    /// redirects within the configured bound, and reads the body within `fetch.limit`.
    ///
    /// # Errors
    ///
    /// Every [`Error`] a single fetch can end in.
    pub(super) async fn get(&self, fetch: Fetch<'_>) -> Result<Fetched, Error> {
        let registry = fetch.host.credentials_key.as_str();
        let credentials = self.credentials_for(fetch.host, fetch.repo);
        let scope = format!("repository:{}:pull", fetch.repo.path());
        let origin = fetch.url.origin();
        let key = TokenKey {
            registry: fetch.host.authority.clone(),
            scope: scope.clone(),
            credentials: credentials.fingerprint(),
        };
        let mut authorization = match &credentials {
            Credentials::RegistryToken(token) => {
                Some(Secret::new(format!("Bearer {}", token.expose())))
            }
            _ => self
                .shared
                .tokens
                .get(&key)
                .map(|token| Secret::new(format!("Bearer {}", token.expose()))),
        };
        let mut authenticated = false;
        // The anonymous token a host the registry redirected to asked for, and its origin.
        let mut redirected: Option<(url::Origin, Secret)> = None;
        // Whether that token came from the cache: one the host refuses is dropped, and a
        // fresh one asked for, once.
        let mut redirected_cached = false;
        let mut busy = 0;
        let mut failed_once = false;
        let mut url = fetch.url.clone();
        let mut visited = vec![url.clone()];
        loop {
            self.check_scheme(&url, fetch.host)?;
            // Credentials go to the registry's own origin only, never to where it
            // redirects (blob storage).
            let auth = if url.origin() == origin {
                authorization.as_ref()
            } else {
                redirected
                    .as_ref()
                    .filter(|(at, _)| *at == url.origin())
                    .map(|(_, token)| token)
            };
            let sent = self
                .send(Send {
                    method: fetch.method.clone(),
                    url: &url,
                    accept: fetch.accept,
                    authorization: auth,
                    form: None,
                    headers: Some(&fetch.host.headers).filter(|_| url.origin() == origin),
                    what: &fetch.what,
                    registry,
                    tls: fetch.host.tls,
                })
                .await;
            // A GET or HEAD whose connection broke before an answer came is asked again,
            // once, as go-containerregistry's transport asks again on a temporary network
            // error. Not on a plain-HTTP probe, whose broken connection says that the
            // registry speaks TLS.
            let response = match sent {
                Err(error) if !failed_once && !fetch.host.probe && broke_before_answer(&error) => {
                    failed_once = true;
                    let pause = server_error_pause();
                    tracing::debug!(%error, ?pause, what = %fetch.what, "registry connection broke; asking again");
                    tokio::time::sleep(pause).await;
                    continue;
                }
                sent => sent?,
            };
            let status = response.status();
            if status.is_redirection() {
                let next = self.redirect(&response, &mut visited, &fetch.what)?;
                tracing::debug!(from = %url, to = %next, "registry redirect");
                url = next;
                continue;
            }
            // A registry token is used as given: there is no challenge to answer with it.
            let can_answer = !matches!(credentials, Credentials::RegistryToken(_));
            if status == StatusCode::UNAUTHORIZED
                && can_answer
                && !authenticated
                && url.origin() == origin
            {
                // Token spec, "How to authenticate": a 401 carries the challenge that
                // says how to get a token; answer it once, then retry.
                authenticated = true;
                if authorization.is_some() {
                    self.shared.tokens.remove(&key);
                }
                let challenge = challenge(response.headers(), &fetch.what)?;
                let (header, token) = self
                    .answer(&challenge, &credentials, registry, &scope, &fetch)
                    .await?;
                // Cached under the scope this request looks tokens up by, whatever scope
                // the challenge named, so the next request finds it.
                if let Some((token, lifetime)) = token {
                    self.shared.tokens.insert(key.clone(), token, lifetime);
                }
                authorization = Some(header);
                continue;
            }
            // A host the registry redirected to may want a token of its own (registry.k8s.io
            // sends every request to a regional Artifact Registry that does). It is asked
            // for one anonymously, once, as containerd authorizes each redirect: the
            // registry's credentials are the registry's, never sent where it points.
            if status == StatusCode::UNAUTHORIZED
                && url.origin() != origin
                && (redirected.is_none() || redirected_cached)
            {
                if let Ok(Challenge::Bearer {
                    realm,
                    service,
                    scope: asked,
                }) = challenge(response.headers(), &fetch.what)
                {
                    let scope = asked
                        .or_else(|| repository_scope(&url))
                        .unwrap_or_else(|| scope.clone());
                    let refused = redirected.is_some();
                    let (token, cached) = self
                        .anonymous_token(&url, &realm, service.as_deref(), &scope, refused, &fetch)
                        .await?;
                    redirected_cached = cached;
                    redirected = Some((
                        url.origin(),
                        Secret::new(format!("Bearer {}", token.expose())),
                    ));
                    continue;
                }
            }
            // A registry that is busy (429, Docker Hub's rate limit) or timed the request
            // out (408) is asked again, as containerd's resolver asks it
            // (`retryRequest`), after the `Retry-After` it names or a short pause; one
            // that asks for longer than MAX_RETRY_AFTER is answered with its status at
            // once, since the verification's time budget would end first.
            if matches!(status.as_u16(), 408 | 429) && busy < MAX_BUSY_RETRIES {
                busy += 1;
                let pause = retry_after(response.headers()).unwrap_or(BUSY_PAUSE * busy);
                if pause <= MAX_RETRY_AFTER {
                    tracing::debug!(status = status.as_u16(), ?pause, what = %fetch.what, "registry busy; asking again");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
            // A server error (500, 502, 503, 504) is asked again, once, after a short
            // pause, as containerd's resolver asks again on 500, 503 and 504 and
            // go-containerregistry on a 5xx; what it answers then is the answer. The
            // first answer's body is not read.
            if matches!(status.as_u16(), 500 | 502 | 503 | 504) && !failed_once {
                failed_once = true;
                drop(response);
                let pause = server_error_pause();
                tracing::debug!(status = status.as_u16(), ?pause, what = %fetch.what, "registry server error; asking again");
                tokio::time::sleep(pause).await;
                continue;
            }
            return match status {
                s if s.is_success() => {
                    let headers = response.headers().clone();
                    let body = self.read_body(response, fetch.limit, &fetch.what).await?;
                    Ok(Fetched { url, headers, body })
                }
                StatusCode::NOT_FOUND => Err(Error::NotFound { what: fetch.what }),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if url.origin() != origin => {
                    Err(Error::RedirectRefused {
                        registry: registry.to_owned(),
                        host: hosts::authority(&url),
                        what: fetch.what,
                        status: status.as_u16(),
                    })
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Error::Unauthorized {
                    registry: registry.to_owned(),
                    what: fetch.what,
                    status: status.as_u16(),
                    anonymous: credentials.is_anonymous(),
                }),
                other => Err(Error::Status {
                    what: fetch.what,
                    code: other.as_u16(),
                }),
            };
        }
    }

    /// An anonymous token for `scope` from `realm`, which the host of `url` (one the
    /// registry redirected to) named in its challenge; kept for that host and scope, and
    /// whether it was the one kept. `refused`: the one kept was refused, and is dropped.
    async fn anonymous_token(
        &self,
        url: &Url,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        refused: bool,
        fetch: &Fetch<'_>,
    ) -> Result<(Secret, bool), Error> {
        let anonymous = Credentials::Anonymous;
        let key = TokenKey {
            registry: hosts::authority(url),
            scope: scope.to_owned(),
            credentials: anonymous.fingerprint(),
        };
        if refused {
            self.shared.tokens.remove(&key);
        } else if let Some(token) = self.shared.tokens.get(&key) {
            return Ok((token, true));
        }
        let registry = fetch.host.credentials_key.as_str();
        let (token, lifetime) = self
            .token(realm, service, scope, &anonymous, registry, fetch.host)
            .await?;
        self.shared.tokens.insert(key, token.clone(), lifetime);
        Ok((token, false))
    }

    /// Answers a challenge: the `Authorization` value to retry with, and the token and its
    /// lifetime when it was a bearer challenge.
    async fn answer(
        &self,
        challenge: &Challenge,
        credentials: &Credentials,
        registry: &str,
        scope: &str,
        fetch: &Fetch<'_>,
    ) -> Result<(Secret, Option<(Secret, Duration)>), Error> {
        let what = &fetch.what;
        match challenge {
            Challenge::Basic => credentials
                .basic_header()
                .map(|header| (header, None))
                .ok_or_else(|| Error::Unauthorized {
                    registry: registry.to_owned(),
                    what: what.to_owned(),
                    status: StatusCode::UNAUTHORIZED.as_u16(),
                    // Nothing could be sent.
                    anonymous: true,
                }),
            Challenge::Bearer {
                realm,
                service,
                scope: asked,
            } => {
                // The challenge's scope is what the registry wants; ours is the fallback.
                let scope = asked.as_deref().unwrap_or(scope);
                let (token, lifetime) = self
                    .token(
                        realm,
                        service.as_deref(),
                        scope,
                        credentials,
                        registry,
                        fetch.host,
                    )
                    .await?;
                let header = Secret::new(format!("Bearer {}", token.expose()));
                Ok((header, Some((token, lifetime))))
            }
        }
    }

    /// Gets a token from `realm` (token spec, "Requesting a Token"; OAuth2 refresh token
    /// exchange for identity tokens, "Refresh token format").
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: &Credentials,
        registry: &str,
        host: &Host,
    ) -> Result<(Secret, Duration), Error> {
        let what = format!("token from {realm}");
        let mut url = Url::parse(realm).map_err(|e| Error::Malformed {
            what: "WWW-Authenticate realm".to_owned(),
            reason: e.to_string(),
        })?;
        // Credentials go to the realm only over HTTPS (or to an allowed plain-HTTP host).
        self.check_scheme(&url, host)?;
        let posted = url.clone();
        // A challenge may ask for several scopes, space-separated (token spec, "Requesting
        // a Token"): a GET names each in a `scope` parameter of its own, as containerd's
        // `FetchToken` does; the OAuth2 form keeps them in one.
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scope.split(' ').filter(|s| !s.is_empty()) {
                query.append_pair("scope", scope);
            }
        }
        let ask_for_token = |authorization: Option<Secret>| {
            let (url, what) = (&url, &what);
            self.token_by_get(url, authorization, what, registry, host)
        };
        let response = match credentials {
            Credentials::IdentityToken(refresh) => {
                let form = Secret::new(
                    url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("grant_type", "refresh_token")
                        .append_pair("refresh_token", refresh.expose())
                        .append_pair("service", service.unwrap_or_default())
                        .append_pair("scope", scope)
                        .append_pair("client_id", OAUTH_CLIENT_ID)
                        .finish(),
                );
                let response = self
                    .send(Send {
                        method: Method::POST,
                        url: &posted,
                        accept: None,
                        authorization: None,
                        form: Some(&form),
                        headers: None,
                        what: &what,
                        registry,
                        tls: host.tls,
                    })
                    .await?;
                // Registries without the OAuth2 POST answer 400, 401 or 404 (containerd's
                // `doBearerAuth` names ACR, Artifactory and GCR); then the token is asked
                // for by GET, the refresh token as Basic credentials with no user name.
                if matches!(response.status().as_u16(), 400 | 401 | 404) {
                    tracing::debug!(%realm, status = response.status().as_u16(), "no OAuth2 token endpoint; asking by GET");
                    let basic = Credentials::Basic {
                        username: String::new(),
                        password: Secret::new(refresh.expose()),
                    }
                    .basic_header();
                    ask_for_token(basic).await?
                } else {
                    response
                }
            }
            // A user name without a secret is no credentials (containerd sends such a
            // token request anonymously).
            Credentials::Basic { password, .. } if password.expose().is_empty() => {
                ask_for_token(None).await?
            }
            Credentials::Anonymous | Credentials::Basic { .. } | Credentials::RegistryToken(_) => {
                ask_for_token(credentials.basic_header()).await?
            }
        };
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let anonymous = match credentials {
                Credentials::Anonymous => true,
                Credentials::Basic { password, .. } => password.expose().is_empty(),
                _ => false,
            };
            return Err(Error::Unauthorized {
                registry: registry.to_owned(),
                what,
                status: status.as_u16(),
                anonymous,
            });
        }
        if !status.is_success() {
            return Err(Error::Status {
                what,
                code: status.as_u16(),
            });
        }
        let body = self
            .read_body(response, MAX_TOKEN_RESPONSE_BYTES, &what)
            .await?;
        TokenResponse::parse(&body)
    }

    /// GETs a token from `url`, following the realm's redirects as Go's HTTP client,
    /// and so containerd's `FetchToken`, does: within the configured bound, never from
    /// HTTPS to plain HTTP, and with `authorization` sent to the realm's own origin only.
    async fn token_by_get(
        &self,
        url: &Url,
        authorization: Option<Secret>,
        what: &str,
        registry: &str,
        host: &Host,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        let origin = url.origin();
        let mut url = url.clone();
        let mut visited = vec![url.clone()];
        loop {
            let response = self
                .send(Send {
                    method: Method::GET,
                    url: &url,
                    accept: None,
                    authorization: authorization.as_ref().filter(|_| url.origin() == origin),
                    form: None,
                    headers: None,
                    what,
                    registry,
                    tls: host.tls,
                })
                .await?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let next = self.redirect(&response, &mut visited, what)?;
            self.check_scheme(&next, host)?;
            tracing::debug!(from = %url, to = %next, "token realm redirect");
            url = next;
        }
    }

    /// Where a redirect `response` to the last of `visited` leads, added to `visited`:
    /// never from HTTPS to plain HTTP, nor in a loop or past the configured bound.
    fn redirect(
        &self,
        response: &http::Response<hyper::body::Incoming>,
        visited: &mut Vec<Url>,
        what: &str,
    ) -> Result<Url, Error> {
        let malformed = |reason: String| Error::Malformed {
            what: what.to_owned(),
            reason,
        };
        let url = visited
            .last()
            .ok_or_else(|| malformed("a redirect with no request".to_owned()))?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                malformed(format!(
                    "HTTP {} without a Location",
                    response.status().as_u16()
                ))
            })?;
        let next = url
            .join(location)
            .map_err(|e| malformed(format!("bad Location {location:?}: {e}")))?;
        if url.scheme() == "https" && next.scheme() != "https" {
            return Err(Error::InsecureRedirect {
                what: what.to_owned(),
                to: next.to_string(),
            });
        }
        let limit = self.shared.config.max_redirects;
        if visited.len() > limit || visited.contains(&next) {
            return Err(Error::RedirectLoop {
                what: what.to_owned(),
                limit,
            });
        }
        visited.push(next.clone());
        Ok(next)
    }

    /// Sends one request and waits for its headers within the request timeout.
    async fn send(&self, send: Send<'_>) -> Result<http::Response<hyper::body::Incoming>, Error> {
        let Send {
            method,
            url,
            accept,
            authorization,
            form,
            headers,
            what,
            registry,
            tls,
        } = send;
        let malformed = |reason: String| Error::Malformed {
            what: format!("request {url}"),
            reason,
        };
        let mut request = Request::builder()
            .method(method)
            .uri(url.as_str())
            .header(USER_AGENT, USER_AGENT_VALUE);
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        for (name, value) in headers.into_iter().flatten() {
            request = request.header(name, value);
        }
        if let Some(authorization) = authorization {
            let mut value = HeaderValue::from_str(authorization.expose())
                .map_err(|_| malformed("credentials are not a valid header value".to_owned()))?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let body = match form {
            Some(form) => {
                request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::copy_from_slice(form.expose().as_bytes()))
            }
            None => Full::new(Bytes::new()),
        };
        if let Some(value) = request
            .uri_ref()
            .and_then(|uri| self.shared.egress.proxy_authorization(uri))
        {
            request = request.header(http::header::PROXY_AUTHORIZATION, value);
        }
        let request = request.body(body).map_err(|e| malformed(e.to_string()))?;
        let after = self.shared.config.request_timeout;
        let http = tls
            .and_then(|index| self.shared.host_http.get(index))
            .unwrap_or(&self.shared.http);
        match tokio::time::timeout(after, http.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(source)) => Err(Error::Unreachable {
                registry: registry.to_owned(),
                source,
            }),
            Err(_elapsed) => Err(Error::Timeout {
                what: what.to_owned(),
                after,
            }),
        }
    }

    /// Reads a body of at most `limit` bytes within the body timeout, counting what
    /// arrives rather than trusting `Content-Length` (which only lets us fail early).
    async fn read_body(
        &self,
        response: http::Response<hyper::body::Incoming>,
        limit: usize,
        what: &str,
    ) -> Result<Bytes, Error> {
        let too_large = || Error::TooLarge {
            what: what.to_owned(),
            limit,
        };
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let mut body = response.into_body();
        let read = async {
            let mut buffer = BytesMut::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|source| Error::Body {
                    what: what.to_owned(),
                    source,
                })?;
                if let Ok(data) = frame.into_data() {
                    if buffer.len().saturating_add(data.len()) > limit {
                        return Err(too_large());
                    }
                    buffer.extend_from_slice(&data);
                }
            }
            Ok(buffer.freeze())
        };
        let after = self.shared.config.body_timeout;
        tokio::time::timeout(after, read)
            .await
            .map_err(|_elapsed| Error::Timeout {
                what: format!("reading {what}"),
                after,
            })?
    }
}

/// One request as [`Client::send`] sends it.
struct Send<'a> {
    method: Method,
    url: &'a Url,
    accept: Option<&'static str>,
    authorization: Option<&'a Secret>,
    /// A form body (the OAuth2 token POST).
    form: Option<&'a Secret>,
    /// A host's own headers (`hosts.toml` `header`), sent with crigate's.
    headers: Option<&'a HeaderMap>,
    what: &'a str,
    registry: &'a str,
    /// The host's own TLS settings ([`Host::tls`]), also for its redirects and token realm,
    /// as containerd gives a host's client to both.
    tls: Option<usize>,
}

/// What one host's answer is, for deciding whether to ask the next: a manifest or blob
/// is never absent short of a 404; a list or an option may be empty.
pub(super) trait Answer {
    fn is_absent(&self) -> bool {
        false
    }
}

/// How many times a request answered 408 or 429 is asked again.
const MAX_BUSY_RETRIES: u32 = 3;
/// The pause before asking a busy registry again when it names none, times the attempt.
const BUSY_PAUSE: Duration = Duration::from_millis(100);
/// The longest `Retry-After` waited for; a registry asking for longer is not asked again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);

/// The shortest pause before asking again after a server error or a broken connection;
/// up to as much again is added at random, so that clients that failed together do not
/// ask again together.
const SERVER_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The pause before asking again after a server error or a broken connection.
fn server_error_pause() -> Duration {
    SERVER_ERROR_PAUSE + SERVER_ERROR_PAUSE.mul_f64(fastrand::f64())
}

/// Whether `error` says the connection broke after the request went out and before an
/// answer came: reset, aborted, or closed before a whole response head. A connection
/// that could not be made (refused, a name not resolved, a TLS handshake refused) is
/// not: asking again at once would meet the same failure.
fn broke_before_answer(error: &Error) -> bool {
    let Error::Unreachable { source, .. } = error else {
        return false;
    };
    if source.is_connect() {
        return false;
    }
    let mut cause = std::error::Error::source(source);
    while let Some(current) = cause {
        if let Some(hyper) = current.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_canceled() {
                return true;
            }
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) {
                return true;
            }
        }
        cause = current.source();
    }
    false
}

/// A `Retry-After` header in seconds (RFC 9110 §10.2.3; an HTTP date is not read).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl Answer for FetchedManifest {}
impl Answer for Digest {}
impl Answer for Bytes {}

impl<T> Answer for Vec<T> {
    fn is_absent(&self) -> bool {
        self.is_empty()
    }
}

impl<T> Answer for Option<T> {
    fn is_absent(&self) -> bool {
        self.is_none()
    }
}

/// `ask`'s answer from `host`, a failure logged with the host's name and, if it is the
/// first, kept in `failed` with it.
async fn ask_logged<T, F, Fut>(
    ask: &mut F,
    host: Host,
    failed: &mut Option<(String, String)>,
) -> Result<T, Error>
where
    F: FnMut(Host) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let authority = host.authority.clone();
    let probe = host.probe;
    let answer = ask(host).await;
    if let Err(error) = &answer {
        if !error.is_not_found() {
            tracing::debug!(host = %authority, %error, probe, "registry host failed");
            if !(probe && not_plain_http(error)) {
                failed.get_or_insert_with(|| (authority, error.to_string()));
            }
        }
    }
    answer
}

/// Whether a plain-HTTP probe's failure says only that the registry does not speak plain
/// HTTP: no connection, a broken one, or the 400 Go's TLS servers give a plain request.
/// Any other answer came from a registry that does, and is the one that counts.
fn not_plain_http(error: &Error) -> bool {
    matches!(
        error,
        Error::Unreachable { .. } | Error::Timeout { .. } | Error::Status { code: 400, .. }
    )
}

/// Whether `content_type` is a Docker image manifest of schema 1, signed or not.
fn is_schema1(content_type: &str) -> bool {
    let essence = crate::oci::manifest::media_type_essence(content_type);
    essence.eq_ignore_ascii_case("application/vnd.docker.distribution.manifest.v1+json")
        || essence.eq_ignore_ascii_case("application/vnd.docker.distribution.manifest.v1+prettyjws")
}

/// How far an answer goes, for [`Client::ask_hosts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Failed,
    Absent,
    Found,
}

fn rank<T: Answer>(answer: &Result<T, Error>) -> Rank {
    match answer {
        Ok(found) if !found.is_absent() => Rank::Found,
        Ok(_) => Rank::Absent,
        Err(error) if error.is_not_found() => Rank::Absent,
        Err(_) => Rank::Failed,
    }
}

/// `what` of a request, naming the host when it is a mirror.
pub(super) fn describe(host: &Host, what: String) -> String {
    match &host.namespace {
        Some(_) => format!("{what} from {}", host.authority),
        None => what,
    }
}

/// `authority` (`host[:port]`) with its host as a URL holds it (lowercased, an IPv6
/// literal in its shortest form), so that a name written in the config, in an image
/// reference and in a URL compare alike. A port written stays, `:80` too, when `endpoint`
/// is false: `reg` and `reg:80` are different registry names (containerd reads different
/// hosts directories for them). When `endpoint` is true the name is compared as a plain
/// HTTP endpoint, where both are port 80, as a URL writes it (without it). Unchanged if
/// no URL holds it.
fn http_authority(authority: &str, endpoint: bool) -> String {
    let Some(url) = Url::parse(&format!("http://{authority}/"))
        .ok()
        .filter(|url| {
            url.path() == "/"
                && url.username().is_empty()
                && url.query().is_none()
                && url.fragment().is_none()
        })
    else {
        return authority.to_owned();
    };
    let written_port = hosts::split_port(authority).1.is_some();
    match (
        endpoint,
        written_port,
        url.host_str(),
        url.port_or_known_default(),
    ) {
        (false, true, Some(host), Some(port)) => format!("{host}:{port}"),
        _ => hosts::authority(&url),
    }
}

/// The pull scope of the repository a distribution API URL names
/// (`/v2/<name>/manifests/<reference>`, `/v2/<name>/blobs/<digest>`), for a challenge that
/// names none.
fn repository_scope(url: &Url) -> Option<String> {
    let path = url.path().strip_prefix("/v2/")?;
    let (name, _) = path
        .rsplit_once("/manifests/")
        .or_else(|| path.rsplit_once("/blobs/"))?;
    (!name.is_empty()).then(|| format!("repository:{name}:pull"))
}

/// The challenge of a 401: the first `WWW-Authenticate` value that parses, Bearer before
/// Basic.
fn challenge(headers: &HeaderMap, what: &str) -> Result<Challenge, Error> {
    let mut first_error = None;
    let mut basic = None;
    for value in headers.get_all(WWW_AUTHENTICATE) {
        let Ok(text) = value.to_str() else { continue };
        match Challenge::parse(text) {
            Ok(bearer @ Challenge::Bearer { .. }) => return Ok(bearer),
            Ok(Challenge::Basic) => basic = Some(Challenge::Basic),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    if let Some(basic) = basic {
        return Ok(basic);
    }
    Err(first_error.unwrap_or_else(|| Error::Malformed {
        what: what.to_owned(),
        reason: "HTTP 401 without a WWW-Authenticate challenge".to_owned(),
    }))
}

/// [`challenge`] for the fuzz targets ([`super::auth::fuzz_challenge`]).
pub(super) fn fuzz_challenge(headers: &HeaderMap) -> Result<Challenge, Error> {
    challenge(headers, "fuzzed answer")
}

/// The TLS settings: the system's roots plus those of `ca_files`, and the client
/// certificates of `client` (certificate file, key file or `None` when the certificate's
/// file holds the key), with aws-lc-rs (the provider is named because more than one is
/// compiled in). With `skip_verify`, the server's certificate is taken unchecked.
fn tls_config<'a>(
    ca_files: impl IntoIterator<Item = &'a PathBuf>,
    client: &[(PathBuf, Option<PathBuf>)],
    skip_verify: bool,
) -> Result<rustls::ClientConfig, Error> {
    let mut roots = crate::audit::tls::system_roots();
    let mut configured = Vec::new();
    for path in ca_files {
        let fail = |reason: String| Error::CaFile {
            path: path.to_owned(),
            reason,
        };
        let certs = pem_certificates(path).map_err(fail)?;
        for cert in certs {
            roots.add(cert.clone()).map_err(|e| fail(e.to_string()))?;
            configured.push(cert);
        }
    }
    let provider = crate::audit::tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?;
    let builder = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(UncheckedCertificate(Arc::clone(&provider))))
    } else if configured.is_empty() {
        builder.with_root_certificates(roots)
    } else {
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| Error::Tls(rustls::Error::General(e.to_string())))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ConfiguredCertificates {
                webpki,
                configured,
            }))
    };
    if client.is_empty() {
        return Ok(builder.with_no_client_auth());
    }
    let keys = client
        .iter()
        .map(|(cert, key)| certified_key(cert, key.as_deref(), &provider))
        .collect::<Result<_, _>>()?;
    Ok(builder.with_client_cert_resolver(Arc::new(ClientCertificates(keys))))
}

/// A server certificate taken without checking who issued it, for what name or until
/// when, as Go's `InsecureSkipVerify` takes it; the handshake must still be signed by its
/// key, so the connection is to whoever holds that key.
#[derive(Debug)]
struct UncheckedCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for UncheckedCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A server certificate verified by webpki against the roots, unless it is itself one of
/// the certificates of the host's CA files. Go's `crypto/x509`, and so containerd, takes a
/// certificate found in the root pool as a chain of its own, whereas webpki refuses a CA
/// certificate as a server's (`CaUsedAsEndEntity`): the self-signed certificate Docker's
/// "Use self-signed certificates" recipe makes has `CA:TRUE`, and is named as the host's
/// CA. Such a certificate is taken when it names the server, is valid now and, when it
/// has an extended key usage, is for servers (as Go checks a chain of one); the handshake
/// must be signed by its key. Every other certificate goes to webpki unchanged; the
/// system's roots never take this path.
#[derive(Debug)]
struct ConfiguredCertificates {
    webpki: Arc<WebPkiServerVerifier>,
    /// The certificates of the host's CA files (and `[registry] ca_file`).
    configured: Vec<CertificateDer<'static>>,
}

impl ConfiguredCertificates {
    /// Checks a server certificate that is one of the configured ones as Go checks a
    /// certificate that is in the root pool: its name, its validity period and its
    /// extended key usage.
    fn check_own(
        end_entity: &CertificateDer<'_>,
        server_name: &rustls_pki_types::ServerName<'_>,
        now: rustls_pki_types::UnixTime,
    ) -> Result<(), rustls::Error> {
        use rustls::CertificateError;
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity).map_err(|_| bad())?;
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let validity = cert.validity();
        if now < validity.not_before.timestamp() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if now > validity.not_after.timestamp() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        // RFC 5280 section 4.2.1.12: a certificate with an extended key usage is for
        // those purposes only (Go's `ExtKeyUsageServerAuth` check, `anyExtendedKeyUsage`
        // taken for any).
        if let Some(usage) = cert.extended_key_usage().map_err(|_| bad())? {
            if !(usage.value.server_auth || usage.value.any) {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::InvalidPurpose,
                ));
            }
        }
        Ok(())
    }
}

impl rustls::client::danger::ServerCertVerifier for ConfiguredCertificates {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self
            .configured
            .iter()
            .any(|own| own.as_ref() == end_entity.as_ref())
        {
            Self::check_own(end_entity, server_name, now)?;
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.webpki.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.webpki.root_hint_subjects()
    }
}

/// The certificates of a PEM file of at most [`MAX_CA_FILE_BYTES`]; at least one.
fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = crate::files::read_bounded(path, MAX_CA_FILE_BYTES)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("larger than {MAX_CA_FILE_BYTES} bytes"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificates in the file".to_owned());
    }
    Ok(certs)
}

/// A client certificate chain and its private key, which must belong together.
fn certified_key(
    cert: &Path,
    key: Option<&Path>,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, Error> {
    let fail = |path: &Path, reason: String| Error::ClientCertificate {
        path: path.to_owned(),
        reason,
    };
    let chain = pem_certificates(cert).map_err(|reason| fail(cert, reason))?;
    let key_path = key.unwrap_or(cert);
    let pem = crate::files::read_bounded(key_path, MAX_CA_FILE_BYTES)
        .map_err(|e| fail(key_path, e.to_string()))?
        .ok_or_else(|| fail(key_path, format!("larger than {MAX_CA_FILE_BYTES} bytes")))?;
    let private = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| fail(key_path, format!("no private key in the file: {e}")))?;
    let certified = CertifiedKey::from_der(chain, private, provider).map_err(|e| {
        fail(
            cert,
            format!("the certificate and its key do not go together: {e}"),
        )
    })?;
    Ok(Arc::new(certified))
}

/// The client certificates of a host, offered as Go's TLS client offers a list of them
/// (`crypto/tls` `getClientCertificate`): the first one issued by a CA the server names
/// whose key can sign in a scheme the server accepts, else the first whose key can.
#[derive(Debug)]
struct ClientCertificates(Vec<Arc<CertifiedKey>>);

impl ResolvesClientCert for ClientCertificates {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let can_sign = |key: &&Arc<CertifiedKey>| key.key.choose_scheme(sigschemes).is_some();
        let hinted = |key: &&Arc<CertifiedKey>| {
            key.cert.iter().any(|cert| {
                let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
                    return false;
                };
                let issuer = parsed.issuer().as_raw();
                // The hint is a DER Name, with or without its outer SEQUENCE header.
                root_hint_subjects.iter().any(|hint| {
                    issuer == *hint || (issuer.ends_with(hint) && issuer.len() - hint.len() <= 4)
                })
            })
        };
        let mut usable = self.0.iter().filter(can_sign);
        self.0
            .iter()
            .filter(can_sign)
            .find(hinted)
            .or_else(|| usable.next())
            .cloned()
    }

    fn has_certs(&self) -> bool {
        !self.0.is_empty()
    }
}

#[cfg(test)]
mod tests;
