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

use super::model::{Mode, OnError, Policies, Policy, Require};
use crate::decision::{BoxFuture, Decide, Decision, Phase, RequestContext};
use crate::oci::ImageRef;
use crate::verify::engine::{Engine, Outcome, Requirement};
use crate::verify::{Rejection, Verdict};

/// Decides CRI calls by the configured policies.
pub struct PolicyDecider {
    policies: Policies,
    /// Each verifier's trust material, by name.
    verifiers: BTreeMap<String, Requirement>,
    engine: Arc<Engine>,
    runtime: RuntimeImages,
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

// === impl PolicyDecider ===

impl PolicyDecider {
    pub fn new(
        policies: Policies,
        verifiers: BTreeMap<String, Requirement>,
        engine: Arc<Engine>,
        runtime: RuntimeImages,
    ) -> Self {
        Self {
            policies,
            verifiers,
            engine,
            runtime,
        }
    }

    async fn decide_inner(&self, request: &RequestContext) -> Decision {
        let namespace = request.namespace.as_deref().unwrap_or("");
        let Some(policy) = self.policies.select(namespace) else {
            return deny(
                request,
                None,
                &request.image,
                format!("no policy covers namespace {namespace:?}; add one to [[policies]] or a default (namespaces = [\"*\"])"),
            );
        };
        if policy.mode == Mode::Off {
            return record(
                request,
                policy,
                &request.image,
                "allow",
                "policy mode is off",
                Decision::Allow { pin: None },
            );
        }
        let images = match self.images(request).await {
            Ok(images) => images,
            Err(reason) => return self.on_error(request, policy, &request.image, reason),
        };
        let requested = request
            .user_specified_image
            .as_deref()
            .or(Some(request.image.as_str()));
        // Allowlisted: no verification, but the decision is still recorded.
        if let Some(entry) = images
            .iter()
            .find_map(|image| policy.allowlist.find(image, requested, Some(namespace)))
        {
            let reason = format!("allowlisted by {:?}", entry.pattern.as_str());
            return record(
                request,
                policy,
                &request.image,
                "allow",
                &reason,
                Decision::Allow { pin: None },
            );
        }
        let mut last_rejection = None;
        for image in &images {
            match self.verify(policy, image).await {
                Ok(Ok(outcome)) => {
                    let pin = match request.phase {
                        Phase::Pull => outcome.pinned().map(|p| p.to_string()),
                        Phase::Create => None,
                    };
                    let reason = format!("signed ({})", signer_text(&outcome));
                    let subject = outcome
                        .pinned()
                        .map_or_else(|| image.to_string(), |p| p.to_string());
                    return record(
                        request,
                        policy,
                        &subject,
                        "allow",
                        &reason,
                        Decision::Allow { pin },
                    );
                }
                Ok(Err((subject, rejection))) => last_rejection = Some((subject, rejection)),
                Err(error) => return self.on_error(request, policy, &image.to_string(), error),
            }
        }
        let (subject, rejection) = last_rejection.unwrap_or_else(|| {
            (
                request.image.clone(),
                format!("image {} is not known to the runtime", request.image),
            )
        });
        let reason = format!("{rejection} under policy {:?}", policy.name);
        match policy.mode {
            Mode::Audit => record(
                request,
                policy,
                &subject,
                "audit-deny",
                &reason,
                Decision::Allow { pin: None },
            ),
            Mode::Enforce | Mode::Off => deny(request, Some(policy), &subject, reason),
        }
    }

    /// The image references to decide on: the requested one for a pull; for a create,
    /// the repository digests the runtime has for the container's image.
    async fn images(&self, request: &RequestContext) -> Result<Vec<ImageRef>, String> {
        match request.phase {
            Phase::Pull => request
                .image
                .parse::<ImageRef>()
                .map(|image| vec![image])
                .map_err(|e| format!("cannot parse image {:?}: {e}", request.image)),
            Phase::Create => {
                let digests =
                    self.runtime
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
    /// decide.
    async fn verify(
        &self,
        policy: &Policy,
        image: &ImageRef,
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
            let outcome = self
                .engine
                .verify(image, &requirement, None)
                .await
                .map_err(|e| format!("{e:#}"))?;
            match &outcome.verdict {
                Verdict::Trusted(_) => {
                    if policy.require == Require::Any {
                        return Ok(Ok(outcome));
                    }
                    trusted.get_or_insert(outcome);
                }
                Verdict::Rejected(rejection) => {
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

    fn on_error(
        &self,
        request: &RequestContext,
        policy: &Policy,
        subject: &str,
        reason: String,
    ) -> Decision {
        match (policy.on_error, policy.mode) {
            (OnError::Allow, _) | (_, Mode::Audit) => record(
                request,
                policy,
                subject,
                if policy.mode == Mode::Audit {
                    "audit-error"
                } else {
                    "error-allow"
                },
                &reason,
                Decision::Allow { pin: None },
            ),
            (OnError::Deny, _) => deny(
                request,
                Some(policy),
                subject,
                format!("could not verify: {reason}"),
            ),
        }
    }
}

impl Decide for PolicyDecider {
    fn decide<'a>(&'a self, request: &'a RequestContext) -> BoxFuture<'a, Decision> {
        Box::pin(self.decide_inner(request))
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

/// Logs a decision (one `info` event, target `crigate::decision`) and returns it.
fn record(
    request: &RequestContext,
    policy: &Policy,
    subject: &str,
    decision: &str,
    reason: &str,
    result: Decision,
) -> Decision {
    tracing::info!(
        target: "crigate::decision",
        phase = %request.phase,
        api = %request.api,
        namespace = request.namespace.as_deref().unwrap_or(""),
        pod = request.pod_name.as_deref().unwrap_or(""),
        container = request.container_name.as_deref().unwrap_or(""),
        image = %request.image,
        subject,
        policy = %policy.name,
        fingerprint = %policy.fingerprint,
        caller_pid = request.caller.pid.unwrap_or(0),
        caller_uid = request.caller.uid,
        decision,
        reason,
        "decision"
    );
    result
}

fn deny(
    request: &RequestContext,
    policy: Option<&Policy>,
    subject: &str,
    reason: String,
) -> Decision {
    let namespace = request.namespace.as_deref().unwrap_or("");
    tracing::info!(
        target: "crigate::decision",
        phase = %request.phase,
        api = %request.api,
        namespace,
        pod = request.pod_name.as_deref().unwrap_or(""),
        container = request.container_name.as_deref().unwrap_or(""),
        image = %request.image,
        subject,
        policy = %policy.map_or("", |p| p.name.as_str()),
        caller_pid = request.caller.pid.unwrap_or(0),
        caller_uid = request.caller.uid,
        decision = "deny",
        reason = %reason,
        "decision"
    );
    Decision::Deny {
        message: format!("denied {subject} in namespace {namespace}: {reason}"),
    }
}
