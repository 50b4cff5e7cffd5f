//! The per-call logic: route, forward, or intercept and decide.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::time::Instant;
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
/// The header a gRPC client states its deadline in.
const GRPC_TIMEOUT: &str = "grpc-timeout";

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
        let deadline = grpc_deadline(request.headers(), Instant::now());
        let (parts, body) = request.into_parts();
        let decided = until(deadline, method, async {
            let body = read_body(body, body_limit(state), method.name()).await?;
            let (context, span) = read_request(method, &body, caller)?;
            let decided = state.decide.decide(&context).instrument(span.clone()).await;
            Ok((body, context, span, decided))
        })
        .await;
        let (body, context, span, decided) = decided??;
        act(
            state,
            method,
            parts,
            body,
            &context.image,
            decided,
            deadline,
        )
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
        let deadline = grpc_deadline(request.headers(), Instant::now());
        let (parts, body) = request.into_parts();
        let (context, span) = match read_request(method, &body, caller) {
            Ok(read) => read,
            Err(error) => return answered(error),
        };
        let deciding = state.decide.decide(&context).instrument(span.clone());
        let decided = match until(deadline, method, deciding).await {
            Ok(decided) => decided,
            Err(error) => return answered(error),
        };
        if decided.decision == Decision::allow() {
            if deadline.is_none_or(|deadline| Instant::now() < deadline) {
                return Gated::Forward(decided.durable);
            }
            // Allowed as sent, but the caller's deadline passed as it was decided.
            let error = ProxyError::DeadlineExceeded {
                method: method.name(),
            };
            return Gated::Answer(Box::pin(async move {
                decided.durable.wait().await;
                error.into_response()
            }));
        }
        Gated::Answer(Box::pin(
            async move {
                act(
                    &state,
                    method,
                    parts,
                    body,
                    &context.image,
                    decided,
                    deadline,
                )
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

/// A gated call answered by crigate with `error`.
fn answered(error: ProxyError) -> Gated {
    tracing::debug!(%error, "answered by crigate");
    Gated::Answer(Box::pin(std::future::ready(error.into_response())))
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
/// caller hears the answer only once it is. A call with a `deadline` is forwarded with
/// the time left of it, and not at all once it has passed.
async fn act(
    state: &State,
    method: Intercepted,
    mut parts: http::request::Parts,
    body: Bytes,
    requested: &str,
    decided: Decided,
    deadline: Option<Instant>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Decided { decision, durable } = decided;
    match decision {
        Decision::Allow { pin, volumes } => {
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                let Some(timeout) = grpc_timeout(left) else {
                    durable.wait().await;
                    return Err(ProxyError::DeadlineExceeded {
                        method: method.name(),
                    });
                };
                parts.headers.insert(GRPC_TIMEOUT, timeout);
            }
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

/// `work`'s outcome, or [`ProxyError::DeadlineExceeded`] if `deadline` passes first.
async fn until<T>(
    deadline: Option<Instant>,
    method: Intercepted,
    work: impl std::future::Future<Output = T>,
) -> Result<T, ProxyError> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work).await.map_err(|_| {
            ProxyError::DeadlineExceeded {
                method: method.name(),
            }
        }),
        None => Ok(work.await),
    }
}

/// The caller's deadline: its `grpc-timeout` (gRPC over HTTP/2, "Requests": a positive
/// integer of at most eight digits, then `H`, `M`, `S`, `m`, `u` or `n`) from `start`.
/// None if the header is absent or malformed; a malformed one goes to the runtime as
/// sent, which answers it as it would without crigate.
fn grpc_deadline(headers: &HeaderMap, start: Instant) -> Option<Instant> {
    let value = headers.get(GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let timeout = match unit {
        b'H' => Duration::from_secs(amount.checked_mul(3600)?),
        b'M' => Duration::from_secs(amount.checked_mul(60)?),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    };
    start.checked_add(timeout)
}

/// `left` as a `grpc-timeout` value, in the finest unit that holds it in eight digits,
/// rounded down (a deadline passed on is never later than the caller's); None when
/// nothing is left.
fn grpc_timeout(left: Duration) -> Option<HeaderValue> {
    const MAX: u128 = 99_999_999;
    let units = [
        (left.as_nanos(), 'n'),
        (left.as_micros(), 'u'),
        (left.as_millis(), 'm'),
        (u128::from(left.as_secs()), 'S'),
        (u128::from(left.as_secs() / 60), 'M'),
        (u128::from(left.as_secs() / 3600), 'H'),
    ];
    let (amount, unit) = units
        .into_iter()
        .find(|(amount, _)| *amount <= MAX)
        .unwrap_or((MAX, 'H'));
    if amount == 0 {
        return None;
    }
    HeaderValue::try_from(format!("{amount}{unit}")).ok()
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
        let timeout = state.cri.connect_timeout.saturating_mul(2);
        if tokio::time::timeout(timeout, state.decide.pulled(pinned, image_id))
            .await
            .is_err()
        {
            tracing::debug!(%pinned, "the runtime did not say in time what the pulled image is");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn deadline_of(value: &'static str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static(value));
        let start = Instant::now();
        grpc_deadline(&headers, start).map(|deadline| deadline - start)
    }

    #[test]
    fn a_grpc_timeout_is_read_in_each_unit_and_a_malformed_one_is_none() {
        assert_eq!(deadline_of("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(deadline_of("3M"), Some(Duration::from_secs(180)));
        assert_eq!(deadline_of("120S"), Some(Duration::from_secs(120)));
        assert_eq!(deadline_of("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(
            deadline_of("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(deadline_of("7n"), Some(Duration::from_nanos(7)));
        for malformed in ["", "S", "100", "100s", "123456789m", "-1S", "1.5S", " 1S"] {
            assert_eq!(deadline_of(malformed), None, "{malformed:?}");
        }
        assert_eq!(grpc_deadline(&HeaderMap::new(), Instant::now()), None);
    }

    #[test]
    fn the_time_left_is_written_in_the_finest_unit_that_holds_it_rounded_down() {
        let written = |left: Duration| grpc_timeout(left).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            written(Duration::from_nanos(99_999_999)).as_deref(),
            Some("99999999n")
        );
        assert_eq!(
            written(Duration::from_millis(1500)).as_deref(),
            Some("1500000u")
        );
        assert_eq!(
            written(Duration::from_secs(119)).as_deref(),
            Some("119000m")
        );
        assert_eq!(
            written(Duration::from_secs(200_000) + Duration::from_millis(999)).as_deref(),
            Some("200000S")
        );
        assert_eq!(written(Duration::ZERO), None);
        // Each value read back is at most the time it was written for.
        for left in [
            Duration::from_nanos(1),
            Duration::from_micros(123_456_789),
            Duration::from_secs(3 * 3600 + 1),
            Duration::from_secs(u64::MAX / 2),
        ] {
            let value = grpc_timeout(left).unwrap();
            let mut headers = HeaderMap::new();
            headers.insert(GRPC_TIMEOUT, value);
            let start = Instant::now();
            if let Some(read) = grpc_deadline(&headers, start) {
                assert!(read - start <= left, "{left:?}");
            }
        }
    }
}
