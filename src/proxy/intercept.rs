//! Decoding of the two gated requests, and the pinning of their image.
//!
//! A gRPC request body is length-prefixed messages (gRPC over HTTP/2, "Length-Prefixed
//! Message": a compressed flag byte, a 4-byte big-endian length, the message). A unary
//! call carries exactly one. crigate decodes only the fields it reads, with the CRI types
//! of `k8s-cri`, and forwards the caller's bytes, never a re-encoding: prost drops fields
//! it does not know, and a newer kubelet sends fields this build does not know.
//!
//! Pinning appends a second, partial encoding of the same message to the original one.
//! Protocol Buffers parsers merge concatenated messages (Protocol Buffers encoding guide,
//! "Last One Wins": a scalar field seen twice takes the last value; embedded messages
//! merge), so the runtime sees the caller's request with only `image` replaced.
#![deny(clippy::indexing_slicing)]

use bytes::{BufMut, Bytes, BytesMut};
use k8s_cri::{v1, v1alpha2};
use prost::Message;

use crate::decision::{ApiVersion, Caller, Phase, RequestContext};
use crate::proxy::methods::Intercepted;
use crate::registry::{Credentials, CriAuth};

/// Bytes before each message: compressed flag and big-endian length.
const PREFIX_LEN: usize = 5;

/// Why an intercepted request body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("request body is {0} bytes, shorter than the 5-byte gRPC message prefix")]
    Truncated(usize),
    #[error("gRPC message prefix declares {declared} bytes but {actual} follow")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("compressed request messages are not accepted on intercepted methods")]
    Compressed,
    #[error("invalid compressed flag {0:#04x} in gRPC message prefix")]
    BadFlag(u8),
    #[error("cannot decode {message}: {reason}")]
    Protobuf {
        message: &'static str,
        reason: String,
    },
    #[error("{0} carries no image")]
    MissingImage(&'static str),
    #[error("PullImageRequest credentials are invalid: {0}")]
    Credentials(String),
}

/// Decodes a PullImageRequest of the CRI module `$cri` into a [`RequestContext`]. One
/// macro serves both API versions: their messages have the same fields under the same
/// numbers but are distinct types.
macro_rules! decode_pull {
    ($cri:ident, $api:expr, $message:expr, $caller:expr, $user_specified:expr) => {{
        let request = decode_message::<$cri::PullImageRequest>($message, "PullImageRequest")?;
        let image = request
            .image
            .ok_or(DecodeError::MissingImage("PullImageRequest"))?;
        let pod = request.sandbox_config.and_then(|c| c.metadata);
        let credentials = match &request.auth {
            Some(auth) => Some(
                Credentials::from_cri(CriAuth {
                    username: &auth.username,
                    password: &auth.password,
                    auth: &auth.auth,
                    identity_token: &auth.identity_token,
                    registry_token: &auth.registry_token,
                })
                .map_err(|e| DecodeError::Credentials(e.to_string()))?,
            ),
            None => None,
        };
        Ok(RequestContext {
            phase: Phase::Pull,
            api: $api,
            user_specified_image: ($user_specified)(&image),
            image: image.image,
            namespace: pod.as_ref().and_then(|m| non_empty(m.namespace.clone())),
            pod_name: pod.as_ref().and_then(|m| non_empty(m.name.clone())),
            pod_uid: pod.and_then(|m| non_empty(m.uid)),
            container_name: None,
            pod_sandbox_id: None,
            caller: $caller,
            credentials,
        })
    }};
}

/// As [`decode_pull`], for CreateContainerRequest.
macro_rules! decode_create {
    ($cri:ident, $api:expr, $message:expr, $caller:expr, $user_specified:expr) => {{
        let request =
            decode_message::<$cri::CreateContainerRequest>($message, "CreateContainerRequest")?;
        let config = request.config.unwrap_or_default();
        let image = config
            .image
            .ok_or(DecodeError::MissingImage("CreateContainerRequest"))?;
        let pod = request.sandbox_config.and_then(|c| c.metadata);
        Ok(RequestContext {
            phase: Phase::Create,
            api: $api,
            user_specified_image: ($user_specified)(&image),
            image: image.image,
            namespace: pod.as_ref().and_then(|m| non_empty(m.namespace.clone())),
            pod_name: pod.as_ref().and_then(|m| non_empty(m.name.clone())),
            pod_uid: pod.and_then(|m| non_empty(m.uid)),
            container_name: config.metadata.and_then(|m| non_empty(m.name)),
            pod_sandbox_id: non_empty(request.pod_sandbox_id),
            caller: $caller,
            credentials: None,
        })
    }};
}

/// Decodes an intercepted unary request body into the context the decision needs.
///
/// # Errors
///
/// The body is not exactly one uncompressed gRPC message, the message is not valid
/// protobuf for the method, or it names no image.
pub fn decode(
    method: Intercepted,
    body: &[u8],
    caller: Caller,
) -> Result<RequestContext, DecodeError> {
    let message = unframe(body)?;
    match (method.api, method.phase) {
        (ApiVersion::V1, Phase::Pull) => decode_pull!(
            v1,
            ApiVersion::V1,
            message,
            caller,
            |image: &v1::ImageSpec| { non_empty(image.user_specified_image.clone()) }
        ),
        (ApiVersion::V1, Phase::Create) => {
            decode_create!(
                v1,
                ApiVersion::V1,
                message,
                caller,
                |image: &v1::ImageSpec| { non_empty(image.user_specified_image.clone()) }
            )
        }
        // runtime.v1alpha2 predates `user_specified_image`.
        (ApiVersion::V1Alpha2, Phase::Pull) => {
            decode_pull!(
                v1alpha2,
                ApiVersion::V1Alpha2,
                message,
                caller,
                |_: &v1alpha2::ImageSpec| None
            )
        }
        (ApiVersion::V1Alpha2, Phase::Create) => {
            decode_create!(
                v1alpha2,
                ApiVersion::V1Alpha2,
                message,
                caller,
                |_: &v1alpha2::ImageSpec| None
            )
        }
    }
}

/// Returns the request body with its image replaced by `image`: the original message
/// followed by a partial message that sets only `ImageSpec.image`, under one prefix.
///
/// `body` must be a body [`decode`] accepted for the same method.
pub fn pin(method: Intercepted, body: &[u8], image: &str) -> Bytes {
    // A message that sets only the image, for each method and version.
    macro_rules! overlay {
        ($cri:ident, Pull) => {
            $cri::PullImageRequest {
                image: Some($cri::ImageSpec {
                    image: image.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec()
        };
        ($cri:ident, Create) => {
            $cri::CreateContainerRequest {
                config: Some($cri::ContainerConfig {
                    image: Some($cri::ImageSpec {
                        image: image.to_owned(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec()
        };
    }
    let overlay = match (method.api, method.phase) {
        (ApiVersion::V1, Phase::Pull) => overlay!(v1, Pull),
        (ApiVersion::V1, Phase::Create) => overlay!(v1, Create),
        (ApiVersion::V1Alpha2, Phase::Pull) => overlay!(v1alpha2, Pull),
        (ApiVersion::V1Alpha2, Phase::Create) => overlay!(v1alpha2, Create),
    };
    let original = body.get(PREFIX_LEN..).unwrap_or_default();
    frame_parts(&[original, &overlay])
}

/// One uncompressed gRPC message made of `parts`, concatenated.
fn frame_parts(parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = BytesMut::with_capacity(PREFIX_LEN + len);
    out.put_u8(0);
    // Bodies are bounded by `cri.max_message_bytes` well below 4 GiB.
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    for part in parts {
        out.put_slice(part);
    }
    out.freeze()
}

/// The `image_ref` of a PullImage response body (one uncompressed gRPC message; the
/// field is the same in `runtime.v1` and `runtime.v1alpha2`), if it has one.
pub fn pulled_image_ref(body: &[u8]) -> Option<String> {
    let message = unframe(body).ok()?;
    let response = v1::PullImageResponse::decode(message).ok()?;
    non_empty(response.image_ref)
}

/// The one message of a unary request body.
fn unframe(body: &[u8]) -> Result<&[u8], DecodeError> {
    let (prefix, message) = body
        .split_first_chunk::<PREFIX_LEN>()
        .ok_or(DecodeError::Truncated(body.len()))?;
    let [flag, len @ ..] = *prefix;
    match flag {
        0 => {}
        1 => return Err(DecodeError::Compressed),
        other => return Err(DecodeError::BadFlag(other)),
    }
    let declared = u32::from_be_bytes(len) as usize;
    if declared != message.len() {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: message.len(),
        });
    }
    Ok(message)
}

fn decode_message<M: Message + Default>(
    bytes: &[u8],
    message: &'static str,
) -> Result<M, DecodeError> {
    M::decode(bytes).map_err(|error| DecodeError::Protobuf {
        message,
        reason: error.to_string(),
    })
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests;
