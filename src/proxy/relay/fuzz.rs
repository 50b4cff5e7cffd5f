//! A relay driven by arbitrary frames from both peers, for `crigate::fuzzing::relay`.
//!
//! The input is read as a run of steps: a frame from the client (raw, or a request header
//! block or gRPC message built so that the fuzzer reaches the gated and local paths), a
//! frame from the runtime, the turns of the connection's loop ([`Relay::run`]: deciding
//! gated calls, framing local answers, delivering their tasks' events), the runtime lost,
//! a shutdown, and the decision the next gated call gets. Nothing may panic, and what the
//! relay writes to either peer must be whole frames.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use k8s_cri::v1;
use prost::Message;
use tokio::sync::mpsc;

use super::{frame, hpack, kind, Relay};
use crate::decision::{BoxFuture, Caller, Decide, Decided, Decision, Durable, RequestContext};
use crate::proxy::service::Proxy;

/// Request paths a built header block names.
const PATHS: &[&str] = &[
    "/runtime.v1.RuntimeService/Version",
    "/runtime.v1.RuntimeService/CreateContainer",
    "/runtime.v1.ImageService/PullImage",
    "/runtime.v1alpha2.RuntimeService/CreateContainer",
    "/runtime.v1.RuntimeService/GetContainerEvents",
    "/runtime.v1.RuntimeService/NoSuchMethod",
    "/containerd.services.images.v1.Images/List",
    "/",
];

/// Decides as the input last said.
struct Decider(Arc<AtomicU8>);

impl Decide for Decider {
    fn decide<'a>(&'a self, _: &'a RequestContext) -> BoxFuture<'a, Decided> {
        let mode = self.0.load(Ordering::Relaxed);
        Box::pin(async move {
            match mode % 4 {
                0 => Decided::now(Decision::allow()),
                1 => Decided::now(Decision::Deny {
                    message: "denied".to_owned(),
                }),
                // Decided after a wait, its record durable after another.
                2 => {
                    tokio::task::yield_now().await;
                    Decided {
                        decision: Decision::allow(),
                        durable: Durable::after(tokio::task::yield_now()),
                    }
                }
                _ => Decided::now(Decision::Allow {
                    pin: Some(format!("registry.test/app@sha256:{}", "a".repeat(64))),
                    volumes: Vec::new(),
                }),
            }
        })
    }
}

/// The fuzzer's bytes, read a field at a time; zeros once they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&byte, rest)) => {
                self.0 = rest;
                byte
            }
            None => 0,
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken.to_vec()
    }

    /// A client stream id (odd, or 0 for the connection) from a few values, so that
    /// frames meet streams that exist.
    fn stream(&mut self) -> u32 {
        match self.byte() % 8 {
            0 => 0,
            n => u32::from(n) * 2 - 1,
        }
    }
}

/// A request's header block calling `path`.
fn request_block(path: &str, authority: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", "5S"),
    ] {
        hpack::encode_field(&mut block, name.as_bytes(), value.as_bytes());
    }
    block
}

/// A gRPC message holding a decodable CreateContainer or PullImage request.
fn grpc_message(create: bool) -> Vec<u8> {
    let sandbox = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: "pod".to_owned(),
            uid: "uid".to_owned(),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        ..Default::default()
    };
    let image = Some(v1::ImageSpec {
        image: "registry.test/app:1".to_owned(),
        ..Default::default()
    });
    let body = if create {
        v1::CreateContainerRequest {
            pod_sandbox_id: "sandbox".to_owned(),
            config: Some(v1::ContainerConfig {
                metadata: Some(v1::ContainerMetadata {
                    name: "app".to_owned(),
                    attempt: 0,
                }),
                image,
                ..Default::default()
            }),
            sandbox_config: Some(sandbox),
        }
        .encode_to_vec()
    } else {
        v1::PullImageRequest {
            image,
            auth: None,
            sandbox_config: Some(sandbox),
        }
        .encode_to_vec()
    };
    let mut message = vec![0];
    message.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    message.extend_from_slice(&body);
    message
}

/// Checks that `out` holds whole frames (after the client's preface, passed on to the
/// runtime first), and empties it.
fn drain(out: &mut BytesMut) {
    if out.starts_with(frame::PREFACE) {
        drop(out.split_to(frame::PREFACE.len()));
    }
    while frame::next(out).is_some() {}
    assert!(out.is_empty(), "a partial frame was written: {out:?}");
}

/// Runs the steps `data` describes against one relay.
pub fn run(data: &[u8]) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(drive(Input(data)));
}

async fn drive(mut input: Input<'_>) {
    let text = "[cri]\nlisten = \"/nonexistent/crigate.sock\"\n\
                upstream = \"/nonexistent/runtime.sock\"\nconnect_timeout = \"1ms\"\n";
    let Ok(config) = crate::config::Config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    let mode = Arc::new(AtomicU8::new(input.byte()));
    let proxy = Arc::new(Proxy::new(config.cri, Arc::new(Decider(mode.clone()))));
    let (events, mut inbox) = mpsc::channel(64);
    let caller = Caller {
        pid: None,
        uid: 0,
        gid: 0,
    };
    let mut relay = Relay::new(proxy, caller, Path::new("/nonexistent").into(), events);
    let start = input.byte();
    relay.linked = start & 1 != 0;
    if !relay.linked {
        relay.inject_settings();
    }
    let mut from_client = BytesMut::from(frame::PREFACE);
    frame::put_settings(&mut from_client, &[]);
    let mut from_runtime = BytesMut::new();
    if start & 2 != 0 {
        frame::put_settings(&mut from_runtime, &[]);
    }
    // The connection ends, as `Relay::run` ends it, when the client broke the protocol,
    // the runtime was lost inside a header block, or a shutdown completed.
    while !input.0.is_empty() && !relay.broken && !relay.finished() {
        match input.byte() % 12 {
            0 => {
                let (kind, flags, stream) = (input.byte() % 10, input.byte(), input.stream());
                let len = usize::from(input.byte());
                frame::put(&mut from_client, kind, flags, stream, &input.bytes(len));
            }
            1 => {
                let path = PATHS[usize::from(input.byte()) % PATHS.len()];
                let authority = if input.byte() & 1 == 0 {
                    "localhost"
                } else {
                    "/run/crigate/crigate.sock"
                };
                let block = request_block(path, authority);
                let (stream, end, max_frame) = (input.stream(), input.byte(), input.byte());
                frame::put_header_block(
                    &mut from_client,
                    stream,
                    &block,
                    end & 1 != 0,
                    usize::from(max_frame).max(1) * 8,
                );
            }
            2 => {
                let (stream, flags, which) = (input.stream(), input.byte(), input.byte());
                let payload = match which % 3 {
                    0 => {
                        let len = usize::from(input.byte());
                        input.bytes(len)
                    }
                    n => grpc_message(n == 1),
                };
                frame::put(&mut from_client, kind::DATA, flags, stream, &payload);
            }
            3 => {
                let (kind, flags, stream) = (input.byte() % 10, input.byte(), input.stream());
                let len = usize::from(input.byte());
                frame::put(&mut from_runtime, kind, flags, stream, &input.bytes(len));
            }
            4 => {
                let mut block = Vec::new();
                hpack::encode_field(&mut block, b":status", b"200");
                hpack::encode_field(&mut block, b"content-type", b"application/grpc");
                let (stream, end, max_frame) = (input.stream(), input.byte(), input.byte());
                frame::put_header_block(
                    &mut from_runtime,
                    stream,
                    &block,
                    end & 1 != 0,
                    usize::from(max_frame).max(1) * 8,
                );
            }
            5 => {
                let mut block = Vec::new();
                hpack::encode_field(&mut block, b"grpc-status", b"0");
                let stream = input.stream();
                frame::put_header_block(&mut from_runtime, stream, &block, true, 1 << 14);
            }
            6 => {
                let (flags, stream) = (input.byte(), input.stream());
                let len = usize::from(input.byte());
                frame::put(
                    &mut from_runtime,
                    kind::DATA,
                    flags,
                    stream,
                    &input.bytes(len),
                );
            }
            7 => {
                // A read from the client, split where the input says.
                let at = usize::from(input.byte()) * 4;
                let mut chunk = from_client.split_to(at.min(from_client.len()));
                if let Err(error) = relay.on_client_bytes(&mut chunk) {
                    relay.fail(&error);
                    break;
                }
                chunk.unsplit(std::mem::take(&mut from_client));
                from_client = chunk;
            }
            8 => {
                if relay.linked {
                    relay.on_upstream_bytes(&mut from_runtime);
                } else {
                    from_runtime.clear();
                }
            }
            9 => {
                for stream in std::mem::take(&mut relay.to_decide) {
                    relay.decide_gate(stream);
                }
                relay.flush_local();
            }
            10 => {
                for _ in 0..input.byte() % 8 {
                    tokio::task::yield_now().await;
                }
                while let Ok((stream, event)) = inbox.try_recv() {
                    relay.on_event(stream, event);
                }
                relay.flush_local();
            }
            _ => match input.byte() % 4 {
                0 => relay.orphan("lost"),
                1 => relay.go_away(),
                2 => mode.store(input.byte(), Ordering::Relaxed),
                _ => {
                    drain(&mut relay.to_client);
                    drain(&mut relay.to_upstream);
                }
            },
        }
    }
    drain(&mut relay.to_client);
    drain(&mut relay.to_upstream);
}
