//! The per-call logic: route, forward, or intercept and decide.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{CriConfig, MethodPolicy};
use crate::decision::{
    BoxFuture, Caller, Decide, Decided, Decision, Durable, Phase, RequestContext,
};
use crate::oci::ImageRef;
use crate::proxy::body::ProxyBody;
use crate::proxy::intercept;
use crate::proxy::methods::{route, Intercepted, Route};
use crate::proxy::names;
use crate::proxy::status::ProxyError;
use crate::proxy::upstream::Upstream;

/// The gRPC length prefix before each message.
pub(crate) const GRPC_PREFIX_LEN: usize = 5;

/// The proxy's shared state: what the running configuration says, and the seam.
pub struct Proxy {
    state: ArcSwap<State>,
}

/// What a SIGHUP may replace as one unit.
pub struct State {
    pub cri: CriConfig,
    pub upstream: Arc<Upstream>,
    pub decide: Arc<dyn Decide>,
    /// Cancelled once a reload names another runtime socket than `cri.upstream`: the
    /// client connections relayed to this one then move to the new one.
    pub runtime_moved: CancellationToken,
}

// === impl Proxy ===

impl Proxy {
    pub fn new(cri: CriConfig, decide: Arc<dyn Decide>) -> Self {
        let upstream = Arc::new(Upstream::new(cri.upstream.clone(), cri.connect_timeout));
        Self {
            state: ArcSwap::from_pointee(State {
                cri,
                upstream,
                decide,
                runtime_moved: CancellationToken::new(),
            }),
        }
    }

    /// The running state.
    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// Replaces the running state; calls already started finish with the old one.
    pub fn replace(&self, state: State) {
        self.state.store(Arc::new(state));
    }

    /// Answers one call from a CRI client.
    pub async fn call(&self, request: Request<ProxyBody>, caller: Caller) -> Response<ProxyBody> {
        let state = self.state.load_full();
        let path = request.uri().path_and_query().map_or("", |pq| pq.as_str());
        let result = match route(path) {
            // Boxed: the intercepted path's state is large, and every forwarded call's
            // future would otherwise carry (and copy) room for it.
            Route::Intercept(method) => {
                Box::pin(self.intercept(&state, method, request, caller)).await
            }
            Route::Known => forward(&state, request).await,
            Route::UnknownCri => match state.cri.unknown_methods {
                MethodPolicy::Forward => forward(&state, request).await,
                MethodPolicy::Deny => Err(ProxyError::UnknownMethodRefused {
                    path: path.to_owned(),
                }),
            },
            Route::Other => match state.cri.other_services {
                MethodPolicy::Forward => forward(&state, request).await,
                MethodPolicy::Deny => Err(ProxyError::OtherServiceRefused {
                    path: path.to_owned(),
                }),
            },
        };
        result.unwrap_or_else(|error| {
            tracing::debug!(%error, "answered by crigate");
            error.into_response()
        })
    }

    async fn intercept(
        &self,
        state: &State,
        method: Intercepted,
        request: Request<ProxyBody>,
        caller: Caller,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (parts, body) = request.into_parts();
        let body = read_body(body, body_limit(state), method.name()).await?;
        let (context, span) = read_request(method, &body, caller)?;
        async {
            let decided = state.decide.decide(&context).await;
            act(state, method, parts, body, &context.image, decided).await
        }
        .instrument(span)
        .await
    }

    /// Decides a gated call whose stream the relay has already opened on the runtime,
    /// holding back its body (read whole, and within `max_message_bytes`): the body goes
    /// on unchanged if it is allowed as sent, and anything else is answered by crigate (a
    /// denial, a request it cannot read, or a call allowed only with its image pinned,
    /// which is sent anew).
    pub(crate) async fn gate(
        &self,
        method: Intercepted,
        request: Request<Bytes>,
        caller: Caller,
    ) -> Gated {
        let state = self.state.load_full();
        let (parts, body) = request.into_parts();
        let (context, span) = match read_request(method, &body, caller) {
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(%error, "answered by crigate");
                return Gated::Answer(Box::pin(std::future::ready(error.into_response())));
            }
        };
        let decided = state.decide.decide(&context).instrument(span.clone()).await;
        if decided.decision == Decision::allow() {
            return Gated::Forward(decided.durable);
        }
        Gated::Answer(Box::pin(
            async move {
                act(&state, method, parts, body, &context.image, decided)
                    .await
                    .unwrap_or_else(|error| {
                        tracing::debug!(%error, "answered by crigate");
                        error.into_response()
                    })
            }
            .instrument(span),
        ))
    }
}

/// What becomes of a call [`Proxy::gate`] decided.
pub(crate) enum Gated {
    /// Allowed as the caller sent it: its bytes go on to the runtime, and the caller
    /// hears the runtime's answer once the decision's record is durable.
    Forward(Durable),
    /// Answered by crigate, with this response.
    Answer(BoxFuture<'static, Response<ProxyBody>>),
}

/// The most a gated request body may hold, its gRPC prefix included.
fn body_limit(state: &State) -> usize {
    state.cri.max_message_bytes.saturating_add(GRPC_PREFIX_LEN)
}

/// Decodes a gated request, with the span its decision is made in.
fn read_request(
    method: Intercepted,
    body: &[u8],
    caller: Caller,
) -> Result<(RequestContext, tracing::Span), ProxyError> {
    let name = method.name();
    let context =
        intercept::decode(method, body, caller).map_err(|source| ProxyError::InvalidRequest {
            method: name,
            source,
        })?;
    let span = tracing::info_span!(
        "cri",
        method = name,
        api = %context.api,
        namespace = context.namespace.as_deref().unwrap_or(""),
        pod = context.pod_name.as_deref().unwrap_or(""),
        image = %context.image,
    );
    Ok((context, span))
}

/// Acts on the decision on a gated call: forwards it (pinned, if so decided) or refuses
/// it. The runtime may start on an allowed call while its record is made durable; the
/// caller hears the answer only once it is.
async fn act(
    state: &State,
    method: Intercepted,
    mut parts: http::request::Parts,
    body: Bytes,
    requested: &str,
    decided: Decided,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Decided { decision, durable } = decided;
    match decision {
        Decision::Allow { pin, volumes } => {
            // Each pinned image volume is rewritten in place, then the image, if pinned,
            // is set over the request.
            let mut body = body;
            if !volumes.is_empty() {
                body = intercept::pin_volumes(&body, &volumes).map_err(|source| {
                    ProxyError::InvalidRequest {
                        method: method.name(),
                        source,
                    }
                })?;
            }
            if let Some(image) = &pin {
                body = intercept::pin(method, &body, image);
            }
            if pin.is_some() || !volumes.is_empty() {
                // The body changed length; a stale content-length would break the stream.
                parts.headers.remove(http::header::CONTENT_LENGTH);
            }
            let request = Request::from_parts(parts, ProxyBody::full(body));
            match (method.phase, pin) {
                (Phase::Pull, Some(image)) => {
                    let call = pull_pinned(state, request, requested, &image);
                    durable_then(durable, call).await
                }
                _ => durable_then(durable, forward(state, request)).await,
            }
        }
        Decision::Deny { message } => {
            durable.wait().await;
            Err(ProxyError::Denied(message))
        }
    }
}

/// The outcome of `call`, once `durable` has completed too.
async fn durable_then<T>(durable: Durable, call: impl std::future::Future<Output = T>) -> T {
    let (outcome, ()) = tokio::join!(call, durable.wait());
    outcome
}

/// Sends a request to the runtime and relays its answer. Request and response heads
/// pass unchanged but for the URI, which gets an `:authority` if the client sent none.
async fn forward(
    state: &State,
    request: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = request.into_parts();
    parts.uri = upstream_uri(&parts.uri);
    let request = Request::from_parts(parts, body);
    let response = state.upstream.send(request).await?;
    Ok(response.map(ProxyBody::relay))
}

/// Forwards a pinned PullImage and, once the runtime has pulled, tells the decision seam
/// the image id the runtime answered with ([`Decide::pulled`]) and names the pinned image
/// as the caller asked for it ([`names`]), so ImageStatus of the requested name finds it.
/// The runtime's answer is read whole (a PullImage response is one small message) and
/// relayed unchanged; a naming failure is logged and does not fail the pull.
async fn pull_pinned(
    state: &State,
    request: Request<ProxyBody>,
    requested: &str,
    pinned: &str,
) -> Result<Response<ProxyBody>, ProxyError> {
    let response = forward(state, request).await?;
    let (parts, body) = response.into_parts();
    let collected = Limited::new(body, body_limit(state))
        .collect()
        .await
        .map_err(|error| ProxyError::UpstreamReset {
            socket: state.upstream.socket().into(),
            reason: error.to_string(),
        })?;
    let trailers = collected.trailers().cloned();
    let body = collected.to_bytes();
    let ok = parts
        .headers
        .get("grpc-status")
        .or_else(|| trailers.as_ref().and_then(|t| t.get("grpc-status")))
        .is_some_and(|status| status == "0");
    let image_id = ok.then(|| intercept::pulled_image_ref(&body)).flatten();
    if let Some(image_id) = &image_id {
        state.decide.pulled(pinned, image_id);
    }
    if let Some(name) = ok.then(|| tag_name(requested)).flatten() {
        let timeout = state.cri.connect_timeout.saturating_mul(2);
        match names::name_image(state.upstream.native(), &name, pinned, timeout).await {
            Ok(()) => {
                tracing::debug!(%name, %pinned, "named the pinned image as requested");
                if let Some(id) = &image_id {
                    if let Err(error) =
                        names::await_seen(state.upstream.native(), &name, id, names::SEEN_TIMEOUT)
                            .await
                    {
                        tracing::warn!(
                            %name, %pinned, %error,
                            "the runtime does not list the pulled image by its requested name yet"
                        );
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%name, %pinned, %error, "cannot name the pulled image as requested; kubelet may pull it again")
            }
        }
    }
    Ok(Response::from_parts(
        parts,
        ProxyBody::with_trailers(body, trailers),
    ))
}

/// The name containerd's CRI plugin gives a pull of `requested` (its repoTag): the
/// normalized `repo:tag`, or none when the reference carries a digest.
fn tag_name(requested: &str) -> Option<String> {
    let image = requested.parse::<ImageRef>().ok()?;
    (image.digest().is_none() && image.tag().is_some()).then(|| image.to_string())
}

/// The URI for the upstream request: the client's path and authority, `localhost` when
/// the request has none: the client sent none, or one the relay could not hold
/// (current kubelets and crictl send `localhost`; the runtime requires one).
fn upstream_uri(uri: &Uri) -> Uri {
    let authority = uri
        .authority()
        .cloned()
        .unwrap_or_else(|| Authority::from_static("localhost"));
    let mut parts = uri.clone().into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// Reads a whole request body, refusing one over `limit` bytes.
async fn read_body(
    body: ProxyBody,
    limit: usize,
    method: &'static str,
) -> Result<Bytes, ProxyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ProxyError::RequestTooLarge {
                method,
                limit: limit.saturating_sub(GRPC_PREFIX_LEN),
            })
        }
        Err(error) => Err(ProxyError::RequestAborted {
            method,
            reason: error.to_string(),
        }),
    }
}
