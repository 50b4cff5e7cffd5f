//! The registry client (`crigate::registry`) against the real CNCF distribution registry of
//! the harness, and against a stand-in server for what that registry cannot do.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use crigate::oci::descriptor::{OCI_EMPTY, OCI_INDEX, OCI_MANIFEST};
use crigate::oci::{Digest, ImageRef, Manifest, Repository, MAX_MANIFEST_BYTES};
use crigate::registry::{Client, Credentials, CriAuth, Error, RegistryConfig, Wanted};
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::harness::{Registry, RegistryTls, TestImage};

/// The Notary Project signature artifact type, used as a referrer's `artifactType`.
const NOTATION: &str = "application/vnd.cncf.notary.signature";
/// Another artifact type, which filters must leave out.
const SBOM: &str = "application/spdx+json";
/// cosign's simple signing payload layer type.
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

fn client_for(host: &str) -> Client {
    Client::new(RegistryConfig {
        plain_http: vec![host.to_owned()],
        ..RegistryConfig::default()
    })
    .unwrap()
}

fn digest(text: &str) -> Digest {
    text.parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// Against the real registry.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn resolving_a_tag_gives_the_pushed_digest_and_content() {
    let registry = Registry::start().await.unwrap();
    let image = TestImage::builder().label("resolve").build().unwrap();
    let pushed = registry.push("app", "v1", &image).await.unwrap();
    let client = client_for(&registry.host());

    let by_tag: ImageRef = format!("{}/app:v1", registry.host()).parse().unwrap();
    let descriptor = client.resolve(&by_tag).await.unwrap();
    assert_eq!(descriptor.digest, digest(&pushed));
    assert_eq!(descriptor.media_type, OCI_MANIFEST);
    assert_eq!(descriptor.size, image.manifest_size() as u64);

    let pinned = by_tag.with_digest(descriptor.digest.clone());
    assert_eq!(client.resolve(&pinned).await.unwrap(), descriptor);

    let fetched = client
        .manifest(by_tag.repo(), &descriptor.digest)
        .await
        .unwrap();
    assert_eq!(&fetched.raw[..], image.manifest());
    let Manifest::Image(manifest) = fetched.manifest else {
        panic!("not an image manifest")
    };
    assert_eq!(manifest.config.digest, digest(image.config_digest()));

    let config = client
        .blob(by_tag.repo(), &manifest.config.digest, 1024 * 1024)
        .await
        .unwrap();
    assert_eq!(&config[..], image.config());
    let layer = client
        .blob(
            by_tag.repo(),
            &digest(image.layer_digest()),
            64 * 1024 * 1024,
        )
        .await
        .unwrap();
    assert_eq!(&layer[..], image.layer());
    // The same blob under a limit one byte short of it is refused.
    let short = client
        .blob(
            by_tag.repo(),
            &digest(image.layer_digest()),
            image.layer().len() - 1,
        )
        .await;
    assert!(matches!(short, Err(Error::TooLarge { .. })), "{short:?}");
}

#[tokio::test]
async fn a_missing_tag_or_blob_is_not_found() {
    let registry = Registry::start().await.unwrap();
    let image = TestImage::builder().label("missing").build().unwrap();
    registry.push("app", "v1", &image).await.unwrap();
    let client = client_for(&registry.host());
    let missing: ImageRef = format!("{}/app:nope", registry.host()).parse().unwrap();
    let result = client.resolve(&missing).await;
    assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
    let blob = client
        .blob(missing.repo(), &Digest::sha256(b"absent"), 1024)
        .await;
    assert!(matches!(blob, Err(Error::NotFound { .. })), "{blob:?}");
}

#[tokio::test]
async fn a_multi_arch_index_resolves_to_the_index() {
    let registry = Registry::start().await.unwrap();
    let amd = TestImage::builder().label("arch=amd64").build().unwrap();
    let arm = TestImage::builder().label("arch=arm64").build().unwrap();
    let amd_digest = registry.push("multi", "amd64", &amd).await.unwrap();
    let arm_digest = registry.push("multi", "arm64", &arm).await.unwrap();
    let index_digest = registry
        .push_index("multi", "v1", &[&amd, &arm])
        .await
        .unwrap();
    let client = client_for(&registry.host());
    let image: ImageRef = format!("{}/multi:v1", registry.host()).parse().unwrap();
    let fetched = client.resolve_manifest(&image).await.unwrap();
    assert_eq!(fetched.descriptor.digest, digest(&index_digest));
    assert_eq!(fetched.descriptor.media_type, OCI_INDEX);
    let Manifest::Index(index) = fetched.manifest else {
        panic!("not an index")
    };
    let listed: Vec<String> = index
        .manifests
        .iter()
        .map(|d| d.digest.to_string())
        .collect();
    assert_eq!(listed, vec![amd_digest, arm_digest]);
}

/// Pushes an artifact manifest whose subject is `subject`, and returns its digest and size.
async fn push_artifact(
    registry: &Registry,
    repo: &str,
    subject: (&str, usize),
    artifact_type: &str,
    payload: &[u8],
) -> (String, usize) {
    let empty = registry.push_blob(repo, b"{}").await.unwrap();
    let layer = registry.push_blob(repo, payload).await.unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": payload.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0, "size": subject.1},
    }))
    .unwrap();
    let pushed = registry
        .push_manifest(
            repo,
            &Digest::sha256(&manifest).to_string(),
            OCI_MANIFEST,
            &manifest,
        )
        .await
        .unwrap();
    (pushed, manifest.len())
}

#[tokio::test]
async fn referrers_fall_back_to_the_tag_schema_on_a_registry_without_the_api() {
    let registry = Registry::start().await.unwrap();
    let image = TestImage::builder().label("referred").build().unwrap();
    let image_digest = registry.push("app", "v1", &image).await.unwrap();
    let subject = (image_digest.as_str(), image.manifest_size());
    let (signature, signature_size) =
        push_artifact(&registry, "app", subject, NOTATION, b"jws").await;
    let (sbom, sbom_size) = push_artifact(&registry, "app", subject, SBOM, b"sbom").await;
    // What Notation and ORAS do on a registry without the referrers API (OCI distribution
    // spec v1.1, "Referrers Tag Schema"): an index of the referrers, tagged `sha256-<hex>`.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": signature, "size": signature_size, "artifactType": NOTATION},
            {"mediaType": OCI_MANIFEST, "digest": sbom, "size": sbom_size, "artifactType": SBOM},
        ],
    }))
    .unwrap();
    let subject_digest = digest(&image_digest);
    registry
        .push_manifest("app", &subject_digest.tag_form(), OCI_INDEX, &index)
        .await
        .unwrap();

    let client = client_for(&registry.host());
    let repo: Repository = format!("{}/app", registry.host()).parse().unwrap();
    let notation = client
        .referrers(&repo, &subject_digest, Some(NOTATION))
        .await
        .unwrap();
    assert_eq!(notation.len(), 1);
    assert_eq!(notation[0].digest, digest(&signature));
    let all = client
        .referrers(&repo, &subject_digest, None)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    // The artifact found is fetchable, digest-checked, and names the image as subject.
    let artifact = client.manifest(&repo, &notation[0].digest).await.unwrap();
    assert_eq!(artifact.manifest.subject().unwrap().digest, subject_digest);

    // An image nobody refers to has no referrers: an empty answer, not an error.
    let other = TestImage::builder().label("lonely").build().unwrap();
    let other_digest = registry.push("app", "v2", &other).await.unwrap();
    let none = client
        .referrers(&repo, &digest(&other_digest), None)
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn cosign_signature_tag_is_found_or_absent() {
    let registry = Registry::start().await.unwrap();
    let image = TestImage::builder().label("cosigned").build().unwrap();
    let image_digest = digest(&registry.push("app", "v1", &image).await.unwrap());
    let payload = serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": format!("{}/app", registry.host())},
            "image": {"docker-manifest-digest": image_digest.to_string()},
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .unwrap();
    let empty = registry.push_blob("app", b"{}").await.unwrap();
    let layer = registry.push_blob("app", &payload).await.unwrap();
    let signature = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [{
            "mediaType": SIMPLE_SIGNING, "digest": layer, "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="},
        }],
    }))
    .unwrap();
    let tag = format!("{}.sig", image_digest.tag_form());
    let signature_digest = registry
        .push_manifest("app", &tag, OCI_MANIFEST, &signature)
        .await
        .unwrap();

    let client = client_for(&registry.host());
    let repo: Repository = format!("{}/app", registry.host()).parse().unwrap();
    let found = client
        .cosign_signature(&repo, &image_digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.descriptor.digest, digest(&signature_digest));
    let Manifest::Image(manifest) = &found.manifest else {
        panic!("not a manifest")
    };
    assert_eq!(manifest.layers[0].media_type, SIMPLE_SIGNING);
    let blob = client
        .blob(&repo, &manifest.layers[0].digest, 64 * 1024)
        .await
        .unwrap();
    assert_eq!(&blob[..], &payload[..]);

    let unsigned = TestImage::builder().label("unsigned").build().unwrap();
    let unsigned_digest = digest(&registry.push("app", "v2", &unsigned).await.unwrap());
    assert!(client
        .cosign_signature(&repo, &unsigned_digest)
        .await
        .unwrap()
        .is_none());
}

// ---------------------------------------------------------------------------------------
// Against a stand-in server.
// ---------------------------------------------------------------------------------------

type Body = BoxBody<Bytes, Infallible>;
type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// A stand-in for faults the real registry cannot produce (oversized, mislabelled or
/// endless bodies, wrong digests, slow answers, redirect loops, broken JSON, token
/// endpoints), and for the OCI 1.1 referrers API, which Debian's registry 2.8 lacks. It is
/// an HTTP/1.1 server on 127.0.0.1:0 that answers every request with `handler`; it stops
/// when dropped.
struct StandIn {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        Self::serve(None, handler).await
    }

    /// As [`StandIn::start`], over TLS with `tls`'s certificate.
    async fn start_tls<F, Fut>(tls: &TestTls, handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        Self::serve(Some(tls.acceptor()), handler).await
    }

    async fn serve<F, Fut>(tls: Option<tokio_rustls::TlsAcceptor>, handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |request| Box::pin(handler(request)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = Arc::clone(&handler);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let handler = Arc::clone(&handler);
                        async move { Ok::<_, Infallible>(handler(request).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            http.serve_connection(TokioIo::new(stream), service).await
                        }
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                    };
                });
            }
        });
        Self { addr, task }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn repo(&self) -> Repository {
        format!("{}/app", self.host()).parse().unwrap()
    }

    /// A client for this server with short timeouts, so hostile cases end quickly.
    fn client(&self) -> Client {
        self.client_with(short_timeouts())
    }

    /// A client for this server (plain HTTP) with `config`, as given.
    fn client_with(&self, config: RegistryConfig) -> Client {
        Client::new(RegistryConfig {
            plain_http: vec![self.host()],
            ..config
        })
        .unwrap()
    }
}

/// The registry settings of [`StandIn::client`]: short timeouts.
fn short_timeouts() -> RegistryConfig {
    RegistryConfig {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        ..RegistryConfig::default()
    }
}

/// Short timeouts, but room to answer and read bodies of megabytes, as a test's stand-in
/// (sharing its one thread with the client, in a debug build) serves them.
fn bulk_timeouts() -> RegistryConfig {
    RegistryConfig {
        request_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        ..short_timeouts()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The request's `Authorization` value, empty when it has none.
fn authorization(request: &Request<Incoming>) -> String {
    request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A client allowed plain HTTP to `hosts`, with the Basic credentials `user:pass`.
fn client_as_user(hosts: Vec<String>) -> Client {
    Client::new(RegistryConfig {
        plain_http: hosts,
        ..RegistryConfig::default()
    })
    .unwrap()
    .with_credentials(Credentials::Basic {
        username: "user".into(),
        password: crigate::registry::Secret::new("pass"),
    })
}

/// A 307 to `location`.
fn redirect_to(location: &str) -> Response<Body> {
    respond(
        StatusCode::TEMPORARY_REDIRECT,
        &[("location", location)],
        "",
    )
}

fn respond(status: StatusCode, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(Full::new(body.into()).boxed()).unwrap()
}

fn streamed(
    status: StatusCode,
    headers: &[(&str, &str)],
    body: impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static,
) -> Response<Body> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(StreamBody::new(body).boxed()).unwrap()
}

fn manifest_json(padding_to: Option<usize>) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_EMPTY, "digest": Digest::sha256(b"{}").to_string(), "size": 2},
        "layers": [],
    }))
    .unwrap();
    if let Some(len) = padding_to {
        bytes.resize(len, b' ');
    }
    bytes
}

fn referrer(n: u8, artifact_type: &str) -> serde_json::Value {
    json!({"mediaType": OCI_MANIFEST, "digest": Digest::sha256(&[n]).to_string(), "size": 100, "artifactType": artifact_type})
}

#[tokio::test]
async fn referrers_api_pages_are_followed_and_filtered_client_side() {
    let subject = Digest::sha256(b"subject");
    let seen_queries = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&seen_queries);
    let server = StandIn::start(move |request| {
        let seen = Arc::clone(&seen);
        async move {
            let query = request.uri().query().unwrap_or_default().to_owned();
            seen.lock().unwrap().push(query.clone());
            // The server ignores the filter (no OCI-Filters-Applied), as the spec allows.
            let (manifests, link) = if query.contains("page=2") {
                (vec![referrer(3, NOTATION)], None)
            } else {
                (
                    vec![referrer(1, NOTATION), referrer(2, SBOM)],
                    Some(format!(
                        "<{}?artifactType=x&page=2>; rel=\"next\"",
                        request.uri().path()
                    )),
                )
            };
            let body = serde_json::to_vec(
                &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
            )
            .unwrap();
            let mut headers = vec![("content-type", OCI_INDEX)];
            if let Some(link) = &link {
                headers.push(("link", link.as_str()));
            }
            respond(StatusCode::OK, &headers, body)
        }
    })
    .await;
    let found = server
        .client()
        .referrers(&server.repo(), &subject, Some(NOTATION))
        .await
        .unwrap();
    let digests: Vec<Digest> = found.iter().map(|d| d.digest.clone()).collect();
    assert_eq!(digests, vec![Digest::sha256(&[1]), Digest::sha256(&[3])]);
    let queries = seen_queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 2);
    assert!(
        queries[0].contains("artifactType=application%2Fvnd.cncf.notary.signature"),
        "{queries:?}"
    );
}

#[tokio::test]
async fn a_referrers_answer_that_is_no_index_falls_back_to_the_tag_schema() {
    // A registry (or a proxy before it) that answers the referrers path with a page of
    // its own under 200 OK. The stand-in serves the referrers tag as such a registry's
    // clients push it.
    let subject = Digest::sha256(b"subject");
    let tagged = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [referrer(7, NOTATION)]}),
    )
    .unwrap();
    let untyped = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [referrer(8, NOTATION)]}),
    )
    .unwrap();
    for (content_type, body) in [
        (
            "text/html; charset=utf-8",
            b"<html>not found</html>".to_vec(),
        ),
        ("application/json", untyped),
    ] {
        let server = referrers_stand_in(&subject, tagged.clone(), move || {
            respond(
                StatusCode::OK,
                &[("content-type", content_type)],
                body.clone(),
            )
        })
        .await;
        let found = server
            .client()
            .referrers(&server.repo(), &subject, Some(NOTATION))
            .await
            .unwrap_or_else(|e| panic!("{content_type}: {e}"));
        let digests: Vec<Digest> = found.iter().map(|d| d.digest.clone()).collect();
        assert_eq!(digests, vec![Digest::sha256(&[7])], "{content_type}");
    }
}

/// A stand-in registry whose referrers API answers `answer()` and whose referrers tag for
/// `subject` holds the index `tagged`; anything else is 404.
async fn referrers_stand_in(
    subject: &Digest,
    tagged: Vec<u8>,
    answer: impl Fn() -> Response<Body> + Send + Sync + 'static,
) -> StandIn {
    let tag = subject.tag_form();
    let answer = Arc::new(answer);
    StandIn::start(move |request| {
        let (tag, tagged, answer) = (tag.clone(), tagged.clone(), Arc::clone(&answer));
        async move {
            let path = request.uri().path();
            if path.contains("/referrers/") {
                answer()
            } else if path.ends_with(&format!("/manifests/{tag}")) {
                respond(StatusCode::OK, &[("content-type", OCI_INDEX)], tagged)
            } else {
                respond(StatusCode::NOT_FOUND, &[], Vec::new())
            }
        }
    })
    .await
}

/// Stand-in (a real registry answers the spec's 404): registries and proxies that answer
/// the referrers path with other codes have no API either, and the tag schema is read; a
/// server error stays an error.
#[tokio::test]
async fn referrers_answered_with_a_no_api_status_fall_back_to_the_tag_schema() {
    let subject = Digest::sha256(b"subject");
    let tagged = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [referrer(9, NOTATION)]}),
    )
    .unwrap();
    for code in [400, 405, 406, 501, 500] {
        let server = referrers_stand_in(&subject, tagged.clone(), move || {
            respond(StatusCode::from_u16(code).unwrap(), &[], Vec::new())
        })
        .await;
        let found = server
            .client()
            .referrers(&server.repo(), &subject, Some(NOTATION))
            .await;
        if code == 500 {
            assert!(
                matches!(found, Err(Error::Status { code: 500, .. })),
                "{found:?}"
            );
            continue;
        }
        let digests: Vec<Digest> = found
            .unwrap_or_else(|e| panic!("HTTP {code}: {e}"))
            .iter()
            .map(|d| d.digest.clone())
            .collect();
        assert_eq!(digests, vec![Digest::sha256(&[9])], "HTTP {code}");
    }
}

/// Stand-in: a registry (GitLab's) that answers the `sha256-<hex>` tag with the manifest
/// of that digest holds no referrers index there: no referrers, not an error.
/// Some registries (GitLab's) answer the referrers tag `sha256-<hex>` with the manifest of
/// that digest, the subject itself: an image, or an index whose platform manifests are
/// not its referrers. No referrers either way.
#[tokio::test]
async fn a_referrers_tag_answered_with_the_subject_itself_means_no_referrers() {
    let image = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256(b"c").to_string(), "size": 1},
        "layers": [],
    });
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": Digest::sha256(b"platform").to_string(),
            "size": 8,
            "platform": {"os": "linux", "architecture": "amd64"},
        }],
    });
    let image = serde_json::to_vec(&image).unwrap();
    let index = serde_json::to_vec(&index).unwrap();
    for (bytes, media_type, subject) in [
        // An image manifest under the tag is never a referrers index, whatever its digest.
        (image.clone(), OCI_MANIFEST, Digest::sha256(b"subject")),
        (image.clone(), OCI_MANIFEST, Digest::sha256(&image)),
        (index.clone(), OCI_INDEX, Digest::sha256(&index)),
    ] {
        let tag = subject.tag_form();
        let server = StandIn::start(move |request| {
            let (tag, bytes) = (tag.clone(), bytes.clone());
            async move {
                if request.uri().path().ends_with(&format!("/manifests/{tag}")) {
                    respond(StatusCode::OK, &[("content-type", media_type)], bytes)
                } else {
                    respond(StatusCode::NOT_FOUND, &[], Vec::new())
                }
            }
        })
        .await;
        let found = server
            .client()
            .referrers(&server.repo(), &subject, None)
            .await
            .unwrap();
        assert!(found.is_empty(), "{media_type} {subject}: {found:?}");
    }
}

/// A registry whose referrers listing never ends: every answer is `page`, with a link to
/// a next page; `pages` counts the answers.
async fn endless_referrers(page: Bytes, pages: Arc<AtomicUsize>) -> StandIn {
    StandIn::start(move |request| {
        let (pages, page) = (pages.clone(), page.clone());
        async move {
            let next = format!(
                "<{}?page={}>; rel=\"next\"",
                request.uri().path(),
                rand_page()
            );
            pages.fetch_add(1, Ordering::SeqCst);
            respond(
                StatusCode::OK,
                &[("content-type", OCI_INDEX), ("link", &next)],
                page,
            )
        }
    })
    .await
}

#[tokio::test]
async fn referrers_api_stops_at_the_page_limit() {
    let empty =
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}))
            .unwrap();
    let pages = Arc::new(AtomicUsize::new(0));
    let server = endless_referrers(Bytes::from(empty), pages.clone()).await;
    let client = server.client_with(RegistryConfig {
        max_referrer_pages: 3,
        ..short_timeouts()
    });
    let result = client
        .referrers(&server.repo(), &Digest::sha256(b"s"), None)
        .await;
    assert!(
        matches!(result, Err(Error::TooManyPages { limit: 3, .. })),
        "{result:?}"
    );
    assert_eq!(pages.load(Ordering::SeqCst), 3);
}

/// A JSON document of about `len` bytes that registries could serve as an image index:
/// its `manifests` empty, and an unknown field holding as many small objects as fit,
/// the shape that costs a parser the most per byte.
fn index_of_small_objects(len: usize) -> Vec<u8> {
    let mut document =
        format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[],"x":[{{"a":0}}"#);
    while document.len() + 10 < len {
        document.push_str(r#",{"a":0}"#);
    }
    document.push_str("]}");
    document.into_bytes()
}

/// A manifest made slow to parse (4 MiB of small objects) is parsed off the thread that
/// relays CRI calls: a task on that thread keeps running while it is read.
#[tokio::test(flavor = "current_thread")]
async fn a_manifest_slow_to_parse_leaves_the_relaying_thread_free() {
    let body = Bytes::from(index_of_small_objects(MAX_MANIFEST_BYTES - 64));
    let server = StandIn::start(move |_request| {
        let body = body.clone();
        async move { respond(StatusCode::OK, &[("content-type", OCI_INDEX)], body) }
    })
    .await;
    let image: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
    let client = server.client_with(bulk_timeouts());
    // A task on this (single) thread, as the relay is on crigate's: the longest it waited
    // for its turn while the manifest was fetched and parsed.
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    let ticker = tokio::spawn({
        let longest = longest.clone();
        async move {
            loop {
                let started = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                let waited = started.elapsed();
                let mut longest = longest.lock().unwrap();
                *longest = (*longest).max(waited);
            }
        }
    });
    let fetched = client.resolve_manifest(&image).await.unwrap();
    // The ticker's turn, to count a wait that ended with the fetch.
    tokio::time::sleep(Duration::from_millis(20)).await;
    ticker.abort();
    assert!(matches!(fetched.manifest, Manifest::Index(ref index) if index.manifests.is_empty()));
    let longest = *longest.lock().unwrap();
    assert!(
        longest < Duration::from_millis(500),
        "the thread was held for {longest:?}"
    );
}

/// Referrers pages are read up to 8 MiB from one host, however many pages the
/// configuration allows: what a registry lists is held until the decision.
#[tokio::test]
async fn referrers_pages_past_the_byte_bound_are_not_read() {
    let pages = Arc::new(AtomicUsize::new(0));
    let page = Bytes::from(index_of_small_objects(3 * 1024 * 1024));
    let server = endless_referrers(page, pages.clone()).await;
    let client = server.client_with(RegistryConfig {
        max_referrer_pages: 16,
        ..bulk_timeouts()
    });
    let result = client
        .referrers(&server.repo(), &Digest::sha256(b"s"), None)
        .await;
    assert!(
        matches!(result, Err(Error::TooLarge { ref what, limit }) if limit == 2 * MAX_MANIFEST_BYTES && what.contains("pages 1 to 3")),
        "{result:?}"
    );
    assert_eq!(pages.load(Ordering::SeqCst), 3);
}

/// Referrer manifests read to learn their type stop at 8 MiB read from one host, well
/// before the 64 manifests otherwise read, and what was read is still judged.
#[tokio::test]
async fn referrer_manifests_past_the_byte_bound_are_not_read() {
    let manifest_reads = Arc::new(AtomicUsize::new(0));
    // 64 manifests of a type nobody wants, each with 640 KiB of annotations.
    let annotations: String = (0..40_000).map(|i| format!(r#""k{i:08}":"v","#)).collect();
    let manifests: std::collections::HashMap<String, Bytes> = (0..64)
        .map(|i| {
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/example.unwanted","config":{{"mediaType":"{OCI_EMPTY}","digest":"{}","size":2}},"layers":[],"annotations":{{{annotations}"n":"{i}"}}}}"#,
                Digest::sha256(b"{}")
            );
            (Digest::sha256(manifest.as_bytes()).to_string(), Bytes::from(manifest))
        })
        .collect();
    let size = manifests.values().map(Bytes::len).max().unwrap();
    // Listed with no artifact type, so each must be read to learn it.
    let listing: Vec<serde_json::Value> = manifests
        .iter()
        .map(|(digest, manifest)| json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len()}))
        .collect();
    let listing = Bytes::from(
        serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listing}),
        )
        .unwrap(),
    );
    let manifests = Arc::new(manifests);
    let server = StandIn::start({
        let manifest_reads = manifest_reads.clone();
        move |request| {
            let (manifest_reads, manifests, listing) =
                (manifest_reads.clone(), manifests.clone(), listing.clone());
            async move {
                let path = request.uri().path();
                if path.contains("/referrers/") {
                    return respond(StatusCode::OK, &[("content-type", OCI_INDEX)], listing);
                }
                let digest = path.rsplit('/').next().unwrap_or_default();
                let Some(manifest) = manifests.get(digest) else {
                    return respond(StatusCode::NOT_FOUND, &[], "");
                };
                manifest_reads.fetch_add(1, Ordering::SeqCst);
                respond(
                    StatusCode::OK,
                    &[("content-type", OCI_MANIFEST)],
                    manifest.clone(),
                )
            }
        }
    })
    .await;
    let found = server
        .client_with(bulk_timeouts())
        .referrers_where(
            &server.repo(),
            &Digest::sha256(b"s"),
            |descriptor| match descriptor.artifact_type.as_deref() {
                None | Some("") => Wanted::ByManifest,
                Some(_) => Wanted::No,
            },
        )
        .await;
    assert!(found.unwrap().is_empty());
    let reads = manifest_reads.load(Ordering::SeqCst);
    let bound = 2 * MAX_MANIFEST_BYTES / size + 1;
    assert!(
        reads > 1 && reads <= bound,
        "{reads} manifests of {size} bytes read"
    );
}

/// A different page number each call, so every page is new.
fn rand_page() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    PAGE.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn referrers_api_filtered_by_the_server_is_trusted_and_rechecked() {
    let server = StandIn::start(|_request| async move {
        // Claims to have filtered but slips another type in: filtered again here.
        let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [referrer(1, NOTATION), referrer(2, SBOM)]}))
        .unwrap();
        respond(
            StatusCode::OK,
            &[
                ("content-type", OCI_INDEX),
                ("oci-filters-applied", "artifactType"),
            ],
            body,
        )
    })
    .await;
    let found = server
        .client()
        .referrers(&server.repo(), &Digest::sha256(b"s"), Some(NOTATION))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

/// Serves the manifest `bytes` at any manifests path once the bearer token is right, and a
/// token endpoint at `/token` that wants Basic `user:pass`.
async fn token_server(token_requests: Arc<AtomicUsize>) -> StandIn {
    let manifest = manifest_json(None);
    let addr_cell: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
    let cell = Arc::clone(&addr_cell);
    let server = StandIn::start(move |request| {
        let manifest = manifest.clone();
        let token_requests = Arc::clone(&token_requests);
        let cell = Arc::clone(&cell);
        async move {
            let auth = authorization(&request);
            if request.uri().path() == "/token" {
                token_requests.fetch_add(1, Ordering::SeqCst);
                let query = request.uri().query().unwrap_or_default();
                let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("user:pass"));
                if auth != basic || !query.contains("service=standin") || !query.contains("scope=repository%3Aapp%3Apull") {
                    return respond(StatusCode::UNAUTHORIZED, &[], "no");
                }
                return respond(StatusCode::OK, &[], r#"{"access_token":"tok-1","expires_in":300}"#);
            }
            if auth == "Bearer tok-1" {
                return respond(StatusCode::OK, &[("content-type", OCI_MANIFEST)], manifest);
            }
            let addr = cell.lock().unwrap().unwrap();
            let challenge = format!(
                "Bearer realm=\"http://{addr}/token\",service=\"standin\",scope=\"repository:app:pull\""
            );
            respond(StatusCode::UNAUTHORIZED, &[("www-authenticate", &challenge)], "{}")
        }
    })
    .await;
    *addr_cell.lock().unwrap() = Some(server.addr);
    server
}

#[tokio::test]
async fn bearer_token_flow_fetches_caches_and_reuses_a_token() {
    let token_requests = Arc::new(AtomicUsize::new(0));
    let server = token_server(Arc::clone(&token_requests)).await;
    let credentials = Credentials::from_cri(CriAuth {
        auth: &base64::engine::general_purpose::STANDARD.encode("user:pass"),
        ..CriAuth::default()
    })
    .unwrap();
    let client = server.client().with_credentials(credentials);
    let image: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
    let first = client.resolve(&image).await.unwrap();
    assert_eq!(first.digest, Digest::sha256(&manifest_json(None)));
    let second = client.resolve(&image).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(
        token_requests.load(Ordering::SeqCst),
        1,
        "the token is cached"
    );

    // Other credentials do not get the cached token: they ask, and are refused.
    let wrong = server.client().with_credentials(Credentials::Basic {
        username: "user".into(),
        password: crigate::registry::Secret::new("wrong"),
    });
    let refused = wrong.resolve(&image).await;
    assert!(
        matches!(
            refused,
            Err(Error::Unauthorized {
                status: 401,
                anonymous: false,
                ..
            })
        ),
        "{refused:?}"
    );
    let anonymous = server.client().resolve(&image).await;
    assert!(
        matches!(
            anonymous,
            Err(Error::Unauthorized {
                anonymous: true,
                ..
            })
        ),
        "{anonymous:?}"
    );
    // Said as it is: crigate had nothing to send.
    let message = anonymous.unwrap_err().to_string();
    assert!(
        message.contains("refused a request without credentials (crigate holds none"),
        "{message}"
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("refused our credentials"),
        "the refusal of credentials sent"
    );
}

/// A token realm that redirects is followed, as Go's HTTP client follows it for
/// containerd: the credentials go along within the realm's origin, never to another.
#[tokio::test]
async fn a_redirecting_token_realm_is_followed_without_leaking_credentials() {
    let leaked = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&leaked);
    let other = StandIn::start(move |request| {
        let seen = Arc::clone(&seen);
        async move {
            if request.headers().contains_key("authorization") {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            respond(StatusCode::OK, &[], r#"{"token":"tok-other"}"#)
        }
    })
    .await;
    let other_token = format!("http://{}/token", other.host());
    let addr_cell: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
    let cell = Arc::clone(&addr_cell);
    let server = StandIn::start(move |request| {
        let cell = Arc::clone(&cell);
        let other_token = other_token.clone();
        async move {
            let auth = authorization(&request);
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("user:pass")
            );
            match request.uri().path() {
                "/moved" => respond(
                    StatusCode::TEMPORARY_REDIRECT,
                    &[("location", "/token")],
                    "",
                ),
                "/token" if auth == basic => respond(StatusCode::OK, &[], r#"{"token":"tok-own"}"#),
                "/token" => respond(StatusCode::UNAUTHORIZED, &[], "no"),
                "/away" => respond(StatusCode::FOUND, &[("location", &other_token)], ""),
                path => {
                    if auth == "Bearer tok-own" || auth == "Bearer tok-other" {
                        return respond(
                            StatusCode::OK,
                            &[("content-type", OCI_MANIFEST)],
                            manifest_json(None),
                        );
                    }
                    let addr = cell.lock().unwrap().unwrap();
                    let realm = if path.starts_with("/v2/same/") {
                        "moved"
                    } else {
                        "away"
                    };
                    let challenge =
                        format!("Bearer realm=\"http://{addr}/{realm}\",service=\"standin\"");
                    respond(
                        StatusCode::UNAUTHORIZED,
                        &[("www-authenticate", &challenge)],
                        "",
                    )
                }
            }
        }
    })
    .await;
    *addr_cell.lock().unwrap() = Some(server.addr);
    let client = client_as_user(vec![server.host(), other.host()]);
    for repo in ["same", "cross"] {
        let image: ImageRef = format!("{}/{repo}:v1", server.host()).parse().unwrap();
        let descriptor = client.resolve(&image).await.unwrap();
        assert_eq!(
            descriptor.digest,
            Digest::sha256(&manifest_json(None)),
            "{repo}"
        );
    }
    assert_eq!(
        leaked.load(Ordering::SeqCst),
        0,
        "credentials reached another origin"
    );
}

#[tokio::test]
async fn basic_challenge_is_answered_with_basic_credentials() {
    let server = StandIn::start(|request| async move {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p")
        );
        match request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            Some(auth) if auth == expected => respond(
                StatusCode::OK,
                &[("content-type", OCI_MANIFEST)],
                manifest_json(None),
            ),
            _ => respond(
                StatusCode::UNAUTHORIZED,
                &[("www-authenticate", "Basic realm=\"standin\"")],
                "",
            ),
        }
    })
    .await;
    let image: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
    let client = server.client().with_credentials(Credentials::Basic {
        username: "u".into(),
        password: crigate::registry::Secret::new("p"),
    });
    assert!(client.resolve(&image).await.is_ok());
    let anonymous = server.client().resolve(&image).await;
    assert!(
        matches!(anonymous, Err(Error::Unauthorized { .. })),
        "{anonymous:?}"
    );
}

#[tokio::test]
async fn a_malformed_token_response_is_a_specific_error() {
    let server = StandIn::start(|request| async move {
        if request.uri().path() == "/token" {
            return respond(StatusCode::OK, &[], "<html>");
        }
        let realm = format!(
            "Bearer realm=\"http://{}/token\"",
            request.headers().get("host").unwrap().to_str().unwrap()
        );
        respond(
            StatusCode::UNAUTHORIZED,
            &[("www-authenticate", &realm)],
            "",
        )
    })
    .await;
    let image: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
    let result = server.client().resolve(&image).await;
    assert!(matches!(result, Err(Error::Malformed { .. })), "{result:?}");
}

#[tokio::test]
async fn manifest_size_limit_holds_at_its_edges() {
    let server = StandIn::start(|request| async move {
        let len: usize = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap_or(0);
        respond(
            StatusCode::OK,
            &[("content-type", OCI_MANIFEST)],
            manifest_json(Some(len)),
        )
    })
    .await;
    let client = server.client_with(bulk_timeouts());
    for (len, ok) in [
        (MAX_MANIFEST_BYTES - 1, true),
        (MAX_MANIFEST_BYTES, true),
        (MAX_MANIFEST_BYTES + 1, false),
    ] {
        // The tag is the length the stand-in pads its answer to.
        let image: ImageRef = format!("{}/app:{len}", server.host()).parse().unwrap();
        let result = client.resolve(&image).await;
        if ok {
            assert_eq!(result.unwrap().size, len as u64);
        } else {
            assert!(
                matches!(
                    result,
                    Err(Error::TooLarge {
                        limit: MAX_MANIFEST_BYTES,
                        ..
                    })
                ),
                "{result:?}"
            );
        }
    }
}

#[tokio::test]
async fn an_oversized_chunked_manifest_is_cut_off() {
    // No Content-Length: the limit is enforced on the bytes as they come.
    let server = StandIn::start(|_request| async move {
        let chunks = (0..(MAX_MANIFEST_BYTES / 4096 + 2))
            .map(|_| Ok(Frame::data(Bytes::from(vec![b' '; 4096]))));
        streamed(
            StatusCode::OK,
            &[("content-type", OCI_MANIFEST)],
            stream::iter(chunks),
        )
    })
    .await;
    let image: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
    let result = server.client().resolve(&image).await;
    assert!(matches!(result, Err(Error::TooLarge { .. })), "{result:?}");
}

#[tokio::test]
async fn an_endless_blob_is_refused_at_the_limit() {
    let server = StandIn::start(|_request| async move {
        let endless =
            stream::repeat_with(|| Ok(Frame::data(Bytes::from_static(&[0u8; 16 * 1024]))));
        streamed(StatusCode::OK, &[], endless)
    })
    .await;
    let started = Instant::now();
    let result = server
        .client()
        .blob(&server.repo(), &Digest::sha256(b"x"), 1024 * 1024)
        .await;
    assert!(
        matches!(
            result,
            Err(Error::TooLarge {
                limit: 1_048_576,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_wrong_digest_is_a_mismatch_for_manifests_and_blobs() {
    let server = StandIn::start(|_request| async move {
        respond(
            StatusCode::OK,
            &[
                ("content-type", OCI_MANIFEST),
                (
                    "docker-content-digest",
                    "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                ),
            ],
            manifest_json(None),
        )
    })
    .await;
    let asked = Digest::sha256(b"something else");
    let client = server.client();
    let manifest = client.manifest(&server.repo(), &asked).await;
    assert!(
        matches!(manifest, Err(Error::DigestMismatch { .. })),
        "{manifest:?}"
    );
    let blob = client.blob(&server.repo(), &asked, 1024 * 1024).await;
    assert!(
        matches!(blob, Err(Error::DigestMismatch { .. })),
        "{blob:?}"
    );
    let pinned: ImageRef = format!("{}/app@{asked}", server.host()).parse().unwrap();
    assert!(matches!(
        client.resolve(&pinned).await,
        Err(Error::DigestMismatch { .. })
    ));
    // By tag, the digest is ours, whatever Docker-Content-Digest said.
    let by_tag: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
    assert_eq!(
        client.resolve(&by_tag).await.unwrap().digest,
        Digest::sha256(&manifest_json(None))
    );
}

#[tokio::test]
async fn slow_headers_time_out_within_the_bound() {
    let server = StandIn::start(|_request| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        respond(StatusCode::OK, &[], "")
    })
    .await;
    let image: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
    let started = Instant::now();
    let result = server.client().resolve(&image).await;
    assert!(
        matches!(result, Err(Error::Timeout { after, .. }) if after == Duration::from_millis(500)),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_trickling_body_times_out_within_the_bound() {
    let server = StandIn::start(|_request| async move {
        let trickle = stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok(Frame::data(Bytes::from_static(b" "))), ()))
        });
        streamed(StatusCode::OK, &[("content-type", OCI_MANIFEST)], trickle)
    })
    .await;
    let image: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
    let started = Instant::now();
    let result = server.client().resolve(&image).await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn redirect_loops_and_long_chains_are_refused() {
    let server = StandIn::start(|request| async move {
        let path = request.uri().path().to_owned();
        let location = if path.ends_with("/loop") {
            path.clone()
        } else {
            // /v2/app/blobs/<digest> -> /hop/1 -> /hop/2 -> ... never ending, never repeating.
            let n: usize = path
                .rsplit('/')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            format!("/hop/{}", n + 1)
        };
        respond(StatusCode::FOUND, &[("location", &location)], "")
    })
    .await;
    let client = server.client();
    let chain = client
        .blob(&server.repo(), &Digest::sha256(b"x"), 1024)
        .await;
    assert!(
        matches!(chain, Err(Error::RedirectLoop { limit: 5, .. })),
        "{chain:?}"
    );
    let looping: ImageRef = format!("{}/app:loop", server.host()).parse().unwrap();
    let result = client.resolve(&looping).await;
    assert!(
        matches!(result, Err(Error::RedirectLoop { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn blob_redirects_to_storage_are_followed_without_credentials() {
    let payload = b"blob payload".to_vec();
    let storage_payload = payload.clone();
    let storage = StandIn::start(move |request| {
        let payload = storage_payload.clone();
        async move {
            if request.headers().contains_key("authorization") {
                return respond(
                    StatusCode::BAD_REQUEST,
                    &[],
                    "credentials leaked to storage",
                );
            }
            respond(StatusCode::OK, &[], payload)
        }
    })
    .await;
    let storage_url = format!("http://{}/storage/blob", storage.host());
    let registry = StandIn::start(move |_request| {
        let location = storage_url.clone();
        async move { redirect_to(&location) }
    })
    .await;
    let client = Client::new(RegistryConfig {
        plain_http: vec![registry.host(), storage.host()],
        ..RegistryConfig::default()
    })
    .unwrap()
    .with_credentials(Credentials::RegistryToken(crigate::registry::Secret::new(
        "tok",
    )));
    let blob = client
        .blob(&registry.repo(), &Digest::sha256(&payload), 1024)
        .await
        .unwrap();
    assert_eq!(&blob[..], &payload[..]);

    // Storage on a host not allowed plain HTTP is refused.
    let strict = registry.client();
    let refused = strict
        .blob(&registry.repo(), &Digest::sha256(&payload), 1024)
        .await;
    assert!(
        matches!(refused, Err(Error::InsecureScheme { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn malformed_and_mislabelled_manifests_are_specific_errors() {
    let server = StandIn::start(|request| async move {
        match request.uri().path().rsplit('/').next().unwrap() {
            "json" => respond(
                StatusCode::OK,
                &[("content-type", OCI_MANIFEST)],
                "{\"schemaVersion\": 2, \"config\": ",
            ),
            "mislabelled" => respond(
                StatusCode::OK,
                &[("content-type", OCI_INDEX)],
                manifest_json(None),
            ),
            "unknown" => respond(
                StatusCode::OK,
                &[("content-type", "text/html")],
                manifest_json(None),
            ),
            _ => respond(StatusCode::INTERNAL_SERVER_ERROR, &[], "boom"),
        }
    })
    .await;
    let client = server.client();
    let resolve = |tag: &str| {
        let image: ImageRef = format!("{}/app:{tag}", server.host()).parse().unwrap();
        let client = client.clone();
        async move { client.resolve(&image).await }
    };
    assert!(matches!(
        resolve("json").await,
        Err(Error::Manifest {
            source: crigate::oci::ManifestError::Json(_),
            ..
        })
    ));
    assert!(matches!(
        resolve("mislabelled").await,
        Err(Error::Manifest {
            source: crigate::oci::ManifestError::MediaTypeMismatch { .. },
            ..
        })
    ));
    assert!(matches!(
        resolve("unknown").await,
        Err(Error::Manifest {
            source: crigate::oci::ManifestError::UnknownMediaType(_),
            ..
        })
    ));
    assert!(matches!(
        resolve("other").await,
        Err(Error::Status { code: 500, .. })
    ));
}

/// A signed Docker schema 1 manifest fetched by the digest its registry names (that of
/// the payload without its signatures) is refused as schema 1, not as tampered content.
#[tokio::test]
async fn a_schema1_manifest_is_refused_as_schema1_before_its_digest_is_checked() {
    let server = StandIn::start(|_request| async move {
        respond(
            StatusCode::OK,
            &[(
                "content-type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )],
            r#"{"schemaVersion": 1, "name": "app", "tag": "v1", "signatures": []}"#,
        )
    })
    .await;
    let stripped = Digest::sha256(br#"{"schemaVersion": 1, "name": "app", "tag": "v1"}"#);
    let result = server.client().manifest(&server.repo(), &stripped).await;
    assert!(
        matches!(
            &result,
            Err(Error::Manifest {
                source: crigate::oci::ManifestError::UnknownMediaType(media_type),
                ..
            }) if media_type.ends_with("v1+prettyjws")
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_unreachable_registry_is_unreachable() {
    // A port that was free a moment ago: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    drop(listener);
    let image: ImageRef = format!("{host}/app:v1").parse().unwrap();
    let result = client_for(&host).resolve(&image).await;
    assert!(
        matches!(result, Err(Error::Unreachable { .. })),
        "{result:?}"
    );
}

/// A test CA and a server certificate for 127.0.0.1 that it issued.
struct TestTls {
    ca_pem: String,
    server_cert: rustls_pki_types::CertificateDer<'static>,
    server_key: Vec<u8>,
    server_pem: String,
    server_key_pem: String,
    /// A client certificate the CA issued, and its key.
    client_pem: String,
    client_key_pem: String,
}

impl TestTls {
    fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "crigate test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "crigate test node");
        let client = client_params.signed_by(&client_key, &ca).unwrap();
        Self {
            ca_pem: ca.pem(),
            server_cert: server.der().clone(),
            server_key: server_key.serialize_der(),
            server_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(self.server_key.clone().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert.clone()], key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// Writes the CA to `dir` and returns its path.
    fn write_ca(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }
}

/// An HTTPS stand-in with `tls`'s certificate that answers every request with one
/// manifest, and the image `app:v1` on it.
async fn tls_registry(tls: &TestTls) -> (StandIn, ImageRef) {
    manifest_registry(tls.acceptor()).await
}

#[tokio::test]
async fn https_registries_are_trusted_through_the_configured_ca_only() {
    let tls = TestTls::new();
    let (_server, image) = tls_registry(&tls).await;
    let dir = tempfile::tempdir().unwrap();
    let trusting = Client::new(RegistryConfig {
        ca_file: Some(tls.write_ca(dir.path())),
        ..RegistryConfig::default()
    })
    .unwrap();
    let descriptor = trusting.resolve(&image).await.unwrap();
    assert_eq!(descriptor.digest, Digest::sha256(&manifest_json(None)));

    // With the system roots alone, the test CA is unknown: the TLS handshake fails.
    let result = Client::new(RegistryConfig::default())
        .unwrap()
        .resolve(&image)
        .await;
    assert!(
        matches!(result, Err(Error::Unreachable { .. })),
        "{result:?}"
    );
}

/// A registry on the node's loopback that no configuration names is read over plain
/// HTTP when it speaks plain HTTP and over HTTPS when it speaks TLS, as the runtime
/// reaches it.
#[tokio::test]
async fn an_unconfigured_loopback_registry_is_read_over_either_scheme() {
    let plain = StandIn::start(|_request| async move {
        respond(
            StatusCode::OK,
            &[("content-type", OCI_MANIFEST)],
            manifest_json(None),
        )
    })
    .await;
    let image: ImageRef = format!("{}/app:v1", plain.host()).parse().unwrap();
    let client = Client::new(RegistryConfig::default()).unwrap();
    let descriptor = client.resolve(&image).await.unwrap();
    assert_eq!(descriptor.digest, Digest::sha256(&manifest_json(None)));

    // `localhost` names the same loopback registry.
    let named: ImageRef = format!("localhost:{}/app:v1", plain.addr.port())
        .parse()
        .unwrap();
    assert_eq!(
        client.resolve(&named).await.unwrap().digest,
        descriptor.digest
    );

    // A TLS registry is read over HTTPS once the plain request fails.
    let tls = TestTls::new();
    let (_server, image) = tls_registry(&tls).await;
    let dir = tempfile::tempdir().unwrap();
    let trusting = Client::new(RegistryConfig {
        ca_file: Some(tls.write_ca(dir.path())),
        ..RegistryConfig::default()
    })
    .unwrap();
    assert_eq!(
        trusting.resolve(&image).await.unwrap().digest,
        Digest::sha256(&manifest_json(None))
    );
    // When both fail, the failure reported is the HTTPS host's: here its certificate.
    let error = client.resolve(&image).await.unwrap_err();
    let mut chain = format!("{error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(
        matches!(&error, Error::Unreachable { .. }) && chain.contains("certificate"),
        "{chain}"
    );

    // A plain-HTTP registry's own refusal is the answer, not the HTTPS host's failure.
    let refusing = StandIn::start(|_request| async move {
        respond(
            StatusCode::UNAUTHORIZED,
            &[("www-authenticate", "Basic realm=\"standin\"")],
            "",
        )
    })
    .await;
    let image: ImageRef = format!("{}/app:v1", refusing.host()).parse().unwrap();
    let refused = client.resolve(&image).await;
    assert!(
        matches!(refused, Err(Error::Unauthorized { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn https_never_redirects_to_plain_http() {
    let tls = TestTls::new();
    let plain =
        StandIn::start(|_request| async move { respond(StatusCode::OK, &[], "leaked") }).await;
    let target = format!("http://{}/storage/blob", plain.host());
    let server = StandIn::start_tls(&tls, move |_request| {
        let target = target.clone();
        async move { respond(StatusCode::FOUND, &[("location", &target)], "") }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Even a host allowed plain HTTP is not reached from an HTTPS request.
    let client = Client::new(RegistryConfig {
        ca_file: Some(tls.write_ca(dir.path())),
        plain_http: vec![plain.host()],
        ..RegistryConfig::default()
    })
    .unwrap();
    let result = client
        .blob(&server.repo(), &Digest::sha256(b"leaked"), 1024)
        .await;
    assert!(
        matches!(result, Err(Error::InsecureRedirect { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn identity_tokens_are_exchanged_at_the_token_endpoint() {
    let server = StandIn::start(|request| async move {
        if request.uri().path() == "/token" {
            // Token spec, "OAuth2 Token": a POSTed form with the refresh token.
            let is_post = request.method() == http::Method::POST;
            let form = request.into_body().collect().await.unwrap().to_bytes();
            let form = String::from_utf8_lossy(&form).into_owned();
            if is_post
                && form.contains("grant_type=refresh_token")
                && form.contains("refresh_token=refresh-1")
            {
                return respond(StatusCode::OK, &[], r#"{"access_token":"tok-2"}"#);
            }
            return respond(StatusCode::UNAUTHORIZED, &[], "");
        }
        manifest_behind_bearer(&request, |token| token == "tok-2", "")
    })
    .await;
    let client = server.client().with_credentials(
        Credentials::from_cri(CriAuth {
            identity_token: "refresh-1",
            ..CriAuth::default()
        })
        .unwrap(),
    );
    let image: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
    assert!(client.resolve(&image).await.is_ok());
}

/// Stand-in for token endpoints as containerd's authorizer meets them: one without the
/// OAuth2 POST (404, as GCR answers) is asked by GET with the refresh token as Basic
/// credentials; a challenge's several scopes go as several `scope` parameters; a user
/// name without a password asks anonymously.
#[tokio::test]
async fn token_requests_fall_back_to_get_split_scopes_and_drop_empty_secrets() {
    /// A token request: method, Authorization header, scope parameters.
    type Seen = (String, Option<String>, Vec<String>);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let server = StandIn::start(move |request| {
        let log = Arc::clone(&log);
        async move {
            if request.uri().path() == "/token" {
                let authorization = request
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                let scopes: Vec<String> = url::form_urlencoded::parse(
                    request.uri().query().unwrap_or_default().as_bytes(),
                )
                .filter(|(name, _)| name == "scope")
                .map(|(_, value)| value.into_owned())
                .collect();
                let method = request.method().to_string();
                log.lock()
                    .unwrap()
                    .push((method.clone(), authorization.clone(), scopes));
                if method == "POST" {
                    return respond(StatusCode::NOT_FOUND, &[], "");
                }
                let refresh = format!("Basic {}", base64_encode(b":refresh-1"));
                let token = match authorization.as_deref() {
                    Some(a) if a == refresh => "tok-refresh",
                    None => "tok-anonymous",
                    Some(_) => return respond(StatusCode::UNAUTHORIZED, &[], ""),
                };
                return respond(StatusCode::OK, &[], format!(r#"{{"token":"{token}"}}"#));
            }
            manifest_behind_bearer(
                &request,
                |token| token.starts_with("tok-"),
                ",scope=\"repository:app:pull repository:base:pull\"",
            )
        }
    })
    .await;
    let image: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
    let refreshing = server.client().with_credentials(
        Credentials::from_cri(CriAuth {
            identity_token: "refresh-1",
            ..CriAuth::default()
        })
        .unwrap(),
    );
    refreshing.resolve(&image).await.unwrap();
    {
        let seen = seen.lock().unwrap();
        let methods: Vec<&str> = seen.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(methods, ["POST", "GET"], "{seen:?}");
        assert_eq!(
            seen[1].2,
            ["repository:app:pull", "repository:base:pull"],
            "{seen:?}"
        );
    }
    seen.lock().unwrap().clear();
    let no_secret = server.client().with_credentials(
        Credentials::from_cri(CriAuth {
            username: "someone",
            ..CriAuth::default()
        })
        .unwrap(),
    );
    no_secret.resolve(&image).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1, None, "{seen:?}");
}

/// A stand-in registry's answer to a request for a manifest: the manifest when the request
/// carries a bearer token `accepted` accepts, else a 401 challenge naming the stand-in's
/// `/token` realm, service `standin`, and `more` after them.
fn manifest_behind_bearer<B>(
    request: &Request<B>,
    accepted: impl Fn(&str) -> bool,
    more: &str,
) -> Response<Body> {
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(accepted) {
        return respond(
            StatusCode::OK,
            &[("content-type", OCI_MANIFEST)],
            manifest_json(None),
        );
    }
    let realm = format!(
        "Bearer realm=\"http://{}/token\",service=\"standin\"{more}",
        request.headers().get("host").unwrap().to_str().unwrap()
    );
    respond(
        StatusCode::UNAUTHORIZED,
        &[("www-authenticate", &realm)],
        "",
    )
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Stand-in for a rate-limited registry (Docker Hub answers 429): a request answered 429
/// or 408 is asked again after the `Retry-After` named, three more times at most; a
/// `Retry-After` longer than crigate waits is not waited for; a busy HEAD is not followed
/// by a GET, which would count against the same limit.
#[tokio::test]
async fn a_busy_registry_is_asked_again_a_bounded_number_of_times() {
    for (busy_answers, retry_after, ok, requests_made) in [
        (2usize, "0", true, 3usize),
        (100, "0", false, 4),
        (100, "3600", false, 1),
    ] {
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        let server = StandIn::start(move |_request| {
            let counted = Arc::clone(&counted);
            async move {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                if n < busy_answers {
                    let status = if n.is_multiple_of(2) {
                        StatusCode::TOO_MANY_REQUESTS
                    } else {
                        StatusCode::REQUEST_TIMEOUT
                    };
                    return respond(status, &[("retry-after", retry_after)], "");
                }
                respond(
                    StatusCode::OK,
                    &[("content-type", OCI_MANIFEST)],
                    manifest_json(None),
                )
            }
        })
        .await;
        let image: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
        let result = server.client().resolve(&image).await;
        if ok {
            assert!(result.is_ok(), "{result:?}");
        } else {
            assert!(
                matches!(
                    result,
                    Err(Error::Status {
                        code: 429 | 408,
                        ..
                    })
                ),
                "{result:?}"
            );
        }
        assert_eq!(
            requests.load(Ordering::SeqCst),
            requests_made,
            "{busy_answers} busy answers, Retry-After {retry_after}"
        );
    }
}

/// A server error (500, 502, 503, 504) is asked again once, as containerd and
/// go-containerregistry ask again; what the second answer says is the outcome.
#[tokio::test]
async fn a_server_error_is_asked_again_once() {
    for (code, failures, ok, requests_made) in [
        (503u16, 1usize, true, 2usize),
        (500, 1, true, 2),
        (502, 1, true, 2),
        (504, 1, true, 2),
        (503, 100, false, 2),
        // Not a passing fault: answered at once.
        (501, 1, false, 1),
    ] {
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        let server = StandIn::start(move |_request| {
            let counted = Arc::clone(&counted);
            async move {
                if counted.fetch_add(1, Ordering::SeqCst) < failures {
                    return respond(StatusCode::from_u16(code).unwrap(), &[], "busy");
                }
                respond(
                    StatusCode::OK,
                    &[("content-type", OCI_MANIFEST)],
                    manifest_json(None),
                )
            }
        })
        .await;
        let image: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
        let result = server.client().resolve(&image).await;
        if ok {
            assert_eq!(
                result.unwrap().digest,
                Digest::sha256(&manifest_json(None)),
                "HTTP {code}"
            );
        } else {
            assert!(
                matches!(result, Err(Error::Status { code: c, .. }) if c == code),
                "HTTP {code}: {result:?}"
            );
        }
        assert_eq!(
            requests.load(Ordering::SeqCst),
            requests_made,
            "HTTP {code} {failures} times"
        );
    }
}

/// A connection the registry closes after reading the request, before answering (a
/// reset, a server restarting), is asked again once; a second one is the outcome.
#[tokio::test]
async fn a_connection_closed_before_an_answer_is_asked_again_once() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    for (dropped, ok, connections) in [(1usize, true, 2usize), (100, false, 2)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let body = manifest_json(None);
            while let Ok((mut stream, _)) = listener.accept().await {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                if n < dropped {
                    continue;
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {OCI_MANIFEST}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            }
        });
        let client = Client::new(RegistryConfig {
            plain_http: vec![host.clone()],
            ..RegistryConfig::default()
        })
        .unwrap();
        let image: ImageRef = format!("{host}/app:v1").parse().unwrap();
        let result = client.resolve(&image).await;
        if ok {
            assert_eq!(result.unwrap().digest, Digest::sha256(&manifest_json(None)));
        } else {
            assert!(
                matches!(result, Err(Error::Unreachable { .. })),
                "{result:?}"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), connections, "{dropped}");
        task.abort();
    }
}

#[tokio::test]
async fn a_refused_registry_token_is_unauthorized_without_a_token_request() {
    let token_requests = Arc::new(AtomicUsize::new(0));
    let server = token_server(Arc::clone(&token_requests)).await;
    let image: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
    let accepted = server.client().with_credentials(Credentials::RegistryToken(
        crigate::registry::Secret::new("tok-1"),
    ));
    assert!(accepted.resolve(&image).await.is_ok());
    let refused = server.client().with_credentials(Credentials::RegistryToken(
        crigate::registry::Secret::new("stale"),
    ));
    let result = refused.resolve(&image).await;
    assert!(
        matches!(result, Err(Error::Unauthorized { status: 401, .. })),
        "{result:?}"
    );
    assert_eq!(token_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn documents_of_the_wrong_kind_are_refused_where_a_kind_is_required() {
    let index =
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}))
            .unwrap();
    let server = StandIn::start(move |request| {
        let index = index.clone();
        async move {
            let path = request.uri().path().to_owned();
            if path.contains("/referrers/") {
                // The referrers API must answer an index; this one says it sends one and
                // sends a manifest. (An answer that does not even say so is taken as no
                // referrers API: a_referrers_answer_that_is_no_index_falls_back_to_the_tag_schema.)
                respond(
                    StatusCode::OK,
                    &[("content-type", OCI_INDEX)],
                    manifest_json(None),
                )
            } else if path.ends_with(".sig") {
                // cosign's signature tag must hold a manifest; this one holds an index.
                respond(StatusCode::OK, &[("content-type", OCI_INDEX)], index)
            } else {
                respond(StatusCode::NOT_FOUND, &[], "")
            }
        }
    })
    .await;
    let client = server.client();
    let subject = Digest::sha256(b"s");
    let referrers = client.referrers(&server.repo(), &subject, None).await;
    assert!(
        matches!(referrers, Err(Error::Manifest { .. })),
        "{referrers:?}"
    );
    let signature = client.cosign_signature(&server.repo(), &subject).await;
    assert!(
        matches!(signature, Err(Error::UnexpectedKind { .. })),
        "{signature:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Through a forward proxy: tinyproxy, as a node's egress proxy would be.
// ---------------------------------------------------------------------------------------

/// tinyproxy on loopback, logging every request line; with `BasicAuth` when `auth` is
/// given.
struct Tinyproxy {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start(auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::harness::process::free_port().unwrap();
        let log = dir.path().join("tinyproxy.log");
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\n\
             MaxClients 20\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
            log.display()
        );
        if let Some((user, password)) = auth {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = std::process::Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tinyproxy (integration/setup installs it)");
        // Owned from here on: a failed wait below still stops it.
        let proxy = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Accepting connections")
        {
            assert!(Instant::now() < deadline, "tinyproxy did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        crate::harness::process::kill_child(&mut self.child);
    }
}

fn proxies() -> hyper_util::client::proxy::matcher::Builder {
    hyper_util::client::proxy::matcher::Matcher::builder()
}

#[tokio::test]
async fn a_plain_http_registry_is_asked_through_the_http_proxy() {
    let registry = Registry::start().await.unwrap();
    let image = TestImage::builder().label("proxied").build().unwrap();
    let pushed = registry.push("app", "v1", &image).await.unwrap();
    let proxy = Tinyproxy::start(None);
    let config = RegistryConfig {
        plain_http: vec![registry.host()],
        ..RegistryConfig::default()
    };
    let client = Client::with_proxies(config, proxies().http(proxy.url()).build()).unwrap();
    let by_tag: ImageRef = format!("{}/app:v1", registry.host()).parse().unwrap();
    assert_eq!(
        client.resolve(&by_tag).await.unwrap().digest,
        digest(&pushed)
    );
    // The proxy was asked in absolute form, as RFC 9112 3.2.2 has it for a proxy.
    let log = proxy.log();
    assert!(
        log.contains(&format!(
            "GET http://{}/v2/app/manifests/v1",
            registry.host()
        )),
        "{log}"
    );

    // A proxy that wants credentials gets those of its URL, as Go's transport sends them.
    let guarded = Tinyproxy::start(Some(("node", "s3cret")));
    let with_credentials = format!("http://node:s3cret@127.0.0.1:{}", guarded.port);
    let config = RegistryConfig {
        plain_http: vec![registry.host()],
        ..RegistryConfig::default()
    };
    let client = Client::with_proxies(config, proxies().http(with_credentials).build()).unwrap();
    assert_eq!(
        client.resolve(&by_tag).await.unwrap().digest,
        digest(&pushed)
    );
}

#[tokio::test]
async fn an_https_registry_is_reached_through_a_connect_tunnel_with_the_proxy_credentials() {
    let tls = TestTls::new();
    let (server, image) = tls_registry(&tls).await;
    let dir = tempfile::tempdir().unwrap();
    let config = || RegistryConfig {
        ca_file: Some(tls.write_ca(dir.path())),
        ..RegistryConfig::default()
    };
    let proxy = Tinyproxy::start(Some(("node", "s3cret")));
    let with_credentials = format!("http://node:s3cret@127.0.0.1:{}", proxy.port);
    let client = Client::with_proxies(config(), proxies().https(with_credentials).build()).unwrap();
    let descriptor = client.resolve(&image).await.unwrap();
    assert_eq!(descriptor.digest, Digest::sha256(&manifest_json(None)));
    assert!(
        proxy
            .log()
            .contains(&format!("CONNECT {} HTTP/1.1", server.host())),
        "{}",
        proxy.log()
    );
    // Without the credentials the proxy refuses the tunnel (407), and the registry is
    // out of reach.
    let client = Client::with_proxies(config(), proxies().https(proxy.url()).build()).unwrap();
    let result = client.resolve(&image).await;
    assert!(
        matches!(result, Err(Error::Unreachable { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn no_proxy_hosts_are_reached_directly_and_a_dead_proxy_leaves_the_others_unreachable() {
    let registry = Registry::start().await.unwrap();
    let image = TestImage::builder().label("direct").build().unwrap();
    registry.push("app", "v1", &image).await.unwrap();
    let by_tag: ImageRef = format!("{}/app:v1", registry.host()).parse().unwrap();
    let dead = format!(
        "http://127.0.0.1:{}",
        crate::harness::process::free_port().unwrap()
    );
    let config = || RegistryConfig {
        plain_http: vec![registry.host()],
        ..RegistryConfig::default()
    };
    let direct = proxies().http(dead.clone()).no("127.0.0.1").build();
    Client::with_proxies(config(), direct)
        .unwrap()
        .resolve(&by_tag)
        .await
        .unwrap();
    let proxied = proxies().http(dead.clone()).build();
    let result = Client::with_proxies(config(), proxied)
        .unwrap()
        .resolve(&by_tag)
        .await;
    match result {
        Err(Error::Unreachable { ref source, .. }) => {
            let chain = format!("{source:?}");
            assert!(chain.contains("to the proxy 127.0.0.1:"), "{chain}");
        }
        other => panic!("{other:?}"),
    }
}

/// `crigate verify IMAGE` with `HTTP_PROXY` naming a proxy that is not there; stdout
/// and stderr together.
fn verify_through_a_dead_proxy(image: &str, dead: u16) -> String {
    verify_with_proxy_env(
        image,
        &[("HTTP_PROXY", &format!("http://127.0.0.1:{dead}"))],
    )
}

/// `crigate verify IMAGE` (within a second) with only the proxy variables `env` set;
/// stdout and stderr together.
fn verify_with_proxy_env(image: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("release.pub");
    std::fs::write(&key, crate::signer::KeySigner::generate().public_pem()).unwrap();
    let output = std::process::Command::new(crate::daemon::crigate_binary())
        .args(["verify", image, "--plain-http", "--timeout", "1s"])
        .args(["--insecure-ignore-tlog", "--key"])
        .arg(&key)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!output.status.success());
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn crigate_reads_its_proxies_from_the_environment_and_keeps_loopback_direct() {
    let dead = crate::harness::process::free_port().unwrap();
    // A registry elsewhere (TEST-NET-1, never reached): the error names the proxy, so
    // the variable was read.
    let elsewhere = verify_through_a_dead_proxy("192.0.2.1:5000/app:v1", dead);
    assert!(
        elsewhere.contains(&format!("to the proxy 127.0.0.1:{dead}")),
        "{elsewhere}"
    );
    // A loopback registry is reached directly, as containerd (Go) reaches it.
    let local = verify_through_a_dead_proxy("127.0.0.1:1/app:v1", dead);
    assert!(!local.contains("to the proxy"), "{local}");
    assert!(local.contains("127.0.0.1:1"), "{local}");
    // NO_PROXY as Go reads it: `*` and a range cover addresses too; ALL_PROXY, which Go
    // does not read, names no proxy.
    let proxy = format!("http://127.0.0.1:{dead}");
    for env in [
        vec![("HTTP_PROXY", proxy.as_str()), ("NO_PROXY", "*")],
        vec![("HTTP_PROXY", proxy.as_str()), ("no_proxy", "192.0.2.0/24")],
        vec![("ALL_PROXY", proxy.as_str())],
    ] {
        let direct = verify_with_proxy_env("192.0.2.1:5000/app:v1", &env);
        assert!(!direct.contains("to the proxy"), "{env:?}: {direct}");
    }
}

// ---------------------------------------------------------------------------------------
// Registry hosts (containerd's hosts.toml): mirrors asked before the registry.
// ---------------------------------------------------------------------------------------

/// A hosts directory holding `<dir>/hosts.toml` for each `(dir, contents)`.
fn hosts_dir(files: &[(&str, String)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (dir, contents) in files {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
        std::fs::write(root.path().join(dir).join("hosts.toml"), contents).unwrap();
    }
    root
}

fn client_with_hosts(root: &tempfile::TempDir) -> Client {
    Client::new(RegistryConfig {
        hosts_dir: Some(root.path().display().to_string()),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        ..RegistryConfig::default()
    })
    .unwrap()
}

/// A name no resolver answers (RFC 6761, `.invalid`): a registry crigate cannot reach.
const UNREACHABLE: &str = "registry.invalid";

#[tokio::test]
async fn a_registry_reached_only_through_its_mirror_is_read_there() {
    let registry = Registry::start().await.unwrap();
    let image = TestImage::builder().label("mirrored").build().unwrap();
    let pushed = registry.push("team/app", "v1", &image).await.unwrap();
    let subject = (pushed.as_str(), image.manifest_size());
    let (signature, signature_size) =
        push_artifact(&registry, "team/app", subject, NOTATION, b"jws").await;
    // This registry has no referrers API: the referrers go in the tag schema's index.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": signature, "size": signature_size, "artifactType": NOTATION}],
    }))
    .unwrap();
    registry
        .push_manifest("team/app", &digest(&pushed).tag_form(), OCI_INDEX, &index)
        .await
        .unwrap();
    let root = hosts_dir(&[(
        UNREACHABLE,
        format!(
            "[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            registry.host()
        ),
    )]);
    let client = client_with_hosts(&root);
    let image_ref: ImageRef = format!("{UNREACHABLE}/team/app:v1").parse().unwrap();
    // The real registry takes containerd's `ns` parameter, and serves the tag, the
    // manifest, a blob and the referrers under the mirrored registry's name.
    let resolved = client.resolve_manifest(&image_ref).await.unwrap();
    assert_eq!(resolved.descriptor.digest, digest(&pushed));
    let repo = image_ref.repo();
    let by_digest = client.manifest(repo, &digest(&pushed)).await.unwrap();
    assert_eq!(by_digest.raw, resolved.raw);
    let Manifest::Image(manifest) = &by_digest.manifest else {
        panic!("an image manifest")
    };
    let config = client
        .blob(repo, &manifest.config.digest, MAX_MANIFEST_BYTES)
        .await
        .unwrap();
    assert_eq!(Digest::sha256(&config), manifest.config.digest);
    let referrers = client
        .referrers(repo, &digest(&pushed), Some(NOTATION))
        .await
        .unwrap();
    assert_eq!(referrers.len(), 1);
    assert_eq!(referrers[0].digest, digest(&signature));

    // Without the hosts directory the registry itself is asked, and cannot be reached.
    let direct = Client::new(RegistryConfig::default()).unwrap();
    let unreachable = direct.resolve(&image_ref).await;
    assert!(
        matches!(unreachable, Err(Error::Unreachable { .. })),
        "{unreachable:?}"
    );
}

/// A stand-in that records `METHOD path?query header` of each request and answers with
/// `answer`.
async fn recording<F>(answer: F) -> (StandIn, Arc<Mutex<Vec<String>>>)
where
    F: Fn(&Request<Incoming>) -> Response<Body> + Send + Sync + 'static,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let answer = Arc::new(answer);
    let server = StandIn::start(move |request| {
        let log = Arc::clone(&log);
        let answer = Arc::clone(&answer);
        async move {
            let header = request
                .headers()
                .get("x-mirror-team")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            log.lock()
                .unwrap()
                .push(format!("{} {} {header}", request.method(), request.uri()));
            answer(&request)
        }
    })
    .await;
    (server, seen)
}

#[tokio::test]
async fn mirrors_are_asked_in_order_and_give_way_when_they_lack_or_fail() {
    let manifest = manifest_json(None);
    let manifest_digest = Digest::sha256(&manifest);
    let served = manifest.clone();
    // The registry's own server: has everything.
    let (origin, origin_seen) = recording(move |_| {
        respond(
            StatusCode::OK,
            &[("content-type", OCI_MANIFEST)],
            served.clone(),
        )
    })
    .await;
    // A mirror that has nothing, and one that fails.
    let (empty, empty_seen) = recording(|_| respond(StatusCode::NOT_FOUND, &[], "")).await;
    let (broken, broken_seen) =
        recording(|_| respond(StatusCode::INTERNAL_SERVER_ERROR, &[], "")).await;
    // A pull-only mirror: never asked to resolve a tag.
    let (pull_only, pull_only_seen) = recording(|_| respond(StatusCode::NOT_FOUND, &[], "")).await;
    let root = hosts_dir(&[(
        UNREACHABLE,
        format!(
            "server = \"http://{origin}\"\n\
             [host.\"http://{empty}\"]\n  [host.\"http://{empty}\".header]\n    x-mirror-team = \"blue\"\n\
             [host.\"http://{pull_only}/base\"]\n  capabilities = [\"pull\"]\n\
             [host.\"http://{broken}\"]\n",
            origin = origin.host(),
            empty = empty.host(),
            pull_only = pull_only.host(),
            broken = broken.host(),
        ),
    )]);
    let client = client_with_hosts(&root);
    let image: ImageRef = format!("{UNREACHABLE}/app:v1").parse().unwrap();
    let resolved = client.resolve(&image).await.unwrap();
    assert_eq!(resolved.digest, manifest_digest);
    let ns = format!("ns={UNREACHABLE}");
    assert_eq!(
        *empty_seen.lock().unwrap(),
        [format!("GET /v2/app/manifests/v1?{ns} blue")],
        "the first mirror is asked first, with containerd's ns parameter and its header"
    );
    assert!(pull_only_seen.lock().unwrap().is_empty());
    // Its server error asked again once.
    assert_eq!(
        *broken_seen.lock().unwrap(),
        [
            format!("GET /v2/app/manifests/v1?{ns} -"),
            format!("GET /v2/app/manifests/v1?{ns} -")
        ]
    );
    assert_eq!(origin_seen.lock().unwrap().len(), 1);

    // By digest the pull-only mirror is asked too, under its path.
    let by_digest = client
        .manifest(image.repo(), &manifest_digest)
        .await
        .unwrap();
    assert_eq!(by_digest.descriptor.digest, manifest_digest);
    assert_eq!(
        pull_only_seen.lock().unwrap().as_slice(),
        [format!(
            "GET /base/v2/app/manifests/{manifest_digest}?{ns} -"
        )]
    );
}

#[tokio::test]
async fn a_host_that_says_not_there_outweighs_one_that_cannot_be_asked() {
    let (empty, _) = recording(|_| respond(StatusCode::NOT_FOUND, &[], "")).await;
    let (broken, _) = recording(|_| respond(StatusCode::BAD_GATEWAY, &[], "")).await;
    let image: ImageRef = format!("{UNREACHABLE}/app:v1").parse().unwrap();
    // The mirror has no such tag and the registry cannot be reached: "not found", which
    // a policy's `on_error = "allow"` does not let through as an outage.
    let root = hosts_dir(&[(UNREACHABLE, format!("[host.\"http://{}\"]\n", empty.host()))]);
    let missing = client_with_hosts(&root).resolve(&image).await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    // No signature on the mirror, the registry unreachable: no signature.
    let referrers = client_with_hosts(&root)
        .referrers(image.repo(), &Digest::sha256(b"x"), None)
        .await
        .unwrap();
    assert!(referrers.is_empty());
    let sig = client_with_hosts(&root)
        .cosign_signature(image.repo(), &Digest::sha256(b"x"))
        .await
        .unwrap();
    assert!(sig.is_none());

    // Every host failed: the first failure is the error, naming the mirror.
    let root = hosts_dir(&[(
        UNREACHABLE,
        format!("[host.\"http://{}\"]\n", broken.host()),
    )]);
    let failed = client_with_hosts(&root).resolve(&image).await;
    let Err(Error::Status { what, code: 502 }) = &failed else {
        panic!("{failed:?}")
    };
    assert!(what.contains(&format!("from {}", broken.host())), "{what}");

    // No host may resolve: said so, never a silent fallback to the registry.
    let root = hosts_dir(&[(
        UNREACHABLE,
        format!(
            "server = \"http://{}\"\ncapabilities = [\"pull\"]\n[host.\"http://{}\"]\n  capabilities = [\"pull\"]\n",
            empty.host(),
            broken.host()
        ),
    )]);
    let refused = client_with_hosts(&root).resolve(&image).await;
    assert!(
        matches!(&refused, Err(Error::NoHost { registry, .. }) if registry == UNREACHABLE),
        "{refused:?}"
    );
}

#[tokio::test]
async fn referrers_are_read_from_the_first_host_that_has_some() {
    let subject = Digest::sha256(b"subject");
    let index = |manifests: Vec<serde_json::Value>| {
        serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        )
        .unwrap()
    };
    let none = index(vec![]);
    let some = index(vec![referrer(7, NOTATION)]);
    let (mirror, mirror_seen) =
        recording(move |_| respond(StatusCode::OK, &[("content-type", OCI_INDEX)], none.clone()))
            .await;
    let (origin, _) =
        recording(move |_| respond(StatusCode::OK, &[("content-type", OCI_INDEX)], some.clone()))
            .await;
    let root = hosts_dir(&[(
        UNREACHABLE,
        format!(
            "server = \"http://{}\"\n[host.\"http://{}\"]\n",
            origin.host(),
            mirror.host()
        ),
    )]);
    let repo: Repository = format!("{UNREACHABLE}/app").parse().unwrap();
    let found = client_with_hosts(&root)
        .referrers(&repo, &subject, Some(NOTATION))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, Digest::sha256(&[7]));
    assert_eq!(mirror_seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_https_mirror_is_trusted_through_the_ca_its_hosts_toml_names() {
    let tls = TestTls::new();
    let (mirror, _) = tls_registry(&tls).await;
    let image: ImageRef = format!("{UNREACHABLE}/app:v1").parse().unwrap();
    let expected = Digest::sha256(&manifest_json(None));
    let host = mirror.host();
    let direct: ImageRef = format!("{host}/app:v1").parse().unwrap();
    // `ca` relative to the host directory, as containerd reads it.
    let root = hosts_dir(&[(
        UNREACHABLE,
        format!("[host.\"https://{host}\"]\n  ca = \"mirror-ca.pem\"\n"),
    )]);
    std::fs::write(
        root.path().join(UNREACHABLE).join("mirror-ca.pem"),
        &tls.ca_pem,
    )
    .unwrap();
    let client = client_with_hosts(&root);
    let resolved = client.resolve(&image).await.unwrap();
    assert_eq!(resolved.digest, expected);
    // The CA is trusted for the host whose table names it, not for every registry: the
    // same server, named as a registry of its own, is not trusted through it.
    let elsewhere = client.resolve(&direct).await;
    assert!(
        matches!(elsewhere, Err(Error::Unreachable { .. })),
        "{elsewhere:?}"
    );

    // A directory without hosts.toml: its `*.crt` files are CAs of the registry itself.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(host.replace(':', "_") + "_");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), &tls.ca_pem).unwrap();
    let resolved = client_with_hosts(&root).resolve(&direct).await.unwrap();
    assert_eq!(resolved.digest, expected);

    // Without the CA, the mirror's certificate is not trusted: it cannot be asked, and
    // the registry behind it cannot be reached either.
    let root = hosts_dir(&[(
        UNREACHABLE,
        format!("[host.\"https://{}\"]\n", mirror.host()),
    )]);
    let refused = client_with_hosts(&root).resolve(&image).await;
    assert!(
        matches!(refused, Err(Error::Unreachable { .. })),
        "{refused:?}"
    );
}

/// A self-signed certificate with `CA:TRUE` for `names`, as Docker's "Use self-signed
/// certificates" recipe makes one (`openssl req -x509 -addext subjectAltName=...`): its
/// PEM, and a TLS acceptor serving it.
fn self_signed_ca(names: &[&str]) -> (String, tokio_rustls::TlsAcceptor) {
    self_signed_ca_with(names, |_| {})
}

/// [`self_signed_ca`], its parameters changed by `adjust` before it is signed.
fn self_signed_ca_with(
    names: &[&str],
    adjust: impl FnOnce(&mut rcgen::CertificateParams),
) -> (String, tokio_rustls::TlsAcceptor) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    adjust(&mut params);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "reg");
    let cert = params.self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .unwrap();
    (
        cert.pem(),
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    )
}

/// An HTTPS stand-in serving `acceptor`'s certificate that answers every request with
/// one manifest, and the image `app:v1` on it.
async fn manifest_registry(acceptor: tokio_rustls::TlsAcceptor) -> (StandIn, ImageRef) {
    let server = StandIn::serve(Some(acceptor), |_request| async move {
        respond(
            StatusCode::OK,
            &[("content-type", OCI_MANIFEST)],
            manifest_json(None),
        )
    })
    .await;
    let image = format!("{}/app:v1", server.host()).parse().unwrap();
    (server, image)
}

/// A registry whose certificate is self-signed with `CA:TRUE` and named as its CA is
/// reached, as containerd (Go's `crypto/x509`, which takes a certificate in the root pool
/// as a chain of its own) reaches it: through `[registry] ca_file`, and a hosts
/// directory's bare `*.crt`.
#[tokio::test]
async fn a_self_signed_ca_certificate_named_as_the_registrys_ca_is_its_own() {
    let (pem, acceptor) = self_signed_ca(&["127.0.0.1", "localhost"]);
    let (server, image) = manifest_registry(acceptor).await;
    let expected = Digest::sha256(&manifest_json(None));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("reg.crt");
    std::fs::write(&ca, &pem).unwrap();
    let client = Client::new(RegistryConfig {
        ca_file: Some(ca),
        ..RegistryConfig::default()
    })
    .unwrap();
    assert_eq!(client.resolve(&image).await.unwrap().digest, expected);

    let root = tempfile::tempdir().unwrap();
    let host_dir = root.path().join(server.host().replace(':', "_") + "_");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("reg.crt"), &pem).unwrap();
    let resolved = client_with_hosts(&root).resolve(&image).await.unwrap();
    assert_eq!(resolved.digest, expected);
}

/// Only the very certificate configured is taken as the server's own: another
/// self-signed one is refused, and the configured one must name the server.
#[tokio::test]
async fn a_self_signed_server_certificate_is_taken_only_as_configured_and_for_its_names() {
    let (_, acceptor) = self_signed_ca(&["127.0.0.1", "localhost"]);
    let (_server, image) = manifest_registry(acceptor).await;
    let (other_pem, _) = self_signed_ca(&["127.0.0.1", "localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.crt");
    std::fs::write(&other, &other_pem).unwrap();
    let refused = Client::new(RegistryConfig {
        ca_file: Some(other),
        ..RegistryConfig::default()
    })
    .unwrap()
    .resolve(&image)
    .await;
    assert!(
        matches!(refused, Err(Error::Unreachable { .. })),
        "{refused:?}"
    );

    // Configured, but for another name than the one the registry is reached by.
    let (pem, acceptor) = self_signed_ca(&["registry.test"]);
    let (_server, image) = manifest_registry(acceptor).await;
    let named = dir.path().join("named.crt");
    std::fs::write(&named, &pem).unwrap();
    let client = Client::new(RegistryConfig {
        ca_file: Some(named),
        ..RegistryConfig::default()
    })
    .unwrap();
    let error = client.resolve(&image).await.unwrap_err();
    let mut chain = format!("{error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(
        matches!(&error, Error::Unreachable { .. }) && chain.contains("not valid for name"),
        "{chain}"
    );

    // Configured and naming the server, but expired, not yet valid, or for clients only.
    type Adjust = fn(&mut rcgen::CertificateParams);
    let adjustments: [(&str, Adjust); 3] = [
        ("expired", |params| {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }),
        ("not yet valid", |params| {
            params.not_before = rcgen::date_time_ymd(2090, 1, 1);
            params.not_after = rcgen::date_time_ymd(2091, 1, 1);
        }),
        ("for clients", |params| {
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        }),
    ];
    for (what, adjust) in adjustments {
        let (pem, acceptor) = self_signed_ca_with(&["127.0.0.1", "localhost"], adjust);
        let (_server, image) = manifest_registry(acceptor).await;
        let path = dir.path().join(format!("{what}.crt"));
        std::fs::write(&path, &pem).unwrap();
        let refused = Client::new(RegistryConfig {
            ca_file: Some(path),
            ..RegistryConfig::default()
        })
        .unwrap()
        .resolve(&image)
        .await;
        assert!(
            matches!(refused, Err(Error::Unreachable { .. })),
            "{what}: {refused:?}"
        );
    }
}

/// The real registry holding `team/app:v1`, and the same storage served over TLS with
/// the test CA's server certificate, asking clients for one the CA vouches for when
/// `client_ca`.
struct TlsMirror {
    registry: Registry,
    mirror: Registry,
    image: TestImage,
    pushed: String,
    tls: TestTls,
    /// The TLS files, and room for more.
    files: tempfile::TempDir,
}

impl TlsMirror {
    async fn start(label: &str, client_ca: bool) -> Self {
        let registry = Registry::start().await.unwrap();
        let image = TestImage::builder().label(label).build().unwrap();
        let pushed = registry.push("team/app", "v1", &image).await.unwrap();
        let tls = TestTls::new();
        let files = tempfile::tempdir().unwrap();
        let write = |name: &str, contents: &str| {
            let path = files.path().join(name);
            std::fs::write(&path, contents).unwrap();
            path
        };
        let mirror = registry
            .serve_tls(&RegistryTls {
                certificate: write("server.pem", &tls.server_pem),
                key: write("server-key.pem", &tls.server_key_pem),
                client_ca: client_ca.then(|| write("ca.pem", &tls.ca_pem)),
            })
            .await
            .unwrap();
        Self {
            registry,
            mirror,
            image,
            pushed,
            tls,
            files,
        }
    }
}

/// Reads `image_ref` through `client`: its tag resolves to `pushed`, and the manifest and
/// the config blob are `image`'s.
async fn read_through(client: &Client, image_ref: &ImageRef, pushed: &str, image: &TestImage) {
    let resolved = client.resolve_manifest(image_ref).await.unwrap();
    assert_eq!(resolved.descriptor.digest, digest(pushed));
    let Manifest::Image(manifest) = &resolved.manifest else {
        panic!("an image manifest")
    };
    let config = client
        .blob(
            image_ref.repo(),
            &manifest.config.digest,
            MAX_MANIFEST_BYTES,
        )
        .await
        .unwrap();
    assert_eq!(&config[..], image.config());
}

#[tokio::test]
async fn a_mirror_that_asks_for_a_client_certificate_is_offered_the_one_its_hosts_toml_names() {
    // The real registry, serving the same storage over TLS to clients the CA vouches for.
    let TlsMirror {
        registry: _registry,
        mirror,
        image,
        pushed,
        tls,
        files: _files,
    } = TlsMirror::start("mutual-tls", true).await;
    let image_ref: ImageRef = format!("{UNREACHABLE}/team/app:v1").parse().unwrap();
    let with_client = |client: &str| {
        let root = hosts_dir(&[(
            UNREACHABLE,
            format!(
                "[host.\"https://{}\"]\n  ca = \"ca.pem\"\n  client = {client}\n",
                mirror.host()
            ),
        )]);
        let dir = root.path().join(UNREACHABLE);
        std::fs::write(dir.join("ca.pem"), &tls.ca_pem).unwrap();
        std::fs::write(dir.join("node.pem"), &tls.client_pem).unwrap();
        std::fs::write(dir.join("node-key.pem"), &tls.client_key_pem).unwrap();
        let both = format!("{}{}", tls.client_pem, tls.client_key_pem);
        std::fs::write(dir.join("node-both.pem"), both).unwrap();
        root
    };

    // A [certificate, key] pair, and one file holding both: the tag, the manifest and a
    // blob are read through the mirror.
    for client in ["[[\"node.pem\", \"node-key.pem\"]]", "\"node-both.pem\""] {
        let root = with_client(client);
        read_through(&client_with_hosts(&root), &image_ref, &pushed, &image).await;
    }

    // The same mirror named in containerd's own config: `registry.mirrors`, and the TLS
    // files of `registry.configs` for the mirror's host.
    let node = tempfile::tempdir().unwrap();
    let put = |name: &str, contents: &str| {
        let path = node.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    };
    let cri = "plugins.\"io.containerd.grpc.v1.cri\".registry";
    let containerd_config = put(
        "config.toml",
        &format!(
            "version = 2\n[{cri}.mirrors.\"{UNREACHABLE}\"]\n  endpoint = [\"https://{host}\"]\n\
             [{cri}.configs.\"{host}\".tls]\n  ca_file = \"{ca}\"\n  cert_file = \"{cert}\"\n  \
             key_file = \"{key}\"\n",
            host = mirror.host(),
            ca = put("ca.pem", &tls.ca_pem),
            cert = put("node.pem", &tls.client_pem),
            key = put("node-key.pem", &tls.client_key_pem),
        ),
    );
    let client = Client::new(RegistryConfig {
        containerd_config: Some(containerd_config.into()),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        ..RegistryConfig::default()
    })
    .unwrap();
    let resolved = client.resolve(&image_ref).await.unwrap();
    assert_eq!(resolved.digest, digest(&pushed));

    // Without a client certificate the registry ends the handshake.
    let root = hosts_dir(&[(
        UNREACHABLE,
        format!("[host.\"https://{}\"]\n  ca = \"ca.pem\"\n", mirror.host()),
    )]);
    std::fs::write(root.path().join(UNREACHABLE).join("ca.pem"), &tls.ca_pem).unwrap();
    let refused = client_with_hosts(&root).resolve(&image_ref).await;
    assert!(
        matches!(refused, Err(Error::Unreachable { .. })),
        "{refused:?}"
    );

    // A key that is not the certificate's is refused when the client is built, naming
    // the certificate.
    let root = with_client("[[\"node.pem\", \"wrong-key.pem\"]]");
    let dir = root.path().join(UNREACHABLE);
    std::fs::write(dir.join("wrong-key.pem"), &tls.server_key_pem).unwrap();
    let error = Client::new(RegistryConfig {
        hosts_dir: Some(root.path().display().to_string()),
        ..RegistryConfig::default()
    })
    .err()
    .unwrap();
    let text = error.to_string();
    assert!(
        matches!(&error, Error::ClientCertificate { path, .. } if path == &dir.join("node.pem")),
        "{text}"
    );
    assert!(text.contains("do not go together"), "{text}");
}

#[tokio::test]
async fn a_mirror_whose_certificate_is_not_checked_is_asked_only_when_the_operator_honours_it() {
    // The real registry over TLS, with a certificate no CA crigate is given vouches for.
    let TlsMirror {
        registry: _registry,
        mirror,
        image,
        pushed,
        files,
        ..
    } = TlsMirror::start("skip-verify", false).await;
    let write = |name: &str, contents: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let host = mirror.host();
    let image_ref: ImageRef = format!("{UNREACHABLE}/team/app:v1").parse().unwrap();
    let direct: ImageRef = format!("{host}/team/app:v1").parse().unwrap();
    let root = hosts_dir(&[(
        UNREACHABLE,
        format!("[host.\"https://{host}\"]\n  skip_verify = true\n"),
    )]);
    let cri = "plugins.\"io.containerd.grpc.v1.cri\".registry";
    let containerd_config = write(
        "config.toml",
        &format!(
            "version = 2\n[{cri}.mirrors.\"{UNREACHABLE}\"]\n  endpoint = [\"https://{host}\"]\n\
             [{cri}.configs.\"{host}\".tls]\n  insecure_skip_verify = true\n"
        ),
    );
    let client = |honour_skip_verify: bool, from_containerd: bool| {
        Client::new(RegistryConfig {
            hosts_dir: (!from_containerd).then(|| root.path().display().to_string()),
            containerd_config: from_containerd.then(|| containerd_config.clone()),
            honour_skip_verify,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            ..RegistryConfig::default()
        })
        .unwrap()
    };
    for from_containerd in [false, true] {
        // By default the certificate is checked: the mirror cannot be asked.
        let refused = client(false, from_containerd).resolve(&image_ref).await;
        assert!(
            matches!(refused, Err(Error::Unreachable { .. })),
            "{refused:?}"
        );
        // Honoured, the mirror is read as containerd reads it: the tag, the manifest by
        // digest and a blob, each checked against its digest as always.
        read_through(&client(true, from_containerd), &image_ref, &pushed, &image).await;
    }
    // Only for the host whose table asks: the same server named as a registry of its own
    // is checked, and refused. (With containerd's mirrors, a loopback registry itself is
    // asked over plain HTTP, so this is shown with a hosts directory.)
    let elsewhere = client(true, false).resolve(&direct).await;
    assert!(
        matches!(elsewhere, Err(Error::Unreachable { .. })),
        "{elsewhere:?}"
    );
}

#[tokio::test]
async fn a_tag_is_resolved_by_head_and_read_only_when_the_head_names_no_digest() {
    let registry = Registry::start().await.unwrap();
    let image = TestImage::builder().label("head").build().unwrap();
    let pushed = registry.push("app", "v1", &image).await.unwrap();
    let client = client_for(&registry.host());
    let tag: ImageRef = format!("{}/app:v1", registry.host()).parse().unwrap();
    assert_eq!(client.resolve_digest(&tag).await.unwrap(), digest(&pushed));
    // A digest reference names its digest: nothing is asked.
    let pinned = tag.with_digest(Digest::sha256(b"elsewhere"));
    let unreachable = Client::new(RegistryConfig::default()).unwrap();
    assert_eq!(
        unreachable.resolve_digest(&pinned).await.unwrap(),
        Digest::sha256(b"elsewhere")
    );

    let manifest = manifest_json(None);
    let computed = Digest::sha256(&manifest);
    let named = Digest::sha256(b"what the header names").to_string();
    // (what a HEAD is answered with, the digest resolved, the requests made)
    let cases = [
        (
            StatusCode::OK,
            Some(named.as_str()),
            Some(named.parse().unwrap()),
            vec!["HEAD"],
        ),
        (
            StatusCode::OK,
            None,
            Some(computed.clone()),
            vec!["HEAD", "GET"],
        ),
        (
            StatusCode::OK,
            Some("sha256:XYZ"),
            Some(computed.clone()),
            vec!["HEAD", "GET"],
        ),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            Some(computed.clone()),
            vec!["HEAD", "GET"],
        ),
        (StatusCode::NOT_FOUND, None, None, vec!["HEAD"]),
    ];
    for (status, header, expected, methods) in cases {
        let served = manifest.clone();
        let header = header.map(str::to_owned);
        let (server, seen) = recording(move |request| {
            let mut headers = vec![("content-type", OCI_MANIFEST)];
            if let Some(header) = &header {
                headers.push(("docker-content-digest", header.as_str()));
            }
            if request.method() == http::Method::HEAD {
                respond(status, &headers, Bytes::new())
            } else {
                respond(StatusCode::OK, &headers, served.clone())
            }
        })
        .await;
        let tag: ImageRef = format!("{}/app:v1", server.host()).parse().unwrap();
        let resolved = client_for(&server.host()).resolve_digest(&tag).await;
        match &expected {
            Some(expected) => assert_eq!(
                resolved.as_ref().ok(),
                Some(expected),
                "{status} {resolved:?}"
            ),
            None => assert!(
                matches!(resolved, Err(Error::NotFound { .. })),
                "{status} {resolved:?}"
            ),
        }
        let asked: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|line| line.split(' ').next().unwrap().to_owned())
            .collect();
        assert_eq!(asked, methods, "{status}");
    }
}

/// A host the registry redirects to that asks for a bearer token of its own, as the
/// regional Artifact Registry behind registry.k8s.io does: it gets an anonymous one, from
/// the realm it names; the registry's credentials (here Basic ones, for the registry's own
/// token) reach neither it nor its realm; the token is kept for the next request, and one
/// the host stops taking is replaced once.
#[tokio::test]
async fn a_redirect_target_that_asks_for_a_token_gets_an_anonymous_one() {
    let manifest = manifest_json(None);
    let token_requests = Arc::new(AtomicUsize::new(0));
    // The one anonymous token the target takes.
    let valid = Arc::new(Mutex::new("none issued".to_owned()));
    let addr_cell: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
    let (cell, requests, taken, body) = (
        Arc::clone(&addr_cell),
        Arc::clone(&token_requests),
        Arc::clone(&valid),
        manifest.clone(),
    );
    let target = StandIn::start(move |request| {
        let (cell, requests, taken, body) = (
            Arc::clone(&cell),
            Arc::clone(&requests),
            Arc::clone(&taken),
            body.clone(),
        );
        async move {
            let auth = authorization(&request);
            if request.uri().path() == "/token" {
                let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
                let query = request.uri().query().unwrap_or_default();
                if !auth.is_empty() {
                    return respond(StatusCode::BAD_REQUEST, &[], "credentials leaked to the realm");
                }
                if !query.contains("scope=repository%3Amirror%2Fapp%3Apull") {
                    return respond(StatusCode::BAD_REQUEST, &[], "wrong scope");
                }
                let token = format!("anon-tok-{n}");
                *taken.lock().unwrap() = format!("Bearer {token}");
                return respond(StatusCode::OK, &[], format!(r#"{{"token":"{token}"}}"#));
            }
            if auth == *taken.lock().unwrap() {
                return respond(StatusCode::OK, &[("content-type", OCI_MANIFEST)], body);
            }
            if !auth.is_empty() && !auth.starts_with("Bearer anon-tok-") {
                return respond(StatusCode::BAD_REQUEST, &[], "credentials leaked to the target");
            }
            let addr = cell.lock().unwrap().unwrap();
            let challenge = format!(
                "Bearer realm=\"http://{addr}/token\",service=\"mirror\",scope=\"repository:mirror/app:pull\""
            );
            respond(StatusCode::UNAUTHORIZED, &[("www-authenticate", &challenge)], "{}")
        }
    })
    .await;
    *addr_cell.lock().unwrap() = Some(target.addr);
    let target_host = target.host();
    // The registry wants its own token, got with Basic credentials, then redirects.
    let registry_cell: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
    let cell = Arc::clone(&registry_cell);
    let registry = StandIn::start(move |request| {
        let cell = Arc::clone(&cell);
        let target_host = target_host.clone();
        async move {
            let auth = authorization(&request);
            let path = request.uri().path().to_owned();
            if path == "/token" {
                let basic = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("user:pass")
                );
                if auth != basic {
                    return respond(StatusCode::UNAUTHORIZED, &[], "no");
                }
                return respond(StatusCode::OK, &[], r#"{"token":"reg-tok"}"#);
            }
            if auth == "Bearer reg-tok" {
                let location = format!("http://{target_host}/v2/mirror{}", &path[3..]);
                return redirect_to(&location);
            }
            let addr = cell.lock().unwrap().unwrap();
            let challenge = format!("Bearer realm=\"http://{addr}/token\",service=\"registry\"");
            respond(
                StatusCode::UNAUTHORIZED,
                &[("www-authenticate", &challenge)],
                "{}",
            )
        }
    })
    .await;
    *registry_cell.lock().unwrap() = Some(registry.addr);
    let client = client_as_user(vec![registry.host(), target.host()]);
    let image: ImageRef = format!("{}/app:v1", registry.host()).parse().unwrap();
    for _ in 0..2 {
        let resolved = client.resolve(&image).await.unwrap();
        assert_eq!(resolved.digest, Digest::sha256(&manifest));
    }
    assert_eq!(
        token_requests.load(Ordering::SeqCst),
        1,
        "the token is kept"
    );
    // The target stops taking it: a fresh one is asked for, once.
    *valid.lock().unwrap() = "revoked".to_owned();
    let resolved = client.resolve(&image).await.unwrap();
    assert_eq!(resolved.digest, Digest::sha256(&manifest));
    assert_eq!(token_requests.load(Ordering::SeqCst), 2);
}

/// A redirect target that wants credentials (a Basic challenge) gets none, and the error
/// names it rather than blaming the registry's credentials.
#[tokio::test]
async fn a_redirect_target_that_wants_credentials_is_named_in_the_error() {
    let target = StandIn::start(|_request| async move {
        respond(
            StatusCode::UNAUTHORIZED,
            &[("www-authenticate", "Basic realm=\"target\"")],
            "",
        )
    })
    .await;
    let target_host = target.host();
    let registry = StandIn::start(move |request| {
        let location = format!("http://{target_host}{}", request.uri().path());
        async move { redirect_to(&location) }
    })
    .await;
    let client = Client::new(RegistryConfig {
        plain_http: vec![registry.host(), target.host()],
        ..RegistryConfig::default()
    })
    .unwrap();
    let image: ImageRef = format!("{}/app:v1", registry.host()).parse().unwrap();
    let refused = client.resolve(&image).await;
    match refused {
        Err(Error::RedirectRefused { host, status, .. }) => {
            assert_eq!(host, target.host());
            assert_eq!(status, 401);
        }
        other => panic!("{other:?}"),
    }
}
