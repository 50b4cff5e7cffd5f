//! Reaching the container runtime's own APIs: a gRPC channel to its unix socket, and
//! requests in the containerd namespace of its CRI plugin. The proxy uses them to name
//! pinned images, the decider to ask what an image or a pod sandbox is.

use std::path::PathBuf;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{GetImageRequest, ReadContentRequest};
use containerd_client::types::Descriptor;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::oci::manifest::{Manifest, ManifestError, MAX_MANIFEST_BYTES};
use crate::oci::Digest;

/// The containerd namespace of the CRI plugin's images (fixed in containerd 1.6 and 1.7;
/// `k8s.io` is also 2.x's default).
pub const CRI_NAMESPACE: &str = "k8s.io";

/// A gRPC channel through `endpoint`'s settings to the unix socket `socket`, connecting on
/// first use and again after the connection breaks.
pub fn unix_channel(
    endpoint: tonic::transport::Endpoint,
    socket: PathBuf,
) -> tonic::transport::Channel {
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
        let socket = socket.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
    }))
}

/// `message` as a request in the CRI plugin's containerd namespace.
pub(crate) fn namespaced<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "containerd-namespace",
        tonic::metadata::MetadataValue::from_static(CRI_NAMESPACE),
    );
    request
}

/// Where the type of a stored manifest comes from, when its document does not say.
#[derive(Clone, Copy)]
pub(crate) enum Typed<'a> {
    /// The target of this image record.
    Record(&'a str),
    /// This media type, from the index that lists it.
    As(&'a str),
}

/// What the content store of a runtime holds under a digest.
pub(crate) enum Stored {
    /// Nothing.
    Absent,
    /// Bytes that are not a manifest or index crigate reads: over
    /// [`MAX_MANIFEST_BYTES`], other bytes than the digest names, or a document it does
    /// not parse. The runtime may read them otherwise.
    Unreadable,
    Document(Box<Manifest>),
}

/// The manifest or index in the content store of the runtime at `channel` under
/// `digest`, its bytes checked against the digest; `None` when the store does not hold
/// it, or holds something that is not a manifest or index of at most
/// [`MAX_MANIFEST_BYTES`].
pub(crate) async fn stored_manifest(
    channel: &Channel,
    digest: &Digest,
    typed: Typed<'_>,
) -> Result<Option<Manifest>, tonic::Status> {
    Ok(match stored_document(channel, digest, typed).await? {
        Stored::Document(document) => Some(*document),
        Stored::Absent | Stored::Unreadable => None,
    })
}

/// What the content store of the runtime at `channel` holds under `digest`.
pub(crate) async fn stored_document(
    channel: &Channel,
    digest: &Digest,
    typed: Typed<'_>,
) -> Result<Stored, tonic::Status> {
    let absent = |status: &tonic::Status| status.code() == Code::NotFound;
    let mut content = ContentClient::new(channel.clone());
    let mut stream = match content
        .read(namespaced(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        }))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) if absent(&status) => return Ok(Stored::Absent),
        Err(status) => return Err(status),
    };
    let mut bytes = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                if bytes.len().saturating_add(chunk.data.len()) > MAX_MANIFEST_BYTES {
                    return Ok(Stored::Unreadable);
                }
                bytes.extend_from_slice(&chunk.data);
            }
            Ok(None) => break,
            Err(status) if absent(&status) => return Ok(Stored::Absent),
            Err(status) => return Err(status),
        }
    }
    if digest.check(&bytes).is_err() {
        tracing::warn!(%digest, "the runtime's content store holds other bytes under this digest");
        return Ok(Stored::Unreadable);
    }
    let bytes = bytes::Bytes::from(bytes);
    let parsed = match Manifest::parse_off_thread(None, bytes.clone()).await {
        // A document without `mediaType` (the OCI image spec has it as SHOULD) is read as
        // the type its descriptor gives it, as the runtime read it.
        Err(ManifestError::MissingMediaType) => {
            let media_type = match typed {
                Typed::As(media_type) => Some(media_type.to_owned()),
                Typed::Record(name) => record_media_type(channel, name).await?,
            };
            match media_type {
                Some(media_type) => Manifest::parse_off_thread(Some(&media_type), bytes)
                    .await
                    .ok(),
                None => None,
            }
        }
        parsed => parsed.ok(),
    };
    Ok(parsed.map_or(Stored::Unreadable, |document| {
        Stored::Document(Box::new(document))
    }))
}

/// What the content store of the runtime at `channel` holds under the target of its
/// image record `name`; `None` when it has no record of that name. A record without a
/// target, or whose target is no digest, is [`Stored::Unreadable`].
pub(crate) async fn record_document(
    channel: &Channel,
    name: &str,
) -> Result<Option<Stored>, tonic::Status> {
    let Some(target) = record_target(channel, name).await? else {
        return Ok(None);
    };
    let Some(target) = target else {
        return Ok(Some(Stored::Unreadable));
    };
    let Ok(digest) = target.digest.parse::<Digest>() else {
        return Ok(Some(Stored::Unreadable));
    };
    stored_document(channel, &digest, Typed::As(&target.media_type))
        .await
        .map(Some)
}

/// The media type of the target of the runtime's image record `name`, if it has one.
async fn record_media_type(channel: &Channel, name: &str) -> Result<Option<String>, tonic::Status> {
    let target = record_target(channel, name).await?;
    Ok(target.flatten().map(|target| target.media_type))
}

/// The runtime's image record `name`: `None` when it has none of that name, else its
/// target, if it has one.
async fn record_target(
    channel: &Channel,
    name: &str,
) -> Result<Option<Option<Descriptor>>, tonic::Status> {
    let mut images = ImagesClient::new(channel.clone());
    match images
        .get(namespaced(GetImageRequest {
            name: name.to_owned(),
        }))
        .await
    {
        Ok(response) => Ok(Some(
            response.into_inner().image.and_then(|image| image.target),
        )),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(status),
    }
}
