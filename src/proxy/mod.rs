//! The CRI proxy: a unix-socket HTTP/2 server in front of the runtime's CRI socket.
//!
//! Calls are routed by their `:path` ([`methods`]). PullImage and CreateContainer, on
//! both `runtime.v1` and `runtime.v1alpha2`, are read whole, decoded ([`intercept`]) and
//! put to the [`Decide`](crate::decision::Decide) seam; everything else is relayed as
//! HTTP/2 frames, headers, body and trailers untouched ([`body`]), over one shared,
//! self-healing connection to the runtime ([`upstream`]). Every answer crigate gives
//! itself is made in [`status`]. [`server`] owns the socket and the lifecycle.

pub mod body;
pub mod intercept;
pub mod methods;
pub mod names;
pub mod server;
pub mod service;
pub mod status;
pub mod upstream;

pub use server::{serve, BuildDecide, BuildError, Listener};
