//! `__load`: the emulator's load generator, a child of `cargo xtask bench` so that its CPU is
//! measured apart from the bench's own. HTTPS with keep-alive, one request in flight per
//! connection, every connection its own client.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Connections the bench's loads use: enough requests in flight to keep the emulator's two
/// cores busy while the generator shares them.
pub const CONNECTIONS: usize = 16;

/// The pipelined GET load's shape: connections, and requests in flight on each. Pipelining
/// takes the generator's CPU per request (reqwest's: about 0.055 ms, over half the server's)
/// out of the way of the server's own limit on a machine they share.
pub const PIPELINED: (usize, usize) = (4, 16);

/// A `__load` child of GETs against the emulator at `state`: plain (reqwest, one request in
/// flight per connection) or pipelined, for `seconds`; its JSON line.
pub fn get(state: &Path, pipelined: bool, seconds: &str) -> Result<Value, String> {
    let (connections, depth) = if pipelined {
        PIPELINED
    } else {
        (CONNECTIONS, 1)
    };
    let (connections, depth) = (connections.to_string(), depth.to_string());
    child(
        state,
        &[
            "get",
            "--seconds",
            seconds,
            "--connections",
            &connections,
            "--pipeline",
            &depth,
        ],
    )
}

/// Runs `__load STATE ARGS..` as a child; its JSON line.
pub fn child(state: &Path, args: &[&str]) -> Result<Value, String> {
    let out = std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("__load")
        .arg(state)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("load: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Successful requests per second of a `__load` result.
pub fn rate(v: &Value) -> f64 {
    v["requests"].as_f64().unwrap_or(0.0) / v["seconds"].as_f64().unwrap_or(1.0)
}

/// What `__load` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadMode {
    /// GET the key `--key` (default KEK) over and over.
    Get,
    /// BYOK imports of `--package` (an EC P-256 target), each under a new name.
    Import,
    /// `--count` EC P-256 keys created under new names (fills a vault; not timed).
    Create,
}

/// `__load`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The emulator's state directory (its connection.json).
    pub state: PathBuf,
    #[arg(value_enum)]
    pub mode: LoadMode,
    /// The `.byok` that `import` sends.
    #[arg(long)]
    pub package: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// How long `get` and `import` run.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// How many keys `create` makes.
    #[arg(long, default_value_t = 0)]
    pub count: usize,
    /// The names' prefix (`import`, `create`): PREFIX-N.
    #[arg(long, default_value = "load")]
    pub prefix: String,
    /// The key `get` reads.
    #[arg(long, default_value = "KEK")]
    pub key: String,
    /// `get` only: requests written at once on each connection (HTTP/1.1 pipelining, over
    /// rustls directly: a client library's CPU per request would otherwise be the limit).
    /// 1: reqwest, one request in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
}

/// The emulator as connection.json describes it.
struct Target {
    conn: Value,
    ca: Vec<u8>,
}

impl Target {
    fn read(state: &Path) -> Result<Self, String> {
        let conn: Value = serde_json::from_slice(
            &std::fs::read(state.join("connection.json")).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let ca_path = conn["ca_cert"].as_str().unwrap_or_default().to_string();
        let ca = std::fs::read(&ca_path).map_err(|e| format!("{ca_path}: {e}"))?;
        Ok(Self { conn, ca })
    }

    fn s(&self, key: &str) -> String {
        self.conn[key].as_str().unwrap_or_default().to_string()
    }

    /// A client with one connection, which reaches the vault URL's host (no DNS knows it)
    /// at connection.json's vault_address.
    fn client(&self) -> reqwest::Client {
        let host = vault_host(&self.s("vault_url"));
        let address = self.s("vault_address").parse::<std::net::SocketAddr>().ok();
        let builder = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&self.ca).expect("CA")])
            .pool_max_idle_per_host(1);
        match address {
            Some(addr) => builder.resolve(&host, addr),
            None => builder,
        }
        .build()
        .expect("client")
    }
}

/// The child side of the load test: prints one JSON line (requests, errors, seconds,
/// latency percentiles).
pub fn load(args: &LoadArgs) -> Result<(), String> {
    let target = Arc::new(Target::read(&args.state)?);
    let body = match (&args.package, args.mode) {
        (Some(p), _) => {
            let file = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            // The package carries an EC P-256 target; Key Vault needs crv with EC-HSM.
            json!({"key": {"kty": "EC-HSM", "crv": "P-256", "key_ops": ["sign", "verify"], "key_hsm": byok_core::b64::encode(&file)}})
        }
        (None, LoadMode::Import) => return Err("import needs --package".into()),
        (None, _) => json!({"kty": "EC-HSM", "crv": "P-256"}),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run(target, args.clone(), Arc::new(body)))
}

async fn run(target: Arc<Target>, args: LoadArgs, body: Arc<Value>) -> Result<(), String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let token = client_token(&target.client(), &target.conn).await?;
    let deadline = match args.mode {
        LoadMode::Create => None,
        _ => Some(Instant::now() + Duration::from_secs_f64(args.seconds)),
    };
    if args.mode == LoadMode::Get && args.pipeline > 1 {
        let deadline = deadline.expect("get runs for a time");
        return pipelined(&target, &args, &token, deadline).await;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.connections.max(1) {
        let (http, token, target, body, next, args) = (
            target.client(),
            token.clone(),
            target.clone(),
            body.clone(),
            next.clone(),
            args.clone(),
        );
        let url = target.s("vault_url");
        let request = move |http: &reqwest::Client| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let prefix = &args.prefix;
            match args.mode {
                LoadMode::Get => Some(http.get(format!("{url}/keys/{}?api-version=7.4", args.key))),
                LoadMode::Import => Some(
                    http.put(format!("{url}/keys/{prefix}-{n}?api-version=7.4"))
                        .json(&*body),
                ),
                LoadMode::Create => (n < args.count).then(|| {
                    http.post(format!("{url}/keys/{prefix}-{n}/create?api-version=7.4"))
                        .json(&*body)
                }),
            }
        };
        tasks.push(tokio::spawn(load_connection(
            http, token, request, deadline,
        )));
    }
    let started = Instant::now();
    let (mut ok, mut errors, mut lat) = (0, 0, Vec::new());
    for t in tasks {
        let (o, e, l) = t.await.map_err(|e| e.to_string())?;
        ok += o;
        errors += e;
        lat.extend(l);
    }
    print_load(args.mode, ok, errors, started.elapsed().as_secs_f64(), lat);
    Ok(())
}

/// `get` with `pipeline` requests in flight on each of `connections` TLS connections.
async fn pipelined(
    target: &Target,
    args: &LoadArgs,
    token: &str,
    deadline: Instant,
) -> Result<(), String> {
    let config = Arc::new(target.tls_config()?);
    let mut tasks = Vec::new();
    for _ in 0..args.connections.max(1) {
        let stream = target.tls_stream(config.clone()).await?;
        let request = target.get_request(&args.key, token);
        tasks.push(tokio::spawn(pipelined_connection(
            stream,
            request,
            args.pipeline,
            deadline,
        )));
    }
    let started = Instant::now();
    let (mut ok, mut errors, mut lat) = (0, 0, Vec::new());
    for t in tasks {
        let (o, e, l) = t.await.map_err(|e| e.to_string())??;
        ok += o;
        errors += e;
        lat.extend(l);
    }
    print_load(args.mode, ok, errors, started.elapsed().as_secs_f64(), lat);
    Ok(())
}

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

impl Target {
    /// rustls trusting only the emulator's CA.
    fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca) {
            roots
                .add(cert.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        Ok(rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth())
    }

    /// A TLS connection to the vault URL's host, at connection.json's vault_address.
    async fn tls_stream(&self, config: Arc<rustls::ClientConfig>) -> Result<TlsStream, String> {
        let url = self.s("vault_url");
        let host = vault_host(&url);
        let address: std::net::SocketAddr = self
            .s("vault_address")
            .parse()
            .map_err(|_| "connection.json has no vault_address")?;
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())
    }

    /// `GET /keys/KEY` as bytes, with the bearer token.
    fn get_request(&self, key: &str, token: &str) -> Vec<u8> {
        let url = self.s("vault_url");
        let authority = url.trim_start_matches("https://").trim_end_matches('/');
        format!(
            "GET /keys/{key}?api-version=7.4 HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
        )
        .into_bytes()
    }
}

/// One pipelined connection: `depth` requests written at once, then their `depth` responses
/// read (status 200 and a whole body each), until `deadline`.
async fn pipelined_connection(
    mut stream: TlsStream,
    request: Vec<u8>,
    depth: usize,
    deadline: Instant,
) -> Result<(u64, u64, Vec<f64>), String> {
    use tokio::io::AsyncWriteExt;
    let burst = request.repeat(depth);
    let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
    let mut buf = Vec::with_capacity(64 * 1024);
    while Instant::now() < deadline {
        let t = Instant::now();
        stream.write_all(&burst).await.map_err(|e| e.to_string())?;
        for _ in 0..depth {
            match read_response(&mut stream, &mut buf).await? {
                200 => ok += 1,
                _ => errors += 1,
            }
            latencies.push(t.elapsed().as_secs_f64());
        }
    }
    Ok((ok, errors, latencies))
}

/// Reads one HTTP/1.1 response (Content-Length framed) from `stream` into `buf`, consumes
/// it, and returns its status.
async fn read_response(stream: &mut TlsStream, buf: &mut Vec<u8>) -> Result<u16, String> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(|e| e.to_string())?;
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("not an HTTP response: {head}"))?;
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .ok_or("a response without Content-Length")?;
            let total = end + 4 + length;
            if buf.len() >= total {
                buf.drain(..total);
                return Ok(status);
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the emulator closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An access token from the emulator's token endpoint, as its connection file's client.
async fn client_token(http: &reqwest::Client, conn: &Value) -> Result<String, String> {
    let s = |k: &str| conn[k].as_str().unwrap_or_default().to_string();
    let token: Value = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            s("authority_host"),
            s("tenant_id")
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &s("client_id")),
            ("client_secret", &s("client_secret")),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// One connection of `__load`: `request` over and over until `deadline`; successes, errors
/// and each success's latency.
async fn load_connection(
    http: reqwest::Client,
    token: String,
    request: impl Fn(&reqwest::Client) -> Option<reqwest::RequestBuilder>,
    deadline: Option<Instant>,
) -> (u64, u64, Vec<f64>) {
    let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
    while deadline.is_none_or(|d| Instant::now() < d) {
        let Some(builder) = request(&http) else { break };
        let t = Instant::now();
        match builder.bearer_auth(&token).send().await {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                ok += 1;
                latencies.push(t.elapsed().as_secs_f64());
            }
            _ => errors += 1,
        }
    }
    (ok, errors, latencies)
}

/// One JSON line: requests, errors, seconds and latency percentiles of a `__load` run.
fn print_load(mode: LoadMode, ok: u64, errors: u64, secs: f64, mut lat: Vec<f64>) {
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
        lat.get(i).copied().unwrap_or(0.0) * 1000.0
    };
    let line = json!({"mode": format!("{mode:?}").to_lowercase(), "requests": ok, "errors": errors, "seconds": secs,
        "p50_ms": pct(0.5), "p99_ms": pct(0.99)});
    println!("{line}");
}

/// The host of an `https://HOST[:PORT]` URL.
fn vault_host(url: &str) -> String {
    let authority = url.trim_start_matches("https://");
    let authority = authority.split('/').next().unwrap_or_default();
    authority.split(':').next().unwrap_or_default().to_string()
}
