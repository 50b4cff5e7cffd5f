//! Signature discovery: the OCI 1.1 referrers API with its tag-schema fallback (OCI
//! distribution spec v1.1, "Listing Referrers", "Referrers Tag Schema"), and cosign's
//! legacy `sha256-<hex>.sig` tag.
#![deny(clippy::indexing_slicing)]

use http::header::{CONTENT_TYPE, LINK};
use http::{HeaderMap, Method};

use super::client::{describe, Fetch, FetchedManifest};
use super::hosts::{Capability, Host};
use super::{Client, Error};
use crate::oci::descriptor::OCI_INDEX;
use crate::oci::{
    Descriptor, Digest, ImageManifest, Manifest, ManifestError, Repository, MAX_MANIFEST_BYTES,
};

/// The filter name a registry lists in `OCI-Filters-Applied` when it applied the
/// `artifactType` query (OCI distribution spec v1.1, "Listing Referrers").
pub const ARTIFACT_TYPE_FILTER: &str = "artifactType";
/// The response header naming the filters the registry applied.
const FILTERS_APPLIED: &str = "oci-filters-applied";
/// The suffix of cosign's signature tag, `sha256-<hex>.sig`.
const COSIGN_SIGNATURE_SUFFIX: &str = ".sig";
/// Whether a referrer is wanted, for [`Client::referrers_where`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    Yes,
    No,
    /// Its descriptor does not say: its manifest's type decides.
    ByManifest,
}

/// The most referrer manifests [`Client::referrers_where`] reads from one host to learn
/// their types.
pub const MAX_MANIFESTS_READ: usize = 64;

/// The most bytes of referrer manifests [`Client::referrers_where`] reads from one host,
/// past which it reads no more: signature manifests are a few KiB each, and what is
/// read is kept, parsed, until the decision is made.
pub const MAX_MANIFEST_BYTES_READ: usize = 2 * MAX_MANIFEST_BYTES;

/// The most bytes of referrers pages read from one host for one subject: some ten
/// thousand descriptors, far more than [`MAX_MANIFESTS_READ`] signatures.
pub const MAX_LISTING_BYTES: usize = 2 * MAX_MANIFEST_BYTES;

/// HTTP statuses of a referrers request that mean the registry has no referrers API.
const NO_REFERRERS_API: [u16; 4] = [400, 405, 406, 501];

// === impl Client ===

impl Client {
    /// The descriptors of manifests whose `subject` is `subject`, optionally only those of
    /// `artifact_type`. Asks the referrers API, following `Link` pages up to the configured
    /// count. A registry without the API answers 404 (OCI distribution spec v1.1,
    /// "Listing Referrers"); one whose first answer is not an image index by its
    /// `Content-Type` (a catch-all page, a JSON error under `200 OK`) is taken not to have
    /// it either, as the ORAS client Notation uses takes it (`referrersByAPI` in oras-go).
    /// Either way the referrers tag schema is read instead: the `<alg>-<hex>` tag holding
    /// an image index, which is where those clients push to such a registry (an image
    /// manifest there is no index of referrers: none), newest first. No referrers is an
    /// empty list.
    /// Each host that may pull is asked in turn (a mirror first, [`Client::hosts`]) until
    /// one has a referrer of that type.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyPages`]; [`Error::UnexpectedKind`] when an API answer is not an
    /// index; fetch errors other than those that mean "none" (a 404, and for the API the
    /// statuses of [`NO_REFERRERS_API`]).
    #[tracing::instrument(name = "registry", skip_all, fields(%repo, %subject, artifact_type))]
    pub async fn referrers(
        &self,
        repo: &Repository,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, Error> {
        self.ask_hosts(repo, Capability::Pull, |host| async move {
            self.referrers_on(&host, repo, subject, artifact_type).await
        })
        .await
    }

    /// The descriptors of manifests whose `subject` is `subject` that `want` wants, as
    /// [`Client::referrers`] finds them, for a kind of referrer no single artifact type
    /// names. A descriptor `want` cannot judge ([`Wanted::ByManifest`]: listed with no
    /// artifact type, or the empty one) is judged again with its manifest's own artifact
    /// type (or config media type), read from the same host, at most
    /// [`MAX_MANIFESTS_READ`] per host; it is returned with that type and the manifest
    /// read, which the caller need not fetch again. A host holding none that `want`
    /// wants counts as having none, so the next host is asked: a mirror holding other
    /// artifacts hides nothing upstream. A listed referrer the host no longer holds is
    /// left out. One whose manifest cannot be read for another reason (a registry error,
    /// a manifest crigate refuses) may be wanted: it hides none of the others, and is
    /// returned after them with its type unknown and no manifest, for the caller to
    /// judge when it reads it.
    ///
    /// # Errors
    ///
    /// As [`Client::referrers`]; a referrer's manifest that cannot be read, when the
    /// host lists no other wanted referrer.
    #[tracing::instrument(name = "registry", skip_all, fields(%repo, %subject))]
    pub async fn referrers_where<W>(
        &self,
        repo: &Repository,
        subject: &Digest,
        want: W,
    ) -> Result<Vec<(Descriptor, Option<ImageManifest>)>, Error>
    where
        W: Fn(&Descriptor) -> Wanted + Copy,
    {
        self.ask_hosts(repo, Capability::Pull, |host| async move {
            let listed = self.referrers_on(&host, repo, subject, None).await?;
            let mut found = Vec::new();
            let mut unreadable = Vec::new();
            let (mut read, mut read_bytes, mut unread) = (0, 0, 0);
            for mut descriptor in listed {
                match want(&descriptor) {
                    Wanted::Yes => found.push((descriptor, None)),
                    Wanted::No => {}
                    Wanted::ByManifest
                        if read < MAX_MANIFESTS_READ && read_bytes < MAX_MANIFEST_BYTES_READ =>
                    {
                        read += 1;
                        let digest = descriptor.digest.to_string();
                        let fetched = match self
                            .fetch_manifest(&host, repo, &digest, Some(&descriptor.digest))
                            .await
                        {
                            Ok(fetched) => fetched,
                            // Listed, but deleted since (a referrers tag index is kept by
                            // its writers and not pruned when a referrer goes): no
                            // referrer, and no reason to overlook the others.
                            Err(Error::NotFound { .. }) => {
                                tracing::debug!(%repo, %subject, %digest, "a listed referrer is not found");
                                continue;
                            }
                            Err(error) => {
                                tracing::debug!(%repo, %subject, %digest, %error, "a listed referrer could not be read");
                                unreadable.push((descriptor, error));
                                continue;
                            }
                        };
                        read_bytes += fetched.raw.len();
                        let Manifest::Image(manifest) = fetched.manifest else {
                            continue;
                        };
                        descriptor.artifact_type =
                            Some(manifest.listed_artifact_type().to_owned());
                        if want(&descriptor) == Wanted::Yes {
                            found.push((descriptor, Some(manifest)));
                        }
                    }
                    Wanted::ByManifest => unread += 1,
                }
            }
            if unread > 0 {
                tracing::warn!(%repo, %subject, unread, read, read_bytes, "referrers of no stated type past the first {MAX_MANIFESTS_READ}, or past {MAX_MANIFEST_BYTES_READ} bytes of their manifests, were not read");
            }
            // Nothing else wanted: the host failed, and the next one is asked.
            if found.is_empty() {
                if let Some((_, error)) = unreadable.into_iter().next() {
                    return Err(error);
                }
                return Ok(found);
            }
            found.extend(unreadable.into_iter().map(|(descriptor, _)| (descriptor, None)));
            Ok(found)
        })
        .await
    }

    async fn referrers_on(
        &self,
        host: &Host,
        repo: &Repository,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, Error> {
        match self.referrers_api(host, repo, subject, artifact_type).await {
            Ok(Some(found)) => Ok(found),
            Ok(None) | Err(Error::NotFound { .. }) => {
                tracing::debug!(%repo, %subject, "no referrers API, reading the referrers tag");
                self.referrers_tag(host, repo, subject, artifact_type).await
            }
            // Registries without the API answer its path with other codes than the
            // spec's 404: 400 and 406 (Artifactory, read as "no API" by go-containerregistry,
            // which cosign uses), 405 and 501 (proxies and servers with no such route).
            Err(Error::Status { code, .. }) if NO_REFERRERS_API.contains(&code) => {
                tracing::debug!(%repo, %subject, code, "the referrers API is not served, reading the referrers tag");
                self.referrers_tag(host, repo, subject, artifact_type).await
            }
            Err(error) => Err(error),
        }
    }

    /// cosign's legacy signature manifest for `image`: the manifest tagged
    /// `sha256-<hex>.sig`, or `None` when there is no such tag. The returned descriptor
    /// carries the digest of the bytes read. Asked of each host that may pull in turn,
    /// as [`Client::referrers`].
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedKind`] when the tag holds an index; fetch errors other than 404.
    #[tracing::instrument(name = "registry", skip_all, fields(%repo, %image))]
    pub async fn cosign_signature(
        &self,
        repo: &Repository,
        image: &Digest,
    ) -> Result<Option<FetchedManifest>, Error> {
        self.ask_hosts(repo, Capability::Pull, |host| async move {
            self.cosign_signature_on(&host, repo, image).await
        })
        .await
    }

    async fn cosign_signature_on(
        &self,
        host: &Host,
        repo: &Repository,
        image: &Digest,
    ) -> Result<Option<FetchedManifest>, Error> {
        let tag = format!("{}{COSIGN_SIGNATURE_SUFFIX}", image.tag_form());
        match self.fetch_manifest(host, repo, &tag, None).await {
            Ok(fetched) => match fetched.manifest {
                Manifest::Image(_) => Ok(Some(fetched)),
                Manifest::Index(_) => Err(Error::UnexpectedKind {
                    what: format!("cosign signature {repo}:{tag}"),
                    found: "image index",
                    expected: "image manifest",
                }),
            },
            Err(Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `GET /v2/<name>/referrers/<digest>[?artifactType=...]`, every page; `None` when
    /// the first answer is no image index by its `Content-Type`.
    async fn referrers_api(
        &self,
        host: &Host,
        repo: &Repository,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Descriptor>>, Error> {
        let limit = self.config().max_referrer_pages;
        let mut url = self.endpoint(host, repo, &format!("referrers/{subject}"))?;
        if let Some(artifact_type) = artifact_type {
            url.query_pairs_mut()
                .append_pair("artifactType", artifact_type);
        }
        let origin = url.origin();
        let mut found = Vec::new();
        let mut listed_bytes = 0;
        for page in 1..=limit {
            let what = describe(host, format!("referrers of {repo}@{subject} (page {page})"));
            let fetched = self
                .get(Fetch {
                    method: Method::GET,
                    repo,
                    host,
                    url,
                    accept: Some(OCI_INDEX),
                    what: what.clone(),
                    limit: MAX_MANIFEST_BYTES,
                })
                .await?;
            if page == 1 && !is_index_type(&fetched.headers) {
                tracing::debug!(
                    content_type = ?fetched.headers.get(CONTENT_TYPE),
                    "the referrers API answered with no image index"
                );
                return Ok(None);
            }
            listed_bytes += fetched.body.len();
            if listed_bytes > MAX_LISTING_BYTES {
                return Err(Error::TooLarge {
                    what: describe(
                        host,
                        format!("referrers of {repo}@{subject} (pages 1 to {page})"),
                    ),
                    limit: MAX_LISTING_BYTES,
                });
            }
            let index = index(&fetched.headers, &fetched.body, &what).await?;
            let filtered = filters_applied(&fetched.headers);
            tracing::debug!(page, referrers = index.len(), filtered, "referrers page");
            // OCI distribution spec v1.1, "Listing Referrers": a registry MAY ignore the
            // filter, and says so by leaving it out of OCI-Filters-Applied; filter here.
            found.extend(index.into_iter().filter(|d| matches(d, artifact_type)));
            let Some(next) = next_link(&fetched.headers) else {
                return Ok(Some(found));
            };
            let next = fetched.url.join(&next).map_err(|e| Error::Malformed {
                what: what.clone(),
                reason: format!("bad Link {next:?}: {e}"),
            })?;
            // A next page elsewhere would take our credentials with it.
            if next.origin() != origin {
                return Err(Error::Malformed {
                    what,
                    reason: format!("Link to another origin: {next}"),
                });
            }
            url = next;
        }
        Err(Error::TooManyPages {
            what: format!("referrers of {repo}@{subject}"),
            limit,
        })
    }

    /// The referrers tag schema: the index tagged `<alg>-<hex>` (OCI distribution spec
    /// v1.1, "Referrers Tag Schema"), filtered here.
    async fn referrers_tag(
        &self,
        host: &Host,
        repo: &Repository,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, Error> {
        let tag = subject.referrers_tag();
        match self.fetch_manifest(host, repo, &tag, None).await {
            // Some registries (GitLab's) answer a `sha256-<hex>` tag with the manifest of
            // that digest, the subject itself; when the subject is an index, its platform
            // manifests are not its referrers.
            Ok(fetched) if fetched.descriptor.digest == *subject => {
                tracing::debug!(%repo, %tag, "the referrers tag names the subject itself: no referrers");
                Ok(Vec::new())
            }
            // Newest first: the clients that keep the index (oras-go for Notation,
            // go-containerregistry for cosign) append each referrer they add, so a
            // signature made after a key rotation is read before any cap on how many are.
            Ok(fetched) => match fetched.manifest {
                Manifest::Index(index) => Ok(index
                    .manifests
                    .into_iter()
                    .rev()
                    .filter(|d| matches(d, artifact_type))
                    .collect()),
                // Some registries (GitLab's) answer a `sha256-<hex>` tag with the manifest
                // of that digest; no client wrote a referrers index there.
                Manifest::Image(_) => {
                    tracing::debug!(%repo, %tag, "the referrers tag holds an image manifest, not an index: no referrers");
                    Ok(Vec::new())
                }
            },
            Err(Error::NotFound { .. }) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }
}

/// The `rel="next"` target of the `Link` headers, if any (RFC 8288 section 3; OCI
/// distribution spec v1.1, "Listing Referrers" pagination).
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(next_in_link_value)
}

/// Parses `<uri>; param; param, <uri>; ...` and returns the URI whose `rel` holds `next`.
fn next_in_link_value(value: &str) -> Option<String> {
    let mut rest = value;
    loop {
        let start = rest.find('<')?;
        let after_open = rest.get(start + 1..)?;
        let end = after_open.find('>')?;
        let uri = after_open.get(..end)?;
        let params_and_more = after_open.get(end + 1..)?;
        // Parameters run to the next link-value, which starts with ", <".
        let (params, more) = match params_and_more.find('<') {
            Some(next) => (params_and_more.get(..next)?, params_and_more.get(next..)?),
            None => (params_and_more, ""),
        };
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_end_matches(',')
                    .trim()
                    .trim_matches('"')
                    .split_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(uri.to_owned());
        }
        if more.is_empty() {
            return None;
        }
        rest = more;
    }
}

/// Whether an answer's `Content-Type` is the OCI image index media type, parameters
/// aside.
fn is_index_type(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(OCI_INDEX))
}

/// Whether the registry says it applied the `artifactType` filter.
fn filters_applied(headers: &HeaderMap) -> bool {
    headers
        .get_all(FILTERS_APPLIED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|filter| filter.trim() == ARTIFACT_TYPE_FILTER)
}

fn matches(descriptor: &Descriptor, artifact_type: Option<&str>) -> bool {
    artifact_type.is_none_or(|wanted| descriptor.artifact_type.as_deref() == Some(wanted))
}

/// The descriptors of a referrers page, which must be an image index.
async fn index(
    headers: &HeaderMap,
    body: &bytes::Bytes,
    what: &str,
) -> Result<Vec<Descriptor>, Error> {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let parsed = Manifest::parse_off_thread(content_type, body.clone()).await;
    listed(parsed, body, what)
}

/// The descriptors of a referrers page `body`, `parsed`.
fn listed(
    parsed: Result<Manifest, ManifestError>,
    body: &[u8],
    what: &str,
) -> Result<Vec<Descriptor>, Error> {
    match parsed {
        Ok(Manifest::Index(index)) => Ok(index.manifests),
        Ok(Manifest::Image(_)) => Err(Error::UnexpectedKind {
            what: what.to_owned(),
            found: "image manifest",
            expected: "image index",
        }),
        // An empty object, or one whose `manifests` is null, lists no referrers: some
        // registries answer a subject they do not hold so (Harbor), and the ORAS client
        // Notation uses decodes it into an index with none.
        Err(_) if lists_nothing(body) => Ok(Vec::new()),
        Err(source) => Err(Error::Manifest {
            what: what.to_owned(),
            source,
        }),
    }
}

/// Whether `body` is a JSON object with no `manifests` (or a null one), and no field of
/// an image manifest. Read without building the document's tree, whose size the
/// registry chooses.
fn lists_nothing(body: &[u8]) -> bool {
    /// The fields of a listing that say whether it lists nothing.
    #[derive(serde::Deserialize)]
    struct Listing {
        manifests: Option<serde::de::IgnoredAny>,
        #[serde(default, deserialize_with = "present")]
        config: bool,
        #[serde(default, deserialize_with = "present")]
        layers: bool,
    }
    fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
        <serde::de::IgnoredAny as serde::Deserialize>::deserialize(deserializer).map(|_| true)
    }
    // A struct deserializes from an array as well: only an object is taken.
    let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    object
        && serde_json::from_slice::<Listing>(body)
            .is_ok_and(|listing| listing.manifests.is_none() && !listing.config && !listing.layers)
}

/// Fuzz entry point: reads `data` as a referrers API answer: its first line the `Link`
/// header values (separated by `|`), its second the `OCI-Filters-Applied` value, the rest
/// its body. Must return for any input, never panic.
pub fn fuzz_referrers_page(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (links, filters, body) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut headers = HeaderMap::new();
    for link in links.split(|&b| b == b'|') {
        if let Ok(value) = http::HeaderValue::from_bytes(link) {
            headers.append(LINK, value);
        }
    }
    if let Ok(value) = http::HeaderValue::from_bytes(filters) {
        headers.insert(FILTERS_APPLIED, value);
    }
    let _ = next_link(&headers);
    let _ = filters_applied(&headers);
    for content_type in [OCI_INDEX, "application/json"] {
        headers.insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
        if is_index_type(&headers) {
            let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
            let parsed = Manifest::parse(content_type, body);
            if let Ok(found) = listed(parsed, body, "referrers") {
                let _ = found
                    .iter()
                    .filter(|d| matches(d, Some("application/vnd.cncf.notary.signature")))
                    .count();
            }
        }
    }
    // The tag schema's index, read as a manifest.
    let _ = Manifest::parse(None, body);
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[tokio::test]
    async fn an_empty_object_lists_no_referrers_and_an_image_is_still_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
        for body in [
            &b"{}"[..],
            b"{\"manifests\": null}",
            b"{\"schemaVersion\": 2}",
        ] {
            let listed = index(&headers, &bytes::Bytes::from_static(body), "referrers").await;
            assert!(listed.is_ok_and(|l| l.is_empty()), "{body:?}");
        }
        for body in [
            &b"[]"[..],
            b"not json",
            b"{\"manifests\": 7}",
            b"[null]",
            b" [null, false, false]",
            b"{\"config\": {}, \"layers\": []}",
        ] {
            let listed = index(&headers, &bytes::Bytes::from_static(body), "referrers").await;
            assert!(listed.is_err(), "{body:?}");
        }
    }

    fn headers(links: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for link in links {
            headers.append(LINK, HeaderValue::from_str(link).unwrap());
        }
        headers
    }

    #[test]
    fn next_link_is_found_among_links_and_params() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (
                &["</v2/a/referrers/x?n=2>; rel=\"next\""],
                Some("/v2/a/referrers/x?n=2"),
            ),
            (&["</p2>; rel=next"], Some("/p2")),
            (&["</p1>; rel=\"prev\", </p3>; rel=\"next\""], Some("/p3")),
            (
                &[
                    "</p1>; rel=\"prev\"",
                    "</p4>; title=\"x\"; rel=\"prev next\"",
                ],
                Some("/p4"),
            ),
            (
                &["<https://r.example/p?a=1,2>; REL=\"Next\""],
                Some("https://r.example/p?a=1,2"),
            ),
            (&["</p1>; rel=\"prev\""], None),
            (&["no brackets; rel=next"], None),
            (&["</unterminated; rel=next"], None),
        ];
        for (values, expected) in cases {
            assert_eq!(
                next_link(&headers(values)).as_deref(),
                *expected,
                "{values:?}"
            );
        }
    }

    #[test]
    fn filters_applied_is_read_from_a_list() {
        let mut headers = HeaderMap::new();
        assert!(!filters_applied(&headers));
        headers.insert(
            FILTERS_APPLIED,
            HeaderValue::from_static("foo, artifactType"),
        );
        assert!(filters_applied(&headers));
    }
}
