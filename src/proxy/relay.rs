//! One client connection, relayed to the runtime frame by frame.
//!
//! Each client connection gets a connection of its own to the runtime. Frames pass
//! between the two as they are (the runtime's SETTINGS with `max_concurrent_streams`
//! and `max_header_list_size` lowered to crigate's), with six exceptions:
//!
//! - **Request header blocks are decoded and encoded again.** crigate must read every
//!   request's `:path` to route it, and a block it has decoded is sent on as literals
//!   that never touch the runtime's HPACK table ([`hpack::encode_field`]). The runtime so
//!   sees exactly the fields crigate routed on, and streams crigate answers itself need
//!   not reach the runtime at all.
//! - **Streams crigate answers itself are "local".** PullImage, methods the
//!   configuration refuses, and every stream while the runtime is unreachable are read
//!   whole and handed to [`Proxy::call`], the same code that decides, records and
//!   forwards; its answer is framed here. A local stream never opens on the runtime
//!   connection (skipping its id is allowed: RFC 9113 §5.1.1).
//! - **CreateContainer is gated.** Its headers open the stream on the runtime at once,
//!   and its body is held here, read whole, until [`Proxy::gate`] has decided: allowed as
//!   sent, the body follows in one write and the runtime's answer is relayed untouched;
//!   anything else (a denial, a request crigate cannot read, an image pinned to its id)
//!   cancels the runtime's stream and is answered locally.
//! - **Flow control is kept true for both peers.** The client's connection window is
//!   crigate's to grant: the runtime's connection WINDOW_UPDATEs, and the request bytes
//!   of local streams (which the runtime never had), are owed to the client and paid in
//!   one WINDOW_UPDATE once it has used half its window ([`Relay::owe_window`]), so its
//!   window stays within the runtime's count of it. Response bytes crigate sends on
//!   local streams use up the client's connection window behind the runtime's back, so
//!   as many bytes are withheld from the client's next connection WINDOW_UPDATEs to the
//!   runtime, and any runtime DATA that would overrun the client's real window waits
//!   here.
//! - **Connection shutdown is crigate's.** It sends its own GOAWAY in two steps (a
//!   GOAWAY naming the largest stream id, a PING, then the real last stream id, as
//!   RFC 9113 §6.8 suggests), so a stream in flight is never refused unprocessed. If the
//!   runtime connection is lost, open streams get UNAVAILABLE, later streams are answered
//!   by [`Proxy::call`] (which reconnects by itself), and once the runtime accepts
//!   connections again the client is moved to a fresh connection that is relayed.
//! - **PINGs are answered here, from either side.** A PING is a connection's own, hop by
//!   hop (RFC 9113 §6.7: it belongs to no stream), and each peer's measure the connection
//!   it has, the one to crigate. grpc-go, containerd's server, sends one with a
//!   WINDOW_UPDATE after nearly every request body, to size its windows (BDP
//!   estimation); relayed, each would cost the client a reply and crigate a wake-up and
//!   two more writes per call, for an answer crigate can give at once. grpc-go clients
//!   (kubelet, crictl) send one after DATA to size theirs, DATA crigate itself sends
//!   included (its answers to pulls); relayed, such PINGs reached the runtime with no
//!   data of its own between them, which grpc-go's server counts as abuse, ending the
//!   connection with GOAWAY `too_many_pings` after three.
//!
//! Response header blocks from the runtime are never decoded: the client's HPACK decoder
//! follows the runtime's encoder unchanged, and blocks crigate adds never touch its table.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::BodyExt;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::config::MethodPolicy;
use crate::decision::{Caller, Durable, Phase};
use crate::proxy::body::ProxyBody;
use crate::proxy::frame::{self, code, flag, kind, setting, Head};
use crate::proxy::hpack;
use crate::proxy::methods::{route, Intercepted, Route};
use crate::proxy::service::{Gated, Proxy, GRPC_PREFIX_LEN};
use crate::proxy::status::ProxyError;

/// The opaque data of the PING that times crigate's final GOAWAY.
const GOAWAY_PING: [u8; 8] = *b"crigate\x01";

/// How often a connection without a runtime checks whether the runtime is back.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The largest header block accepted, as encoded, and the largest header list decoded
/// (grpc-go allows 16 MiB headers, crigate far less). Advertised to the client as
/// SETTINGS_MAX_HEADER_LIST_SIZE, so that grpc-go, h2 and netty clients, which check
/// the advertised limit before sending, fail only the call that passes it rather than
/// have crigate end the connection.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// [`MAX_HEADER_BLOCK`] as a SETTINGS value.
const MAX_HEADER_LIST: u32 = MAX_HEADER_BLOCK as u32;

/// The largest HPACK table a client may make crigate keep, whatever the runtime allows.
const MAX_HPACK_TABLE: u32 = 1 << 16;

/// The most request bytes one gated call holds back from the runtime. What is held counts
/// against the client's windows for the stream and the connection, and only the runtime
/// gives those back, once it has the bytes: a body that could not be sent whole within
/// them would wait forever. A larger request is taken back and decided as a local call.
const GATE_HOLD: u32 = 16 * 1024;

/// The most request bytes all gated calls of a connection hold back together: well under
/// the 65,535 bytes every HTTP/2 connection window starts with (RFC 9113 §6.9.2), which
/// a runtime need not raise, so that what is held never starves the calls that are not.
const GATES_HOLD: u32 = 32 * 1024;

/// The most DATA frames one gated call holds back. An empty frame costs no window, so
/// without a count a client could make crigate hold frames without end; a gRPC client
/// sends a request of up to [`GATE_HOLD`] bytes in a few.
const GATE_FRAMES: usize = 64;

/// The most bytes of runtime frames held for the client (waiting for its window, or for
/// a decision's record) before crigate stops reading the runtime: frames behind held
/// DATA wait with it, whatever their kind, so the runtime could otherwise fill crigate's
/// memory with answers the client is not taking.
const MAX_HELD: usize = 1 << 20;

/// How many requests of the largest size (`cri.max_message_bytes`) the unfinished
/// requests crigate answers on one connection may hold together.
const LOCAL_BUFFERED_REQUESTS: usize = 2;

/// The most frames of crigate's own (answers to PINGs, SETTINGS acknowledgements, window
/// given back, resets) waiting for the runtime before crigate stops reading the client.
const MAX_INJECTED: usize = 4096;

/// The most answers to the runtime's PINGs kept until the client's preface has gone to
/// it; a runtime sends none or one before it has heard from the client.
const MAX_EARLY_PONGS: usize = 8;

/// How long a client has to answer the PING sent with the first GOAWAY before the final
/// one goes out anyway. A client answers at once; the PING only tells crigate that every
/// stream the client opened before it has arrived.
const GOAWAY_ACK_WAIT: Duration = Duration::from_secs(5);

/// How long the next piece of an answer crigate gives itself waits for the client to take
/// the piece before it (for the client's windows) before the call is reset. The answer
/// comes over crigate's one shared runtime connection, where what a client does not take
/// holds back the other callers' answers; a client that takes a piece (at most 16 KiB)
/// in this time is never cut off.
const LOCAL_ANSWER_STALL: Duration = Duration::from_secs(30);

/// Room made in a read buffer when it runs low: a read takes what fits in the spare
/// capacity.
const READ_CHUNK: usize = 64 * 1024;

/// Relays one accepted client connection until either side closes it, or until it has
/// been drained after `shutdown`.
pub async fn serve(
    client: UnixStream,
    caller: Caller,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) {
    let state = proxy.state();
    let socket: Box<Path> = state.cri.upstream.clone().into_boxed_path();
    let upstream = match tokio::time::timeout(
        state.cri.connect_timeout,
        UnixStream::connect(&socket),
    )
    .await
    {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(upstream = %socket.display(), %error, "runtime unreachable; answering this connection's calls locally");
            None
        }
        Err(_) => {
            tracing::debug!(upstream = %socket.display(), "runtime connect timed out; answering this connection's calls locally");
            None
        }
    };
    let (events, mut inbox) = mpsc::channel(64);
    let moved = state.runtime_moved.clone();
    drop(state);
    let mut relay = Relay::new(proxy, caller, socket, events);
    let result = relay
        .run(client, upstream, &mut inbox, shutdown, moved)
        .await;
    match result {
        Ok(()) => tracing::debug!(pid = caller.pid, "client connection closed"),
        Err(error) => tracing::debug!(pid = caller.pid, %error, "client connection ended"),
    }
}

/// A connection-level error: crigate sends GOAWAY with `code` and closes.
#[derive(Debug, thiserror::Error)]
#[error("{reason} (HTTP/2 error {code:#x})")]
struct Fatal {
    code: u32,
    reason: &'static str,
}

fn fatal(code: u32, reason: &'static str) -> Fatal {
    Fatal { code, reason }
}

/// Why the relay stopped early.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Protocol(#[from] Fatal),
    #[error("client socket: {0}")]
    Client(#[source] std::io::Error),
}

/// What a local stream's task reports to the connection.
enum Event {
    /// The response head; `true` when there is no body and no trailers to follow.
    Head(http::response::Parts, bool),
    /// A piece of the body; the sender is told once it has been framed.
    Data(Bytes, oneshot::Sender<()>),
    Trailers(HeaderMap),
    /// The body ended without trailers.
    End,
    /// The response broke off: reset the stream with this code.
    Reset(u32),
    /// A gated call is decided (or its request could not be represented).
    Gated(Result<Gated, &'static str>),
    /// The record of a gated call's decision is durable: the runtime's answer may pass.
    Durable,
}

/// What a local stream still has to send, in order.
enum Out {
    Block {
        block: Vec<u8>,
        end: bool,
    },
    Data {
        data: Bytes,
        end: bool,
        sent: Option<oneshot::Sender<()>>,
    },
    Reset(u32),
}

/// A stream crigate answers itself.
struct Local {
    request: Option<RequestHead>,
    body: BytesMut,
    /// The client has sent END_STREAM, or the stream was reset.
    request_done: bool,
    /// The request passed `cri.max_message_bytes`: the rest of it is not read.
    too_large: bool,
    task: Option<AbortHandle>,
    /// What the client lets crigate send on this stream.
    window: i64,
    outbox: VecDeque<Out>,
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A gated call (CreateContainer) open on the runtime while crigate decides it. Its
/// request header block is written to the runtime in the turn it was read in (with the
/// body, when the decision is made in its first poll), so the stream takes its place in
/// the connection's order of stream ids; its DATA frames wait here, unchanged, until the
/// call is allowed. Held bytes stay counted against the client's connection window, as
/// the runtime will count them once it has them; bytes of a call that never reaches the
/// runtime are given back to the client.
struct Gate {
    method: Intercepted,
    /// The request as [`Proxy::gate`] reads it, until the decision starts.
    request: Option<RequestHead>,
    body: BytesMut,
    /// The client's frames, as received, for the runtime.
    frames: Vec<Bytes>,
    /// The flow-controlled length of the held DATA frames.
    held: u32,
    /// The client ended the request: what follows is not part of it.
    complete: bool,
    task: Option<AbortHandle>,
    /// Allowed and sent on; the runtime's answer waits for the record to be durable.
    forwarded: bool,
    /// The wait for the record, looked at once the runtime answers (by then the record
    /// is nearly always durable, and nothing had to wake for it); a task waits for it
    /// when it is not.
    durable: Option<Durable>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A request's pseudo-header fields and its regular fields.
struct RequestHead {
    method: Vec<u8>,
    authority: Option<Vec<u8>>,
    path: Vec<u8>,
    headers: HeaderMap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GoAway {
    None,
    /// GOAWAY with the largest stream id and a PING were sent; the PING's ACK is awaited.
    Announced,
    /// The final GOAWAY was sent; streams above this id are ignored.
    Final(u32),
}

/// Decoded header fields, kept in one reused buffer. What one block adds is bounded by
/// the decoding ([`hpack::Decoder::decode_within`]).
#[derive(Default)]
struct Fields {
    arena: Vec<u8>,
    /// Start of the name, start of the value, end of the value.
    spans: Vec<(usize, usize, usize)>,
}

impl Fields {
    fn clear(&mut self) {
        self.arena.clear();
        self.spans.clear();
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(name);
        let middle = self.arena.len();
        self.arena.extend_from_slice(value);
        self.spans.push((start, middle, self.arena.len()));
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|&(a, b, c)| (&self.arena[a..b], &self.arena[b..c]))
    }
}

/// The request line of a header block, checked as RFC 9113 §8.3.1 requires.
struct Pseudo<'a> {
    method: &'a [u8],
    scheme: &'a [u8],
    authority: Option<&'a [u8]>,
    path: &'a [u8],
}

/// Checks a request's header block (RFC 9113 §8.2, §8.3.1): pseudo-header fields first,
/// each once, the required ones present; lowercase names; no connection-specific fields;
/// no NUL, CR or LF anywhere.
fn request_line(fields: &Fields) -> Result<Pseudo<'_>, &'static str> {
    let (mut method, mut scheme, mut authority, mut path) = (None, None, None, None);
    let mut regular = false;
    for (name, value) in fields.iter() {
        check_value(value)?;
        if let Some(pseudo) = name.strip_prefix(b":") {
            if regular {
                return Err("pseudo-header field after a regular field");
            }
            let slot = match pseudo {
                b"method" => &mut method,
                b"scheme" => &mut scheme,
                b"authority" => &mut authority,
                b"path" => &mut path,
                _ => return Err("unknown pseudo-header field in a request"),
            };
            if slot.replace(value).is_some() {
                return Err("repeated pseudo-header field");
            }
        } else {
            regular = true;
            check_regular(name, value)?;
        }
    }
    let (Some(method), Some(scheme), Some(path)) = (method, scheme, path) else {
        return Err("request without :method, :scheme or :path");
    };
    if path.is_empty() {
        return Err("empty :path");
    }
    Ok(Pseudo {
        method,
        scheme,
        authority,
        path,
    })
}

/// Checks a trailer block: regular fields only.
fn trailer_fields(fields: &Fields) -> Result<(), &'static str> {
    for (name, value) in fields.iter() {
        check_value(value)?;
        if name.starts_with(b":") {
            return Err("pseudo-header field in trailers");
        }
        check_regular(name, value)?;
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), &'static str> {
    if value.iter().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
        return Err("NUL, CR or LF in a field value");
    }
    Ok(())
}

fn check_regular(name: &[u8], value: &[u8]) -> Result<(), &'static str> {
    if name.is_empty()
        || name
            .iter()
            .any(|&b| b.is_ascii_uppercase() || b <= b' ' || b == b':' || b >= 0x7f)
    {
        return Err("invalid field name");
    }
    match name {
        b"connection" | b"proxy-connection" | b"keep-alive" | b"transfer-encoding" | b"upgrade" => {
            Err("connection-specific field")
        }
        b"te" if value != b"trailers" => Err("te other than \"trailers\""),
        _ => Ok(()),
    }
}

struct Relay {
    proxy: Arc<Proxy>,
    caller: Caller,
    socket: Box<Path>,
    events: mpsc::Sender<(u32, Event)>,
    /// The runtime connection is up.
    linked: bool,
    /// The runtime sent GOAWAY: new streams are answered locally.
    upstream_draining: bool,
    /// Nothing more can be sent correctly: close both sides.
    broken: bool,
    preface: bool,

    decoder: hpack::Decoder,
    fields: Fields,
    encoded: Vec<u8>,
    /// A client header block still waiting for CONTINUATION frames.
    block: Option<(Head, Vec<u8>)>,
    last_stream: u32,
    /// Streams open on the runtime connection, and whether their response has started.
    open: HashMap<u32, bool>,
    local: HashMap<u32, Local>,
    /// Gated calls open on the runtime whose decision, or whose record's durability, is
    /// awaited.
    gates: HashMap<u32, Gate>,
    /// Gated calls whose request is complete, decided before what was read is written.
    to_decide: Vec<u32>,

    client_initial_window: i64,
    client_max_frame: usize,
    /// The client's real connection window for what it receives.
    client_window: i64,
    /// Bytes crigate sent the client on local streams that the runtime has not yet been
    /// told are gone from the client's window.
    debt: i64,
    /// The client's connection window for what it sends, as the client knows it: 65,535
    /// (RFC 9113 §6.9.2), plus every increment crigate sent it, less every DATA frame it
    /// sent.
    client_send_window: i64,
    /// Connection window the client is owed and has not been sent ([`Relay::owe_window`]).
    window_owed: i64,
    /// Runtime frames waiting for the client's window (in order, from the first DATA
    /// that did not fit).
    held: VecDeque<Bytes>,
    /// Bytes of the frames in `held`.
    held_bytes: usize,
    /// Frames of crigate's own waiting for a runtime header block to be complete.
    injected: VecDeque<Bytes>,
    /// A runtime header block is open in what was received.
    upstream_block_open: bool,
    /// Streams whose RST_STREAM to the client waits for the runtime's open header block to
    /// end: a block's frames must be contiguous (RFC 9113 §4.3).
    resets_after_block: Vec<(u32, u32)>,
    /// A runtime header block is open in what was written to the client.
    written_block_open: bool,
    upstream_max_frame: usize,
    /// The runtime's SETTINGS_INITIAL_WINDOW_SIZE: the client's window for a new stream.
    upstream_initial_window: u32,
    upstream_settings_seen: bool,
    /// How long the runtime has to send its SETTINGS once the client's preface reached it.
    connect_timeout: Duration,
    /// Until when crigate's own frames wait for the runtime's SETTINGS (set when the
    /// client's preface is passed on); a runtime that sends none by then, hung though
    /// connected, is given up, so that they do not wait for ever.
    preface_deadline: Option<tokio::time::Instant>,
    /// The client's first SETTINGS, which end its connection preface, went to the runtime.
    client_settings_sent: bool,
    /// Answers to the runtime's PINGs that came before that, waiting for it.
    early_pongs: Vec<[u8; 8]>,
    /// Client SETTINGS the runtime has not acknowledged yet.
    unacked_settings: u32,
    /// For each client SETTINGS the runtime has not acknowledged, the
    /// SETTINGS_HEADER_TABLE_SIZE it set, if any.
    unacked_table_sizes: VecDeque<Option<u32>>,
    /// The client decoder's SETTINGS_HEADER_TABLE_SIZE, as acknowledged to it.
    client_table_size: u32,
    /// A size the client's decoder was lowered to, which the next header block it gets
    /// must begin by taking (RFC 7541 §4.2): crigate's own block carries the update when
    /// it comes before any of the runtime's, which carry their own.
    table_update_due: Option<u32>,
    goaway: GoAway,
    /// The error code of crigate's final GOAWAY: the runtime's, when its own GOAWAY
    /// carried one, so the client learns why the connection ends.
    goaway_code: u32,
    /// When the final GOAWAY goes out if the client has not answered the PING sent with
    /// the first.
    goaway_deadline: Option<tokio::time::Instant>,
    shutting_down: bool,
    /// `cri.max_concurrent_streams` when the connection opened: what its SETTINGS said.
    max_streams: u32,

    to_client: BytesMut,
    to_upstream: BytesMut,
}

impl Relay {
    fn new(
        proxy: Arc<Proxy>,
        caller: Caller,
        socket: Box<Path>,
        events: mpsc::Sender<(u32, Event)>,
    ) -> Self {
        let decoder = hpack::Decoder::new();
        let (max_streams, connect_timeout) = {
            let state = proxy.state();
            (state.cri.max_concurrent_streams, state.cri.connect_timeout)
        };
        Self {
            max_streams,
            proxy,
            caller,
            socket,
            events,
            linked: false,
            upstream_draining: false,
            broken: false,
            preface: false,
            decoder,
            fields: Fields::default(),
            encoded: Vec::new(),
            block: None,
            last_stream: 0,
            open: HashMap::new(),
            local: HashMap::new(),
            gates: HashMap::new(),
            to_decide: Vec::new(),
            client_initial_window: frame::DEFAULT_WINDOW,
            client_max_frame: frame::DEFAULT_MAX_FRAME_SIZE as usize,
            client_window: frame::DEFAULT_WINDOW,
            debt: 0,
            client_send_window: frame::DEFAULT_WINDOW,
            window_owed: 0,
            held: VecDeque::new(),
            held_bytes: 0,
            injected: VecDeque::new(),
            upstream_block_open: false,
            resets_after_block: Vec::new(),
            written_block_open: false,
            upstream_max_frame: frame::DEFAULT_MAX_FRAME_SIZE as usize,
            upstream_initial_window: frame::DEFAULT_WINDOW as u32,
            upstream_settings_seen: false,
            connect_timeout,
            preface_deadline: None,
            client_settings_sent: false,
            early_pongs: Vec::new(),
            unacked_settings: 0,
            unacked_table_sizes: VecDeque::new(),
            client_table_size: hpack::DEFAULT_TABLE_SIZE as u32,
            table_update_due: None,
            goaway: GoAway::None,
            goaway_code: code::NO_ERROR,
            goaway_deadline: None,
            shutting_down: false,
            to_client: BytesMut::with_capacity(READ_CHUNK),
            to_upstream: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    async fn run(
        &mut self,
        client: UnixStream,
        upstream: Option<UnixStream>,
        inbox: &mut mpsc::Receiver<(u32, Event)>,
        shutdown: CancellationToken,
        moved: CancellationToken,
    ) -> Result<(), Error> {
        let client = Socket::new(client).map_err(Error::Client)?;
        let mut upstream = upstream.and_then(|stream| match Socket::new(stream) {
            Ok(socket) => Some(socket),
            Err(error) => {
                tracing::debug!(%error, "cannot register the runtime connection");
                None
            }
        });
        self.linked = upstream.is_some();
        if !self.linked {
            // crigate is the server here: its SETTINGS are the server preface.
            self.inject_settings();
        }
        let mut from_client = BytesMut::with_capacity(READ_CHUNK);
        let mut from_upstream = BytesMut::with_capacity(READ_CHUNK);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let moved = moved.cancelled_owned();
        tokio::pin!(moved);
        let mut probe = tokio::time::interval(PROBE_INTERVAL);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Decided before what was read is written: a decision made in its first poll
            // (a cached verdict) sends its stream's header block and body to the runtime
            // in one write, one wake-up of the runtime rather than two. A decision that
            // has to wait goes on in a task, and the header block goes out now, so the
            // runtime opens the stream while crigate decides.
            for stream in std::mem::take(&mut self.to_decide) {
                self.decide_gate(stream);
            }
            self.flush_local();
            if !self.to_upstream.is_empty() {
                if let Some(socket) = upstream.as_ref() {
                    if let Err(error) = socket.write_all(&self.to_upstream).await {
                        upstream = None;
                        self.orphan(&error.to_string());
                    }
                }
                self.to_upstream.clear();
            }
            if !self.to_client.is_empty() {
                client
                    .write_all(&self.to_client)
                    .await
                    .map_err(Error::Client)?;
                self.to_client.clear();
            }
            if self.finished() {
                let _ = client.shutdown_write();
                return Ok(());
            }
            reserve(&mut from_client);
            reserve(&mut from_upstream);
            let probing = upstream.is_none() && self.goaway == GoAway::None;
            tokio::select! {
                // Past the bound on crigate's own frames waiting for the runtime (its
                // SETTINGS, the end of its header block), the client waits too.
                read = client.read(&mut from_client),
                    if self.injected.len() <= MAX_INJECTED => match read {
                    Ok(0) => return Ok(()),
                    Ok(_) => {
                        if let Err(error) = self.on_client_bytes(&mut from_client) {
                            self.fail(&error);
                            let _ = client.write_all(&self.to_client).await;
                            return Err(error.into());
                        }
                    }
                    Err(error) => return Err(Error::Client(error)),
                },
                // Past the bound on what waits for the client, the runtime waits too. A
                // runtime that in turn stops reading could stall a write to it, and with it
                // this connection, which only a client that floods frames the runtime must
                // answer (SETTINGS) while taking nothing can bring about: that client's own
                // connection, its memory bounded.
                read = read_upstream(&upstream, &mut from_upstream),
                    if self.held_bytes <= MAX_HELD => match read {
                    Ok(0) => {
                        upstream = None;
                        self.orphan("the runtime closed the connection");
                    }
                    Ok(_) => self.on_upstream_bytes(&mut from_upstream),
                    Err(error) => {
                        upstream = None;
                        self.orphan(&error.to_string());
                    }
                },
                Some((stream, event)) = inbox.recv() => {
                    self.on_event(stream, event);
                    // Whatever else local streams have ready goes out in the same write.
                    while let Ok((stream, event)) = inbox.try_recv() {
                        self.on_event(stream, event);
                    }
                }
                () = &mut cancelled, if !self.shutting_down => {
                    self.shutting_down = true;
                    self.go_away();
                }
                () = &mut moved, if self.goaway == GoAway::None => {
                    tracing::debug!(upstream = %self.socket.display(), "the configured runtime socket changed; moving the client to a connection relayed to the new one");
                    self.go_away();
                }
                // A runtime that has not sent its SETTINGS by the deadline, while crigate
                // has frames of its own waiting for them, is given up: crigate's SETTINGS
                // go first, then what waited (a server's first frame must be its SETTINGS,
                // RFC 9113 §3.4, or the client ends the connection).
                () = sleep_until(self.preface_deadline),
                    if self.preface_awaited()
                        && (!self.injected.is_empty() || !self.local.is_empty()) => {
                    upstream = None;
                    self.orphan("the runtime sent no SETTINGS within the connect timeout");
                }
                () = sleep_until(self.goaway_deadline), if self.goaway == GoAway::Announced => {
                    tracing::debug!(pid = self.caller.pid, "the client did not answer the GOAWAY's PING; no new streams are taken");
                    self.final_goaway();
                }
                _ = probe.tick(), if probing => {
                    if UnixStream::connect(&self.socket).await.is_ok() {
                        tracing::debug!(upstream = %self.socket.display(), "runtime is back; moving the client to a relayed connection");
                        self.go_away();
                    }
                }
            }
            if self.broken {
                let _ = client.write_all(&self.to_client).await;
                return Ok(());
            }
        }
    }

    fn finished(&self) -> bool {
        matches!(self.goaway, GoAway::Final(_))
            && self.open.is_empty()
            && self.local.is_empty()
            && self.gates.is_empty()
            && self.held.is_empty()
            && self.injected.is_empty()
    }

    /// Sends GOAWAY for a connection error and stops.
    fn fail(&mut self, error: &Fatal) {
        // A GOAWAY's last stream id never grows (RFC 9113 §6.8).
        let last = match self.goaway {
            GoAway::Final(last) => last,
            GoAway::None | GoAway::Announced => self.last_stream,
        };
        if !self.written_block_open {
            frame::put_goaway(&mut self.to_client, last, error.code);
        }
    }

    // --- from the client ---

    fn on_client_bytes(&mut self, buf: &mut BytesMut) -> Result<(), Fatal> {
        if !self.preface {
            if buf.len() < frame::PREFACE.len() {
                return if frame::PREFACE.starts_with(buf) {
                    Ok(())
                } else {
                    Err(fatal(code::PROTOCOL_ERROR, "not an HTTP/2 client preface"))
                };
            }
            let preface = buf.split_to(frame::PREFACE.len());
            if preface[..] != *frame::PREFACE {
                return Err(fatal(code::PROTOCOL_ERROR, "not an HTTP/2 client preface"));
            }
            self.preface = true;
            if self.linked {
                self.to_upstream.extend_from_slice(&preface);
                self.preface_deadline = Some(tokio::time::Instant::now() + self.connect_timeout);
            }
        }
        // A frame longer than the runtime's SETTINGS_MAX_FRAME_SIZE (which the client was
        // given) is refused before it is buffered (RFC 9113 §4.2).
        while let Some(head) = Head::parse(buf) {
            if head.len > self.upstream_max_frame {
                return Err(fatal(
                    code::FRAME_SIZE_ERROR,
                    "frame larger than SETTINGS_MAX_FRAME_SIZE",
                ));
            }
            let Some((head, bytes)) = frame::next(buf) else {
                break;
            };
            self.on_client_frame(head, bytes)?;
        }
        Ok(())
    }

    fn on_client_frame(&mut self, head: Head, bytes: Bytes) -> Result<(), Fatal> {
        let payload = &bytes[frame::HEAD_LEN..];
        if let Some((open, _)) = &self.block {
            if head.kind != kind::CONTINUATION || head.stream != open.stream {
                return Err(fatal(
                    code::PROTOCOL_ERROR,
                    "frame inside a header block; CONTINUATION expected",
                ));
            }
        }
        // A stream above the highest the client opened is idle, and DATA on it is a
        // connection error (RFC 9113 §5.1). RST_STREAM and WINDOW_UPDATE there are let
        // pass (not forwarded), as grpc-go's server lets them pass: a grpc-go client that
        // drops a call whose HEADERS it had not yet written may still reset its stream.
        if head.kind == kind::DATA && head.stream > self.last_stream {
            return Err(fatal(code::PROTOCOL_ERROR, "DATA on an idle stream"));
        }
        match head.kind {
            kind::DATA => {
                // The whole payload counts, padding included (RFC 9113 §6.9.1). A client
                // that sends past its window is not refused here: the runtime judges what
                // reaches it, by its own count (larger by what the client is owed).
                self.client_send_window -= head.len as i64;
                self.on_client_data(head, &bytes)?;
                self.pay_window_if_due();
            }
            kind::HEADERS => {
                if head.stream == 0 {
                    return Err(fatal(code::PROTOCOL_ERROR, "HEADERS on stream 0"));
                }
                let fragment = frame::header_fragment(&head, payload)
                    .map_err(|_| fatal(code::PROTOCOL_ERROR, "malformed HEADERS frame"))?;
                if fragment.len() > MAX_HEADER_BLOCK {
                    return Err(fatal(code::ENHANCE_YOUR_CALM, "header block too large"));
                }
                if head.has(flag::END_HEADERS) {
                    let fragment = fragment.to_vec();
                    self.on_client_block(head, &fragment)?;
                } else {
                    self.block = Some((head, fragment.to_vec()));
                }
            }
            kind::CONTINUATION => {
                let Some((first, mut block)) = self.block.take() else {
                    return Err(fatal(code::PROTOCOL_ERROR, "CONTINUATION without HEADERS"));
                };
                block.extend_from_slice(payload);
                if block.len() > MAX_HEADER_BLOCK {
                    return Err(fatal(code::ENHANCE_YOUR_CALM, "header block too large"));
                }
                if head.has(flag::END_HEADERS) {
                    self.on_client_block(first, &block)?;
                } else {
                    self.block = Some((first, block));
                }
            }
            kind::RST_STREAM => {
                // Checked here, not left to the runtime: the runtime would end the whole
                // connection (RFC 9113 §6.4), every call on it.
                if head.stream == 0 {
                    return Err(fatal(code::PROTOCOL_ERROR, "RST_STREAM on stream 0"));
                }
                if head.len != 4 {
                    return Err(fatal(
                        code::FRAME_SIZE_ERROR,
                        "RST_STREAM of the wrong size",
                    ));
                }
                if self.local.remove(&head.stream).is_some() {
                    tracing::debug!(
                        stream = head.stream,
                        "client cancelled a call crigate was answering"
                    );
                } else if self.forwardable(head.stream) {
                    self.open.remove(&head.stream);
                    self.drop_gate(head.stream);
                    self.to_upstream.extend_from_slice(&bytes);
                }
            }
            kind::SETTINGS => self.on_client_settings(head, &bytes)?,
            kind::PUSH_PROMISE => {
                return Err(fatal(code::PROTOCOL_ERROR, "PUSH_PROMISE from a client"))
            }
            kind::PING => {
                let opaque: [u8; 8] = payload
                    .try_into()
                    .map_err(|_| fatal(code::FRAME_SIZE_ERROR, "PING of the wrong size"))?;
                // RFC 9113 §6.7: a PING belongs to the connection.
                if head.stream != 0 {
                    return Err(fatal(code::PROTOCOL_ERROR, "PING on a stream"));
                }
                if head.has(flag::ACK) {
                    // Only crigate's own PINGs reach the client, so an ACK answers one.
                    if opaque == GOAWAY_PING {
                        self.final_goaway();
                    }
                } else {
                    let mut pong = BytesMut::new();
                    frame::put_ping(&mut pong, true, opaque);
                    self.inject(pong.freeze());
                }
            }
            kind::WINDOW_UPDATE => self.on_client_window_update(head, &bytes)?,
            kind::PRIORITY => {
                // RFC 9113 §6.3; a stream error may be taken as the connection's (§5.4.1).
                if head.stream == 0 {
                    return Err(fatal(code::PROTOCOL_ERROR, "PRIORITY on stream 0"));
                }
                if head.len != 5 {
                    return Err(fatal(code::FRAME_SIZE_ERROR, "PRIORITY of the wrong size"));
                }
                if self.forwardable(head.stream) {
                    self.to_upstream.extend_from_slice(&bytes);
                }
            }
            kind::GOAWAY => {
                // RFC 9113 §6.8: a GOAWAY belongs to the connection, and has at least a
                // last stream id and an error code.
                if head.stream != 0 {
                    return Err(fatal(code::PROTOCOL_ERROR, "GOAWAY on a stream"));
                }
                if head.len < 8 {
                    return Err(fatal(code::FRAME_SIZE_ERROR, "GOAWAY too short"));
                }
                if self.linked {
                    self.to_upstream.extend_from_slice(&bytes);
                }
            }
            _ => {
                // Unknown frame types are ignored by peers that do not know them
                // (RFC 9113 §4.1); the runtime may know them.
                if self.linked && (head.stream == 0 || self.forwardable(head.stream)) {
                    self.to_upstream.extend_from_slice(&bytes);
                }
            }
        }
        Ok(())
    }

    /// Whether frames of a client stream go to the runtime: it is up, and the stream is
    /// open there. Frames on any other stream (one crigate answers, one never opened, one
    /// the runtime has ended) would be errors to the runtime, and some would end its
    /// connection (RFC 9113 §5.1), so they stop here. A stream the runtime ended with its
    /// trailers while the client had not ended its side is closed by the runtime itself
    /// (grpc-go resets it, NO_ERROR), so the client's END_STREAM is not waited for there.
    fn forwardable(&self, stream: u32) -> bool {
        self.linked && self.open.contains_key(&stream)
    }

    fn on_client_data(&mut self, head: Head, bytes: &Bytes) -> Result<(), Fatal> {
        if head.stream == 0 {
            return Err(fatal(code::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        // Padding as long as the payload or longer ends the connection (RFC 9113 §6.1):
        // checked on every stream, the runtime's included, which would end its own.
        let (start, end) = frame::unpadded(&head, &bytes[frame::HEAD_LEN..])
            .map_err(|_| fatal(code::PROTOCOL_ERROR, "malformed DATA frame"))?;
        if self
            .gates
            .get(&head.stream)
            .is_some_and(|gate| !gate.forwarded)
        {
            return self.on_gated_data(head, bytes);
        }
        if self.forwardable(head.stream) {
            self.to_upstream.extend_from_slice(bytes);
            return Ok(());
        }
        // Not for the runtime: the bytes are given back to the client's window at once.
        let len = head.len as u32;
        if len > 0 {
            self.owe_window(len);
            if let Some(local) = self.local.get(&head.stream) {
                if !local.request_done && !local.too_large && !head.has(flag::END_STREAM) {
                    self.give_back(head.stream, len);
                }
            }
        }
        let limit = self.proxy.state().cri.max_message_bytes + GRPC_PREFIX_LEN;
        // Requests crigate answers are read whole before they are answered, and their
        // bytes are given back to the client as they come: what they may buffer together
        // is bounded here, not by flow control.
        let buffered: usize = self.local.values().map(|local| local.body.len()).sum();
        let Some(local) = self.local.get_mut(&head.stream) else {
            return Ok(());
        };
        // Read whole, too large, or answered without its body: the rest is let go.
        if local.request_done || local.too_large || local.request.is_none() {
            local.request_done |= head.has(flag::END_STREAM);
            return Ok(());
        }
        let data = &bytes[frame::HEAD_LEN + start..frame::HEAD_LEN + end];
        if buffered + data.len() > limit.saturating_mul(LOCAL_BUFFERED_REQUESTS) {
            tracing::debug!(
                stream = head.stream,
                buffered,
                "unfinished requests crigate answers hold too much; refusing this one"
            );
            self.refuse(head.stream, code::ENHANCE_YOUR_CALM);
            return Ok(());
        }
        if local.body.len() + data.len() > limit {
            local.too_large = true;
            local.request_done = head.has(flag::END_STREAM);
            local.body = BytesMut::new();
            self.start(head.stream);
            return Ok(());
        }
        local.body.extend_from_slice(data);
        if head.has(flag::END_STREAM) {
            local.request_done = true;
            self.start(head.stream);
        }
        Ok(())
    }

    /// Holds a DATA frame of a gated call until its decision.
    fn on_gated_data(&mut self, head: Head, bytes: &Bytes) -> Result<(), Fatal> {
        let stream = head.stream;
        let limit = self.proxy.state().cri.max_message_bytes + GRPC_PREFIX_LEN;
        let (start, end) = frame::unpadded(&head, &bytes[frame::HEAD_LEN..])
            .map_err(|_| fatal(code::PROTOCOL_ERROR, "malformed DATA frame"))?;
        let len = head.len as u32;
        let per_gate = GATE_HOLD.min(self.upstream_initial_window / 2);
        let all: u32 = self.gates.values().map(|gate| gate.held).sum();
        let Some(gate) = self.gates.get_mut(&stream) else {
            return Ok(());
        };
        if gate.complete {
            // After END_STREAM: the client broke the protocol (a stream error, RFC 9113
            // §5.1), and the stream's fate is decided. The frame never reaches the
            // runtime, so its bytes go back to the client's connection window, which
            // would otherwise shrink for good.
            if len > 0 {
                self.give_back(0, len);
            }
            return Ok(());
        }
        let data = &bytes[frame::HEAD_LEN + start..frame::HEAD_LEN + end];
        if gate.held + len > per_gate
            || all + len > GATES_HOLD
            || gate.body.len() + data.len() > limit
            || gate.frames.len() >= GATE_FRAMES
        {
            // Too much to hold back, or more than may be decoded: a local call, whose
            // bytes crigate takes and gives back to the client's windows itself, and
            // which refuses a request over the limit.
            self.gate_to_local(stream, false);
            return self.on_client_data(head, bytes);
        }
        gate.held += len;
        // A copy: the frame shares the buffer of the read it came in, which it would
        // keep whole for as long as it is held.
        gate.frames.push(Bytes::copy_from_slice(bytes));
        gate.body.extend_from_slice(data);
        if head.has(flag::END_STREAM) {
            gate.complete = true;
            self.to_decide.push(stream);
        }
        Ok(())
    }

    fn on_client_settings(&mut self, head: Head, bytes: &Bytes) -> Result<(), Fatal> {
        if head.stream != 0 {
            return Err(fatal(code::PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if head.has(flag::ACK) {
            // RFC 9113 §6.5: an acknowledgement carries no parameters.
            if head.len != 0 {
                return Err(fatal(
                    code::FRAME_SIZE_ERROR,
                    "SETTINGS acknowledgement with a payload",
                ));
            }
            // Acknowledges the runtime's SETTINGS, or crigate's own when it is the server.
            if self.linked {
                self.to_upstream.extend_from_slice(bytes);
            }
            return Ok(());
        }
        let params = frame::settings(&bytes[frame::HEAD_LEN..])
            .map_err(|_| fatal(code::FRAME_SIZE_ERROR, "SETTINGS of the wrong size"))?;
        let mut table_size = None;
        for (id, value) in params {
            match id {
                setting::HEADER_TABLE_SIZE => table_size = Some(value),
                setting::INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return Err(fatal(code::FLOW_CONTROL_ERROR, "initial window too large"));
                    }
                    let delta = value - self.client_initial_window;
                    self.client_initial_window = value;
                    for local in self.local.values_mut() {
                        local.window += delta;
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME_SIZE..=frame::MAX_FRAME_SIZE_LIMIT)
                        .contains(&value)
                    {
                        return Err(fatal(code::PROTOCOL_ERROR, "invalid maximum frame size"));
                    }
                    self.client_max_frame = value as usize;
                }
                _ => {}
            }
        }
        if self.linked {
            self.unacked_settings += 1;
            self.unacked_table_sizes.push_back(table_size);
            self.to_upstream.extend_from_slice(bytes);
            if !self.client_settings_sent {
                self.client_settings_sent = true;
                for opaque in std::mem::take(&mut self.early_pongs) {
                    frame::put_ping(&mut self.to_upstream, true, opaque);
                }
            }
        } else {
            // The acknowledgement goes out before any block crigate writes after it.
            self.client_settings_acknowledged(table_size);
            let mut ack = BytesMut::new();
            frame::put_settings_ack(&mut ack);
            self.inject(ack.freeze());
        }
        Ok(())
    }

    /// The client has been told its SETTINGS were taken, with `table_size` among them.
    fn client_settings_acknowledged(&mut self, table_size: Option<u32>) {
        let Some(size) = table_size else {
            return;
        };
        if size < self.client_table_size {
            self.table_update_due = Some(self.table_update_due.map_or(size, |due| due.min(size)));
        }
        self.client_table_size = size;
    }

    fn on_client_window_update(&mut self, head: Head, bytes: &Bytes) -> Result<(), Fatal> {
        let increment = frame::u31(&bytes[frame::HEAD_LEN..])
            .filter(|_| head.len == 4)
            .ok_or_else(|| fatal(code::FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size"))?;
        if head.stream == 0 {
            // RFC 9113 §6.9: an increment of 0 on the connection is a connection error.
            if increment == 0 {
                return Err(fatal(code::PROTOCOL_ERROR, "connection WINDOW_UPDATE of 0"));
            }
            self.client_window += i64::from(increment);
            if self.client_window > frame::MAX_WINDOW {
                return Err(fatal(
                    code::FLOW_CONTROL_ERROR,
                    "connection window overflow",
                ));
            }
            // What crigate sent on local streams is kept from the runtime's count.
            let repaid = self.debt.min(i64::from(increment));
            self.debt -= repaid;
            let forwarded = i64::from(increment) - repaid;
            if self.linked && forwarded > 0 {
                frame::put_window_update(&mut self.to_upstream, 0, forwarded as u32);
            }
            self.release_held();
        } else if let Some(local) = self.local.get_mut(&head.stream) {
            local.window = (local.window + i64::from(increment)).min(frame::MAX_WINDOW);
        } else if self.forwardable(head.stream) {
            self.to_upstream.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// A complete header block from the client: a new request, or trailers.
    fn on_client_block(&mut self, head: Head, block: &[u8]) -> Result<(), Fatal> {
        let stream = head.stream;
        let end_stream = head.has(flag::END_STREAM);
        self.fields.clear();
        let fields = &mut self.fields;
        self.decoder
            .decode_within(block, MAX_HEADER_BLOCK, |name, value| {
                fields.push(name, value);
            })
            .map_err(|error| match error {
                hpack::Error::ListTooLarge(_) => {
                    fatal(code::ENHANCE_YOUR_CALM, "header list too large")
                }
                _ => fatal(code::COMPRESSION_ERROR, "undecodable header block"),
            })?;
        if stream > self.last_stream {
            if stream.is_multiple_of(2) {
                return Err(fatal(code::PROTOCOL_ERROR, "client opened an even stream"));
            }
            self.last_stream = stream;
            self.on_request(stream, end_stream);
            return Ok(());
        }
        // A second block on an open stream: trailers, which must end it.
        if !end_stream {
            return Err(fatal(
                code::PROTOCOL_ERROR,
                "second header block without END_STREAM",
            ));
        }
        if let Err(reason) = trailer_fields(&self.fields) {
            tracing::debug!(stream, reason, "malformed request trailers");
            if self.open.remove(&stream).is_some() {
                // The runtime has the call's head: it is ended there too, and the client
                // hears of it after what the runtime sent on the stream.
                if self.linked {
                    frame::put_rst_stream(&mut self.to_upstream, stream, code::CANCEL);
                }
                self.drop_gate(stream);
                self.reset_after_runtime_frames(stream, code::PROTOCOL_ERROR);
            } else {
                self.refuse(stream, code::PROTOCOL_ERROR);
            }
            return Ok(());
        }
        if let Some(local) = self.local.get_mut(&stream) {
            if !local.request_done {
                local.request_done = true;
                self.start(stream);
            }
        } else if self.forwardable(stream) {
            self.encoded.clear();
            for (name, value) in self.fields.iter() {
                hpack::encode_field(&mut self.encoded, name, value);
            }
            let gate = self.gates.get_mut(&stream).filter(|gate| !gate.forwarded);
            let mut trailers = BytesMut::new();
            let out = if gate.is_some() {
                &mut trailers
            } else {
                &mut self.to_upstream
            };
            frame::put_header_block(out, stream, &self.encoded, true, self.upstream_max_frame);
            if let Some(gate) = gate {
                if !gate.complete {
                    gate.complete = true;
                    gate.frames.push(trailers.freeze());
                    self.to_decide.push(stream);
                }
            }
        }
        Ok(())
    }

    fn on_request(&mut self, stream: u32, end_stream: bool) {
        if let GoAway::Final(last) = self.goaway {
            if stream > last {
                // Sent before the client saw the final GOAWAY: it retries it elsewhere.
                return;
            }
        }
        let state = self.proxy.state();
        let pseudo = match request_line(&self.fields) {
            Ok(pseudo) => pseudo,
            Err(reason) => {
                tracing::debug!(stream, reason, "malformed request");
                self.refuse(stream, code::PROTOCOL_ERROR);
                return;
            }
        };
        if self.open.len() + self.local.len() >= self.max_streams as usize {
            self.refuse(stream, code::REFUSED_STREAM);
            return;
        }
        let path = std::str::from_utf8(pseudo.path);
        let routed = path.map(route);
        let up = self.linked && !self.upstream_draining;
        let relayed = up
            && match routed {
                Ok(Route::Known) => true,
                Ok(Route::UnknownCri) => state.cri.unknown_methods == MethodPolicy::Forward,
                Ok(Route::Other) => state.cri.other_services == MethodPolicy::Forward,
                Ok(Route::Intercept(_)) | Err(_) => false,
            };
        // CreateContainer is decided on a stream already open on the runtime, so an
        // allowed call's request and answer pass as relayed frames. PullImage stays
        // local: crigate reads its answer (the image id) and names the pulled image.
        let gated = match routed {
            Ok(Route::Intercept(method)) if up && !end_stream && method.phase == Phase::Create => {
                match request_head(&pseudo, &self.fields) {
                    Ok(request) => Some((method, request)),
                    Err(reason) => {
                        tracing::debug!(stream, reason, "request crigate cannot represent");
                        self.refuse(stream, code::PROTOCOL_ERROR);
                        return;
                    }
                }
            }
            _ => None,
        };
        if relayed || gated.is_some() {
            let encoded = &mut self.encoded;
            encoded.clear();
            hpack::encode_field(encoded, b":method", pseudo.method);
            hpack::encode_field(encoded, b":scheme", pseudo.scheme);
            // The runtime requires an authority; current kubelets and crictl send `localhost`.
            hpack::encode_field(
                encoded,
                b":authority",
                pseudo.authority.unwrap_or(b"localhost"),
            );
            hpack::encode_field(encoded, b":path", pseudo.path);
            for (name, value) in self.fields.iter().filter(|(n, _)| !n.starts_with(b":")) {
                hpack::encode_field(encoded, name, value);
            }
            frame::put_header_block(
                &mut self.to_upstream,
                stream,
                encoded,
                end_stream,
                self.upstream_max_frame,
            );
            self.open.insert(stream, false);
            if let Some((method, request)) = gated {
                self.gates.insert(
                    stream,
                    Gate {
                        method,
                        request: Some(request),
                        body: BytesMut::new(),
                        frames: Vec::new(),
                        held: 0,
                        complete: false,
                        task: None,
                        forwarded: false,
                        durable: None,
                    },
                );
            }
            return;
        }
        let request = match request_head(&pseudo, &self.fields) {
            Ok(request) => request,
            Err(reason) => {
                tracing::debug!(stream, reason, "request crigate cannot represent");
                self.refuse(stream, code::PROTOCOL_ERROR);
                return;
            }
        };
        self.local.insert(
            stream,
            Local {
                request: Some(request),
                body: BytesMut::new(),
                request_done: end_stream,
                too_large: false,
                task: None,
                window: self.client_initial_window,
                outbox: VecDeque::new(),
            },
        );
        // A call refused for its path alone is answered at once, as grpc-go (the
        // runtime's server) answers a method it does not serve when the call's HEADERS
        // arrive (`handleStream`), not when its request ends: a client that waits for an
        // answer before it ends the request (a bidirectional stream) is not left waiting.
        // The rest of the request is read and let go, and the stream reset with NO_ERROR
        // once answered if it is still open (RFC 9113 §8.1).
        let refusal = match (routed, path) {
            (Ok(Route::UnknownCri), Ok(path))
                if state.cri.unknown_methods == MethodPolicy::Deny =>
            {
                Some(ProxyError::UnknownMethodRefused {
                    path: path.to_owned(),
                })
            }
            (Ok(Route::Other), Ok(path)) if state.cri.other_services == MethodPolicy::Deny => {
                Some(ProxyError::OtherServiceRefused {
                    path: path.to_owned(),
                })
            }
            _ => None,
        };
        if let Some(refusal) = refusal {
            self.answer_now(stream, refusal);
        } else if end_stream {
            self.start(stream);
        }
    }

    /// Answers the local `stream` with `error` without waiting for its request.
    fn answer_now(&mut self, stream: u32, error: ProxyError) {
        let Some(local) = self.local.get_mut(&stream) else {
            return;
        };
        local.request = None;
        local.body = BytesMut::new();
        tracing::debug!(stream, %error, "answered by crigate");
        let events = self.events.clone();
        let task = tokio::spawn(async move {
            answer(stream, error.into_response(), &events).await;
        });
        local.task = Some(task.abort_handle());
    }

    /// Resets a stream the runtime never saw.
    fn refuse(&mut self, stream: u32, error: u32) {
        self.local.remove(&stream);
        self.drop_gate(stream);
        let mut reset = BytesMut::new();
        frame::put_rst_stream(&mut reset, stream, error);
        self.inject(reset.freeze());
    }

    /// Hands a complete local request to [`Proxy::call`] on a task of its own.
    fn start(&mut self, stream: u32) {
        let Some(local) = self.local.get_mut(&stream) else {
            return;
        };
        let Some(head) = local.request.take() else {
            return;
        };
        let body = std::mem::take(&mut local.body).freeze();
        let events = self.events.clone();
        let too_large = local.too_large;
        let proxy = self.proxy.clone();
        let caller = self.caller;
        let task = tokio::spawn(async move {
            let response = if too_large {
                let limit = proxy.state().cri.max_message_bytes;
                let method = match std::str::from_utf8(&head.path).map(route) {
                    Ok(Route::Intercept(method)) => method.name(),
                    _ => "gRPC",
                };
                ProxyError::RequestTooLarge { method, limit }.into_response()
            } else {
                match head.into_request(ProxyBody::full(body)) {
                    Ok(request) => proxy.call(request, caller).await,
                    Err(reason) => {
                        let _ = events
                            .send((stream, Event::Reset(code::PROTOCOL_ERROR)))
                            .await;
                        tracing::debug!(stream, reason, "request crigate cannot represent");
                        return;
                    }
                }
            };
            answer(stream, response, &events).await;
        });
        local.task = Some(task.abort_handle());
    }

    /// Starts deciding a gated call whose request is complete.
    fn decide_gate(&mut self, stream: u32) {
        let Some(gate) = self.gates.get_mut(&stream) else {
            return;
        };
        let Some(head) = gate.request.take() else {
            return;
        };
        let body = std::mem::take(&mut gate.body).freeze();
        let (proxy, caller, method) = (self.proxy.clone(), self.caller, gate.method);
        let mut decision = Box::pin(async move {
            let request = head.into_request(body)?;
            Ok(proxy.gate(method, request, caller).await)
        });
        // With the verdict cached and sinks that take the record at once, the decision
        // completes in its first poll, and the call goes on in this same turn. Otherwise
        // it goes on in a task of its own, which polls it again with its own waker.
        let waker = futures_util::task::noop_waker();
        match decision
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker))
        {
            std::task::Poll::Ready(outcome) => self.on_gated(stream, outcome),
            std::task::Poll::Pending => {
                let events = self.events.clone();
                let task = tokio::spawn(async move {
                    let outcome = decision.await;
                    let _ = events.send((stream, Event::Gated(outcome))).await;
                });
                gate.task = Some(task.abort_handle());
            }
        }
    }

    /// Acts on the decision on a gated call.
    fn on_gated(&mut self, stream: u32, outcome: Result<Gated, &'static str>) {
        if !self.gates.contains_key(&stream) {
            // Reset by the client, or ended by the runtime, meanwhile.
            return;
        }
        match outcome {
            Ok(Gated::Forward(durable)) => {
                let linked = self.linked && self.open.contains_key(&stream);
                let Some(gate) = self.gates.get_mut(&stream).filter(|_| linked) else {
                    return;
                };
                for frame in gate.frames.drain(..) {
                    self.to_upstream.extend_from_slice(&frame);
                }
                gate.held = 0;
                gate.forwarded = true;
                if durable.is_now() {
                    self.drop_gate(stream);
                } else {
                    gate.durable = Some(durable);
                }
            }
            Ok(Gated::Answer(response)) => {
                self.gate_to_local(stream, true);
                if let Some(local) = self.local.get_mut(&stream) {
                    let events = self.events.clone();
                    let task = tokio::spawn(async move {
                        answer(stream, response.await, &events).await;
                    });
                    local.task = Some(task.abort_handle());
                }
            }
            Err(reason) => {
                tracing::debug!(stream, reason, "request crigate cannot represent");
                self.gate_to_local(stream, true);
                if let Some(local) = self.local.get_mut(&stream) {
                    local.outbox.push_back(Out::Reset(code::PROTOCOL_ERROR));
                }
            }
        }
    }

    /// Forgets a gated call, giving back to the client's connection window what it sent
    /// that never reached the runtime.
    fn drop_gate(&mut self, stream: u32) -> Option<Gate> {
        let gate = self.gates.remove(&stream)?;
        if gate.forwarded {
            // Nothing of it is held back any more.
            self.release_held();
        } else if gate.held > 0 {
            self.give_back(0, gate.held);
        }
        Some(gate)
    }

    /// Takes a gated call back from the runtime (RST_STREAM CANCEL: it never saw the
    /// request's body) for crigate to answer as a local stream; its decision task, if
    /// started, carries on as that stream's.
    fn gate_to_local(&mut self, stream: u32, request_done: bool) {
        let Some(mut gate) = self.drop_gate(stream) else {
            return;
        };
        // What the client sent that the runtime never had (none once forwarded).
        let held = gate.held;
        let started = self.open.remove(&stream);
        if self.linked && started.is_some() {
            frame::put_rst_stream(&mut self.to_upstream, stream, code::CANCEL);
        }
        match started {
            // The runtime answered already (it may refuse a call before its body): that
            // answer stands, and the decision's is not wanted.
            None | Some(true) => {
                if started == Some(true) {
                    // After what the runtime sent of its answer, in its order.
                    self.reset_after_runtime_frames(stream, code::CANCEL);
                }
            }
            Some(false) => {
                if !request_done && held > 0 {
                    // The stream's window too, as for the rest of a local request.
                    self.give_back(stream, held);
                }
                self.local.insert(
                    stream,
                    Local {
                        request: gate.request.take(),
                        body: std::mem::take(&mut gate.body),
                        request_done,
                        too_large: false,
                        task: gate.task.take(),
                        window: self.client_initial_window,
                        outbox: VecDeque::new(),
                    },
                );
            }
        }
    }

    /// Whether what the runtime sends on `stream` must wait for the record of its
    /// decision. The first time it is asked of a record not yet durable, a task starts
    /// waiting for it ([`Event::Durable`] ends the wait); a record found durable ends it
    /// at once. Never releases held frames itself: its callers are the ones that do.
    fn awaiting_record(&mut self, stream: u32) -> bool {
        let Some(gate) = self.gates.get_mut(&stream).filter(|gate| gate.forwarded) else {
            return false;
        };
        let Some(mut durable) = gate.durable.take() else {
            // Already waited for by a task.
            return true;
        };
        let waker = futures_util::task::noop_waker();
        if Pin::new(&mut durable)
            .poll(&mut std::task::Context::from_waker(&waker))
            .is_ready()
        {
            self.gates.remove(&stream);
            return false;
        }
        let events = self.events.clone();
        let task = tokio::spawn(async move {
            durable.await;
            let _ = events.send((stream, Event::Durable)).await;
        });
        gate.task = Some(task.abort_handle());
        true
    }

    // --- local answers ---

    fn on_event(&mut self, stream: u32, event: Event) {
        match event {
            Event::Gated(outcome) => {
                self.on_gated(stream, outcome);
                return;
            }
            Event::Durable => {
                if self.gates.get(&stream).is_some_and(|gate| gate.forwarded) {
                    self.drop_gate(stream);
                }
                return;
            }
            _ => {}
        }
        let Some(local) = self.local.get_mut(&stream) else {
            return;
        };
        match event {
            Event::Head(parts, end) => {
                let mut block = Vec::new();
                hpack::encode_field(&mut block, b":status", parts.status.as_str().as_bytes());
                encode_headers(&mut block, &parts.headers);
                local.outbox.push_back(Out::Block { block, end });
            }
            Event::Data(data, sent) => local.outbox.push_back(Out::Data {
                data,
                end: false,
                sent: Some(sent),
            }),
            Event::Trailers(trailers) => {
                let mut block = Vec::new();
                encode_headers(&mut block, &trailers);
                local.outbox.push_back(Out::Block { block, end: true });
            }
            Event::End => local.outbox.push_back(Out::Data {
                data: Bytes::new(),
                end: true,
                sent: None,
            }),
            // What is still unsent is not wanted any more: the reset goes first, and does
            // not wait for the client to take it (crigate's own blocks never touch the
            // client's HPACK table, so dropping one unsent costs nothing).
            Event::Reset(error) => {
                local.outbox.clear();
                local.outbox.push_back(Out::Reset(error));
            }
            Event::Gated(_) | Event::Durable => {}
        }
    }

    /// Frames what local streams have to send, as far as the client's windows allow.
    fn flush_local(&mut self) {
        if self.written_block_open || self.preface_awaited() {
            return;
        }
        while let Some(frame) = self.injected.pop_front() {
            self.to_client.extend_from_slice(&frame);
        }
        let mut done = Vec::new();
        for (&stream, local) in &mut self.local {
            let mut finished = false;
            while let Some(out) = local.outbox.front_mut() {
                match out {
                    Out::Block { block, end } => {
                        let block = own_block(&mut self.table_update_due, block);
                        frame::put_header_block(
                            &mut self.to_client,
                            stream,
                            &block,
                            *end,
                            self.client_max_frame,
                        );
                        finished = *end;
                    }
                    Out::Data { data, end, sent } => {
                        let room = local.window.min(self.client_window).max(0) as usize;
                        let n = data.len().min(room).min(self.client_max_frame);
                        if n == 0 && !data.is_empty() {
                            break;
                        }
                        let chunk = data.split_to(n);
                        let last = data.is_empty();
                        let flags = if last && *end { flag::END_STREAM } else { 0 };
                        frame::put(&mut self.to_client, kind::DATA, flags, stream, &chunk);
                        local.window -= n as i64;
                        self.client_window -= n as i64;
                        self.debt += n as i64;
                        if !last {
                            continue;
                        }
                        if let Some(sent) = sent.take() {
                            let _ = sent.send(());
                        }
                        finished = *end;
                    }
                    Out::Reset(error) => {
                        frame::put_rst_stream(&mut self.to_client, stream, *error);
                        finished = true;
                        local.request_done = true;
                    }
                }
                local.outbox.pop_front();
                if finished {
                    break;
                }
            }
            if finished {
                if !local.request_done {
                    // The answer is complete; the rest of the request is not wanted
                    // (RFC 9113 §8.1).
                    frame::put_rst_stream(&mut self.to_client, stream, code::NO_ERROR);
                }
                done.push(stream);
            }
        }
        for stream in done {
            self.local.remove(&stream);
        }
    }

    /// Resets `stream` on the client's connection with `error`, behind the runtime frames
    /// already received (written or held), and after the runtime's open header block, if
    /// one is: the client must not see the stream end before what the runtime sent on it.
    fn reset_after_runtime_frames(&mut self, stream: u32, error: u32) {
        if self.upstream_block_open {
            self.resets_after_block.push((stream, error));
            return;
        }
        let mut reset = BytesMut::new();
        frame::put_rst_stream(&mut reset, stream, error);
        let head = Head {
            len: 4,
            kind: kind::RST_STREAM,
            flags: 0,
            stream,
        };
        self.relay_to_client(head, reset.freeze());
    }

    /// Whether the runtime's SETTINGS, the server preface that must be the first frame the
    /// client receives (RFC 9113 §3.4), have yet to come; frames of crigate's own wait.
    fn preface_awaited(&self) -> bool {
        self.linked && !self.upstream_settings_seen
    }

    /// Sends a frame of crigate's own to the client, after any open runtime header block.
    fn inject(&mut self, frame: Bytes) {
        if self.written_block_open || self.preface_awaited() || !self.injected.is_empty() {
            self.injected.push_back(frame);
        } else {
            self.to_client.extend_from_slice(&frame);
        }
    }

    /// Gives the client back `increment` bytes of window on `stream` (0: the connection,
    /// through [`Relay::owe_window`]) for bytes the runtime never had.
    fn give_back(&mut self, stream: u32, increment: u32) {
        if stream == 0 {
            self.owe_window(increment);
            return;
        }
        let mut update = BytesMut::new();
        frame::put_window_update(&mut update, stream, increment);
        self.inject(update.freeze());
    }

    /// Owes the client `increment` bytes more of connection window: the runtime's
    /// increments, and what crigate took off the client's window that the runtime never
    /// had. grpc-go, containerd's server, sends an increment after nearly every request
    /// body; relayed one by one, each would cost crigate a write and wake the client while
    /// the runtime works on its call. Flow control is per hop (RFC 9113 §5.2.1), and the
    /// client's window stays within the runtime's, so the increments are paid together
    /// once the client has used as much window as it is owed (at least half of what it
    /// could have, as h2 sizes its own WINDOW_UPDATEs), or has less than half the
    /// initial window left.
    fn owe_window(&mut self, increment: u32) {
        self.window_owed += i64::from(increment);
        self.pay_window_if_due();
    }

    fn pay_window_if_due(&mut self) {
        let due = self.window_owed > 0
            && (self.client_send_window <= self.window_owed
                || self.client_send_window < frame::DEFAULT_WINDOW / 2);
        if !due {
            return;
        }
        // A runtime that grants past the largest window is not relayed into an overflow.
        let increment = self
            .window_owed
            .min(frame::MAX_WINDOW - self.client_send_window.max(0));
        self.window_owed = 0;
        if increment <= 0 {
            return;
        }
        self.client_send_window += increment;
        let mut update = BytesMut::new();
        frame::put_window_update(&mut update, 0, increment as u32);
        self.inject(update.freeze());
    }

    fn inject_settings(&mut self) {
        let settings = self.own_settings();
        self.inject(settings.freeze());
    }

    /// crigate's SETTINGS, when it is the server on the client's connection.
    fn own_settings(&self) -> BytesMut {
        let mut settings = BytesMut::new();
        frame::put_settings(
            &mut settings,
            &[
                (setting::MAX_CONCURRENT_STREAMS, self.max_streams),
                (setting::MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST),
            ],
        );
        settings
    }

    /// Starts the two-step GOAWAY, once.
    fn go_away(&mut self) {
        if self.goaway != GoAway::None {
            return;
        }
        self.goaway = GoAway::Announced;
        self.goaway_deadline = Some(tokio::time::Instant::now() + GOAWAY_ACK_WAIT);
        let mut frames = BytesMut::new();
        frame::put_goaway(&mut frames, (1 << 31) - 1, code::NO_ERROR);
        frame::put_ping(&mut frames, false, GOAWAY_PING);
        self.inject(frames.freeze());
    }

    /// The second step of [`Relay::go_away`], once the client has answered its PING (so
    /// every stream it opened before the first GOAWAY has reached crigate), or once it
    /// has had [`GOAWAY_ACK_WAIT`] to: a client that never answers must not keep the
    /// connection taking new streams.
    fn final_goaway(&mut self) {
        if self.goaway != GoAway::Announced {
            return;
        }
        self.goaway = GoAway::Final(self.last_stream);
        self.goaway_deadline = None;
        let mut goaway = BytesMut::new();
        frame::put_goaway(&mut goaway, self.last_stream, self.goaway_code);
        self.inject(goaway.freeze());
    }

    // --- from the runtime ---

    fn on_upstream_bytes(&mut self, buf: &mut BytesMut) {
        while let Some((head, bytes)) = frame::next(buf) {
            self.on_upstream_frame(head, bytes);
        }
    }

    fn on_upstream_frame(&mut self, head: Head, bytes: Bytes) {
        let ends = match head.kind {
            kind::HEADERS | kind::DATA => head.has(flag::END_STREAM),
            kind::RST_STREAM => true,
            _ => false,
        };
        if ends
            && self
                .gates
                .get(&head.stream)
                .is_some_and(|gate| !gate.forwarded)
        {
            // The runtime ended a gated call before it had the body: its answer stands.
            self.drop_gate(head.stream);
        }
        if matches!(head.kind, kind::HEADERS | kind::DATA | kind::RST_STREAM)
            && !self.local.is_empty()
            && self.local.remove(&head.stream).is_some()
        {
            // A gated call crigate took back to answer itself (and cancelled on the
            // runtime), whose answer from the runtime was already on its way: that answer
            // stands, as it would have a moment earlier, and crigate's is not sent (the
            // client must not get two). Only a gated call's stream is ever open on the
            // runtime and local at once.
            tracing::debug!(
                stream = head.stream,
                "the runtime answered a call crigate had taken back; its answer stands"
            );
        }
        match head.kind {
            kind::HEADERS | kind::PUSH_PROMISE | kind::CONTINUATION => {
                self.upstream_block_open = !head.has(flag::END_HEADERS);
                if head.kind == kind::HEADERS {
                    if head.has(flag::END_STREAM) {
                        self.open.remove(&head.stream);
                    } else if let Some(started) = self.open.get_mut(&head.stream) {
                        *started = true;
                    }
                }
                self.relay_to_client(head, bytes);
                if !self.upstream_block_open {
                    for (stream, error) in std::mem::take(&mut self.resets_after_block) {
                        self.reset_after_runtime_frames(stream, error);
                    }
                }
            }
            kind::DATA => {
                if head.has(flag::END_STREAM) {
                    self.open.remove(&head.stream);
                }
                self.relay_to_client(head, bytes);
            }
            kind::RST_STREAM => {
                self.open.remove(&head.stream);
                self.relay_to_client(head, bytes);
            }
            kind::SETTINGS => {
                if head.has(flag::ACK) {
                    self.unacked_settings = self.unacked_settings.saturating_sub(1);
                    self.relay_to_client(head, bytes);
                } else {
                    let bytes = self.upstream_settings(bytes);
                    self.relay_to_client(head, bytes);
                }
            }
            kind::GOAWAY => {
                let payload = &bytes[frame::HEAD_LEN..];
                let last = frame::u31(payload).unwrap_or(0);
                let error = frame::goaway_error(payload).unwrap_or(code::NO_ERROR);
                tracing::debug!(
                    last_stream = last,
                    error,
                    "the runtime is closing the connection"
                );
                self.upstream_draining = true;
                if error != code::NO_ERROR {
                    self.goaway_code = error;
                }
                let refused: Vec<u32> = self.open.keys().copied().filter(|&s| s > last).collect();
                for stream in refused {
                    // Not processed by the runtime: the client may retry it.
                    self.open.remove(&stream);
                    self.refuse(stream, code::REFUSED_STREAM);
                }
                self.go_away();
            }
            kind::PING if !head.has(flag::ACK) => {
                match <[u8; 8]>::try_from(&bytes[frame::HEAD_LEN..]) {
                    // Written between whole frames: crigate sends the runtime only whole
                    // header blocks.
                    Ok(opaque) if self.client_settings_sent => {
                        frame::put_ping(&mut self.to_upstream, true, opaque);
                    }
                    // Nothing may reach the runtime before the client's preface and its
                    // SETTINGS (RFC 9113 §3.4): the answer waits for them (a runtime
                    // pings at most a few times before it hears from the client).
                    Ok(opaque) => {
                        if self.early_pongs.len() < MAX_EARLY_PONGS {
                            self.early_pongs.push(opaque);
                        }
                    }
                    // Malformed: the client rejects it as it would the runtime's own.
                    Err(_) => self.relay_to_client(head, bytes),
                }
            }
            // An ACK answers a PING of crigate's connection to the runtime; crigate sends
            // none (the client's are answered here), so it is nobody's.
            kind::PING if bytes.len() == frame::HEAD_LEN + 8 => {}
            kind::WINDOW_UPDATE if head.stream == 0 => {
                match frame::u31(&bytes[frame::HEAD_LEN..]).filter(|&n| head.len == 4 && n > 0) {
                    Some(increment) => self.owe_window(increment),
                    // Malformed: the client rejects it as it would the runtime's own.
                    None => self.relay_to_client(head, bytes),
                }
            }
            _ => self.relay_to_client(head, bytes),
        }
    }

    /// Reads the runtime's SETTINGS, and lowers its stream limit to crigate's.
    fn upstream_settings(&mut self, bytes: Bytes) -> Bytes {
        let Ok(params) = frame::settings(&bytes[frame::HEAD_LEN..]) else {
            // The client will reject it as the runtime sent it.
            return bytes;
        };
        let ours = self.max_streams;
        let mut rewritten = Vec::new();
        let mut limited = false;
        let mut list_limited = false;
        for (id, value) in params {
            let value = match id {
                setting::HEADER_TABLE_SIZE => {
                    // The client's encoder may use what crigate's decoder allows, no more.
                    let value = value.min(MAX_HPACK_TABLE);
                    self.decoder.set_allowed_size(value as usize);
                    value
                }
                setting::MAX_FRAME_SIZE => {
                    self.upstream_max_frame = value
                        .clamp(frame::DEFAULT_MAX_FRAME_SIZE, frame::MAX_FRAME_SIZE_LIMIT)
                        as usize;
                    value
                }
                setting::MAX_CONCURRENT_STREAMS => {
                    limited = true;
                    value.min(ours)
                }
                setting::INITIAL_WINDOW_SIZE => {
                    self.upstream_initial_window = value;
                    value
                }
                // The client may send what both crigate and the runtime accept.
                setting::MAX_HEADER_LIST_SIZE => {
                    list_limited = true;
                    value.min(MAX_HEADER_LIST)
                }
                _ => value,
            };
            rewritten.push((id, value));
        }
        if !self.upstream_settings_seen {
            if !limited {
                rewritten.push((setting::MAX_CONCURRENT_STREAMS, ours));
            }
            if !list_limited {
                rewritten.push((setting::MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST));
            }
        }
        self.upstream_settings_seen = true;
        let mut out = BytesMut::new();
        frame::put_settings(&mut out, &rewritten);
        out.freeze()
    }

    /// Passes a runtime frame to the client, or holds it (and all after it, keeping the
    /// order of header blocks the client's HPACK decoder follows) while the client's
    /// window cannot take it or while it answers a call whose record is not yet durable.
    fn relay_to_client(&mut self, head: Head, bytes: Bytes) {
        if self.held.is_empty() && self.fits(&head) && !self.awaiting_record(head.stream) {
            self.write_upstream_frame(&head, &bytes);
        } else {
            self.held_bytes += bytes.len();
            self.held.push_back(bytes);
        }
    }

    fn fits(&self, head: &Head) -> bool {
        head.kind != kind::DATA || self.client_window >= head.len as i64
    }

    fn write_upstream_frame(&mut self, head: &Head, bytes: &[u8]) {
        match head.kind {
            kind::DATA => self.client_window -= head.len as i64,
            kind::HEADERS | kind::PUSH_PROMISE | kind::CONTINUATION => {
                // The runtime begins its blocks with the update the client's decoder
                // waits for; crigate's own, put in this order, already carry it.
                if head.kind != kind::CONTINUATION {
                    self.table_update_due = None;
                }
                self.written_block_open = !head.has(flag::END_HEADERS);
            }
            kind::SETTINGS if head.has(flag::ACK) => {
                let table_size = self.unacked_table_sizes.pop_front().flatten();
                self.client_settings_acknowledged(table_size);
            }
            _ => {}
        }
        self.to_client.extend_from_slice(bytes);
    }

    fn release_held(&mut self) {
        while let Some(bytes) = self.held.front() {
            let Some(head) = Head::parse(bytes) else {
                self.held_bytes -= bytes.len();
                self.held.pop_front();
                continue;
            };
            if !self.fits(&head) || self.awaiting_record(head.stream) {
                break;
            }
            if let Some(bytes) = self.held.pop_front() {
                self.held_bytes -= bytes.len();
                self.write_upstream_frame(&head, &bytes);
            }
        }
    }

    /// The runtime connection is gone: open streams get UNAVAILABLE, and from now on
    /// crigate answers everything on this connection itself.
    fn orphan(&mut self, reason: &str) {
        if !self.linked {
            return;
        }
        self.linked = false;
        self.to_upstream.clear();
        tracing::warn!(upstream = %self.socket.display(), reason, open_calls = self.open.len(), "lost the runtime connection");
        if self.upstream_block_open {
            // The runtime stopped inside a header block: nothing more can be sent.
            self.broken = true;
            return;
        }
        let error = ProxyError::UpstreamReset {
            socket: self.socket.clone(),
            reason: reason.to_owned(),
        };
        let response = error.into_response();
        if !self.upstream_settings_seen {
            // A server's first frame is its SETTINGS (RFC 9113 §3.4): the runtime never
            // sent the one crigate passes on, so crigate sends its own, first: before
            // what it queued meanwhile and what it answers below.
            self.upstream_settings_seen = true;
            let mut first = self.own_settings();
            first.extend_from_slice(&self.to_client);
            self.to_client = first;
        }
        let mut frames = BytesMut::new();
        // Its blocks follow the acknowledgements below and every runtime frame held, and
        // no runtime block follows them: each begins with an update to the smallest table
        // size due or about to be acknowledged, which whatever the client's decoder then
        // waits for accepts (RFC 7541 §4.2).
        let orphan_update = self
            .unacked_table_sizes
            .iter()
            .flatten()
            .copied()
            .chain(self.table_update_due)
            .min();
        for _ in 0..std::mem::take(&mut self.unacked_settings) {
            frame::put_settings_ack(&mut frames);
        }
        // Calls still being decided never reach the runtime; those already sent on keep
        // their gate until their record is durable.
        let deciding: Vec<u32> = self
            .gates
            .iter()
            .filter(|(_, gate)| !gate.forwarded)
            .map(|(&stream, _)| stream)
            .collect();
        for stream in deciding {
            self.drop_gate(stream);
        }
        let open: Vec<(u32, bool)> = self.open.drain().collect();
        for (stream, started) in open {
            let mut block = Vec::new();
            if !started {
                hpack::encode_field(&mut block, b":status", b"200");
                encode_headers(&mut block, response.headers());
            } else {
                for (name, value) in response.headers() {
                    if name.as_str().starts_with("grpc-") {
                        hpack::encode_field(&mut block, name.as_str().as_bytes(), value.as_bytes());
                    }
                }
            }
            let mut due = orphan_update;
            let block = own_block(&mut due, &block);
            frame::put_header_block(&mut frames, stream, &block, true, self.client_max_frame);
        }
        // Behind any runtime frames still held for the client's window.
        let mut frames = frames.freeze();
        while let Some(head) = Head::parse(&frames) {
            let one = frames.split_to(frame::HEAD_LEN + head.len);
            self.relay_to_client(head, one);
        }
    }
}

/// A header block of crigate's own, begun with the table size update the client's decoder
/// waits for, `due`, if it waits for one.
fn own_block(due: &mut Option<u32>, block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + 6);
    if let Some(size) = due.take() {
        hpack::encode_size_update(&mut out, size);
    }
    out.extend_from_slice(block);
    out
}

/// Completes at `deadline`, or never without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

async fn read_upstream(upstream: &Option<Socket>, buf: &mut BytesMut) -> std::io::Result<usize> {
    match upstream {
        Some(socket) => socket.read(buf).await,
        None => std::future::pending().await,
    }
}

/// A unix stream the runtime watches for reading only. Registered for writing too (as
/// tokio's `UnixStream` is), every write would wake the runtime again once the peer had
/// read it (an edge-triggered EPOLLOUT): a third of the relay's wake-ups. A write that
/// finds the socket full waits on a duplicate of the descriptor registered for writing
/// just for that wait.
struct Socket {
    fd: AsyncFd<std::os::unix::net::UnixStream>,
}

impl Socket {
    fn new(stream: UnixStream) -> std::io::Result<Self> {
        let stream = stream.into_std()?;
        Ok(Self {
            fd: register(stream, Interest::READABLE)?,
        })
    }

    /// Reads what is there into `buf`'s spare capacity, made first if it is low;
    /// `Ok(0)` when the peer closed.
    async fn read(&self, buf: &mut BytesMut) -> std::io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            // A read into no room would look like the peer closing.
            reserve(buf);
            let room = buf.capacity() - buf.len();
            match ready.try_io(|fd| read_into(fd.get_ref(), buf)) {
                Ok(Ok(n)) => {
                    if n > 0 && n < room {
                        // A stream socket read short is drained: wait for the next edge.
                        ready.clear_ready();
                    }
                    return Ok(n);
                }
                Ok(Err(error)) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => {}
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        use std::io::{ErrorKind, Write};
        while !data.is_empty() {
            match (&mut self.fd.get_ref()).write(data) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    let waiter = register(self.fd.get_ref().try_clone()?, Interest::WRITABLE)?;
                    let _ready = waiter.writable().await?;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn shutdown_write(&self) -> std::io::Result<()> {
        self.fd.get_ref().shutdown(std::net::Shutdown::Write)
    }
}

/// One read(2) from `stream` straight into `buf`'s spare capacity, with no copy through
/// an initialised buffer (the frames split from `buf` then go out as they came in).
#[allow(unsafe_code)]
fn read_into(
    stream: &std::os::unix::net::UnixStream,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let spare = buf.spare_capacity_mut();
    let room = spare.len();
    // SAFETY: `spare` is memory `buf` owns and no one else refers to while it is
    // borrowed here; read(2) writes at most `room` bytes into it and touches nothing
    // else.
    let read = unsafe { libc::read(stream.as_raw_fd(), spare.as_mut_ptr().cast(), room) };
    let Ok(read) = usize::try_from(read) else {
        return Err(std::io::Error::last_os_error());
    };
    // SAFETY: read(2) initialised the first `read` bytes of the spare capacity, and
    // reports no more than it was given room for.
    unsafe { buf.set_len(buf.len() + read.min(room)) };
    Ok(read)
}

/// Registers `stream` with the runtime's reactor for `interest` only.
#[allow(unsafe_code)]
fn register(
    stream: std::os::unix::net::UnixStream,
    interest: Interest,
) -> std::io::Result<AsyncFd<std::os::unix::net::UnixStream>> {
    // SAFETY: the `AsyncFd` takes `stream` by value and owns it until it is dropped, so
    // its descriptor stays open and names the same socket for as long as it is
    // registered: what `register_with_interest` requires.
    Ok(unsafe { AsyncFd::register_with_interest(stream, interest) }?)
}

fn encode_headers(block: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        hpack::encode_field(block, name.as_str().as_bytes(), value.as_bytes());
    }
}

fn request_head(pseudo: &Pseudo<'_>, fields: &Fields) -> Result<RequestHead, &'static str> {
    let mut headers = HeaderMap::new();
    for (name, value) in fields.iter().filter(|(n, _)| !n.starts_with(b":")) {
        let name = HeaderName::from_bytes(name).map_err(|_| "invalid field name")?;
        let value = HeaderValue::from_bytes(value).map_err(|_| "invalid field value")?;
        headers.append(name, value);
    }
    Ok(RequestHead {
        method: pseudo.method.to_vec(),
        authority: pseudo.authority.map(<[u8]>::to_vec),
        path: pseudo.path.to_vec(),
        headers,
    })
}

impl RequestHead {
    /// The request as crigate's own calls take it.
    ///
    /// An authority the `http` crate cannot hold is left out, and the runtime gets
    /// `localhost` in its place, as for a client that sent none. Clients send such
    /// authorities for unix sockets: grpc-go names a socket it dials by its bare path
    /// (`/run/crigate/crigate.sock`, as older kubelets and crictl send), gRPC C-core by
    /// its path percent-encoded (`run%2Fcrigate%2Fcrigate.sock`). The runtime's gRPC
    /// server takes them, so crigate serves them too; relayed calls keep the client's
    /// bytes.
    fn into_request<B>(self, body: B) -> Result<Request<B>, &'static str> {
        let method = Method::from_bytes(&self.method).map_err(|_| "invalid :method")?;
        let mut uri = Uri::builder();
        let authority = self
            .authority
            .and_then(|authority| Authority::try_from(authority).ok());
        if let Some(authority) = authority {
            uri = uri.scheme("http").authority(authority);
        }
        let uri = uri
            .path_and_query(self.path.as_slice())
            .build()
            .map_err(|_| "invalid :path or :authority")?;
        // The `http` crate cuts a `#` and what follows from a path: routed again on what
        // is left, `/…/RemovePodSandbox#x` would run a method the runtime, which routes
        // on the whole path, does not know.
        if uri.path_and_query().map(|p| p.as_str().as_bytes()) != Some(self.path.as_slice()) {
            return Err(":path the runtime would read otherwise");
        }
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = http::Version::HTTP_2;
        *request.headers_mut() = self.headers;
        Ok(request)
    }
}

/// Streams a local answer to the connection as events.
async fn answer<B>(stream: u32, response: http::Response<B>, events: &mpsc::Sender<(u32, Event)>)
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let (parts, mut body) = response.into_parts();
    let end = http_body::Body::is_end_stream(&body);
    if events
        .send((stream, Event::Head(parts, end)))
        .await
        .is_err()
        || end
    {
        return;
    }
    // The body is read on while the connection frames what came before, but never more
    // than one piece ahead of it: what a slow client has not taken stays in the runtime.
    let mut framing: Option<oneshot::Receiver<()>> = None;
    loop {
        let event = match body.frame().await {
            None => Event::End,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if let Some(framed) = framing.take() {
                        match tokio::time::timeout(LOCAL_ANSWER_STALL, framed).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => return,
                            Err(_) => {
                                tracing::debug!(stream, "the client took nothing of an answer for too long; resetting it");
                                let _ = events.send((stream, Event::Reset(code::CANCEL))).await;
                                return;
                            }
                        }
                    }
                    let (sent, framed) = oneshot::channel();
                    if events
                        .send((stream, Event::Data(data, sent)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    framing = Some(framed);
                    continue;
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => Event::Trailers(trailers),
                    Err(_) => continue,
                },
            },
            Some(Err(error)) => {
                tracing::debug!(stream, %error, "the runtime broke off an answer");
                Event::Reset(code::INTERNAL_ERROR)
            }
        };
        let _ = events.send((stream, event)).await;
        return;
    }
}

/// Decodes `data` as header blocks a client sends on one connection (each after a
/// two-byte length), checks each as a request, and re-encodes what would be relayed:
/// it must decode back to the same fields.
#[doc(hidden)]
pub fn fuzz_header_blocks(data: &[u8]) {
    let mut decoder = hpack::Decoder::new();
    let mut fields = Fields::default();
    let mut rest = data;
    while let [high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low])).min(tail.len());
        let (block, tail) = tail.split_at(len);
        rest = tail;
        fields.clear();
        if decoder
            .decode_within(block, MAX_HEADER_BLOCK, |n, v| fields.push(n, v))
            .is_err()
        {
            return;
        }
        let Ok(pseudo) = request_line(&fields) else {
            continue;
        };
        let mut encoded = Vec::new();
        for (name, value) in fields.iter() {
            hpack::encode_field(&mut encoded, name, value);
        }
        let mut again = Fields::default();
        let decoded = hpack::Decoder::new().decode(&encoded, |n, v| again.push(n, v));
        assert!(decoded.is_ok());
        assert!(again.iter().eq(fields.iter()));
        if let Ok(head) = request_head(&pseudo, &fields) {
            let _ = head.into_request(Bytes::new());
        }
    }
}

#[doc(hidden)]
pub mod fuzz;
#[cfg(test)]
mod gate_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod ping_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> Fields {
        let mut fields = Fields::default();
        for (name, value) in list {
            fields.push(name.as_bytes(), value.as_bytes());
        }
        fields
    }

    const GOOD: &[(&str, &str)] = &[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/runtime.v1.RuntimeService/Version"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];

    #[test]
    fn a_grpc_request_line_is_read() {
        let fields = fields(GOOD);
        let pseudo = request_line(&fields).unwrap();
        assert_eq!(pseudo.path, b"/runtime.v1.RuntimeService/Version");
        assert_eq!(pseudo.authority, Some(&b"localhost"[..]));
    }

    #[test]
    fn malformed_requests_are_refused() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(":method", "POST"), (":scheme", "http")],
                "request without :method, :scheme or :path",
            ),
            (
                &[
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/runtime.v1.RuntimeService/Version"),
                    (":path", "/runtime.v1.ImageService/PullImage"),
                ],
                "repeated pseudo-header field",
            ),
            (
                &[
                    (":method", "POST"),
                    ("content-type", "application/grpc"),
                    (":path", "/a/b"),
                    (":scheme", "http"),
                ],
                "pseudo-header field after a regular field",
            ),
            (
                &[
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/a/b"),
                    ("Upper", "x"),
                ],
                "invalid field name",
            ),
            (
                &[
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/a/b"),
                    ("connection", "close"),
                ],
                "connection-specific field",
            ),
            (
                &[
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/a/b"),
                    ("x", "a\nb"),
                ],
                "NUL, CR or LF in a field value",
            ),
            (
                &[(":method", "POST"), (":scheme", "http"), (":path", "")],
                "empty :path",
            ),
            (
                &[
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/a/b"),
                    (":status", "200"),
                ],
                "unknown pseudo-header field in a request",
            ),
        ];
        for (list, reason) in cases {
            let fields = fields(list);
            assert_eq!(request_line(&fields).err(), Some(*reason), "{list:?}");
        }
    }

    #[test]
    fn trailers_carry_no_pseudo_headers() {
        assert!(trailer_fields(&fields(&[("grpc-status", "0")])).is_ok());
        assert!(trailer_fields(&fields(&[(":path", "/x")])).is_err());
    }

    /// A relay whose runtime is not there, fed bytes by hand.
    pub(super) fn detached_relay() -> Relay {
        detached_relay_with("")
    }

    /// [`detached_relay`], with `cri` lines added to its configuration.
    pub(super) fn detached_relay_with(cri: &str) -> Relay {
        let text = format!(
            "[cri]\nlisten = \"/nonexistent/crigate.sock\"\n\
             upstream = \"/nonexistent/runtime.sock\"\n{cri}"
        );
        let config = crate::config::Config::parse(&text, Path::new("test.toml")).unwrap();
        let proxy = Arc::new(Proxy::new(config.cri, Arc::new(crate::decision::AllowAll)));
        let (events, _) = mpsc::channel(1);
        let caller = Caller {
            pid: None,
            uid: 0,
            gid: 0,
        };
        Relay::new(proxy, caller, Path::new("/nonexistent").into(), events)
    }

    /// A header block of `list`, as literals.
    pub(super) fn block(list: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        for (name, value) in list {
            hpack::encode_field(&mut block, name.as_bytes(), value.as_bytes());
        }
        block
    }

    /// The fields of [`GOOD`], calling `path`.
    pub(super) fn calling(path: &'static str) -> Vec<(&'static str, &'static str)> {
        GOOD.iter()
            .map(|&(name, value)| {
                if name == ":path" {
                    (name, path)
                } else {
                    (name, value)
                }
            })
            .collect()
    }

    /// The frames written to the client so far, taken out.
    pub(super) fn written(relay: &mut Relay) -> Vec<(Head, Bytes)> {
        let mut bytes = std::mem::take(&mut relay.to_client);
        std::iter::from_fn(|| frame::next(&mut bytes)).collect()
    }

    pub(super) fn hello() -> BytesMut {
        let mut buf = BytesMut::from(frame::PREFACE);
        frame::put_settings(&mut buf, &[]);
        buf
    }

    #[test]
    fn a_header_block_expanding_past_the_limit_is_refused_without_being_kept() {
        // A 4,000-byte field added to the HPACK table (RFC 7541 §6.2.1), then 12,000
        // one-byte references to it (index 62, §6.1): a 16 KB frame that names 48 MB of
        // fields.
        let mut block = vec![0x40, 0x01, b'x', 0x7f];
        let mut rest = 4000 - 127;
        while rest >= 128 {
            block.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        block.push(rest as u8);
        block.extend(std::iter::repeat_n(b'a', 4000));
        block.extend(std::iter::repeat_n(0xbe, 12_000));
        let mut buf = hello();
        frame::put(&mut buf, kind::HEADERS, flag::END_HEADERS, 1, &block);
        let mut relay = detached_relay();
        let refused = relay.on_client_bytes(&mut buf).err().unwrap();
        assert_eq!(
            (refused.code, refused.reason),
            (code::ENHANCE_YOUR_CALM, "header list too large")
        );
        assert!(
            relay.fields.arena.capacity() <= 2 * MAX_HEADER_BLOCK,
            "{} bytes kept",
            relay.fields.arena.capacity()
        );
    }

    #[test]
    fn a_frame_longer_than_the_runtime_accepts_is_refused_before_it_is_read() {
        let mut buf = hello();
        // The head of a HEADERS frame of 16 MiB, the most a length can say; its payload
        // need never arrive.
        buf.extend_from_slice(&[
            0xff,
            0xff,
            0xff,
            kind::HEADERS,
            flag::END_HEADERS,
            0,
            0,
            0,
            1,
        ]);
        let mut relay = detached_relay();
        let refused = relay.on_client_bytes(&mut buf).err().unwrap();
        assert_eq!(refused.code, code::FRAME_SIZE_ERROR);
        assert!(
            buf.capacity() < 1 << 20,
            "{} bytes reserved",
            buf.capacity()
        );
        // Before the runtime's SETTINGS, the limit is the default of 16,384 bytes: a frame
        // of that length is read (one of an unknown type, ignored), one byte more is not.
        let mut relay = detached_relay();
        let mut buf = hello();
        frame::put(&mut buf, 0xfa, 0, 0, &[0; 16_384]);
        relay
            .on_client_bytes(&mut buf)
            .map_err(|e| e.reason)
            .unwrap();
        assert!(buf.is_empty());
        frame::put(&mut buf, 0xfa, 0, 0, &[0; 16_385]);
        let refused = relay.on_client_bytes(&mut buf).err().unwrap();
        assert_eq!(refused.code, code::FRAME_SIZE_ERROR);
    }

    #[test]
    fn malformed_trailers_end_a_relayed_call_on_both_connections() {
        let mut relay = detached_relay();
        relay.linked = true;
        let mut buf = hello();
        frame::put(&mut buf, kind::HEADERS, flag::END_HEADERS, 1, &block(GOOD));
        frame::put(&mut buf, kind::DATA, 0, 1, &[0, 0, 0, 0, 0]);
        relay.on_client_bytes(&mut buf).unwrap();
        assert!(relay.open.contains_key(&1));
        relay.to_upstream.clear();
        // Trailers may carry no pseudo-header (RFC 9113 §8.1).
        let trailers = block(&[(":path", "/x")]);
        let mut buf = BytesMut::new();
        frame::put(
            &mut buf,
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &trailers,
        );
        relay.on_client_bytes(&mut buf).unwrap();
        let mut reset = BytesMut::new();
        frame::put_rst_stream(&mut reset, 1, code::CANCEL);
        assert_eq!(&relay.to_upstream[..], &reset[..]);
        assert!(relay.open.is_empty());
    }

    /// A relay linked to a runtime, and the client's preface with the head of a
    /// CreateContainer on stream 1, for the relay to read.
    fn create_on_stream_1() -> (Relay, BytesMut) {
        let mut relay = detached_relay();
        relay.linked = true;
        let mut buf = hello();
        let create = calling("/runtime.v1.RuntimeService/CreateContainer");
        frame::put(
            &mut buf,
            kind::HEADERS,
            flag::END_HEADERS,
            1,
            &block(&create),
        );
        (relay, buf)
    }

    /// A gated call the runtime began to answer, in a header block split over two frames,
    /// is reset on the client's connection only once that block has ended: no frame of
    /// crigate's own may come between a block's frames (RFC 9113 §4.3).
    #[test]
    fn a_reset_waits_for_the_runtimes_open_header_block_to_end() {
        let (mut relay, mut buf) = create_on_stream_1();
        relay.on_client_bytes(&mut buf).unwrap();
        assert!(relay.gates.contains_key(&1));
        relay.to_client.clear();

        let answer = block(&[(":status", "200"), ("content-type", "application/grpc")]);
        let (first, rest) = answer.split_at(4);
        let mut up = BytesMut::new();
        frame::put(&mut up, kind::HEADERS, 0, 1, first);
        relay.on_upstream_bytes(&mut up);
        relay.gate_to_local(1, false);
        let mut up = BytesMut::new();
        frame::put(&mut up, kind::CONTINUATION, flag::END_HEADERS, 1, rest);
        relay.on_upstream_bytes(&mut up);

        let kinds: Vec<_> = written(&mut relay)
            .iter()
            .map(|(head, _)| (head.kind, head.stream))
            .collect();
        assert_eq!(
            kinds,
            [
                (kind::HEADERS, 1),
                (kind::CONTINUATION, 1),
                (kind::RST_STREAM, 1)
            ]
        );
    }

    /// A gated call taken back to be answered by crigate, whose answer from the runtime
    /// was already on its way (here a deadline the runtime enforced): the client gets that
    /// answer alone, and crigate's own is not made.
    #[test]
    fn a_runtime_answer_already_on_its_way_stands_over_crigates() {
        let (mut relay, mut buf) = create_on_stream_1();
        frame::put(&mut buf, kind::DATA, flag::END_STREAM, 1, &[0, 0, 0, 0, 0]);
        relay.on_client_bytes(&mut buf).unwrap();
        assert!(relay.gates.contains_key(&1));
        relay.gate_to_local(1, true);
        // crigate's own answer, ready to go.
        relay
            .local
            .get_mut(&1)
            .unwrap()
            .outbox
            .push_back(Out::Reset(code::PROTOCOL_ERROR));
        relay.to_client.clear();

        let answer = block(&[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "4"),
        ]);
        let mut up = BytesMut::new();
        frame::put(
            &mut up,
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &answer,
        );
        relay.on_upstream_bytes(&mut up);
        assert!(!relay.local.contains_key(&1), "crigate would answer too");
        relay.flush_local();
        let kinds: Vec<_> = written(&mut relay)
            .iter()
            .map(|(head, _)| (head.kind, head.stream))
            .collect();
        assert_eq!(kinds, [(kind::HEADERS, 1)]);
    }

    /// Nothing of crigate's own (here the window a local call's body is given back) reaches
    /// the client before the runtime's SETTINGS, the server preface (RFC 9113 §3.4).
    #[test]
    fn nothing_of_crigates_own_precedes_the_runtimes_settings() {
        let mut relay = detached_relay();
        relay.linked = true;
        let mut buf = hello();
        let pull = calling("/runtime.v1.ImageService/PullImage");
        frame::put(&mut buf, kind::HEADERS, flag::END_HEADERS, 1, &block(&pull));
        frame::put(&mut buf, kind::DATA, 0, 1, &[0, 0, 0, 0, 2, 10, 0]);
        relay.on_client_bytes(&mut buf).unwrap();
        assert!(relay.local.contains_key(&1));
        relay.flush_local();
        assert!(relay.to_client.is_empty(), "{:?}", relay.to_client);

        let mut up = BytesMut::new();
        frame::put_settings(&mut up, &[]);
        relay.on_upstream_bytes(&mut up);
        relay.flush_local();
        let kinds: Vec<_> = written(&mut relay)
            .iter()
            .map(|(head, _)| head.kind)
            .collect();
        assert_eq!(kinds.first(), Some(&kind::SETTINGS), "{kinds:?}");
        assert!(kinds[1..].contains(&kind::WINDOW_UPDATE), "{kinds:?}");
    }

    /// A runtime given up before its SETTINGS (here as at the deadline for them): crigate's
    /// own SETTINGS reach the client first, then what waited for them.
    #[test]
    fn a_runtime_given_up_before_its_settings_leaves_crigates_first() {
        let mut relay = detached_relay();
        relay.linked = true;
        let mut buf = hello();
        relay.on_client_bytes(&mut buf).unwrap();
        assert!(relay.preface_deadline.is_some());
        relay.give_back(1, 100);
        relay.flush_local();
        assert!(relay.to_client.is_empty());
        relay.orphan("the runtime sent no SETTINGS within the connect timeout");
        relay.flush_local();
        let kinds: Vec<_> = written(&mut relay)
            .iter()
            .map(|(head, _)| (head.kind, head.has(flag::ACK)))
            .collect();
        assert_eq!(kinds.first(), Some(&(kind::SETTINGS, false)), "{kinds:?}");
        assert!(kinds.contains(&(kind::WINDOW_UPDATE, false)), "{kinds:?}");
    }

    /// Blocks crigate writes when it gives the runtime up, after acknowledging the client's
    /// SETTINGS itself, begin with the size update a lowered table asks for.
    #[test]
    fn blocks_written_on_giving_the_runtime_up_take_a_lowered_table_size() {
        let mut relay = detached_relay();
        relay.linked = true;
        let mut buf = BytesMut::from(frame::PREFACE);
        frame::put_settings(&mut buf, &[(setting::HEADER_TABLE_SIZE, 0)]);
        frame::put(
            &mut buf,
            kind::HEADERS,
            flag::END_HEADERS,
            1,
            &block(&calling("/runtime.v1.RuntimeService/Version")),
        );
        frame::put(&mut buf, kind::DATA, flag::END_STREAM, 1, &[0, 0, 0, 0, 0]);
        relay.on_client_bytes(&mut buf).unwrap();
        let mut up = BytesMut::new();
        frame::put_settings(&mut up, &[]);
        relay.on_upstream_bytes(&mut up);
        relay.to_client.clear();
        relay.orphan("closed");
        let blocks: Vec<_> = written(&mut relay)
            .into_iter()
            .filter(|(head, _)| head.kind == kind::HEADERS)
            .map(|(_, bytes)| bytes[frame::HEAD_LEN..].to_vec())
            .collect();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0][0], 0x20, "a size update to 0 first");
    }

    /// A client that lowers its decoder's table size must see the next header block begin
    /// with a size update (RFC 7541 §4.2): crigate's own block carries one when it comes
    /// first after the acknowledgement; once a runtime block has passed, none is due.
    #[test]
    fn a_lowered_header_table_size_is_taken_by_the_next_block_crigate_writes() {
        let mut relay = detached_relay();
        relay.linked = true;
        let mut buf = BytesMut::from(frame::PREFACE);
        frame::put_settings(&mut buf, &[(setting::HEADER_TABLE_SIZE, 0)]);
        relay.on_client_bytes(&mut buf).unwrap();
        let mut up = BytesMut::new();
        frame::put_settings(&mut up, &[]);
        relay.on_upstream_bytes(&mut up);
        assert_eq!(
            relay.table_update_due, None,
            "not before the acknowledgement"
        );
        let mut up = BytesMut::new();
        frame::put_settings_ack(&mut up);
        relay.on_upstream_bytes(&mut up);
        assert_eq!(relay.table_update_due, Some(0));

        let block = own_block(&mut relay.table_update_due, &block(&[(":status", "200")]));
        let mut decoder = hpack::Decoder::new();
        decoder.set_allowed_size(0);
        let mut fields = Vec::new();
        decoder
            .decode(&block, |name, value| {
                fields.push((name.to_vec(), value.to_vec()))
            })
            .unwrap();
        assert_eq!(block[0], 0x20, "a size update to 0 first");
        assert_eq!(fields, [(b":status".to_vec(), b"200".to_vec())]);
        assert_eq!(relay.table_update_due, None, "taken once");

        // Lowered again, then a runtime block passes first: it carries its own update.
        let mut buf = BytesMut::new();
        frame::put_settings(&mut buf, &[(setting::HEADER_TABLE_SIZE, 0)]);
        relay.client_table_size = 100;
        relay.on_client_bytes(&mut buf).unwrap();
        let mut up = BytesMut::new();
        frame::put_settings_ack(&mut up);
        frame::put(&mut up, kind::HEADERS, flag::END_HEADERS, 1, &[0x20, 0x88]);
        relay.on_upstream_bytes(&mut up);
        assert_eq!(relay.table_update_due, None);
    }

    /// The SETTINGS frames in `bytes`, each as its parameters.
    fn settings_frames(mut bytes: BytesMut) -> Vec<Vec<(u16, u32)>> {
        let mut found = Vec::new();
        while let Some((head, frame)) = frame::next(&mut bytes) {
            if head.kind == kind::SETTINGS && !head.has(flag::ACK) {
                found.push(
                    frame::settings(&frame[frame::HEAD_LEN..])
                        .unwrap()
                        .collect::<Vec<_>>(),
                );
            }
        }
        found
    }

    #[test]
    fn the_runtimes_header_table_size_reaches_the_client_within_crigates_decoder() {
        let mut relay = detached_relay();
        relay.linked = true;
        let mut buf = BytesMut::new();
        frame::put_settings(&mut buf, &[(setting::HEADER_TABLE_SIZE, 1 << 20)]);
        relay.on_upstream_bytes(&mut buf);
        let sent = settings_frames(std::mem::take(&mut relay.to_client));
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(
            sent[0].contains(&(setting::HEADER_TABLE_SIZE, MAX_HPACK_TABLE)),
            "{sent:?}"
        );
    }

    /// The client is told the header list crigate takes (RFC 9113 §6.5.2), or the
    /// runtime's if smaller, so that a client that checks it before sending fails only
    /// the call past it; a later SETTINGS without it leaves the first one's value be.
    #[test]
    fn the_client_is_told_the_largest_header_list_both_peers_take() {
        let cases = [
            (None, MAX_HEADER_LIST),
            (Some(16 << 20), MAX_HEADER_LIST),
            (Some(8192), 8192),
        ];
        for (runtime, told) in cases {
            let mut relay = detached_relay();
            relay.linked = true;
            let mut buf = BytesMut::new();
            let params: Vec<_> = runtime
                .map(|value| (setting::MAX_HEADER_LIST_SIZE, value))
                .into_iter()
                .collect();
            frame::put_settings(&mut buf, &params);
            frame::put_settings(&mut buf, &[]);
            relay.on_upstream_bytes(&mut buf);
            let sent = settings_frames(std::mem::take(&mut relay.to_client));
            let limits: Vec<Vec<_>> = sent
                .iter()
                .map(|params| {
                    params
                        .iter()
                        .filter(|(id, _)| *id == setting::MAX_HEADER_LIST_SIZE)
                        .map(|&(_, value)| value)
                        .collect()
                })
                .collect();
            assert_eq!(limits, [vec![told], vec![]], "runtime: {runtime:?}");
        }
        // crigate's own SETTINGS, when it is the server.
        let settings = settings_frames(detached_relay().own_settings());
        assert!(
            settings[0].contains(&(setting::MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST)),
            "{settings:?}"
        );
    }

    #[test]
    fn a_runtime_lost_before_its_settings_leaves_the_client_crigates_own() {
        let mut relay = detached_relay();
        relay.linked = true;
        let mut buf = hello();
        relay.on_client_bytes(&mut buf).unwrap();
        relay.orphan("closed at once");
        let mut sent = std::mem::take(&mut relay.to_client);
        let (head, _) = frame::next(&mut sent.clone()).unwrap();
        assert_eq!((head.kind, head.has(flag::ACK)), (kind::SETTINGS, false));
        let first = settings_frames(sent.split_to(frame::HEAD_LEN + head.len));
        assert_eq!(
            first,
            [vec![
                (setting::MAX_CONCURRENT_STREAMS, relay.max_streams),
                (setting::MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST)
            ]]
        );
    }

    #[test]
    fn a_runtime_ping_ack_answers_nothing_of_the_clients_and_is_dropped() {
        let mut relay = detached_relay();
        relay.linked = true;
        let mut buf = BytesMut::new();
        frame::put_ping(&mut buf, true, *b"12345678");
        relay.on_upstream_bytes(&mut buf);
        assert!(relay.to_client.is_empty(), "{:?}", relay.to_client);
    }

    #[test]
    fn a_local_request_keeps_its_fields_and_body() {
        let fields = fields(GOOD);
        let pseudo = request_line(&fields).unwrap();
        let head = request_head(&pseudo, &fields).unwrap();
        let request = head.into_request(Bytes::from_static(b"body")).unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(
            request.uri(),
            "http://localhost/runtime.v1.RuntimeService/Version"
        );
        assert_eq!(request.headers()["te"], "trailers");
        assert_eq!(request.headers().len(), 2);
    }

    #[test]
    fn a_local_request_is_refused_for_a_path_the_http_crate_would_cut() {
        let with_path = |path| {
            let mut list = GOOD.to_vec();
            list[2] = (":path", path);
            let fields = fields(&list);
            let pseudo = request_line(&fields).unwrap();
            request_head(&pseudo, &fields)
                .unwrap()
                .into_request(Bytes::new())
        };
        for path in [
            "/runtime.v1.RuntimeService/RemovePodSandbox#x",
            "/runtime.v1.ImageService/PullImage#",
        ] {
            assert!(with_path(path).is_err(), "{path}");
        }
        // A query stays part of the method name, as the runtime reads it.
        let request = with_path("/runtime.v1.RuntimeService/Version?x=1").unwrap();
        assert_eq!(
            request.uri().path_and_query().unwrap().as_str(),
            "/runtime.v1.RuntimeService/Version?x=1"
        );
    }

    /// The authorities grpc-go and gRPC C-core send for a unix socket, which the `http`
    /// crate refuses.
    #[test]
    fn a_socket_path_as_authority_is_served_as_localhost() {
        let with_authority = |authority: &str| {
            let mut list: Vec<(&str, &str)> = GOOD
                .iter()
                .copied()
                .filter(|(name, _)| *name != ":authority")
                .collect();
            list.insert(1, (":authority", authority));
            let fields = fields(&list);
            let pseudo = request_line(&fields).unwrap();
            let request = request_head(&pseudo, &fields)
                .unwrap()
                .into_request(Bytes::new())
                .unwrap();
            assert_eq!(request.uri().path(), "/runtime.v1.RuntimeService/Version");
            request.uri().authority().map(|a| a.as_str().to_owned())
        };
        assert_eq!(with_authority("/run/crigate/crigate.sock"), None);
        assert_eq!(with_authority("run%2Fcrigate%2Fcrigate.sock"), None);
        assert_eq!(with_authority("[::1]:8080").as_deref(), Some("[::1]:8080"));
    }
}
