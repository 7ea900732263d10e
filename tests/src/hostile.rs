//! Hostile endpoints, for the tests of what byok-online and kv-emulator do when a server or a
//! client misbehaves: a TLS server that answers every request with a canned answer (a
//! redirect, an error with control characters), a plain-HTTP listener that counts every
//! connection that reaches it, a one-shot HTTPS request, and access tokens minted with the
//! emulator's own signing key.
//!
//! The TLS server serves the certificate a kv-emulator made in its state directory (its test
//! CA, `ca.pem`, signs one for the vault host and 127.0.0.1), so a client that trusts the
//! emulator trusts this server too: what is tested is the client's behaviour, not its trust.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// How long a test server waits for a client's request before giving up on it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The request a server read: its first line, and the bytes after the head.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub head: String,
    pub body: Vec<u8>,
}

/// Reads one HTTP/1.1 request (head, and as many body bytes as `content-length` says).
fn read_request(stream: &mut impl Read) -> std::io::Result<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    Ok(Seen {
        method: first.next().unwrap_or_default().to_string(),
        path: first.next().unwrap_or_default().to_string(),
        head,
        body,
    })
}

/// A plain-HTTP listener on loopback that counts the connections reaching it and keeps what
/// they sent; each is answered 404 and closed.
pub struct PlainListener {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<String>>>,
}

impl PlainListener {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (connections.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                    if let Ok(req) = read_request(&mut stream) {
                        let text = format!("{}{}", req.head, String::from_utf8_lossy(&req.body));
                        seen.lock().expect("not poisoned").push(text);
                    }
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                });
            }
        });
        PlainListener {
            addr,
            connections,
            received,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// What each connection sent, head and body.
    pub fn received(&self) -> Vec<String> {
        self.received.lock().expect("not poisoned").clone()
    }
}

/// What a [`TlsServer`] answers to a request: the whole HTTP/1.1 response.
pub type Answer = Arc<dyn Fn(&Seen) -> String + Send + Sync>;

/// A TLS server on loopback with a kv-emulator's certificate, answering every request with
/// `answer` and keeping what it was sent.
pub struct TlsServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TlsServer {
    /// Serves `state_dir`'s `server.pem` (chain) and `server.key`, made by a kv-emulator.
    pub fn start(state_dir: &Path, answer: Answer) -> Self {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(state_dir.join("server.pem"))
                .expect("the emulator's server.pem")
                .collect::<Result<_, _>>()
                .expect("PEM certificates");
        let key = PrivateKeyDer::from_pem_file(state_dir.join("server.key"))
            .expect("the emulator's server.key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the emulator's certificate and key");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { continue };
                let (config, answer, log) = (config.clone(), answer.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let Ok(req) = read_request(&mut tls) else {
                        return;
                    };
                    let response = answer(&req);
                    log.lock().expect("not poisoned").push(req);
                    let _ = tls.write_all(response.as_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        TlsServer { addr, seen }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The requests answered so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

/// An answer redirecting every request with `status` to `to` followed by its own path.
pub fn redirect_to(status: u16, to: String) -> Answer {
    Arc::new(move |req: &Seen| {
        let reason = match status {
            301 => "Moved Permanently",
            302 => "Found",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            _ => "Redirect",
        };
        format!(
            "HTTP/1.1 {status} {reason}\r\nlocation: {to}{}\r\ncontent-length: 0\r\n\
             connection: close\r\n\r\n",
            req.path
        )
    })
}

/// An answer with `status` and the JSON `body`, to every request.
pub fn json_answer(status: u16, body: String) -> Answer {
    Arc::new(move |_: &Seen| {
        format!(
            "HTTP/1.1 {status} Refused\r\ncontent-type: application/json; charset=utf-8\r\n\
             x-ms-request-id: 5d1b6bc4-27c7-4c1e-8f5f-7f8f3d1e0a11\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
    })
}

/// One HTTPS GET to `addr` for `host` (SNI and Host header), trusting only `ca_pem`, with
/// `bearer` as its token: the status and the body.
pub fn https_get(
    addr: SocketAddr,
    host: &str,
    ca_pem: &Path,
    path: &str,
    bearer: &str,
) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("the emulator's ca.pem") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a CA certificate");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.split(':').next().unwrap_or(host).to_string())
        .expect("a DNS name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("a TLS client");
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the emulator");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("a timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {bearer}\r\n\
         connection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).expect("send the request");
    let mut response = Vec::new();
    // The emulator closes after `connection: close`; a missing close_notify is no error here.
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("reading the emulator's answer: {e}"),
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in the answer: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// An RS256 JWT over `claims`, signed with the key in a kv-emulator's `identity.json`: a token
/// the emulator's signature check accepts, whatever the claims say.
pub fn mint_token(state_dir: &Path, claims: &serde_json::Value) -> String {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let identity: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state_dir.join("identity.json")).expect("the emulator's identity.json"),
    )
    .expect("identity.json is JSON");
    let pkcs8 = byok_core::b64::decode(
        "token_signing_key",
        identity["token_signing_key"]
            .as_str()
            .expect("identity.json names its token_signing_key"),
    )
    .expect("base64url");
    let key = rsa::PrivateKey::from_pkcs8_der(&pkcs8).expect("an RSA PKCS#8 key");
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
    let header = byok_core::b64::encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = byok_core::b64::encode(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let signature = signer.sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", byok_core::b64::encode(&signature))
}
