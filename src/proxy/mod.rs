//! The CRI proxy: a unix-socket HTTP/2 endpoint in front of the runtime's CRI socket.
//!
//! Each client connection is relayed frame by frame to a runtime connection of its own
//! ([`relay`], with the framing in [`frame`] and header blocks in [`hpack`]). Calls are routed by their `:path`
//! ([`methods`]): ordinary calls pass as frames, body and trailers untouched. PullImage
//! and CreateContainer, on both `runtime.v1` and `runtime.v1alpha2`, are read whole,
//! decoded ([`intercept`]) and put to the [`Decide`](crate::decision::Decide) seam
//! ([`service`]). A PullImage is then answered by crigate, forwarded over one shared,
//! self-healing connection to the runtime ([`upstream`]), as are refused methods and
//! every call while the runtime is unreachable. A CreateContainer's stream is opened on
//! the client's own runtime connection with its body held back until it is decided, and
//! an allowed one goes on there as sent. Every answer crigate gives itself is made
//! in [`status`]. [`server`] owns the socket and the lifecycle.

pub mod body;
pub mod frame;
pub mod hpack;
pub mod intercept;
pub mod methods;
pub mod names;
pub mod relay;
pub mod server;
pub mod service;
pub mod status;
pub mod upstream;

pub use server::{serve, BuildDecide, BuildError, Listener};
