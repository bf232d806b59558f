//! The QUIC side of `nrpc_qps --system quinn`: a unary echo over
//! [quinn](https://docs.rs/quinn) 0.11, measured by the same closed-loop
//! shape as the nRPC SDK mode ([`crate::nrpc::run_sdk`]): one connection,
//! `conc` tokio tasks on one worker thread, one bidirectional stream per call.
//!
//! # TLS
//!
//! TLS 1.3 only, rustls with the *ring* provider (never aws-lc-rs, which
//! needs cmake and clang to build). The server presents a self-signed
//! certificate for `localhost`, made at start-up from `BENCH_KEY_PEM`, a
//! fixed ECDSA P-256 key compiled into the bench: it is a test fixture, not a
//! secret, and guards nothing but the bench's own loopback or namespace
//! traffic.
//!
//! The client runs in another process and cannot see the generated
//! certificate, so it **pins the key**, not the certificate: its verifier
//! (`PinnedKey`) accepts a chain only if it is a single certificate whose
//! SubjectPublicKeyInfo equals the bench key's, that is valid for
//! `localhost`, and whose holder signs the TLS 1.3 handshake (checked with
//! the provider's `verify_tls13_signature`). Verification is never switched
//! off. Pinning the certificate instead would need both processes to make
//! byte-identical certificates, and they don't: ECDSA signatures are
//! randomized, so every generation differs. Dates are not checked: the pin
//! replaces the PKI (and rcgen's certificates are valid 1975–4096 anyway).
//!
//! # Cipher suite
//!
//! quinn does not expose the negotiated suite, so the client offers exactly
//! one: the first QUIC-capable TLS 1.3 suite of ring's default list, which
//! is what two default rustls peers negotiate (the server follows the
//! client's order). A completed handshake has therefore negotiated it, and
//! [`Client::describe`] names it. QUIC's Initial packets use AES-128-GCM
//! whatever is negotiated (RFC 9001 §5.2).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, IdleTimeout, RecvStream, SendStream, TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{CertificateError, CipherSuite, DigitallySignedStruct, SignatureScheme};

use crate::{Point, PointResult};

/// The server's key: ECDSA P-256, PKCS#8. **Bench-only, not a secret**: it
/// is public in this source so that a client in another process can pin it.
const BENCH_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg94dcrzGlriEX6ZOn
EIRVmNix7fjlxKTeyYQnNzbHtw+hRANCAAT3jWxReAW+q0+VfnBJhzEST6qTho4P
tsVPGznBv3eGP4pXB7wfbU/uh637esAi/gCA5XJij+e3Qp8aZtKN0HXJ
-----END PRIVATE KEY-----
";

/// The name in the server's certificate, which the client asks for.
const SERVER_NAME: &str = "localhost";
/// ALPN protocol both sides require: a connection to some other QUIC
/// service fails its handshake instead of failing calls.
const ALPN: &[u8] = b"net-bench-echo";
/// Largest request body the server echoes; a longer stream is refused.
const MAX_BODY: usize = 16 << 20;
/// Stream error code of a refused (too long) request.
const TOO_LARGE: u32 = 1;
/// Stream error code of a request the server could not read whole.
const BROKEN: u32 = 2;
/// Streams one side may open at once: far above the bench's 128 calls in
/// flight, so stream credit never paces a point.
const MAX_STREAMS: u32 = 1024;
/// Idle timeout, ms (both sides; the smaller applies).
const IDLE_MS: u32 = 30_000;
/// The client's keep-alive: a connection idle between points stays open.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// A call with no answer after this counts as an error (no run hangs).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A handshake with no outcome after this fails [`Client::connect`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing waits for the peer to acknowledge (bounded drops).
const CLOSE_WAIT: Duration = Duration::from_millis(200);

/// A QUIC echo server on its own thread (a current-thread tokio runtime
/// pinned to `cpu`), serving until dropped.
///
/// Every bidirectional stream is echoed: read to its end (at most 16 MiB;
/// longer ones are stopped and reset), written back, finished. Streams are
/// served concurrently, one task each.
pub struct Server {
    /// The bound address (the port is real even if `listen` asked for 0).
    addr: SocketAddr,
    /// Tells the thread to close the endpoint and return; `None` once sent.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The serving thread; `None` once joined.
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `listen` and starts serving; returns once the socket is bound,
    /// so [`Server::local_addr`] is connectable at once.
    pub fn start(listen: SocketAddr, cpu: Option<usize>) -> Result<Server, String> {
        Self::start_with_key(listen, cpu, &bench_key()?)
    }

    /// [`Server::start`] presenting a certificate of `key` (tests: a server
    /// with another key than the pinned one).
    fn start_with_key(
        listen: SocketAddr,
        cpu: Option<usize>,
        key: &rcgen::KeyPair,
    ) -> Result<Server, String> {
        let config = server_config(key)?;
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("quic-server".into())
            .spawn(move || serve(listen, cpu, config, ready_tx, stop_rx))
            .map_err(|e| format!("QUIC server thread: {e}"))?;
        let ready = ready_rx.recv();
        let mut server = Server {
            addr: listen,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready {
            Ok(Ok(addr)) => {
                server.addr = addr;
                Ok(server)
            }
            // Dropping `server` joins the thread, which has returned.
            Ok(Err(e)) => Err(e),
            Err(_) => Err("QUIC server thread died before it was ready".into()),
        }
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    /// Stops the thread and joins it: it closes the endpoint, waits at most
    /// 200 ms for clients to be told, and drops its runtime (which
    /// cancels every connection and stream task).
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // Fails only if the thread already returned.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                eprintln!("nrpc_qps: the QUIC server thread panicked");
            }
        }
    }
}

/// The server thread: binds, reports the address (or why not) on `ready`,
/// serves until `stop`, then closes.
fn serve(
    listen: SocketAddr,
    cpu: Option<usize>,
    config: quinn::ServerConfig,
    ready: std::sync::mpsc::SyncSender<Result<SocketAddr, String>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    crate::pin(cpu);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("QUIC server runtime: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        let bound = Endpoint::server(config, listen)
            .and_then(|ep| ep.local_addr().map(|addr| (ep, addr)))
            .map_err(|e| format!("QUIC server socket on {listen}: {e}"));
        let endpoint = match bound {
            Ok((endpoint, addr)) => {
                // The starter waits for this message, so it is received.
                let _ = ready.send(Ok(addr));
                endpoint
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        tokio::select! {
            _ = stop => {}
            _ = accept_loop(&endpoint) => {}
        }
        endpoint.close(VarInt::from_u32(0), b"server stopped");
        let _ = tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
    });
}

/// Accepts connections until the endpoint closes, each served by its own task.
async fn accept_loop(endpoint: &Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            // A failed handshake (say, a client refusing our key) is the
            // client's to report.
            if let Ok(conn) = incoming.await {
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(echo_stream(send, recv));
                }
            }
        });
    }
}

/// Echoes one stream: the whole request back, then FIN.
async fn echo_stream(mut send: SendStream, mut recv: RecvStream) {
    match recv.read_to_end(MAX_BODY).await {
        Ok(body) => {
            if send.write_all(&body).await.is_ok() {
                // Fails only if the client already gave up on the stream.
                let _ = send.finish();
            }
        }
        Err(quinn::ReadToEndError::TooLong) => {
            let _ = recv.stop(VarInt::from_u32(TOO_LARGE));
            let _ = send.reset(VarInt::from_u32(TOO_LARGE));
        }
        Err(_) => {
            let _ = send.reset(VarInt::from_u32(BROKEN));
        }
    }
}

/// A QUIC client: one connection to the server, a tokio runtime with one
/// worker thread pinned to `cpu` (as the nRPC SDK client uses one worker).
///
/// Neither [`Client::run`] nor dropping may happen inside an async context:
/// both block on the client's runtime.
pub struct Client {
    /// The connection every call opens its stream on.
    conn: Connection,
    /// Its endpoint, kept to wait for a clean close on drop.
    endpoint: Endpoint,
    /// The one suite the client offers, hence the negotiated one.
    suite: CipherSuite,
    /// Drives the endpoint, the connection and the calls; dropped last.
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// Binds `bind` (any port), connects to `server` and completes the
    /// handshake (at most 10 s). `Err` if the server does not hold the
    /// pinned bench key: "… invalid peer certificate:
    /// ApplicationVerificationFailure".
    pub fn connect(bind: IpAddr, server: SocketAddr, cpu: Option<usize>) -> Result<Client, String> {
        let (crypto, suite) = client_crypto()?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(Arc::new(transport(Some(KEEP_ALIVE))));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("quic-client")
            .on_thread_start(move || crate::pin(cpu))
            .enable_all()
            .build()
            .map_err(|e| format!("QUIC client runtime: {e}"))?;
        let (endpoint, conn) = rt.block_on(async {
            let mut endpoint = Endpoint::client(SocketAddr::new(bind, 0))
                .map_err(|e| format!("QUIC client socket on {bind}: {e}"))?;
            endpoint.set_default_client_config(config);
            let connecting = endpoint
                .connect(server, SERVER_NAME)
                .map_err(|e| format!("QUIC connect to {server}: {e}"))?;
            match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                Ok(Ok(conn)) => Ok((endpoint, conn)),
                Ok(Err(e)) => Err(format!("QUIC handshake with {server}: {e}")),
                Err(_) => Err(format!(
                    "QUIC handshake with {server}: no outcome in {CONNECT_TIMEOUT:?}"
                )),
            }
        })?;
        Ok(Client {
            conn,
            endpoint,
            suite,
            rt,
        })
    }

    /// One line: "quinn 0.11, TLS 1.3 (rustls/ring), `suite`, pinned ECDSA
    /// P-256 server key", where `suite` is the negotiated cipher suite, e.g.
    /// `TLS13_AES_256_GCM_SHA384` (the only one offered: see the module doc).
    pub fn describe(&self) -> String {
        format!(
            "quinn 0.11, TLS 1.3 (rustls/ring), {:?}, pinned ECDSA P-256 server key",
            self.suite
        )
    }

    /// Measures one point, closed loop: `point.conc` tasks, each in a loop
    /// opening one bidirectional stream per call, writing `point.payload`
    /// bytes (at least 8: bytes 0..8 are a unique call id, the rest 0x5a),
    /// finishing the send side, reading the whole echo and checking it is
    /// byte-equal. Calls that end after `point.warmup` are recorded, until
    /// `point.warmup + point.duration`; wrong, failed or timed-out (5 s)
    /// calls count in `errors`. `elapsed` is `point.duration`. `Err` for an
    /// open-loop point (`point.rate`), or if the connection closes.
    pub fn run(&self, point: &Point) -> Result<PointResult, String> {
        if point.rate.is_some() {
            return Err("the QUIC peer runs closed loop only".into());
        }
        let measure_from = Instant::now() + point.warmup;
        let end = measure_from + point.duration;
        let payload = point.payload.max(8);
        let results = self.rt.block_on(async {
            let tasks: Vec<_> = (0..point.conc as u64)
                .map(|t| {
                    let conn = self.conn.clone();
                    tokio::spawn(call_loop(conn, t, payload, measure_from, end))
                })
                .collect();
            let mut all = Vec::with_capacity(tasks.len());
            for task in tasks {
                all.push(task.await.map_err(|e| format!("QUIC call task: {e}"))?);
            }
            Ok::<_, String>(all)
        })?;
        PointResult::of_tasks(results, point.duration)
    }
}

impl Drop for Client {
    /// Closes the connection and waits at most 200 ms for the
    /// server to acknowledge, so the server does not keep a dead connection
    /// for its idle timeout.
    fn drop(&mut self) {
        self.conn.close(VarInt::from_u32(0), b"done");
        let endpoint = self.endpoint.clone();
        // The timer is made inside the runtime: `timeout` needs its clock.
        let _ = self
            .rt
            .block_on(async move { tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await });
    }
}

/// One task of [`Client::run`]: calls back to back until `end`, recording
/// the calls that end from `measure_from` on.
async fn call_loop(
    conn: Connection,
    t: u64,
    payload: usize,
    measure_from: Instant,
    end: Instant,
) -> Result<PointResult, String> {
    let conn = &conn;
    crate::closed_loop(t, payload, measure_from, end, |body| {
        let body = body.to_vec();
        async move {
            let reply = tokio::time::timeout(CALL_TIMEOUT, echo(conn, &body)).await;
            if let Some(reason) = conn.close_reason() {
                return Err(format!("QUIC connection closed: {reason}"));
            }
            Ok(reply.ok().flatten())
        }
    })
    .await
}

/// One call: a new stream, the body, FIN, the whole reply (`None` if any
/// step failed, or the reply is longer than the body).
async fn echo(conn: &Connection, body: &[u8]) -> Option<Vec<u8>> {
    let (mut send, mut recv) = conn.open_bi().await.ok()?;
    send.write_all(body).await.ok()?;
    send.finish().ok()?;
    recv.read_to_end(body.len()).await.ok()
}

/// Transport settings of both sides: stream credit far above the calls in
/// flight; quinn's default windows (1.25 MB per stream, unlimited per
/// connection on receive, 10 MB on send) hold 128 × 1 KiB many times over.
fn transport(keep_alive: Option<Duration>) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_MS))))
        .keep_alive_interval(keep_alive);
    t
}

/// The bench key ([`BENCH_KEY_PEM`]).
fn bench_key() -> Result<rcgen::KeyPair, String> {
    rcgen::KeyPair::from_pem(BENCH_KEY_PEM).map_err(|e| format!("bench QUIC key: {e}"))
}

/// A self-signed certificate of `key` for [`SERVER_NAME`].
fn self_signed(key: &rcgen::KeyPair) -> Result<CertificateDer<'static>, String> {
    rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
        .and_then(|params| params.self_signed(key))
        .map(|cert| cert.der().clone())
        .map_err(|e| format!("self-signed QUIC certificate: {e}"))
}

/// The server's QUIC configuration: TLS 1.3, a certificate of `key`, ALPN
/// [`ALPN`], [`transport`] without keep-alive.
fn server_config(key: &rcgen::KeyPair) -> Result<quinn::ServerConfig, String> {
    let tls_err = |e: rustls::Error| format!("QUIC server TLS: {e}");
    let cert = self_signed(key)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(tls_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| format!("QUIC server TLS: {e}"))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport(None)));
    Ok(config)
}

/// The client's QUIC TLS configuration and the one suite it offers (see the
/// module doc, "Cipher suite"): TLS 1.3, ALPN [`ALPN`], the server
/// authenticated by [`PinnedKey`].
fn client_crypto() -> Result<(QuicClientConfig, CipherSuite), String> {
    let tls_err = |e: rustls::Error| format!("QUIC client TLS: {e}");
    let ring = rustls::crypto::ring::default_provider();
    let offered = ring
        .cipher_suites
        .iter()
        .copied()
        .find(|s| s.tls13().is_some_and(|s| s.quic.is_some()))
        .ok_or("QUIC client TLS: ring has no QUIC-capable TLS 1.3 suite")?;
    let initial = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .and_then(|s| s.quic_suite())
        .ok_or("QUIC client TLS: ring's AES-128-GCM has no QUIC support")?;
    let verifier = Arc::new(PinnedKey {
        spki: bench_key()?.public_key_der(),
        algs: ring.signature_verification_algorithms,
    });
    let provider = CryptoProvider {
        cipher_suites: vec![offered],
        ..ring
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::with_initial(Arc::new(tls), initial)
        .map_err(|e| format!("QUIC client TLS: {e}"))?;
    Ok((crypto, offered.suite()))
}

/// Authenticates the server by its key: the chain must be exactly one
/// certificate, for [`SERVER_NAME`], carrying the pinned public key, and the
/// handshake must be signed by that key (TLS 1.3 only).
#[derive(Debug)]
struct PinnedKey {
    /// The pinned SubjectPublicKeyInfo, DER (outer SEQUENCE included).
    spki: Vec<u8>,
    /// The provider's signature algorithms.
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(
                "the bench server sent a certificate chain, not one pinned certificate".into(),
            ));
        }
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        if cert.subject_public_key_info().as_ref() != self.spki.as_slice() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        rustls::client::verify_server_name(&cert, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "TLS 1.2 is never offered to the bench server".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    fn point(payload: usize) -> Point {
        Point {
            conc: 4,
            payload,
            duration: Duration::from_millis(200),
            warmup: Duration::from_millis(50),
            spin: Duration::ZERO,
            rate: None,
        }
    }

    fn other_key() -> rcgen::KeyPair {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key")
    }

    #[test]
    fn echo_points_complete_without_errors() {
        let server = Server::start(SocketAddr::new(loopback(), 0), None).expect("server");
        let client = Client::connect(loopback(), server.local_addr(), None).expect("client");
        assert!(
            client.describe().contains("TLS 1.3"),
            "{}",
            client.describe()
        );
        for payload in [32, 1024] {
            let p = point(payload);
            let r = client.run(&p).expect("point");
            assert!(r.ok > 0, "{}: no call completed", p.name());
            assert_eq!(r.errors, 0, "{}", p.name());
            assert_eq!(r.hist.len(), r.ok);
            assert_eq!(r.elapsed, p.duration);
        }
        let open = Point {
            rate: Some(1000.0),
            ..point(32)
        };
        assert!(client.run(&open).is_err());
    }

    #[test]
    fn client_refuses_a_server_with_another_key() {
        let listen = SocketAddr::new(loopback(), 0);
        let server = Server::start_with_key(listen, None, &other_key()).expect("server");
        match Client::connect(loopback(), server.local_addr(), None) {
            Ok(_) => panic!("the client accepted a server without the pinned key"),
            Err(e) => assert!(e.contains("certificate"), "{e}"),
        }
    }

    #[test]
    fn verifier_accepts_only_the_pinned_key_for_localhost() {
        let key = bench_key().expect("bench key");
        let verifier = PinnedKey {
            spki: key.public_key_der(),
            algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        };
        let own = self_signed(&key).expect("own certificate");
        let other = self_signed(&other_key()).expect("other certificate");
        let localhost = ServerName::try_from(SERVER_NAME).expect("name");
        let check = |cert: &CertificateDer<'_>, chain: &[CertificateDer<'_>], name| {
            verifier.verify_server_cert(cert, chain, name, &[], UnixTime::now())
        };
        assert!(check(&own, &[], &localhost).is_ok());
        assert!(check(&other, &[], &localhost).is_err());
        let elsewhere = ServerName::try_from("example.com").expect("name");
        assert!(check(&own, &[], &elsewhere).is_err());
        assert!(check(&own, std::slice::from_ref(&other), &localhost).is_err());
    }
}
