//! The daemon's decision seam filled by policy: which policy governs the pod's namespace,
//! whether the image is allowlisted, and whether its signatures satisfy the policy's
//! verifiers; then what the policy's mode and `on_error` make of that.
//!
//! - **PullImage**: the requested reference is verified, and an allowed pull is pinned to
//!   the digest the trusted signature covers, so the runtime fetches exactly that.
//! - **CreateContainer**: the container's image (a name, or the image id PullImage
//!   returned) is resolved through the runtime's ImageStatus to the repository digests
//!   it was pulled as, and one of them must be trusted under the pod's policy. An image
//!   pulled behind crigate's back, or allowed in another namespace, gets no pass.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{ImageSpec, ImageStatusRequest};
use tonic::transport::{Channel, Endpoint};

use serde::Serialize;

use super::model::{Mode, OnError, Policies, Policy, Require};
use crate::decision::{BoxFuture, Decide, Decision, Phase, RequestContext};
use crate::oci::ImageRef;
use crate::registry::Credentials;
use crate::verify::cache::Source;
use crate::verify::engine::{Engine, Outcome, Requirement};
use crate::verify::{Rejection, Verdict};

/// Decides CRI calls by the configured policies.
pub struct PolicyDecider {
    policies: Policies,
    /// Each verifier's trust material, by name.
    verifiers: BTreeMap<String, Requirement>,
    engine: Arc<Engine>,
    /// The runtime, to resolve CreateContainer's image; `None` outside the daemon.
    runtime: Option<RuntimeImages>,
}

/// Looks images up in the runtime through CRI ImageStatus.
#[derive(Clone)]
pub struct RuntimeImages {
    channel: Channel,
}

// === impl RuntimeImages ===

impl RuntimeImages {
    /// A client of the runtime's CRI socket; connects on first use.
    ///
    /// # Errors
    ///
    /// Never in practice: the endpoint is a constant URI.
    pub fn new(socket: PathBuf) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::try_from("http://localhost")?.connect_with_connector_lazy(
            tower::service_fn(move |_| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }),
        );
        Ok(Self { channel })
    }

    /// The repository digests (`repo@sha256:…`) the runtime knows `image` by.
    async fn repo_digests(&self, image: &str) -> Result<Vec<String>, tonic::Status> {
        let mut client = ImageServiceClient::new(self.channel.clone());
        let response = client
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image.to_owned(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await?
            .into_inner();
        Ok(response.image.map(|i| i.repo_digests).unwrap_or_default())
    }
}

/// The trace of one decision: what `crigate policy explain` prints and what the daemon
/// acts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub phase: String,
    pub namespace: String,
    pub image: String,
    /// The policy that governs the namespace, if any.
    pub policy: Option<String>,
    pub mode: Option<&'static str>,
    pub fingerprint: Option<String>,
    /// The allowlist entry that exempted the image.
    pub allowlisted_by: Option<String>,
    /// Each verification made, in order.
    pub checks: Vec<CheckTrace>,
    /// `allow`, `deny`, `audit-deny` (audit mode, enforce would deny), `error-allow`
    /// (`on_error = "allow"`), or `audit-error`.
    pub decision: &'static str,
    pub reason: String,
    /// The image the decision is about: `repo@digest` once resolved.
    pub subject: String,
    /// For an allowed pull: the reference the runtime is given.
    pub pinned: Option<String>,
}

/// One verification within a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckTrace {
    pub image: String,
    pub verifier: String,
    /// `trusted`, `rejected` or `error`.
    pub result: &'static str,
    /// The signer when trusted; the reason code when rejected.
    pub detail: String,
    pub digest: Option<String>,
    pub cached: bool,
}

// === impl Explanation ===

impl Explanation {
    fn new(request: &RequestContext) -> Self {
        Self {
            phase: request.phase.to_string(),
            namespace: request.namespace.clone().unwrap_or_default(),
            image: request.image.clone(),
            policy: None,
            mode: None,
            fingerprint: None,
            allowlisted_by: None,
            checks: Vec::new(),
            decision: "deny",
            reason: String::new(),
            subject: request.image.clone(),
            pinned: None,
        }
    }

    fn conclude(mut self, decision: &'static str, reason: String) -> Self {
        self.decision = decision;
        self.reason = reason;
        self
    }

    /// Whether the call goes ahead.
    pub fn allows(&self) -> bool {
        self.decision != "deny"
    }
}

// === impl PolicyDecider ===

impl PolicyDecider {
    pub fn new(
        policies: Policies,
        verifiers: BTreeMap<String, Requirement>,
        engine: Arc<Engine>,
        runtime: Option<RuntimeImages>,
    ) -> Self {
        Self {
            policies,
            verifiers,
            engine,
            runtime,
        }
    }

    /// Decides `request` and says why. Makes registry calls (verification) and, for
    /// CreateContainer, asks the runtime what the image is; never pulls anything.
    pub async fn explain(&self, request: &RequestContext) -> Explanation {
        let mut trace = Explanation::new(request);
        let namespace = trace.namespace.clone();
        let Some(policy) = self.policies.select(&namespace) else {
            let reason = format!(
                "no policy covers namespace {namespace:?}; add one to [[policies]] or a default (namespaces = [\"*\"])"
            );
            return trace.conclude("deny", reason);
        };
        trace.policy = Some(policy.name.clone());
        trace.mode = Some(match policy.mode {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
            Mode::Off => "off",
        });
        trace.fingerprint = Some(policy.fingerprint.to_string());
        if policy.mode == Mode::Off {
            return trace.conclude("allow", "policy mode is off".to_owned());
        }
        let images = match self.images(request).await {
            Ok(images) => images,
            Err(reason) => return on_error(trace, policy, reason),
        };
        let requested = request
            .user_specified_image
            .as_deref()
            .or(Some(request.image.as_str()));
        // Allowlisted: no verification, but the decision is still recorded.
        if let Some(entry) = images
            .iter()
            .find_map(|image| policy.allowlist.find(image, requested, Some(&namespace)))
        {
            trace.allowlisted_by = Some(entry.pattern.as_str().to_owned());
            let reason = format!("allowlisted by {:?}", entry.pattern.as_str());
            return trace.conclude("allow", reason);
        }
        if images.is_empty() {
            let reason = format!("image {} is not known to the runtime", request.image);
            return self.rejected(trace, policy, reason);
        }
        let mut rejection = None;
        for image in &images {
            match self
                .verify(
                    policy,
                    image,
                    request.credentials.as_ref(),
                    &mut trace.checks,
                )
                .await
            {
                Ok(Ok(outcome)) => {
                    let pinned = outcome.pinned().map(|p| p.to_string());
                    trace.subject = pinned.clone().unwrap_or_else(|| image.to_string());
                    if request.phase == Phase::Pull {
                        trace.pinned = pinned;
                    }
                    let reason = format!("signed ({})", signer_text(&outcome));
                    return trace.conclude("allow", reason);
                }
                Ok(Err((subject, reason))) => rejection = Some((subject, reason)),
                Err(error) => {
                    trace.subject = image.to_string();
                    return on_error(trace, policy, error);
                }
            }
        }
        let (subject, reason) =
            rejection.unwrap_or_else(|| (request.image.clone(), "not trusted".to_owned()));
        trace.subject = subject;
        self.rejected(trace, policy, reason)
    }

    fn rejected(&self, trace: Explanation, policy: &Policy, reason: String) -> Explanation {
        let reason = format!("{reason} under policy {:?}", policy.name);
        match policy.mode {
            Mode::Audit => trace.conclude("audit-deny", reason),
            Mode::Enforce | Mode::Off => trace.conclude("deny", reason),
        }
    }

    /// The image references to decide on: the requested one for a pull; for a create,
    /// the repository digests the runtime has for the container's image.
    async fn images(&self, request: &RequestContext) -> Result<Vec<ImageRef>, String> {
        let parse = || {
            request
                .image
                .parse::<ImageRef>()
                .map(|image| vec![image])
                .map_err(|e| format!("cannot parse image {:?}: {e}", request.image))
        };
        match (request.phase, &self.runtime) {
            (Phase::Pull, _) | (Phase::Create, None) => parse(),
            (Phase::Create, Some(runtime)) => {
                let digests = runtime
                    .repo_digests(&request.image)
                    .await
                    .map_err(|status| {
                        format!(
                            "cannot look up image {} in the runtime: {}",
                            request.image,
                            status.message()
                        )
                    })?;
                Ok(digests
                    .iter()
                    .filter_map(|d| d.parse::<ImageRef>().ok())
                    .collect())
            }
        }
    }

    /// `Ok(Ok(outcome))` trusted, `Ok(Err((subject, reason)))` rejected, `Err` could not
    /// decide. Each verification is added to `checks`.
    async fn verify(
        &self,
        policy: &Policy,
        image: &ImageRef,
        credentials: Option<&Credentials>,
        checks: &mut Vec<CheckTrace>,
    ) -> Result<Result<Outcome, (String, String)>, String> {
        let mut rejections = Vec::new();
        let mut trusted = None;
        for name in &policy.verifiers {
            let Some(requirement) = self.verifiers.get(name) else {
                return Err(format!("verifier {name:?} is not loaded"));
            };
            let requirement = Requirement {
                fingerprint: policy.fingerprint,
                ..requirement.clone()
            };
            let outcome = match self
                .engine
                .verify(image, &requirement, credentials.cloned())
                .await
            {
                Ok(outcome) => outcome,
                Err(error) => {
                    let error = format!("{error:#}");
                    checks.push(CheckTrace {
                        image: image.to_string(),
                        verifier: name.clone(),
                        result: "error",
                        detail: error.clone(),
                        digest: None,
                        cached: false,
                    });
                    return Err(error);
                }
            };
            let cached = outcome.source == Source::Cache;
            match &outcome.verdict {
                Verdict::Trusted(_) => {
                    checks.push(CheckTrace {
                        image: image.to_string(),
                        verifier: name.clone(),
                        result: "trusted",
                        detail: signer_text(&outcome),
                        digest: Some(outcome.digest.to_string()),
                        cached,
                    });
                    if policy.require == Require::Any {
                        return Ok(Ok(outcome));
                    }
                    trusted.get_or_insert(outcome);
                }
                Verdict::Rejected(rejection) => {
                    checks.push(CheckTrace {
                        image: image.to_string(),
                        verifier: name.clone(),
                        result: "rejected",
                        detail: rejection.code().to_owned(),
                        digest: Some(outcome.digest.to_string()),
                        cached,
                    });
                    let subject = image.with_digest(outcome.digest.clone()).to_string();
                    rejections.push((subject, rejection_text(rejection, name)));
                    if policy.require == Require::All {
                        break;
                    }
                }
            }
        }
        match (trusted, rejections.pop()) {
            (Some(outcome), None) => Ok(Ok(outcome)),
            (_, Some(rejection)) => Ok(Err(rejection)),
            (None, None) => Ok(Err((
                image.to_string(),
                "no verifier configured".to_owned(),
            ))),
        }
    }
}

fn on_error(trace: Explanation, policy: &Policy, reason: String) -> Explanation {
    match (policy.mode, policy.on_error) {
        (Mode::Audit, _) => trace.conclude("audit-error", reason),
        (_, OnError::Allow) => trace.conclude("error-allow", reason),
        (_, OnError::Deny) => trace.conclude("deny", format!("could not verify: {reason}")),
    }
}

impl Decide for PolicyDecider {
    fn decide<'a>(&'a self, request: &'a RequestContext) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            let trace = self.explain(request).await;
            record(request, &trace);
            if trace.allows() {
                Decision::Allow {
                    pin: trace.pinned.clone(),
                }
            } else {
                Decision::Deny {
                    message: format!(
                        "denied {} in namespace {}: {}",
                        trace.subject, trace.namespace, trace.reason
                    ),
                }
            }
        })
    }
}

fn rejection_text(rejection: &Rejection, verifier: &str) -> String {
    format!("{rejection} [{}] (verifier {verifier:?})", rejection.code())
}

fn signer_text(outcome: &Outcome) -> String {
    match &outcome.verdict {
        Verdict::Trusted(signer) => format!("{} by {}", signer.verifier, signer.identity),
        Verdict::Rejected(_) => String::new(),
    }
}

/// Logs a decision: one `info` event, target `crigate::decision`.
fn record(request: &RequestContext, trace: &Explanation) {
    tracing::info!(
        target: "crigate::decision",
        phase = %request.phase,
        api = %request.api,
        namespace = %trace.namespace,
        pod = request.pod_name.as_deref().unwrap_or(""),
        container = request.container_name.as_deref().unwrap_or(""),
        image = %request.image,
        subject = %trace.subject,
        policy = %trace.policy.as_deref().unwrap_or(""),
        fingerprint = %trace.fingerprint.as_deref().unwrap_or(""),
        cached = trace.checks.iter().all(|c| c.cached) && !trace.checks.is_empty(),
        caller_pid = request.caller.pid.unwrap_or(0),
        caller_uid = request.caller.uid,
        decision = trace.decision,
        reason = %trace.reason,
        "decision"
    );
}
