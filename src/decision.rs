//! The seam between the proxy and whatever decides whether an image may be pulled or run.
//!
//! The proxy decodes an intercepted CRI call into a [`RequestContext`], asks a
//! [`Decide`] implementation, and acts on the [`Decision`]: forward the caller's
//! original bytes (optionally with the image pinned to a digest), or answer with an
//! error. It knows nothing else of policy or verification; those fill this trait.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::registry::CriCredentials;

/// The CRI call being decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// `ImageService/PullImage`: the image is about to be fetched.
    Pull,
    /// `RuntimeService/CreateContainer`: the image is about to be run.
    Create,
}

/// The CRI API version a call arrived on. Both are gated the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    V1,
    V1Alpha2,
}

/// The process on the other end of the CRI socket, from the socket's peer credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub pid: Option<i32>,
    pub uid: u32,
    pub gid: u32,
}

/// What an intercepted call asks for, as the caller sent it.
///
/// Strings are the caller's; nothing here has been checked against the runtime. The
/// namespace in particular is whatever the caller claims: the socket permissions are the
/// trust boundary, and [`Caller`] records who was on the other end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    pub phase: Phase,
    pub api: ApiVersion,
    /// `ImageSpec.image`: a reference for PullImage; for CreateContainer, whatever kubelet
    /// passes (usually the image id PullImage returned).
    pub image: String,
    /// `ImageSpec.user_specified_image` (CRI v1, kubelet 1.28+): the reference from the pod
    /// spec. Empty strings are `None`.
    pub user_specified_image: Option<String>,
    /// The pod's namespace, name and uid from the sandbox config, when the caller sent one.
    pub namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    /// CreateContainer only: the container's name and its sandbox id.
    pub container_name: Option<String>,
    pub pod_sandbox_id: Option<String>,
    pub caller: Caller,
    /// PullImage only: the registry credentials kubelet sent with the pull (the pod's
    /// image pull secret), for verification to read the same registry. `Debug` never
    /// shows them.
    pub credentials: Option<CriCredentials>,
    /// CreateContainer only: the container's image volumes, in the order of its mounts.
    pub image_volumes: Vec<ImageVolume>,
}

/// A mount of a CreateContainer whose source is an image (CRI v1 `Mount.image`, filled
/// by kubelet for a pod's `image` volumes, Kubernetes KEP-4639): the runtime mounts the
/// image's content into the container, so it is decided as the container's own image is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageVolume {
    /// The mount's position in `ContainerConfig.mounts`, counting every mount.
    pub mount: usize,
    /// `Mount.container_path`: where the content appears in the container.
    pub container_path: String,
    /// `Mount.image.image`: the image as the caller named it (kubelet sends the image id
    /// its pull returned).
    pub image: String,
    /// `Mount.image.user_specified_image`, when sent.
    pub user_specified_image: Option<String>,
}

// === impl RequestContext ===

impl RequestContext {
    /// The same call, asking about `volume`'s image in place of the container's.
    pub fn for_volume(&self, volume: &ImageVolume) -> Self {
        Self {
            image: volume.image.clone(),
            user_specified_image: volume.user_specified_image.clone(),
            image_volumes: Vec::new(),
            ..self.clone()
        }
    }
}

/// What to do with an intercepted call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward the call. With `pin`, the forwarded request names that image reference
    /// (`repo@sha256:…`) instead of the one the caller sent, so the runtime fetches or runs
    /// exactly what was decided on. Each of `volumes` names the image id an image volume's
    /// mount is given instead of the name the caller sent (CreateContainer only).
    Allow {
        pin: Option<String>,
        volumes: Vec<VolumePin>,
    },
    /// Refuse the call; the caller receives `message` (kubelet shows it in pod events).
    Deny { message: String },
}

/// The image id an image volume is pinned to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumePin {
    /// [`ImageVolume::mount`].
    pub mount: usize,
    /// The image id (`sha256:…`).
    pub image: String,
}

impl Decision {
    /// Allow the call exactly as the caller sent it.
    pub fn allow() -> Self {
        Decision::Allow {
            pin: None,
            volumes: Vec::new(),
        }
    }
}

/// Decides intercepted calls. Implementations must be cheap to call concurrently.
///
/// The future may be dropped at any `.await` (the caller's deadline passed, or it went
/// away); anything that must happen regardless belongs before the first await or in a
/// task of its own.
pub trait Decide: Send + Sync + 'static {
    fn decide<'a>(&'a self, request: &'a RequestContext) -> BoxFuture<'a, Decided>;

    /// Told after the runtime pulled `pinned` (`repo@sha256:…`, a reference this seam
    /// allowed) and answered with `image_id`, the id kubelet will name the image by in
    /// CreateContainer, before the pull is answered. An implementation may remember it to
    /// resolve that id without asking the runtime again.
    fn pulled<'a>(&'a self, pinned: &'a str, image_id: &'a str) -> BoxFuture<'a, ()> {
        let _ = (pinned, image_id);
        Box::pin(std::future::ready(()))
    }
}

/// A decision, and the wait until its record is durable.
///
/// The proxy may start acting on an allow before `durable` completes (the record has
/// been handed to the kernel by then, so a crash of crigate does not lose it), but answers
/// the caller only after it: no caller learns of a decision whose record a power loss
/// could still take, unless a sink's flush outlasts [`crate::audit::DURABLE_WAIT`].
#[must_use]
pub struct Decided {
    pub decision: Decision,
    pub durable: Durable,
}

/// Completes once a decision's record is as durable as its sinks make it.
///
/// The wait does work of its own (a sink's failure to make the record durable is
/// counted as it completes), so it is not lost with the `Durable`: dropped before it
/// completed, it goes on as a task of the runtime it was dropped in. Until someone polls
/// it, nothing wakes for it, so a caller that looks only once it has to answer (the
/// relay, when the runtime's answer arrives) costs no wake-up when the record is durable
/// by then.
#[must_use]
pub struct Durable(Option<BoxFuture<'static, ()>>);

// === impl Durable ===

impl Durable {
    /// Nothing left to wait for.
    pub fn now() -> Self {
        Self(None)
    }

    /// Durable once `future` completes.
    pub fn after(future: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(Some(Box::pin(future)))
    }

    /// Durable once each of `durables` is.
    pub fn all(durables: Vec<Durable>) -> Self {
        let mut waiting: Vec<Durable> = durables.into_iter().filter(|d| !d.is_now()).collect();
        if waiting.len() <= 1 {
            return waiting.pop().unwrap_or_else(Self::now);
        }
        Self::after(async move {
            for durable in waiting {
                durable.await;
            }
        })
    }

    /// Whether there is nothing left to wait for.
    pub fn is_now(&self) -> bool {
        self.0.is_none()
    }

    /// Waits until the record is durable.
    pub async fn wait(self) {
        self.await;
    }
}

impl Future for Durable {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let Some(future) = self.0.as_mut() else {
            return std::task::Poll::Ready(());
        };
        std::task::ready!(future.as_mut().poll(cx));
        self.0 = None;
        std::task::Poll::Ready(())
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        if let Some(future) = self.0.take() {
            // Outside a runtime (a runtime shutting down drops its tasks' state) there is
            // nothing left to run it on.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                drop(runtime.spawn(future));
            }
        }
    }
}

impl Default for Durable {
    fn default() -> Self {
        Self::now()
    }
}

impl fmt::Debug for Durable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Durable(pending)"
        } else {
            "Durable(now)"
        })
    }
}

impl Decided {
    /// A decision whose record needs no further wait.
    pub fn now(decision: Decision) -> Self {
        Self {
            decision,
            durable: Durable::now(),
        }
    }
}

/// A boxed future, as [`Decide`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Allows every call and writes no audit record, only a diagnostic: the seam as the
/// proxy's own tests use it, which know nothing of policy. The daemon without
/// `[[policies]]` records every call (`policy::decider::AllowAndRecord`).
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

// === impl AllowAll ===

#[cfg(test)]
impl Decide for AllowAll {
    fn decide<'a>(&'a self, request: &'a RequestContext) -> BoxFuture<'a, Decided> {
        tracing::info!(
            target: "crigate::decision",
            phase = %request.phase,
            api = %request.api,
            namespace = request.namespace.as_deref().unwrap_or(""),
            pod = request.pod_name.as_deref().unwrap_or(""),
            container = request.container_name.as_deref().unwrap_or(""),
            image = %request.image,
            caller_pid = request.caller.pid.unwrap_or(0),
            caller_uid = request.caller.uid,
            decision = "allow",
            "decision"
        );
        Box::pin(std::future::ready(Decided::now(Decision::allow())))
    }
}

// === impl Phase ===

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Pull => "pull",
            Phase::Create => "create",
        })
    }
}

// === impl ApiVersion ===

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiVersion::V1 => "runtime.v1",
            ApiVersion::V1Alpha2 => "runtime.v1alpha2",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    /// A wait that completes once `release` fires, and then sets `finished`.
    fn durable_on(release: oneshot::Receiver<()>, finished: &Arc<AtomicBool>) -> Durable {
        let finished = Arc::clone(finished);
        Durable::after(async move {
            let _ = release.await;
            finished.store(true, Ordering::SeqCst);
        })
    }

    #[tokio::test]
    async fn a_wait_dropped_before_it_completed_runs_to_its_end() {
        let finished = Arc::new(AtomicBool::new(false));
        let (release, released) = oneshot::channel();
        drop(durable_on(released, &finished));
        release.send(()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !finished.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            finished.load(Ordering::SeqCst),
            "the dropped wait never ran"
        );
    }

    #[tokio::test]
    async fn a_wait_completes_when_its_future_does_and_not_before() {
        let finished = Arc::new(AtomicBool::new(false));
        let (release, released) = oneshot::channel();
        let mut durable = durable_on(released, &finished);
        assert!(!durable.is_now());
        let early = tokio::time::timeout(Duration::from_millis(50), &mut durable).await;
        assert!(early.is_err(), "completed before its future");
        release.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), &mut durable)
            .await
            .unwrap();
        assert!(finished.load(Ordering::SeqCst));
        // Polled again once complete, it stays complete.
        tokio::time::timeout(Duration::from_secs(5), &mut durable)
            .await
            .unwrap();
        assert!(Durable::now().is_now());
    }
}
