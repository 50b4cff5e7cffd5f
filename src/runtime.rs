//! Reaching the container runtime's own APIs: a gRPC channel to its unix socket, and
//! requests in the containerd namespace of its CRI plugin. The proxy uses them to name
//! pinned images, the decider to ask what an image or a pod sandbox is.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::Request;

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
