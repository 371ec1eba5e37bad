//! The network transport: every party and the dealer are processes connected by TCP with
//! **mutual TLS** (rustls); a certificate that does not chain to the session CA, or that is
//! not the one of the party it claims to be, is refused. After the handshake both sides send a
//! hello with their role, the session hash (configuration file + program) and the session's
//! description, and stop if they differ.
//!
//! Messages are frames: a 4-byte length, the 8-byte round number, then little-endian ring
//! elements. A frame with the wrong round or a bad length, a peer that sends nothing within
//! the timeout, or a connection that drops makes the receiving party stop with an error naming
//! the peer and the phase — never a hang.
//!
//! [`NetExchange`] implements [`Exchange`]: the protocol code is the same as in memory.
//!
//! # What the transport guarantees, and against whom
//!
//! - **Authentication.** Only holders of a certificate of the session CA get past TLS, and a
//!   certificate must name the role its holder claims. The contents of an authenticated
//!   peer's messages are *not* verified beyond their shape: the protocols are semi-honest
//!   (see the crate documentation).
//! - **Bounded set-up.** Every step of setting up a connection — TCP connect, TLS handshake,
//!   hello — runs under the session's deadline (`timeout_secs` from the start, for the parties
//!   and the dealer alike). Incoming connections are handled concurrently: a connection that
//!   says nothing (a port scanner, a stranger) occupies one of [`MAX_PENDING`] slots until
//!   the deadline and never holds up the participants. Someone able to open more connections
//!   than that can still delay a session until its timeout (denial of service is not
//!   prevented), never make it hang.
//! - **True causes, at once where possible.** A participant with valid credentials but a
//!   different session (configuration or program) is refused at once by each side of the
//!   connection, and the error quotes the first differing line of both sides. Failures
//!   that cannot be authenticated (a foreign certificate) are reported when the deadline
//!   passes, with what was refused meanwhile. During the computation a failing party tells
//!   the others and the dealer who failed (a party, or the dealer — never blamed on the
//!   messenger).
//! - **End of session.** The last party ends its session with [`NetExchange::finish`]: the
//!   dealer succeeds only then. A connection that ends otherwise (a killed party, a party
//!   that stopped early) makes the dealer fail, naming the party; while the last party
//!   computes, it sends the dealer a heartbeat, so a party that stops answering (frozen
//!   process, cut network) makes the dealer fail after the timeout too.
//! - **Bounded resources.** A frame longer than the session's `max_frame_mib` is refused
//!   before anything is allocated for it, and buffers grow as bytes arrive, not as a peer
//!   declares; queues hold at most [`QUEUE`] frames per connection and direction (a peer that
//!   does not read makes the sender fail after the timeout, and a peer that floods is not
//!   read from until the queue has room): a peer can make a party hold at most
//!   `(QUEUE + 2) · max_frame` bytes per connection. Hellos are limited to 64 KiB, what the
//!   dealer reads to 4 KiB per frame.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc as tokio_mpsc;
use zeroize::Zeroizing;

use crate::config::{party_name, SessionConfig, DEALER_NAME};
use crate::dealer::{Dealer, Request};
use crate::error::{MpcError, Result};
use crate::protocol::Exchange;

/// Largest frame body any session accepts (bytes); a session's own limit is its
/// `max_frame_mib` ([`SessionConfig::max_frame_bytes`]).
pub const MAX_FRAME: usize = 1 << 30;
/// Frames queued per connection and direction.
pub const QUEUE: usize = 4;
/// Incoming connections in TLS handshake or hello at once; beyond, new ones are closed.
pub const MAX_PENDING: usize = 32;
const MAGIC: &[u8; 8] = b"VEILMPC2";
/// The magic of an abort hello: "I stop my set-up, because …" from a participant whose set-up
/// failed, to every participant still setting up.
const ABORT_MAGIC: &[u8; 8] = b"VEILMPCX";
/// How an error caused by an abort hello reads (such an error is not announced again).
const STOPPED_SETUP: &str = "stopped its set-up";
/// How long a participant whose set-up failed spends telling the others.
const ANNOUNCE: Duration = Duration::from_secs(1);
const DEALER_ROLE: u32 = u32::MAX;
/// The round number of an abort frame: "I stop because `culprit` failed: reason".
const ABORT_ROUND: u64 = u64::MAX;
/// The last party's "the session is over" to the dealer.
const DONE_ROUND: u64 = u64::MAX - 1;
/// The last party's "still here" to the dealer while it computes.
const HEARTBEAT_ROUND: u64 = u64::MAX - 2;
/// The culprit of an abort frame that blames the dealer.
const DEALER_CULPRIT: u64 = u64::MAX;
/// Largest hello body: magic, role, hash, and the session's description.
const HELLO_LIMIT: usize = 1 << 16;
/// Largest frame body the dealer reads from a party (requests, aborts).
const CONTROL_LIMIT: usize = 4096;
/// Longest text of a peer (abort reason, differing line) quoted in an error.
const QUOTE: usize = 300;
/// Longest reason sent in an abort frame.
const ABORT_REASON: usize = 2000;

fn net(why: impl Into<String>) -> MpcError {
    MpcError::Network(why.into())
}

/// A peer's text made safe to print: control characters escaped (a newline cannot forge a
/// line of output), cut after [`QUOTE`] characters.
fn sanitize(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == QUOTE {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Who is at the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Party `i`.
    Party(usize),
    /// The dealer.
    Dealer,
}

impl Role {
    fn code(self) -> u32 {
        match self {
            Self::Party(i) => u32::try_from(i).unwrap_or(DEALER_ROLE - 1),
            Self::Dealer => DEALER_ROLE,
        }
    }

    fn from_code(c: u32) -> Self {
        if c == DEALER_ROLE {
            Self::Dealer
        } else {
            Self::Party(c as usize)
        }
    }

    fn tls_name(self) -> String {
        match self {
            Self::Party(i) => party_name(i),
            Self::Dealer => DEALER_NAME.into(),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Party(i) => write!(f, "party {i}"),
            Self::Dealer => write!(f, "the dealer"),
        }
    }
}

/// TLS material of one participant.
struct Tls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_tls(config: &SessionConfig, me: Role) -> Result<Tls> {
    let endpoint = match me {
        Role::Party(i) => config
            .parties
            .get(i)
            .ok_or_else(|| MpcError::Config(format!("no party {i} in the configuration")))?,
        Role::Dealer => &config.dealer,
    };
    let read = |p: &std::path::Path| {
        let path = config.path(p);
        std::fs::read(&path).map_err(|e| MpcError::Config(format!("{}: {e}", path.display())))
    };
    let ca_pem = read(&config.tls.ca)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca_pem) {
        let cert = cert.map_err(|e| MpcError::Config(format!("CA certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| MpcError::Config(format!("CA certificate: {e}")))?;
    }
    let roots = Arc::new(roots);
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read(&endpoint.cert)?)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| MpcError::Config(format!("certificate: {e}")))?;
    let key_pem = Zeroizing::new(read(&endpoint.key)?);
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| MpcError::Config(format!("private key: {e}")))?;
    let tls_err = |e: rustls::Error| MpcError::Config(format!("TLS: {e}"));
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| MpcError::Config(format!("TLS: {e}")))?;
    let server = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(tls_err)?;
    let client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(tls_err)?;
    Ok(Tls {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

type Stream = tokio_rustls::TlsStream<TcpStream>;

async fn write_frame(
    s: &mut (impl AsyncWriteExt + Unpin),
    round: u64,
    payload: &[u8],
) -> std::io::Result<()> {
    let len =
        u32::try_from(payload.len() + 8).map_err(|_| std::io::Error::other("frame too large"))?;
    let mut head = [0u8; 12];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..].copy_from_slice(&round.to_le_bytes());
    s.write_all(&head).await?;
    s.write_all(payload).await?;
    s.flush().await
}

/// A frame: its round and payload.
type Frame = (u64, Vec<u8>);

/// Reads one frame whose body may hold at most `limit` bytes. The declared length is checked
/// against `limit` before anything is allocated, and the body's buffer grows as its bytes
/// arrive: a peer that declares a large frame and sends little costs little.
async fn read_frame(s: &mut (impl AsyncRead + Unpin), limit: usize) -> std::io::Result<Frame> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len < 8 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed frame: length {len}"),
        ));
    }
    let want = len - 8;
    if want > limit.min(MAX_FRAME) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "a frame of {want} bytes exceeds the limit of {} bytes (max_frame_mib)",
                limit.min(MAX_FRAME)
            ),
        ));
    }
    let mut round = [0u8; 8];
    s.read_exact(&mut round).await?;
    let mut body = Vec::with_capacity(want.min(1 << 16));
    (&mut *s).take(want as u64).read_to_end(&mut body).await?;
    if body.len() != want {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the connection ended in the middle of a frame",
        ));
    }
    Ok((u64::from_le_bytes(round), body))
}

fn hello(me: Role, hash: &[u8; 32], description: &str) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&me.code().to_le_bytes());
    h.extend_from_slice(hash);
    let room = HELLO_LIMIT - h.len();
    let d = description.as_bytes();
    h.extend_from_slice(&d[..d.len().min(room)]);
    h
}

/// The first line where two sessions' descriptions differ, quoted from both sides.
fn difference(ours: &str, theirs: &str, peer: Role) -> Option<String> {
    let (mut a, mut b) = (ours.lines(), theirs.lines());
    let mut line = 0usize;
    loop {
        line += 1;
        let (x, y) = (a.next(), b.next());
        if x.is_none() && y.is_none() {
            return None;
        }
        if x == y {
            continue;
        }
        let show =
            |l: Option<&str>| l.map_or("(nothing)".to_string(), |l| format!("`{}`", sanitize(l)));
        let what = if line == 1 {
            "the programs differ".to_string()
        } else {
            format!("parties.toml differs at line {}", line - 1)
        };
        return Some(format!("{what}: ours {}, {peer}'s {}", show(x), show(y)));
    }
}

/// Why setting up one connection failed.
enum SetupError {
    /// Someone who did not authenticate (or went silent): keep waiting for the participant.
    Stranger(String),
    /// An authenticated participant that cannot join this session: stop at once.
    Fatal(MpcError),
    /// The connection dropped (reset, closed): a participant that is stopping — it may be
    /// telling us why by an abort hello — or one that restarts.
    Dropped(String),
}

/// Whether an I/O error is the connection dropping rather than a refusal (a TLS alert, a
/// malformed frame).
fn dropped(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
    )
}

fn io_setup(what: &str, e: &std::io::Error) -> SetupError {
    let why = format!("{what}: {e}");
    if dropped(e) {
        SetupError::Dropped(why)
    } else {
        SetupError::Stranger(why)
    }
}

/// Exchanges hellos on a fresh TLS stream; returns the peer's role after checking its
/// certificate names it and its session equals ours.
async fn handshake(
    stream: &mut Stream,
    me: Role,
    hash: &[u8; 32],
    description: &str,
    expect: Option<Role>,
) -> std::result::Result<Role, SetupError> {
    write_frame(stream, 0, &hello(me, hash, description))
        .await
        .map_err(|e| io_setup("sending hello", &e))?;
    let (_, body) = read_frame(stream, HELLO_LIMIT)
        .await
        .map_err(|e| io_setup("reading hello", &e))?;
    let aborting = body.len() >= 12 && &body[..8] == ABORT_MAGIC;
    if !aborting && (body.len() < 8 + 4 + 32 || &body[..8] != MAGIC) {
        return Err(SetupError::Stranger(
            "the peer is not a veil mpc participant of this version (bad hello)".into(),
        ));
    }
    let mut code = [0u8; 4];
    code.copy_from_slice(&body[8..12]);
    let peer = Role::from_code(u32::from_le_bytes(code));
    // The certificate (already verified against the session CA) must be the peer's own.
    let certs = match &*stream {
        tokio_rustls::TlsStream::Client(c) => c.get_ref().1.peer_certificates(),
        tokio_rustls::TlsStream::Server(s) => s.get_ref().1.peer_certificates(),
    };
    let fatal = |why: String| SetupError::Fatal(net(why));
    let cert = certs
        .and_then(|c| c.first())
        .ok_or_else(|| SetupError::Stranger(format!("{peer} presented no certificate")))?;
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| fatal(format!("{peer}'s certificate: {e}")))?;
    let name = ServerName::try_from(peer.tls_name())
        .map_err(|e| fatal(format!("name {}: {e}", peer.tls_name())))?;
    ee.verify_is_valid_for_subject_name(&name).map_err(|_| {
        fatal(format!(
            "the certificate presented as {peer} is not {peer}'s ({})",
            peer.tls_name()
        ))
    })?;
    if aborting {
        // Authenticated: the participant's own account of why the session cannot start.
        let reason = sanitize(&String::from_utf8_lossy(&body[12..]));
        return Err(fatal(format!("{peer} {STOPPED_SETUP}: {reason}")));
    }
    if let Some(e) = expect {
        if peer != e {
            return Err(fatal(format!("expected {e}, but {peer} answered")));
        }
    }
    if body[12..44] != hash[..] {
        let theirs = String::from_utf8_lossy(&body[44..]);
        let why = difference(description, &theirs, peer).unwrap_or_else(|| {
            format!(
                "hash {}… vs ours {}…",
                hex::encode(&body[12..20]),
                hex::encode(&hash[..8])
            )
        });
        return Err(fatal(format!(
            "{peer} runs a different session (configuration or program differ): {why}"
        )));
    }
    Ok(peer)
}

/// Tells every participant still setting up (listening) that this one stops because of
/// `cause`, with an abort hello over an authenticated connection, so that they stop at once
/// with the true cause instead of at their deadline. Best effort, at most [`ANNOUNCE`].
/// Participants already past their set-up no longer listen and learn it from the closed
/// connections.
async fn announce_abort(tls: &Tls, me: Role, to: Vec<(Role, String)>, cause: &MpcError) {
    if cause.to_string().contains(STOPPED_SETUP) {
        return; // the participant that failed has told everyone itself
    }
    let mut body = ABORT_MAGIC.to_vec();
    body.extend_from_slice(&me.code().to_le_bytes());
    body.extend_from_slice(&abort_body(0, cause)[8..]);
    let mut tasks = tokio::task::JoinSet::new();
    for (peer, address) in to {
        let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
        let body = body.clone();
        tasks.spawn(async move {
            let Ok(name) = ServerName::try_from(peer.tls_name()) else {
                return;
            };
            // A participant starting up a moment later is told too (until ANNOUNCE ends).
            let tcp = loop {
                match TcpStream::connect(address.as_str()).await {
                    Ok(tcp) => break tcp,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => return,
                }
            };
            let Ok(tls) = connector.connect(name, tcp).await else {
                return;
            };
            let mut stream = tokio_rustls::TlsStream::Client(tls);
            if write_frame(&mut stream, 0, &body).await.is_ok() {
                // Its hello: it has read ours by then, or soon will.
                let _ = read_frame(&mut stream, HELLO_LIMIT).await;
            }
            let _ = stream.shutdown().await;
        });
    }
    let _ = tokio::time::timeout(ANNOUNCE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// Why one attempt to connect failed.
enum Attempt {
    /// Nobody listens there yet: try again.
    Refused(String),
    /// Anything else: final.
    Failed(MpcError),
}

#[allow(clippy::too_many_arguments, reason = "one connection's whole context")]
async fn connect(
    tls: &Tls,
    address: &str,
    peer: Role,
    me: Role,
    hash: &[u8; 32],
    description: &str,
    deadline: Instant,
) -> Result<Stream> {
    let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
    let name = ServerName::try_from(peer.tls_name()).map_err(|e| net(e.to_string()))?;
    let mut last = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(net(format!(
                "{peer} at {address} did not come up in time ({last})"
            )));
        }
        let attempt = async {
            let tcp = TcpStream::connect(address).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::ConnectionRefused || dropped(&e) {
                    Attempt::Refused(format!("{address}: {e}"))
                } else {
                    Attempt::Failed(net(format!("{peer} at {address}: {e}")))
                }
            })?;
            tcp.set_nodelay(true)
                .map_err(|e| Attempt::Failed(net(e.to_string())))?;
            let tls = connector.connect(name.clone(), tcp).await.map_err(|e| {
                let why = format!("TLS with {peer} at {address}: {e}");
                if dropped(&e) {
                    Attempt::Refused(why)
                } else {
                    Attempt::Failed(net(why))
                }
            })?;
            let mut stream = tokio_rustls::TlsStream::Client(tls);
            match handshake(&mut stream, me, hash, description, Some(peer)).await {
                Ok(_) => Ok(stream),
                Err(SetupError::Fatal(e)) => Err(Attempt::Failed(e)),
                Err(SetupError::Stranger(why)) => {
                    Err(Attempt::Failed(net(format!("{peer} at {address}: {why}"))))
                }
                // It is stopping (and may be telling us why) or restarting: try again.
                Err(SetupError::Dropped(why)) => {
                    Err(Attempt::Refused(format!("{peer} at {address}: {why}")))
                }
            }
        };
        match tokio::time::timeout(left, attempt).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(Attempt::Refused(why))) => {
                last = why;
                tokio::time::sleep(Duration::from_millis(50).min(left)).await;
            }
            Ok(Err(Attempt::Failed(e))) => return Err(e),
            Err(_) => {
                return Err(net(format!(
                    "{peer} at {address}: no TLS handshake and hello within the timeout (is something else listening there?)"
                )))
            }
        }
    }
}

/// Accepts `count` participants for which `wanted` holds, each connection set up
/// concurrently under the deadline: strangers (unknown certificates, bad hellos, silence) are
/// refused and waiting goes on; an authenticated participant that cannot join (another
/// session, an unexpected role, an abort hello) stops the set-up at once.
///
/// With `deliver`, the participants go there once all have come, and listening goes on —
/// until the caller stops polling — for abort hellos only: this participant still learns at
/// once that another's set-up failed while it finishes its own.
#[allow(clippy::too_many_arguments, reason = "the set-up's whole context")]
async fn accept_participants(
    listener: &TcpListener,
    tls: &Tls,
    me: Role,
    hash: &[u8; 32],
    description: &str,
    deadline: Instant,
    count: usize,
    wanted: impl Fn(Role) -> bool,
    mut deliver: Option<tokio::sync::oneshot::Sender<Vec<(Role, Stream)>>>,
) -> Result<Vec<(Role, Stream)>> {
    let mut pending = tokio::task::JoinSet::new();
    let mut got: Vec<(Role, Stream)> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let description: Arc<str> = Arc::from(description);
    let mut watching = false;
    loop {
        if !watching && got.len() >= count {
            match deliver.take() {
                None => return Ok(got),
                Some(to) => {
                    let _ = to.send(std::mem::take(&mut got));
                    watching = true;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            () = tokio::time::sleep(left), if !watching => {
                let waiting = if refused.is_empty() {
                    String::new()
                } else {
                    format!("; refused meanwhile: {}", refused.join("; "))
                };
                return Err(net(format!(
                    "the other participants did not connect in time{waiting}"
                )));
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, from)) => {
                    if pending.len() >= MAX_PENDING {
                        if refused.len() < 4 {
                            refused.push(format!("{from}: too many connections in set-up"));
                        }
                        continue;
                    }
                    let _ = tcp.set_nodelay(true);
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
                    let (hash, description) = (*hash, description.clone());
                    pending.spawn(async move {
                        let attempt = async {
                            let tls = acceptor.accept(tcp).await.map_err(|e| {
                                SetupError::Stranger(format!("TLS from {from}: {e}"))
                            })?;
                            let mut stream = tokio_rustls::TlsStream::Server(tls);
                            let peer = handshake(&mut stream, me, &hash, &description, None).await?;
                            Ok((peer, stream))
                        };
                        match tokio::time::timeout(left, attempt).await {
                            Ok(r) => r,
                            Err(_) => Err(SetupError::Stranger(format!(
                                "{from} sent no TLS handshake and hello in time"
                            ))),
                        }
                    });
                }
                Err(e) => {
                    if refused.len() < 4 {
                        refused.push(format!("accept: {e}"));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(joined) = pending.join_next() => match joined {
                Ok(Ok((peer, stream))) => {
                    if watching || !wanted(peer) || got.iter().any(|(r, _)| *r == peer) {
                        return Err(net(format!("unexpected connection from {peer}")));
                    }
                    got.push((peer, stream));
                }
                Ok(Err(SetupError::Fatal(e))) => return Err(e),
                Ok(Err(SetupError::Stranger(why) | SetupError::Dropped(why))) => {
                    if refused.len() < 4 {
                        refused.push(why);
                    }
                }
                Err(e) => {
                    if refused.len() < 4 {
                        refused.push(format!("set-up task: {e}"));
                    }
                }
            },
        }
    }
}

/// A connection whose reading and writing run on the runtime, through bounded queues.
struct Link {
    tx: tokio_mpsc::Sender<(u64, Vec<u8>)>,
    rx: tokio_mpsc::Receiver<std::io::Result<Frame>>,
    writer: tokio::task::JoinHandle<()>,
}

/// Starts the writer and reader of `stream`. Frames read hold at most `limit` bytes; the
/// writer sends a heartbeat after `heartbeat` without a frame, if given.
fn spawn_link(
    rt: &tokio::runtime::Runtime,
    stream: Stream,
    limit: usize,
    heartbeat: Option<Duration>,
) -> Link {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut wrx) = tokio_mpsc::channel::<(u64, Vec<u8>)>(QUEUE);
    let (rtx, rx) = tokio_mpsc::channel(QUEUE);
    let writer = rt.spawn(async move {
        loop {
            let next = match heartbeat {
                Some(every) => match tokio::time::timeout(every, wrx.recv()).await {
                    Ok(next) => next,
                    Err(_) => Some((HEARTBEAT_ROUND, Vec::new())),
                },
                None => wrx.recv().await,
            };
            let Some((round, payload)) = next else {
                break;
            };
            if write_frame(&mut writer, round, &payload).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    rt.spawn(async move {
        loop {
            let frame = read_frame(&mut reader, limit).await;
            let stop = frame.is_err();
            // Waits while the queue is full: the peer is not read from meanwhile.
            if rtx.send(frame).await.is_err() || stop {
                break;
            }
        }
    });
    Link { tx, rx, writer }
}

/// Ring elements as little-endian bytes (one copy on little-endian machines).
fn to_bytes(v: &[u64]) -> Vec<u8> {
    #[cfg(target_endian = "little")]
    return bytemuck::cast_slice(v).to_vec();
    #[cfg(target_endian = "big")]
    return v.iter().flat_map(|x| x.to_le_bytes()).collect();
}

/// Little-endian bytes as ring elements; `None` unless whole elements.
fn from_bytes(b: &[u8]) -> Option<Vec<u64>> {
    if !b.len().is_multiple_of(8) {
        return None;
    }
    #[cfg(target_endian = "little")]
    return Some(bytemuck::pod_collect_to_vec(b));
    #[cfg(target_endian = "big")]
    return Some(
        b.chunks_exact(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect(),
    );
}

fn encode_request(r: &Request) -> Vec<u64> {
    match *r {
        Request::Triples { n } => vec![0, n as u64],
        Request::Squares { n } => vec![1, n as u64],
        Request::MatrixTriple { m, k, n } => vec![2, m as u64, k as u64, n as u64],
        Request::Comparison { n } => vec![3, n as u64],
        Request::Truncation { n, frac_bits } => vec![4, n as u64, u64::from(frac_bits)],
        Request::BinaryTriples { words } => vec![5, words as u64],
    }
}

fn decode_request(v: &[u64]) -> Option<Request> {
    let u = |i: usize| v.get(i).and_then(|x| usize::try_from(*x).ok());
    Some(match (v.first()?, v.len()) {
        (0, 2) => Request::Triples { n: u(1)? },
        (1, 2) => Request::Squares { n: u(1)? },
        (2, 4) => Request::MatrixTriple {
            m: u(1)?,
            k: u(2)?,
            n: u(3)?,
        },
        (3, 2) => Request::Comparison { n: u(1)? },
        (5, 2) => Request::BinaryTriples { words: u(1)? },
        (4, 3) => Request::Truncation {
            n: u(1)?,
            frac_bits: u32::try_from(*v.get(2)?).ok()?,
        },
        _ => return None,
    })
}

/// The body of an abort frame: the culprit's code, then the reason.
fn abort_body(culprit: u64, cause: &MpcError) -> Vec<u8> {
    let mut body = culprit.to_le_bytes().to_vec();
    let reason = cause.to_string();
    let mut end = reason.len().min(ABORT_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    body.extend_from_slice(&reason.as_bytes()[..end]);
    body
}

/// The error an abort frame from `from` stands for: the culprit it names fails.
fn abort_error(from: Role, phase: &str, body: &[u8]) -> MpcError {
    let Some((culprit, reason)) = body.split_first_chunk::<8>() else {
        return match from {
            Role::Party(party) => MpcError::Malformed {
                party,
                phase: phase.into(),
                why: "an abort frame without a culprit".into(),
            },
            Role::Dealer => MpcError::Dealer(format!("during {phase}: a malformed abort")),
        };
    };
    let reason = sanitize(&String::from_utf8_lossy(reason));
    match (from, u64::from_le_bytes(*culprit)) {
        (Role::Dealer, _) => MpcError::Dealer(format!("stopped during {phase}: {reason}")),
        (_, DEALER_CULPRIT) => {
            MpcError::Dealer(format!("reported by {from} during {phase}: {reason}"))
        }
        (_, culprit) => MpcError::PartyGone {
            party: usize::try_from(culprit).unwrap_or(usize::MAX),
            phase: phase.into(),
            why: format!("reported by {from}: {reason}"),
        },
    }
}

/// A party's connections to the other parties (and, for the last party, the dealer).
///
/// End a session with [`NetExchange::finish`]: dropping the exchange without it tells every
/// peer and the dealer that this party stopped before the end (and the dealer fails).
pub struct NetExchange {
    id: usize,
    n: usize,
    peers: Vec<Option<Link>>,
    dealer: Option<Link>,
    round: u64,
    dealer_sent: u64,
    dealer_received: u64,
    timeout: Duration,
    max_frame: usize,
    finished: bool,
    aborted: bool,
    // Declared last: dropped after the links, so their tasks end cleanly.
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for NetExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetExchange")
            .field("id", &self.id)
            .field("parties", &self.n)
            .finish_non_exhaustive()
    }
}

/// Sends a frame on `link`, waiting at most `timeout` for room in its queue.
fn send(
    rt: &tokio::runtime::Runtime,
    link: &Link,
    timeout: Duration,
    frame: Frame,
) -> std::result::Result<(), String> {
    match rt.block_on(async { tokio::time::timeout(timeout, link.tx.send(frame)).await }) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("connection closed".into()),
        Err(_) => Err(format!(
            "it has read nothing for {timeout:?} (its queue is full)"
        )),
    }
}

/// Receives the next frame of round `expected` from `from`.
fn receive(
    rt: &tokio::runtime::Runtime,
    link: &mut Link,
    timeout: Duration,
    expected: u64,
    from: Role,
    phase: &str,
) -> Result<Vec<u8>> {
    let gone = |why: String| match from {
        Role::Party(party) => MpcError::PartyGone {
            party,
            phase: phase.into(),
            why,
        },
        Role::Dealer => MpcError::Dealer(format!("during {phase}: {why}")),
    };
    let malformed = |why: String| match from {
        Role::Party(party) => MpcError::Malformed {
            party,
            phase: phase.into(),
            why,
        },
        Role::Dealer => MpcError::Dealer(format!("during {phase}: {why}")),
    };
    match rt.block_on(async { tokio::time::timeout(timeout, link.rx.recv()).await }) {
        Ok(Some(Ok((ABORT_ROUND, body)))) => Err(abort_error(from, phase, &body)),
        Ok(Some(Ok((round, body)))) => {
            if round != expected {
                return Err(malformed(format!(
                    "frame of round {round} in round {expected}"
                )));
            }
            Ok(body)
        }
        Ok(Some(Err(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(malformed(e.to_string()))
        }
        Ok(Some(Err(e))) => Err(gone(format!("connection lost: {e}"))),
        Ok(None) => Err(gone("connection closed".into())),
        Err(_) => Err(gone(format!("nothing received within {timeout:?}"))),
    }
}

impl NetExchange {
    /// Tells every peer and the dealer that this party stops because of `cause` (best
    /// effort, once), so that they stop too and name who failed: the party or the dealer
    /// `cause` names, or this party.
    fn abort(&mut self, cause: &MpcError) {
        if self.aborted {
            return;
        }
        self.aborted = true;
        let culprit = match cause {
            MpcError::PartyGone { party, .. } | MpcError::Malformed { party, .. }
                if *party != usize::MAX =>
            {
                *party as u64
            }
            MpcError::PartyGone { .. } | MpcError::Malformed { .. } | MpcError::Dealer(_) => {
                DEALER_CULPRIT
            }
            _ => self.id as u64,
        };
        let body = abort_body(culprit, cause);
        for link in self.peers.iter().flatten().chain(&self.dealer) {
            let _ = link.tx.try_send((ABORT_ROUND, body.clone()));
        }
    }

    /// Ends the session cleanly: the last party tells the dealer that no request will
    /// follow, so the dealer stops with success. Call it once the computation is over.
    pub fn finish(&mut self) -> Result<()> {
        if let Some(link) = &self.dealer {
            send(&self.rt, link, self.timeout, (DONE_ROUND, Vec::new()))
                .map_err(|why| MpcError::Dealer(format!("ending the session: {why}")))?;
        }
        self.finished = true;
        Ok(())
    }

    /// **Hazmat, for fault-injection tests**: sends party `to` one raw frame (`round`,
    /// `payload`) outside the protocol, as a faulty or malicious party would. Nothing a
    /// computation needs.
    #[doc(hidden)]
    pub fn hazmat_send_raw_frame(&self, to: usize, round: u64, payload: Vec<u8>) -> Result<()> {
        let link =
            self.peers.get(to).and_then(Option::as_ref).ok_or_else(|| {
                MpcError::InvalidParameter(format!("no connection to party {to}"))
            })?;
        send(&self.rt, link, self.timeout, (round, payload)).map_err(|why| MpcError::PartyGone {
            party: to,
            phase: "raw frame".into(),
            why,
        })
    }
}

impl Drop for NetExchange {
    fn drop(&mut self) {
        if !self.finished {
            let id = self.id;
            self.abort(&MpcError::PartyGone {
                party: id,
                phase: "the session".into(),
                why: "it stopped before the end of the session".into(),
            });
        }
        // Close the queues and let the writers flush what was queued (an abort, the last
        // round) and close their TLS sessions before the runtime stops.
        let links: Vec<Link> = std::mem::take(&mut self.peers)
            .into_iter()
            .flatten()
            .chain(self.dealer.take())
            .collect();
        let writers: Vec<_> = links
            .into_iter()
            .map(|l| {
                drop(l.tx);
                l.writer
            })
            .collect();
        self.rt.block_on(async {
            for w in writers {
                let _ = tokio::time::timeout(Duration::from_secs(1), w).await;
            }
        });
    }
}

impl Exchange for NetExchange {
    fn id(&self) -> usize {
        self.id
    }

    fn parties(&self) -> usize {
        self.n
    }

    fn exchange(&mut self, phase: &str, outgoing: Vec<Vec<u64>>) -> Result<Vec<Vec<u64>>> {
        if outgoing.len() != self.n {
            return Err(MpcError::InvalidParameter(format!(
                "{} outgoing messages for {} parties",
                outgoing.len(),
                self.n
            )));
        }
        if let Some(big) = outgoing.iter().find(|m| m.len() * 8 > self.max_frame) {
            return Err(MpcError::InvalidParameter(format!(
                "a message of {} bytes in {phase} exceeds the session's frame limit of {} bytes: raise max_frame_mib in parties.toml or compute in smaller batches",
                big.len() * 8,
                self.max_frame
            )));
        }
        self.round += 1;
        let mut failed = None;
        for (j, msg) in outgoing.iter().enumerate() {
            if let Some(link) = &self.peers[j] {
                if let Err(why) = send(&self.rt, link, self.timeout, (self.round, to_bytes(msg))) {
                    failed = Some(MpcError::PartyGone {
                        party: j,
                        phase: phase.into(),
                        why,
                    });
                    break;
                }
            }
        }
        if let Some(e) = failed {
            self.abort(&e);
            return Err(e);
        }
        let mut incoming = vec![Vec::new(); self.n];
        let mut failed = None;
        for (j, link) in self.peers.iter_mut().enumerate() {
            if let Some(link) = link {
                let got = receive(
                    &self.rt,
                    link,
                    self.timeout,
                    self.round,
                    Role::Party(j),
                    phase,
                )
                .and_then(|body| {
                    from_bytes(&body).ok_or_else(|| MpcError::Malformed {
                        party: j,
                        phase: phase.into(),
                        why: format!("{} bytes is not whole ring elements", body.len()),
                    })
                });
                match got {
                    Ok(v) => incoming[j] = v,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(e) = failed {
            self.abort(&e);
            return Err(e);
        }
        Ok(incoming)
    }

    fn dealer_request(&mut self, request: &Request) -> Result<()> {
        let Some(link) = &self.dealer else {
            return Ok(());
        };
        // Dealer requests have their own sequence (only the last party makes them).
        self.dealer_sent += 1;
        let sent = send(
            &self.rt,
            link,
            self.timeout,
            (self.dealer_sent, to_bytes(&encode_request(request))),
        );
        if let Err(why) = sent {
            let e = MpcError::Dealer(format!("sending a request: {why}"));
            self.abort(&e);
            return Err(e);
        }
        Ok(())
    }

    fn dealer_correction(&mut self) -> Result<Option<Vec<u64>>> {
        let Some(link) = &mut self.dealer else {
            return Ok(None);
        };
        self.dealer_received += 1;
        let got = receive(
            &self.rt,
            link,
            self.timeout,
            self.dealer_received,
            Role::Dealer,
            "dealer request",
        )
        .and_then(|body| {
            from_bytes(&body).ok_or_else(|| MpcError::Dealer("malformed correction".into()))
        });
        match got {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                // The other parties would otherwise wait for this one until their timeout.
                self.abort(&e);
                Err(e)
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| net(format!("runtime: {e}")))
}

fn resolve(address: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    address
        .to_socket_addrs()
        .map_err(|e| MpcError::Config(format!("address {address}: {e}")))?
        .next()
        .ok_or_else(|| MpcError::Config(format!("address {address} resolves to nothing")))
}

/// Connects party `id` to the others and to the dealer; returns its exchange and its dealer
/// seed. Every party must call this with the same configuration and program, and end the
/// session with [`NetExchange::finish`].
pub fn connect_party(
    config: &SessionConfig,
    id: usize,
    program: &str,
) -> Result<(NetExchange, Zeroizing<[u8; 32]>)> {
    let (ex, seed) = connect_all(config, id, program, true)?;
    let seed = seed.ok_or_else(|| MpcError::Dealer("no seed".into()))?;
    Ok((ex, seed))
}

/// Connects party `id` to the other parties only (protocols that need no dealer, such as
/// private set intersection).
pub fn connect_peers(config: &SessionConfig, id: usize, program: &str) -> Result<NetExchange> {
    Ok(connect_all(config, id, program, false)?.0)
}

/// A party's connections once set up: to each other party (in party order), to the dealer,
/// and its seed.
type SetUp = (
    Vec<Option<Stream>>,
    Option<Stream>,
    Option<Zeroizing<[u8; 32]>>,
);

fn connect_all(
    config: &SessionConfig,
    id: usize,
    program: &str,
    with_dealer: bool,
) -> Result<(NetExchange, Option<Zeroizing<[u8; 32]>>)> {
    let n = config.parties();
    if id >= n {
        return Err(MpcError::Config(format!("party {id}: there are {n}")));
    }
    let me = Role::Party(id);
    let tls = load_tls(config, me)?;
    let hash = config.session_hash(program);
    let description = config.session_description(program);
    let timeout = config.timeout();
    let max_frame = config.max_frame_bytes();
    let deadline = Instant::now() + timeout;
    let rt = runtime()?;
    let listen = resolve(&config.parties[id].address)?;
    let set_up = rt.block_on(async {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| net(format!("cannot listen on {listen}: {e}")))?;
        let streams: Vec<Option<Stream>> = (0..n).map(|_| None).collect();
        // Connect to lower ids, accept higher ids (concurrently; the first failure stops
        // both), and keep listening for abort hellos until the set-up is over.
        let (deliver, accepted) = tokio::sync::oneshot::channel();
        let accepting = accept_participants(
            &listener,
            &tls,
            me,
            &hash,
            &description,
            deadline,
            n - id - 1,
            |peer| matches!(peer, Role::Party(j) if j > id && j < n),
            Some(deliver),
        );
        let connecting = async {
            let mut got = Vec::new();
            for j in 0..id {
                let s = connect(
                    &tls,
                    &config.parties[j].address,
                    Role::Party(j),
                    me,
                    &hash,
                    &description,
                    deadline,
                )
                .await?;
                got.push((Role::Party(j), s));
            }
            Ok::<_, MpcError>(got)
        };
        let rest = async {
            let c = connecting.await?;
            let a = accepted
                .await
                .map_err(|_| net("the set-up stopped accepting"))?;
            Ok::<_, MpcError>(a.into_iter().chain(c).collect::<Vec<_>>())
        };
        let setup = async {
            let peers = rest.await?;
            set_up_rest(
                peers,
                streams,
                with_dealer,
                &tls,
                config,
                me,
                &hash,
                &description,
                deadline,
            )
            .await
        };
        tokio::select! {
            r = setup => r,
            r = accepting => Err(r.err().unwrap_or_else(|| net("the set-up stopped accepting"))),
        }
    });
    let (streams, dealer_stream, seed) = match set_up {
        Ok(x) => x,
        Err(e) => {
            let mut others: Vec<(Role, String)> = (0..n)
                .filter(|&j| j != id)
                .map(|j| (Role::Party(j), config.parties[j].address.clone()))
                .collect();
            if with_dealer {
                others.push((Role::Dealer, config.dealer.address.clone()));
            }
            rt.block_on(announce_abort(&tls, me, others, &e));
            return Err(e);
        }
    };
    let peers = streams
        .into_iter()
        .map(|s| s.map(|s| spawn_link(&rt, s, max_frame, None)))
        .collect();
    // The last party keeps its connection to the dealer, with a heartbeat so that the dealer
    // can tell a party that computes from one that is gone.
    let heartbeat = (timeout / 3).max(Duration::from_millis(100));
    let dealer = dealer_stream
        .filter(|_| id == n - 1)
        .map(|s| spawn_link(&rt, s, max_frame, Some(heartbeat)));
    Ok((
        NetExchange {
            id,
            n,
            peers,
            dealer,
            round: 0,
            dealer_sent: 0,
            dealer_received: 0,
            timeout,
            max_frame,
            finished: false,
            aborted: false,
            rt,
        },
        seed,
    ))
}

/// The set-up once the other parties are connected: the streams in party order, then (with
/// a dealer) the connection to the dealer and this party's seed.
#[allow(clippy::too_many_arguments, reason = "the set-up's whole context")]
async fn set_up_rest(
    peers: Vec<(Role, Stream)>,
    mut streams: Vec<Option<Stream>>,
    with_dealer: bool,
    tls: &Tls,
    config: &SessionConfig,
    me: Role,
    hash: &[u8; 32],
    description: &str,
    deadline: Instant,
) -> Result<SetUp> {
    for (peer, s) in peers {
        let Role::Party(j) = peer else {
            return Err(net(format!("unexpected connection from {peer}")));
        };
        if streams[j].is_some() {
            return Err(net(format!("party {j} connected twice")));
        }
        streams[j] = Some(s);
    }
    if !with_dealer {
        return Ok::<_, MpcError>((streams, None, None));
    }
    let mut dealer = connect(
        tls,
        &config.dealer.address,
        Role::Dealer,
        me,
        hash,
        description,
        deadline,
    )
    .await?;
    let left = deadline.saturating_duration_since(Instant::now());
    let (round, body) = tokio::time::timeout(left, read_frame(&mut dealer, CONTROL_LIMIT))
        .await
        .map_err(|_| MpcError::Dealer("no seed within the timeout".into()))?
        .map_err(|e| MpcError::Dealer(format!("seed: {e}")))?;
    if round == ABORT_ROUND {
        return Err(abort_error(Role::Dealer, "set-up", &body));
    }
    let seed: [u8; 32] = body
        .as_slice()
        .try_into()
        .map_err(|_| MpcError::Dealer("malformed seed".into()))?;
    Ok((streams, Some(dealer), Some(Zeroizing::new(seed))))
}

/// What the dealer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DealerReport {
    /// Requests served.
    pub requests: u64,
    /// Bytes of corrections sent to the last party.
    pub correction_bytes: u64,
}

/// Runs the dealer: waits for every party (until the session's timeout), gives each its
/// seed, then answers the last party's requests until it ends the session
/// ([`NetExchange::finish`]). Fails — naming the party — if the last party's connection ends
/// otherwise, if it says nothing (not even a heartbeat) for the timeout, or if a party
/// reports a failure; and tells the last party why it stops when it fails itself.
pub fn run_dealer(config: &SessionConfig, program: &str) -> Result<DealerReport> {
    let n = config.parties();
    let tls = load_tls(config, Role::Dealer)?;
    let hash = config.session_hash(program);
    let description = config.session_description(program);
    let timeout = config.timeout();
    let max_frame = config.max_frame_bytes();
    let listen = resolve(&config.dealer.address)?;
    let rt = runtime()?;
    rt.block_on(async {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| net(format!("cannot listen on {listen}: {e}")))?;
        let deadline = Instant::now() + timeout;
        let mut streams: Vec<Option<Stream>> = (0..n).map(|_| None).collect();
        let got = match accept_participants(
            &listener,
            &tls,
            Role::Dealer,
            &hash,
            &description,
            deadline,
            n,
            |peer| matches!(peer, Role::Party(j) if j < n),
            None,
        )
        .await
        {
            Ok(got) => got,
            Err(e) => {
                drop(listener);
                let parties = config
                    .parties
                    .iter()
                    .enumerate()
                    .map(|(j, p)| (Role::Party(j), p.address.clone()))
                    .collect();
                announce_abort(&tls, Role::Dealer, parties, &e).await;
                return Err(e);
            }
        };
        for (peer, s) in got {
            if let Role::Party(j) = peer {
                streams[j] = Some(s);
            }
        }
        let mut os = rand_core::OsRng;
        let mut rng = rand_core::TryRngCore::unwrap_mut(&mut os);
        let (mut dealer, seeds) = Dealer::new(n, &mut rng)?;
        let mut last = None;
        for (j, s) in streams.into_iter().enumerate() {
            let Some(mut s) = s else {
                return Err(net(format!("party {j} did not connect")));
            };
            tokio::time::timeout(timeout, write_frame(&mut s, 0, seeds[j].as_ref()))
                .await
                .map_err(|_| net(format!("seed to party {j}: not read in time")))?
                .map_err(|e| net(format!("seed to party {j}: {e}")))?;
            if j == n - 1 {
                last = Some(s);
            } else {
                let _ = s.shutdown().await;
            }
        }
        drop(seeds);
        let mut report = DealerReport::default();
        let Some(mut s) = last else {
            return Ok(report);
        };
        let who = n - 1;
        let phase = "dealer requests";
        loop {
            let gone = |why: String| MpcError::PartyGone {
                party: who,
                phase: phase.into(),
                why,
            };
            let (round, body) = match tokio::time::timeout(timeout, read_frame(&mut s, CONTROL_LIMIT)).await {
                Ok(Ok(frame)) => frame,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(gone(
                        "its connection ended before the end of the session (killed, or stopped early)".into(),
                    ))
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Err(MpcError::Malformed {
                        party: who,
                        phase: phase.into(),
                        why: e.to_string(),
                    })
                }
                Ok(Err(e)) => return Err(gone(format!("connection lost: {e}"))),
                Err(_) => {
                    return Err(gone(format!(
                        "nothing received within {timeout:?}, not even a heartbeat"
                    )))
                }
            };
            match round {
                DONE_ROUND => return Ok(report),
                HEARTBEAT_ROUND => continue,
                ABORT_ROUND => return Err(abort_error(Role::Party(who), phase, &body)),
                _ => {}
            }
            let served = from_bytes(&body)
                .as_deref()
                .and_then(decode_request)
                .ok_or_else(|| MpcError::Malformed {
                    party: who,
                    phase: phase.into(),
                    why: "not a request".into(),
                })
                .and_then(|request| dealer.correction(&request))
                .and_then(|correction| {
                    let bytes = to_bytes(&correction);
                    if bytes.len() > max_frame {
                        return Err(MpcError::Malformed {
                            party: who,
                            phase: phase.into(),
                            why: format!(
                                "a request whose answer of {} bytes exceeds the session's frame limit of {max_frame} bytes",
                                bytes.len()
                            ),
                        });
                    }
                    Ok(bytes)
                });
            let bytes = match served {
                Ok(bytes) => bytes,
                Err(e) => {
                    // Tell the last party why, naming the culprit: it, for a request it
                    // should not have made; the dealer, otherwise.
                    let culprit = match e {
                        MpcError::Malformed { .. } | MpcError::InvalidParameter(_) => who as u64,
                        _ => DEALER_CULPRIT,
                    };
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        write_frame(&mut s, ABORT_ROUND, &abort_body(culprit, &e)),
                    )
                    .await;
                    return Err(e);
                }
            };
            report.requests += 1;
            report.correction_bytes += bytes.len() as u64;
            tokio::time::timeout(timeout, write_frame(&mut s, round, &bytes))
                .await
                .map_err(|_| gone(format!("it read no correction for {timeout:?}")))?
                .map_err(|e| gone(format!("sending a correction: {e}")))?;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_requests_are_checked() {
        let rt = runtime().unwrap();
        rt.block_on(async {
            let mut buf = Vec::new();
            write_frame(&mut buf, 7, &[1, 2, 3, 4, 5, 6, 7, 8])
                .await
                .unwrap();
            let (round, body) = read_frame(&mut buf.as_slice(), 64).await.unwrap();
            assert_eq!((round, body.len()), (7, 8));
            // A length below the header, or beyond the limit, is malformed; a cut frame too.
            let e = read_frame(&mut &[3u8, 0, 0, 0][..], 64).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            let e = read_frame(&mut &[255u8, 255, 255, 255][..], MAX_FRAME)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            assert!(read_frame(&mut &buf[..buf.len() - 1], 64).await.is_err());
            // The limit is the caller's: the same 8-byte frame is too long for 7.
            let e = read_frame(&mut buf.as_slice(), 7).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("exceeds the limit"), "{e}");
        });
        for r in [
            Request::Triples { n: 5 },
            Request::Squares { n: 1 },
            Request::MatrixTriple { m: 2, k: 3, n: 4 },
            Request::Comparison { n: 9 },
            Request::BinaryTriples { words: 4 },
            Request::Truncation {
                n: 3,
                frac_bits: 16,
            },
        ] {
            assert_eq!(decode_request(&encode_request(&r)), Some(r));
        }
        assert_eq!(decode_request(&[9, 1]), None);
        assert_eq!(decode_request(&[]), None);
        assert_eq!(decode_request(&[4, 1, u64::MAX]), None);
        assert_eq!(from_bytes(&[1, 2, 3]), None);
    }

    /// A peer that declares a 1 GiB frame and sends 100 bytes: the reader reads what
    /// arrives (its buffer grows with it) and fails at the end of the stream; with a session
    /// limit below the declared length, it refuses at once.
    #[test]
    fn a_declared_length_beyond_what_arrives_is_an_error() {
        struct Counting<'a> {
            data: &'a [u8],
        }
        impl AsyncRead for Counting<'_> {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let n = self.data.len().min(buf.remaining());
                buf.put_slice(&self.data[..n]);
                self.data = &self.data[n..];
                std::task::Poll::Ready(Ok(()))
            }
        }
        let rt = runtime().unwrap();
        let mut head = ((1u32 << 30) + 8).to_le_bytes().to_vec();
        head.extend_from_slice(&1u64.to_le_bytes());
        head.extend_from_slice(&[0u8; 100]);
        let e = rt
            .block_on(read_frame(&mut Counting { data: &head }, 1 << 30))
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        // Refused outright once the session's limit is below it.
        let e = rt
            .block_on(read_frame(&mut Counting { data: &head }, 1 << 20))
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    }

    #[test]
    fn a_difference_quotes_both_sides_and_escapes_them() {
        let ours = "program: stats low=0\n[session]\ntimeout_secs = 3\n";
        let theirs = "program: stats low=0\n[session]\ntimeout_secs = 4\n";
        let d = difference(ours, theirs, Role::Party(1)).unwrap();
        assert!(d.contains("line 2"), "{d}");
        assert!(
            d.contains("`timeout_secs = 3`") && d.contains("`timeout_secs = 4`"),
            "{d}"
        );
        let d = difference("program: a", "program: b\u{1b}[2J\nforged", Role::Dealer).unwrap();
        assert!(
            d.contains("programs differ") && !d.contains('\u{1b}'),
            "{d}"
        );
        assert_eq!(difference(ours, ours, Role::Dealer), None);
    }
}
