//! The network transport: every party and the dealer are processes connected by TCP with
//! **mutual TLS** (rustls); a certificate that does not chain to the session CA, or that is
//! not the one of the party it claims to be, is refused. After the handshake both sides send a
//! hello with their role and the session hash (configuration file + program) and stop if they
//! differ.
//!
//! Messages are frames: a 4-byte length, the 8-byte round number, then little-endian ring
//! elements. A frame with the wrong round or a bad length, a peer that sends nothing within
//! the timeout, or a connection that drops makes the receiving party stop with an error naming
//! the peer and the phase — never a hang.
//!
//! [`NetExchange`] implements [`Exchange`]: the protocol code is the same as in memory.

use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc as tokio_mpsc;
use zeroize::Zeroizing;

use crate::config::{party_name, SessionConfig, DEALER_NAME};
use crate::dealer::{Dealer, Request};
use crate::error::{MpcError, Result};
use crate::protocol::Exchange;

/// Largest frame body accepted (bytes).
pub const MAX_FRAME: usize = 1 << 30;
const MAGIC: &[u8; 8] = b"VEILMPC1";
const DEALER_ROLE: u32 = u32::MAX;
/// The round number of an abort frame: "I stop because party `culprit` failed: reason".
const ABORT_ROUND: u64 = u64::MAX;

fn net(why: impl Into<String>) -> MpcError {
    MpcError::Network(why.into())
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

async fn read_frame(s: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Frame> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if !(8..=MAX_FRAME).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed frame: length {len}"),
        ));
    }
    let mut round = [0u8; 8];
    s.read_exact(&mut round).await?;
    let mut body = vec![0u8; len - 8];
    s.read_exact(&mut body).await?;
    Ok((u64::from_le_bytes(round), body))
}

fn hello(me: Role, hash: &[u8; 32]) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&me.code().to_le_bytes());
    h.extend_from_slice(hash);
    h
}

/// Exchanges hellos on a fresh TLS stream; returns the peer's role after checking its
/// certificate names it and its session hash equals ours.
async fn handshake(
    stream: &mut Stream,
    me: Role,
    hash: &[u8; 32],
    expect: Option<Role>,
) -> Result<Role> {
    write_frame(stream, 0, &hello(me, hash))
        .await
        .map_err(|e| net(format!("sending hello: {e}")))?;
    let (_, body) = read_frame(stream)
        .await
        .map_err(|e| net(format!("reading hello: {e}")))?;
    if body.len() != 8 + 4 + 32 || &body[..8] != MAGIC {
        return Err(net("the peer is not a veil mpc participant (bad hello)"));
    }
    let mut code = [0u8; 4];
    code.copy_from_slice(&body[8..12]);
    let peer = Role::from_code(u32::from_le_bytes(code));
    if let Some(e) = expect {
        if peer != e {
            return Err(net(format!("expected {e}, but {peer} answered")));
        }
    }
    // The certificate (already verified against the session CA) must be the peer's own.
    let certs = match &*stream {
        tokio_rustls::TlsStream::Client(c) => c.get_ref().1.peer_certificates(),
        tokio_rustls::TlsStream::Server(s) => s.get_ref().1.peer_certificates(),
    };
    let cert = certs
        .and_then(|c| c.first())
        .ok_or_else(|| net(format!("{peer} presented no certificate")))?;
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| net(format!("{peer}'s certificate: {e}")))?;
    let name = ServerName::try_from(peer.tls_name())
        .map_err(|e| net(format!("name {}: {e}", peer.tls_name())))?;
    ee.verify_is_valid_for_subject_name(&name).map_err(|_| {
        net(format!(
            "the certificate presented as {peer} is not {peer}'s ({})",
            peer.tls_name()
        ))
    })?;
    if body[12..] != hash[..] {
        return Err(net(format!(
            "{peer} runs a different session (configuration or program differ: hash {}… vs ours {}…)",
            hex::encode(&body[12..20]),
            hex::encode(&hash[..8])
        )));
    }
    Ok(peer)
}

async fn connect(
    tls: &Tls,
    address: &str,
    peer: Role,
    me: Role,
    hash: &[u8; 32],
    deadline: Instant,
) -> Result<Stream> {
    let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
    let name = ServerName::try_from(peer.tls_name()).map_err(|e| net(e.to_string()))?;
    loop {
        let attempt = async {
            let tcp = TcpStream::connect(address)
                .await
                .map_err(|e| net(format!("{address}: {e}")))?;
            tcp.set_nodelay(true).map_err(|e| net(e.to_string()))?;
            let tls = connector
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| net(format!("TLS with {peer} at {address}: {e}")))?;
            let mut stream = tokio_rustls::TlsStream::Client(tls);
            handshake(&mut stream, me, hash, Some(peer)).await?;
            Ok::<_, MpcError>(stream)
        };
        match attempt.await {
            Ok(s) => return Ok(s),
            // Only "not listening yet" is retried: TLS and identity failures are final.
            Err(MpcError::Network(why)) if why.contains("refused") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(match e {
                    MpcError::Network(why) if why.contains("refused") => net(format!(
                        "{peer} at {address} did not come up in time ({why})"
                    )),
                    e => e,
                })
            }
        }
    }
}

/// Accepts the next participant that passes TLS and the hello; strangers (unknown
/// certificates, bad hellos) are refused and waiting goes on until `deadline`.
async fn accept_participant(
    listener: &TcpListener,
    tls: &Tls,
    me: Role,
    hash: &[u8; 32],
    deadline: Instant,
) -> Result<(Role, Stream)> {
    let mut refused: Option<MpcError> = None;
    loop {
        match accept(listener, tls, me, hash, deadline).await {
            Ok(x) => return Ok(x),
            Err(MpcError::Network(why)) if why.contains("in time") => {
                return Err(net(match refused {
                    Some(r) => format!("{why}; refused meanwhile: {r}"),
                    None => why,
                }))
            }
            Err(e) => refused = Some(e),
        }
    }
}

async fn accept(
    listener: &TcpListener,
    tls: &Tls,
    me: Role,
    hash: &[u8; 32],
    deadline: Instant,
) -> Result<(Role, Stream)> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    let left = deadline.saturating_duration_since(Instant::now());
    let (tcp, from) = tokio::time::timeout(left, listener.accept())
        .await
        .map_err(|_| net("the other participants did not connect in time"))?
        .map_err(|e| net(format!("accept: {e}")))?;
    tcp.set_nodelay(true).map_err(|e| net(e.to_string()))?;
    let tls = acceptor
        .accept(tcp)
        .await
        .map_err(|e| net(format!("TLS from {from}: {e} (refused)")))?;
    let mut stream = tokio_rustls::TlsStream::Server(tls);
    let peer = handshake(&mut stream, me, hash, None).await?;
    Ok((peer, stream))
}

/// A connection whose reading and writing run on the runtime.
struct Link {
    tx: tokio_mpsc::UnboundedSender<(u64, Vec<u8>)>,
    rx: std_mpsc::Receiver<std::io::Result<Frame>>,
    writer: tokio::task::JoinHandle<()>,
}

fn spawn_link(rt: &tokio::runtime::Runtime, stream: Stream) -> Link {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut wrx) = tokio_mpsc::unbounded_channel::<(u64, Vec<u8>)>();
    let (rtx, rx) = std_mpsc::channel();
    let writer = rt.spawn(async move {
        while let Some((round, payload)) = wrx.recv().await {
            if write_frame(&mut writer, round, &payload).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    rt.spawn(async move {
        loop {
            let frame = read_frame(&mut reader).await;
            let stop = frame.is_err();
            if rtx.send(frame).is_err() || stop {
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

/// A party's connections to the other parties (and, for the last party, the dealer).
pub struct NetExchange {
    id: usize,
    n: usize,
    peers: Vec<Option<Link>>,
    dealer: Option<Link>,
    round: u64,
    dealer_sent: u64,
    dealer_received: u64,
    timeout: Duration,
    // Declared last: dropped after the links, so their tasks end cleanly.
    _rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for NetExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetExchange")
            .field("id", &self.id)
            .field("parties", &self.n)
            .finish_non_exhaustive()
    }
}

impl NetExchange {
    fn receive(&self, link: &Link, from: Role, phase: &str) -> Result<Vec<u8>> {
        let expected = match from {
            Role::Dealer => self.dealer_received,
            Role::Party(_) => self.round,
        };
        let gone = |why: String| match from {
            Role::Party(party) => MpcError::PartyGone {
                party,
                phase: phase.into(),
                why,
            },
            Role::Dealer => MpcError::Dealer(format!("during {phase}: {why}")),
        };
        match link.rx.recv_timeout(self.timeout) {
            Ok(Ok((ABORT_ROUND, body))) if body.len() >= 8 => {
                let mut c = [0u8; 8];
                c.copy_from_slice(&body[..8]);
                let culprit = usize::try_from(u64::from_le_bytes(c)).unwrap_or(usize::MAX);
                let reason = String::from_utf8_lossy(&body[8..]).into_owned();
                Err(MpcError::PartyGone {
                    party: culprit,
                    phase: phase.into(),
                    why: format!("reported by {from}: {reason}"),
                })
            }
            Ok(Ok((round, body))) => {
                if round != expected {
                    return Err(MpcError::Malformed {
                        party: match from {
                            Role::Party(p) => p,
                            Role::Dealer => usize::MAX,
                        },
                        phase: phase.into(),
                        why: format!("frame of round {round} in round {expected}"),
                    });
                }
                Ok(body)
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => Err(MpcError::Malformed {
                party: match from {
                    Role::Party(p) => p,
                    Role::Dealer => usize::MAX,
                },
                phase: phase.into(),
                why: e.to_string(),
            }),
            Ok(Err(e)) => Err(gone(format!("connection lost: {e}"))),
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                Err(gone(format!("nothing received within {:?}", self.timeout)))
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(gone("connection closed".into())),
        }
    }
}

impl NetExchange {
    /// Tells every peer that this party stops because of `cause` (best effort), so that they
    /// stop too and name the party that failed, not this one.
    fn abort(&self, cause: &MpcError) {
        let culprit = match cause {
            MpcError::PartyGone { party, .. } | MpcError::Malformed { party, .. } => *party,
            _ => self.id,
        };
        let mut body = (culprit as u64).to_le_bytes().to_vec();
        body.extend_from_slice(cause.to_string().as_bytes());
        for link in self.peers.iter().flatten() {
            let _ = link.tx.send((ABORT_ROUND, body.clone()));
        }
    }
}

impl NetExchange {
    /// **Hazmat, for fault-injection tests**: sends party `to` one raw frame (`round`,
    /// `payload`) outside the protocol, as a faulty or malicious party would. Nothing a
    /// computation needs.
    #[doc(hidden)]
    pub fn hazmat_send_raw_frame(&self, to: usize, round: u64, payload: Vec<u8>) -> Result<()> {
        let link =
            self.peers.get(to).and_then(Option::as_ref).ok_or_else(|| {
                MpcError::InvalidParameter(format!("no connection to party {to}"))
            })?;
        link.tx
            .send((round, payload))
            .map_err(|_| MpcError::PartyGone {
                party: to,
                phase: "raw frame".into(),
                why: "connection closed".into(),
            })
    }
}

impl Drop for NetExchange {
    fn drop(&mut self) {
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
        self._rt.block_on(async {
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
        self.round += 1;
        for (j, msg) in outgoing.iter().enumerate() {
            if let Some(link) = &self.peers[j] {
                link.tx
                    .send((self.round, to_bytes(msg)))
                    .map_err(|_| MpcError::PartyGone {
                        party: j,
                        phase: phase.into(),
                        why: "connection closed".into(),
                    })?;
            }
        }
        let mut incoming = vec![Vec::new(); self.n];
        for (j, link) in self.peers.iter().enumerate() {
            if let Some(link) = link {
                let got = self.receive(link, Role::Party(j), phase).and_then(|body| {
                    from_bytes(&body).ok_or_else(|| MpcError::Malformed {
                        party: j,
                        phase: phase.into(),
                        why: format!("{} bytes is not whole ring elements", body.len()),
                    })
                });
                match got {
                    Ok(v) => incoming[j] = v,
                    Err(e) => {
                        self.abort(&e);
                        return Err(e);
                    }
                }
            }
        }
        Ok(incoming)
    }

    fn dealer_request(&mut self, request: &Request) -> Result<()> {
        let Some(link) = &self.dealer else {
            return Ok(());
        };
        // Dealer requests have their own sequence (only the last party makes them).
        self.dealer_sent += 1;
        link.tx
            .send((self.dealer_sent, to_bytes(&encode_request(request))))
            .map_err(|_| MpcError::Dealer("connection closed".into()))
    }

    fn dealer_correction(&mut self) -> Result<Option<Vec<u64>>> {
        let Some(link) = &self.dealer else {
            return Ok(None);
        };
        self.dealer_received += 1;
        let got = self
            .receive(link, Role::Dealer, "dealer request")
            .and_then(|body| {
                from_bytes(&body).ok_or_else(|| MpcError::Dealer("malformed correction".into()))
            });
        if let Err(e) = &got {
            // The other parties would otherwise wait for this one until their timeout.
            self.abort(e);
        }
        got.map(Some)
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
/// seed. Every party must call this with the same configuration and program.
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
    let timeout = config.timeout();
    let deadline = Instant::now() + timeout;
    let rt = runtime()?;
    let listen = resolve(&config.parties[id].address)?;
    let (streams, dealer_stream, seed) = rt.block_on(async {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| net(format!("cannot listen on {listen}: {e}")))?;
        let mut streams: Vec<Option<Stream>> = (0..n).map(|_| None).collect();
        // Connect to lower ids, accept higher ids (concurrently).
        let accepting = async {
            let mut got = Vec::new();
            for _ in id + 1..n {
                let (peer, s) = accept_participant(&listener, &tls, me, &hash, deadline).await?;
                match peer {
                    Role::Party(j) if j > id && j < n => got.push((j, s)),
                    other => return Err(net(format!("unexpected connection from {other}"))),
                }
            }
            Ok::<_, MpcError>(got)
        };
        let connecting = async {
            let mut got = Vec::new();
            for j in 0..id {
                let s = connect(
                    &tls,
                    &config.parties[j].address,
                    Role::Party(j),
                    me,
                    &hash,
                    deadline,
                )
                .await?;
                got.push((j, s));
            }
            Ok::<_, MpcError>(got)
        };
        let (a, c) = tokio::join!(accepting, connecting);
        for (j, s) in a?.into_iter().chain(c?) {
            if streams[j].is_some() {
                return Err(net(format!("party {j} connected twice")));
            }
            streams[j] = Some(s);
        }
        if !with_dealer {
            return Ok::<_, MpcError>((streams, None, None));
        }
        let mut dealer = connect(
            &tls,
            &config.dealer.address,
            Role::Dealer,
            me,
            &hash,
            deadline,
        )
        .await?;
        let (_, body) = tokio::time::timeout(timeout, read_frame(&mut dealer))
            .await
            .map_err(|_| MpcError::Dealer("no seed within the timeout".into()))?
            .map_err(|e| MpcError::Dealer(format!("seed: {e}")))?;
        let seed: [u8; 32] = body
            .as_slice()
            .try_into()
            .map_err(|_| MpcError::Dealer("malformed seed".into()))?;
        Ok((streams, Some(dealer), Some(Zeroizing::new(seed))))
    })?;
    let peers = streams
        .into_iter()
        .map(|s| s.map(|s| spawn_link(&rt, s)))
        .collect();
    let dealer = dealer_stream
        .filter(|_| id == n - 1)
        .map(|s| spawn_link(&rt, s));
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
            _rt: rt,
        },
        seed,
    ))
}

/// What the dealer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DealerReport {
    /// Requests served.
    pub requests: u64,
    /// Bytes of corrections sent to the last party.
    pub correction_bytes: u64,
}

/// Runs the dealer: waits for every party, gives each its seed, then answers the last party's
/// requests until it disconnects.
pub fn run_dealer(config: &SessionConfig, program: &str) -> Result<DealerReport> {
    let n = config.parties();
    let tls = load_tls(config, Role::Dealer)?;
    let hash = config.session_hash(program);
    let timeout = config.timeout();
    let listen = resolve(&config.dealer.address)?;
    let rt = runtime()?;
    rt.block_on(async {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| net(format!("cannot listen on {listen}: {e}")))?;
        // Parties connect once they are connected to each other: allow twice the timeout.
        let deadline = Instant::now() + 2 * timeout;
        let mut streams: Vec<Option<Stream>> = (0..n).map(|_| None).collect();
        for _ in 0..n {
            let (peer, s) =
                accept_participant(&listener, &tls, Role::Dealer, &hash, deadline).await?;
            match peer {
                Role::Party(j) if j < n && streams[j].is_none() => streams[j] = Some(s),
                other => return Err(net(format!("unexpected connection from {other}"))),
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
            write_frame(&mut s, 0, seeds[j].as_ref())
                .await
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
        loop {
            let (round, body) = match read_frame(&mut s).await {
                Ok(f) => f,
                // The last party closing the connection ends the session.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(report),
                Err(e) => return Err(net(format!("party {}: {e}", n - 1))),
            };
            let request = from_bytes(&body)
                .as_deref()
                .and_then(decode_request)
                .ok_or_else(|| MpcError::Malformed {
                    party: n - 1,
                    phase: "dealer request".into(),
                    why: "not a request".into(),
                })?;
            let correction = dealer.correction(&request)?;
            let bytes = to_bytes(&correction);
            report.requests += 1;
            report.correction_bytes += bytes.len() as u64;
            write_frame(&mut s, round, &bytes)
                .await
                .map_err(|e| net(format!("correction to party {}: {e}", n - 1)))?;
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
            let (round, body) = read_frame(&mut buf.as_slice()).await.unwrap();
            assert_eq!((round, body.len()), (7, 8));
            // A length below the header, or beyond the limit, is malformed; a cut frame too.
            let e = read_frame(&mut &[3u8, 0, 0, 0][..]).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            let e = read_frame(&mut &[255u8, 255, 255, 255][..])
                .await
                .unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            assert!(read_frame(&mut &buf[..buf.len() - 1]).await.is_err());
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
}
