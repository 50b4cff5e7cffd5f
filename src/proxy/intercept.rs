//! Decoding of the two gated requests, and the pinning of their image.
//!
//! A gRPC request body is length-prefixed messages (gRPC over HTTP/2, "Length-Prefixed
//! Message": a compressed flag byte, a 4-byte big-endian length, the message). A unary
//! call carries exactly one. crigate decodes only the fields it reads, with the CRI types
//! of `k8s-cri` (for CreateContainer, the three small messages it reads, found on the wire
//! without decoding the container's whole config: [`CreateFields`]), and forwards the
//! caller's bytes, never a re-encoding: prost drops fields it does not know, and a newer
//! kubelet sends fields this build does not know.
//!
//! Pinning appends a second, partial encoding of the same message to the original one.
//! Protocol Buffers parsers merge concatenated messages (Protocol Buffers encoding guide,
//! "Last One Wins": a scalar field seen twice takes the last value; embedded messages
//! merge), so the runtime sees the caller's request with only `image` replaced.
#![deny(clippy::indexing_slicing)]

use bytes::{BufMut, Bytes, BytesMut};
use k8s_cri::{v1, v1alpha2};
use prost::Message;

use crate::decision::{ApiVersion, Caller, ImageVolume, Phase, RequestContext, VolumePin};
use crate::proxy::methods::Intercepted;
use crate::registry::{CriAuth, CriCredentials};

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
    #[error("CreateContainerRequest mounts more than {MAX_IMAGE_VOLUMES} images")]
    TooManyImageVolumes,
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
                CriCredentials::from_cri(CriAuth {
                    username: &auth.username,
                    password: &auth.password,
                    auth: &auth.auth,
                    server_address: &auth.server_address,
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
            image_volumes: Vec::new(),
        })
    }};
}

/// As [`decode_pull`], for CreateContainerRequest: only the fields the decision reads are
/// decoded ([`CreateFields`]), each with the CRI type of `$cri`.
macro_rules! decode_create {
    ($cri:ident, $api:expr, $message:expr, $caller:expr, $user_specified:expr) => {{
        let request = CreateFields::<
            $cri::ImageSpec,
            $cri::ContainerMetadata,
            $cri::PodSandboxMetadata,
        >::read($message)?;
        let image = request
            .image
            .ok_or(DecodeError::MissingImage("CreateContainerRequest"))?;
        let pod = request.pod;
        let image_volumes = request
            .mounts
            .into_iter()
            .filter_map(|mount| {
                Some(ImageVolume {
                    mount: mount.index,
                    container_path: mount.container_path,
                    user_specified_image: ($user_specified)(&mount.image),
                    image: non_empty(mount.image.image)?,
                })
            })
            .collect();
        Ok(RequestContext {
            phase: Phase::Create,
            api: $api,
            user_specified_image: ($user_specified)(&image),
            image: image.image,
            namespace: pod.as_ref().and_then(|m| non_empty(m.namespace.clone())),
            pod_name: pod.as_ref().and_then(|m| non_empty(m.name.clone())),
            pod_uid: pod.and_then(|m| non_empty(m.uid)),
            container_name: request.container.and_then(|m| non_empty(m.name)),
            pod_sandbox_id: non_empty(request.pod_sandbox_id),
            caller: $caller,
            credentials: None,
            image_volumes,
        })
    }};
}

/// The fields of a CreateContainerRequest a decision reads, taken from the wire without
/// building the rest: a container's config (mounts, environment, security context) is
/// large, and decoding it whole was most of what deciding a cached image cost.
///
/// The fields are read as every protobuf parser reads them (Protocol Buffers encoding
/// guide, "Last One Wins"): a message field that occurs more than once is merged, a
/// string takes its last value. So the image read here is the one the runtime's parser
/// takes from the same bytes. Fields the decision does not read are skipped unchecked;
/// the runtime judges them.
///
/// Field numbers (cri-api `api.proto`, the same in `runtime.v1` and `runtime.v1alpha2`):
/// CreateContainerRequest `pod_sandbox_id = 1`, `config = 2`, `sandbox_config = 3`;
/// ContainerConfig `metadata = 1`, `image = 2`, `mounts = 7`; Mount `container_path = 1`,
/// `image = 9` (`runtime.v1` only, Kubernetes 1.31 and later); PodSandboxConfig
/// `metadata = 1`. A mount's `image` is read in both versions, so that no runtime reading
/// `runtime.v1alpha2` bytes as `runtime.v1` can mount an image that was not decided on.
struct CreateFields<I, C, P> {
    pod_sandbox_id: String,
    image: Option<I>,
    container: Option<C>,
    pod: Option<P>,
    mounts: Vec<MountFields<I>>,
}

/// The fields a decision reads of one `Mount` that has an image.
struct MountFields<I> {
    /// Its position among the container's mounts.
    index: usize,
    container_path: String,
    image: I,
}

/// ContainerConfig `mounts`.
const CONFIG_MOUNTS: u64 = 7;
/// Most image volumes one CreateContainer may mount. Each is decided and recorded on its
/// own; kubelet sends one per `image` volume of the pod that the container mounts.
pub const MAX_IMAGE_VOLUMES: usize = 64;
/// Mount `image`.
const MOUNT_IMAGE: u64 = 9;

impl<I, C, P> CreateFields<I, C, P>
where
    I: Message + Default,
    C: Message + Default,
    P: Message + Default,
{
    fn read(message: &[u8]) -> Result<Self, DecodeError> {
        let invalid = |reason: &str| DecodeError::Protobuf {
            message: "CreateContainerRequest",
            reason: reason.to_owned(),
        };
        let mut fields = Self {
            pod_sandbox_id: String::new(),
            image: None,
            container: None,
            pod: None,
            mounts: Vec::new(),
        };
        // Mounts are a repeated field: every occurrence, in any occurrence of the
        // config, is one more mount.
        let mut mounts = 0usize;
        for field in Wire(message) {
            match field.map_err(invalid)? {
                (1, Value::Bytes(id)) => {
                    fields.pod_sandbox_id = std::str::from_utf8(id)
                        .map_err(|_| invalid("pod_sandbox_id is not UTF-8"))?
                        .to_owned();
                }
                (2, Value::Bytes(config)) => {
                    for field in Wire(config) {
                        match field.map_err(invalid)? {
                            (1, Value::Bytes(metadata)) => merge(&mut fields.container, metadata)?,
                            (2, Value::Bytes(image)) => merge(&mut fields.image, image)?,
                            (CONFIG_MOUNTS, Value::Bytes(mount)) => {
                                if let Some(mount) = MountFields::read(mounts, mount)? {
                                    if fields.mounts.len() == MAX_IMAGE_VOLUMES {
                                        return Err(DecodeError::TooManyImageVolumes);
                                    }
                                    fields.mounts.push(mount);
                                }
                                mounts = mounts.saturating_add(1);
                            }
                            (1 | 2 | CONFIG_MOUNTS, _) => {
                                return Err(invalid("ContainerConfig field of the wrong wire type"))
                            }
                            _ => {}
                        }
                    }
                }
                (3, Value::Bytes(sandbox)) => {
                    for field in Wire(sandbox) {
                        match field.map_err(invalid)? {
                            (1, Value::Bytes(metadata)) => merge(&mut fields.pod, metadata)?,
                            (1, _) => {
                                return Err(invalid(
                                    "PodSandboxConfig field of the wrong wire type",
                                ))
                            }
                            _ => {}
                        }
                    }
                }
                (1..=3, _) => {
                    return Err(invalid(
                        "CreateContainerRequest field of the wrong wire type",
                    ))
                }
                _ => {}
            }
        }
        Ok(fields)
    }
}

impl<I: Message + Default> MountFields<I> {
    /// Reads the mount at `index`; `None` when it has no image.
    fn read(index: usize, message: &[u8]) -> Result<Option<Self>, DecodeError> {
        let invalid = |reason: &str| DecodeError::Protobuf {
            message: "CreateContainerRequest",
            reason: format!("mount {index}: {reason}"),
        };
        let mut container_path = String::new();
        let mut image = None;
        for field in Wire(message) {
            match field.map_err(invalid)? {
                (1, Value::Bytes(path)) => {
                    container_path = std::str::from_utf8(path)
                        .map_err(|_| invalid("container_path is not UTF-8"))?
                        .to_owned();
                }
                (MOUNT_IMAGE, Value::Bytes(spec)) => merge(&mut image, spec)?,
                (1 | MOUNT_IMAGE, _) => return Err(invalid("Mount field of the wrong wire type")),
                _ => {}
            }
        }
        Ok(image.map(|image| Self {
            index,
            container_path,
            image,
        }))
    }
}

/// Merges one occurrence of an embedded message into what earlier ones made.
fn merge<M: Message + Default>(into: &mut Option<M>, bytes: &[u8]) -> Result<(), DecodeError> {
    into.get_or_insert_with(M::default)
        .merge(bytes)
        .map_err(|error| DecodeError::Protobuf {
            message: "CreateContainerRequest",
            reason: error.to_string(),
        })
}

/// The fields of one protobuf message as they come on the wire (Protocol Buffers
/// encoding guide, "Message Structure"): each a key (field number and wire type) and a
/// value. A group (wire types 3 and 4, deprecated, unused by CRI) is skipped whole, as
/// prost and Go's protobuf skip one they do not know, so that what the runtime would
/// accept is read here too.
struct Wire<'a>(&'a [u8]);

/// One field's value.
enum Value<'a> {
    Varint,
    Fixed,
    Bytes(&'a [u8]),
    Group,
}

impl<'a> Iterator for Wire<'a> {
    type Item = Result<(u64, Value<'a>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = (|| {
            let (number, wire_type) = key(&mut self.0)?;
            if wire_type == 4 {
                return Err("end of a group that did not start");
            }
            Ok((number, value(&mut self.0, number, wire_type, 1)?))
        })();
        if field.is_err() {
            // Nothing after a broken field can be read.
            self.0 = &[];
        }
        Some(field)
    }
}

/// [`Wire`], with each field's own bytes (key, length and value) as they came.
struct Spans<'a> {
    wire: Wire<'a>,
}

impl<'a> Spans<'a> {
    fn new(message: &'a [u8]) -> Self {
        Self {
            wire: Wire(message),
        }
    }
}

impl<'a> Iterator for Spans<'a> {
    type Item = Result<(u64, Value<'a>, &'a [u8]), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        let before = self.wire.0;
        let field = self.wire.next()?;
        let taken = before.len().saturating_sub(self.wire.0.len());
        Some(field.map(|(number, value)| (number, value, before.get(..taken).unwrap_or_default())))
    }
}

/// The largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// Reads a base-128 varint of at most ten bytes.
/// How deep groups may nest: prost's recursion limit.
const MAX_GROUP_DEPTH: usize = 100;

/// A field's key from `buf`: its field number (1 to [`MAX_FIELD_NUMBER`]) and wire type.
fn key(buf: &mut &[u8]) -> Result<(u64, u64), &'static str> {
    let key = varint(buf)?;
    let number = key >> 3;
    if number == 0 || number > MAX_FIELD_NUMBER {
        return Err("invalid field number");
    }
    Ok((number, key & 7))
}

/// The value of field `number`, of wire type `wire_type` (not 4, a group's end), that
/// starts `buf`; a group, `depth` deep, is skipped whole.
fn value<'a>(
    buf: &mut &'a [u8],
    number: u64,
    wire_type: u64,
    depth: usize,
) -> Result<Value<'a>, &'static str> {
    Ok(match wire_type {
        0 => varint(buf).map(|_| Value::Varint)?,
        1 => take(buf, 8).map(|_| Value::Fixed)?,
        2 => {
            let len = usize::try_from(varint(buf)?).map_err(|_| "length too large")?;
            Value::Bytes(take(buf, len)?)
        }
        3 => skip_group(buf, number, depth).map(|()| Value::Group)?,
        5 => take(buf, 4).map(|_| Value::Fixed)?,
        _ => return Err("unsupported wire type"),
    })
}

/// Skips the fields of the group of field `number` that starts `buf`, up to and with the
/// key that ends it (wire type 4, the same field number), as prost's `skip_field` does;
/// `depth` is this group's nesting.
fn skip_group(buf: &mut &[u8], number: u64, depth: usize) -> Result<(), &'static str> {
    if depth > MAX_GROUP_DEPTH {
        return Err("groups nested too deep");
    }
    loop {
        match key(buf)? {
            (inner, 4) if inner == number => return Ok(()),
            (_, 4) => return Err("end of another field's group"),
            (inner, wire_type) => {
                value(buf, inner, wire_type, depth + 1)?;
            }
        }
    }
}

fn varint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i == 9 && byte > 1 {
                return Err("varint overflows 64 bits");
            }
            *buf = buf.get(i + 1..).unwrap_or_default();
            return Ok(value);
        }
    }
    Err("truncated or overlong varint")
}

/// Takes `len` bytes off the front of `buf`.
fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], &'static str> {
    let (taken, rest) = buf
        .split_at_checked(len)
        .ok_or("field runs past the end of the message")?;
    *buf = rest;
    Ok(taken)
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

/// Returns a CreateContainerRequest body with each pinned image volume's image replaced:
/// the mount's own bytes followed by a partial `Mount` that sets only `image.image`, which
/// merges over them as [`pin`]'s overlay does. A mount is one element of a repeated field,
/// so an overlay after the whole message would add a mount rather than change one; the
/// overlay goes inside the mount, and the lengths of the mount and of the config that
/// holds it are written anew. Every other byte is the caller's.
///
/// # Errors
///
/// `body` is not one that [`decode`] accepted, or a pin names no mount of it.
pub fn pin_volumes(body: &[u8], pins: &[VolumePin]) -> Result<Bytes, DecodeError> {
    let invalid = |reason: &str| DecodeError::Protobuf {
        message: "CreateContainerRequest",
        reason: reason.to_owned(),
    };
    let message = unframe(body)?;
    let mut out = Vec::with_capacity(message.len().saturating_add(pins.len() * 96));
    let mut mounts = 0usize;
    let mut pinned = 0usize;
    for field in Spans::new(message) {
        let (number, value, raw) = field.map_err(invalid)?;
        let (2, Value::Bytes(config)) = (number, value) else {
            out.extend_from_slice(raw);
            continue;
        };
        let mut rewritten = Vec::with_capacity(config.len().saturating_add(pins.len() * 96));
        let before = pinned;
        for field in Spans::new(config) {
            let (number, value, raw) = field.map_err(invalid)?;
            let (CONFIG_MOUNTS, Value::Bytes(mount)) = (number, value) else {
                rewritten.extend_from_slice(raw);
                continue;
            };
            match pins.iter().find(|pin| pin.mount == mounts) {
                Some(pin) => {
                    let overlay = v1::Mount {
                        image: Some(v1::ImageSpec {
                            image: pin.image.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                    .encode_to_vec();
                    put_bytes_field(&mut rewritten, CONFIG_MOUNTS, &[mount, &overlay]);
                    pinned += 1;
                }
                None => rewritten.extend_from_slice(raw),
            }
            mounts = mounts.saturating_add(1);
        }
        if pinned == before {
            out.extend_from_slice(raw);
        } else {
            put_bytes_field(&mut out, 2, &[&rewritten]);
        }
    }
    if pinned != pins.len() {
        return Err(invalid(
            "an image volume to pin is not among the request's mounts",
        ));
    }
    Ok(frame_parts(&[&out]))
}

/// Appends a length-delimited field `number` holding `parts`, concatenated.
fn put_bytes_field(out: &mut Vec<u8>, number: u64, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    prost::encoding::encode_key(
        // Field numbers here are constants well inside protobuf's range.
        u32::try_from(number).unwrap_or(u32::MAX),
        prost::encoding::WireType::LengthDelimited,
        out,
    );
    prost::encoding::encode_varint(len as u64, out);
    for part in parts {
        out.extend_from_slice(part);
    }
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
