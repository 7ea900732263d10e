//! The credential `byok-online` authenticates with, and the `--auth auto` chain.
//!
//! `auto` walks the environment's client secret, workload identity, managed identity, then az
//! / azd; the first that gives a token is kept for the rest of the run (each command connects
//! once). A step that is not configured here is skipped at once.
//!
//! Managed identity on a VM is a guess, not configuration: nothing in the environment says
//! there is an instance-metadata endpoint (IMDS, `169.254.169.254`). So in `auto` it is a
//! probe: one request, with [`PROBE_TIMEOUT`] for connect and answer together and no retry.
//! Only when Azure's IMDS answers does `auto` ask it for a token, with the SDK's full retry
//! schedule from then on. Without the probe a workstation with no managed identity spent the
//! SDK's IMDS retry schedule (about 100 s) before reaching az (issue 29). `--auth
//! managed-identity` given explicitly has no probe and the full retries, as before.
//!
//! The other steps of the chain need no network probe: the client secret and workload identity
//! are there when their variables (and workload identity's token file) are; App Service's
//! managed identity when `IDENTITY_ENDPOINT` is. az and azd run with a deadline
//! ([`TOOL_TIMEOUT_AUTO`] in `auto`, as Microsoft's DefaultAzureCredential, and
//! [`TOOL_TIMEOUT_CLI`] with `--auth cli`); a tool past it is killed with its process group.
//! The HTTP steps (workload identity, managed identity) run with timeouts too.
//!
//! `-v` says which step was tried, how long it took, and which gave the token.
//!
//! Where IMDS is, the managed identity's transport to it and `auto`'s probe of it are in
//! `credential/imds.rs`.

use crate::error::{OnlineError, Result};
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    DeveloperToolsCredential, DeveloperToolsCredentialOptions, Executor, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod imds;

pub use imds::{IMDS_BASE, Imds, PROBE_TIMEOUT};
use imds::{ImdsProbe, Probe};

/// How long `auto` waits for az, and then for azd (Microsoft's DefaultAzureCredential waits
/// 10 s for a developer tool).
pub const TOOL_TIMEOUT_AUTO: Duration = Duration::from_secs(10);
/// How long `--auth cli` waits for az, and then for azd.
pub const TOOL_TIMEOUT_CLI: Duration = Duration::from_secs(60);

/// Which credential to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Environment client secret, workload identity, managed identity (when IMDS answers a
    /// probe), then az / azd.
    Auto,
    Cli,
    ManagedIdentity,
    ClientSecret,
    WorkloadIdentity,
}

impl AuthMode {
    /// What `-v` says about the credential chosen.
    fn describe(self) -> &'static str {
        match self {
            AuthMode::Auto => {
                "auto: the environment's client secret, workload identity, managed identity \
                 (when the instance-metadata endpoint answers a 1 s probe), then az / azd; the \
                 first that gives a token is kept"
            }
            AuthMode::Cli => "az / azd (developer tools)",
            AuthMode::ManagedIdentity => "managed identity (the SDK's full retry schedule)",
            AuthMode::ClientSecret => {
                "client secret from AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET"
            }
            AuthMode::WorkloadIdentity => "workload identity",
        }
    }
}

/// Seconds, to the hundredth.
fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// Runs az and azd with a deadline: past it the tool and its children (its process group)
/// are killed, and the step fails as timed out.
#[derive(Debug)]
struct ToolExecutor {
    timeout: Duration,
}

#[async_trait::async_trait]
impl Executor for ToolExecutor {
    async fn run(&self, program: &OsStr, args: &[&OsStr]) -> std::io::Result<std::process::Output> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so that a timeout stops the tool the shell started too.
        #[cfg(unix)]
        cmd.process_group(0);
        let child = cmd.spawn()?;
        let pid = child.id();
        let wait = child.wait_with_output();
        tokio::pin!(wait);
        match tokio::time::timeout(self.timeout, &mut wait).await {
            Ok(output) => output,
            Err(_) => {
                // The shell is not reaped yet, so its group id cannot have been reused.
                #[cfg(unix)]
                if let Some(group) = pid
                    .and_then(|p| i32::try_from(p).ok())
                    .and_then(rustix::process::Pid::from_raw)
                    .filter(|p| !p.is_init())
                {
                    let _ =
                        rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                }
                #[cfg(not(unix))]
                let _ = pid;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s; stopped it", self.timeout.as_secs()),
                ))
            }
        }
    }
}

fn cloud(authority: Option<&str>) -> Option<Arc<CloudConfiguration>> {
    authority.map(|host| {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = host.to_string();
        Arc::new(CloudConfiguration::Custom(custom))
    })
}

/// A client secret credential against `authority` (Azure's when `None`).
pub(crate) fn client_secret(
    tenant: &str,
    client_id: &str,
    secret: &str,
    authority: Option<&str>,
    transport: &Transport,
) -> Result<Arc<dyn TokenCredential>> {
    let credential = ClientSecretCredential::new(
        tenant,
        client_id.to_string(),
        Secret::new(secret.to_string()),
        Some(ClientSecretCredentialOptions {
            client_options: ClientOptions {
                transport: Some(transport.clone()),
                cloud: cloud(authority),
                ..Default::default()
            },
        }),
    )
    .map_err(|e| OnlineError::CredentialSetup {
        mode: "client-secret",
        reason: e.to_string(),
    })?;
    Ok(credential)
}

fn env_client_secret(
    authority: Option<&str>,
    transport: &Transport,
) -> Option<Result<Arc<dyn TokenCredential>>> {
    let (tenant, id, secret) = (
        std::env::var("AZURE_TENANT_ID").ok()?,
        std::env::var("AZURE_CLIENT_ID").ok()?,
        std::env::var("AZURE_CLIENT_SECRET").ok()?,
    );
    Some(client_secret(&tenant, &id, &secret, authority, transport))
}

/// Workload identity (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE, read at
/// once), through this tool's HTTPS client (its timeouts, CA and proxy) and authority.
fn workload_identity(
    authority: Option<&str>,
    transport: &Transport,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let c: Arc<dyn TokenCredential> =
        WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
            credential_options: ClientAssertionCredentialOptions {
                client_options: ClientOptions {
                    transport: Some(transport.clone()),
                    cloud: cloud(authority),
                    ..Default::default()
                },
            },
            ..Default::default()
        }))?;
    Ok(c)
}

/// The managed identity the environment points at (App Service's `IDENTITY_ENDPOINT`), or
/// the VM's through IMDS; the SDK's full retry schedule.
fn managed_identity(imds: &Imds) -> Result<azure_core::Result<Arc<dyn TokenCredential>>> {
    let options = ManagedIdentityCredentialOptions {
        client_options: ClientOptions {
            transport: Some(imds.transport()?),
            ..Default::default()
        },
        ..Default::default()
    };
    Ok(ManagedIdentityCredential::new(Some(options)).map(|c| c as Arc<dyn TokenCredential>))
}

/// az, then azd, each given `timeout`.
fn developer_tools(timeout: Duration) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let c: Arc<dyn TokenCredential> =
        DeveloperToolsCredential::new(Some(DeveloperToolsCredentialOptions {
            executor: Some(Arc::new(ToolExecutor { timeout })),
        }))?;
    Ok(c)
}

/// Whether a variable is set (to anything).
fn is_set(var: &str) -> bool {
    std::env::var_os(var).is_some()
}

/// The credential of `mode`. Sends nothing: `auto`'s probes run at the first token request.
pub(crate) fn credential(
    mode: AuthMode,
    authority: Option<&str>,
    transport: &Transport,
    imds: &Imds,
) -> Result<Arc<dyn TokenCredential>> {
    let fail = |mode: &'static str| {
        move |e: azure_core::Error| OnlineError::CredentialSetup {
            mode,
            reason: e.to_string(),
        }
    };
    tracing::info!("credential: {}", mode.describe());
    match mode {
        AuthMode::ClientSecret => env_client_secret(authority, transport).unwrap_or_else(|| {
            Err(OnlineError::CredentialSetup {
                mode: "client-secret",
                reason: "set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET".into(),
            })
        }),
        AuthMode::WorkloadIdentity => {
            workload_identity(authority, transport).map_err(fail("workload-identity"))
        }
        AuthMode::ManagedIdentity => managed_identity(imds)?.map_err(fail("managed-identity")),
        AuthMode::Cli => developer_tools(TOOL_TIMEOUT_CLI).map_err(fail("cli")),
        AuthMode::Auto => Ok(Arc::new(auto_chain(authority, transport, imds)?)),
    }
}

/// `auto`'s steps, in order.
fn auto_chain(authority: Option<&str>, transport: &Transport, imds: &Imds) -> Result<Chain> {
    let mut sources = Vec::new();
    let step = match env_client_secret(authority, transport) {
        Some(c) => Step::Try(c?),
        None => Step::Absent(
            "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET not all set".into(),
        ),
    };
    sources.push(Source {
        name: "environment client secret",
        step,
    });
    let step = if !is_set("AZURE_FEDERATED_TOKEN_FILE") {
        Step::Absent("AZURE_FEDERATED_TOKEN_FILE not set".into())
    } else {
        match workload_identity(authority, transport) {
            Ok(c) => Step::Try(c),
            Err(e) => Step::Absent(format!("not usable here: {e}")),
        }
    };
    sources.push(Source {
        name: "workload identity",
        step,
    });
    let step = match managed_identity(imds)? {
        Err(e) => Step::Absent(format!("not usable here: {e}")),
        // The platform named its endpoint: no guess to check.
        Ok(c) if is_set("IDENTITY_ENDPOINT") || is_set("MSI_ENDPOINT") => Step::Try(c),
        Ok(c) => Step::Probe(Box::new(ImdsProbe::new(imds)?), c),
    };
    sources.push(Source {
        name: "managed identity",
        step,
    });
    let step = match developer_tools(TOOL_TIMEOUT_AUTO) {
        Ok(c) => Step::Try(c),
        Err(e) => Step::Absent(format!("not usable here: {e}")),
    };
    sources.push(Source {
        name: "az / azd",
        step,
    });
    Ok(Chain::new(sources))
}

/// A step of the chain.
enum Step {
    /// Not configured here: skipped, for this reason.
    Absent(String),
    /// Asked for a token.
    Try(Arc<dyn TokenCredential>),
    /// Asked for a token only when its probe answers.
    Probe(Box<dyn Probe>, Arc<dyn TokenCredential>),
}

struct Source {
    name: &'static str,
    step: Step,
}

impl Source {
    fn credential(&self) -> Option<&Arc<dyn TokenCredential>> {
        match &self.step {
            Step::Absent(_) => None,
            Step::Try(c) | Step::Probe(_, c) => Some(c),
        }
    }
}

/// Tries each source in order; the first that gives a token is kept for every later request.
struct Chain {
    sources: Vec<Source>,
    /// The source that gave the token. Held while the chain is walked, so that concurrent
    /// first requests walk it once.
    chosen: tokio::sync::Mutex<Option<usize>>,
}

impl Chain {
    fn new(sources: Vec<Source>) -> Self {
        Chain {
            sources,
            chosen: tokio::sync::Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.sources.iter().map(|s| s.name).collect();
        write!(f, "Chain({names:?})")
    }
}

#[async_trait::async_trait]
impl TokenCredential for Chain {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let mut chosen = self.chosen.lock().await;
        if let Some(i) = *chosen {
            drop(chosen);
            let kept = self.sources[i]
                .credential()
                .expect("only a source with a credential is chosen");
            return kept.get_token(scopes, options).await;
        }
        let start = Instant::now();
        let mut errors = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            let name = source.name;
            let began = Instant::now();
            let credential = match &source.step {
                Step::Absent(why) => {
                    tracing::info!("credential (--auth auto): {name}: skipped, {why}");
                    errors.push(format!("{name}: {why}"));
                    continue;
                }
                Step::Try(c) => c,
                Step::Probe(probe, c) => match probe.probe().await {
                    Ok(what) => {
                        tracing::info!(
                            "credential (--auth auto): {name}: {what} in {} s; asking it for \
                             a token (the SDK's full retries from here)",
                            secs(began.elapsed())
                        );
                        c
                    }
                    Err(why) => {
                        tracing::info!(
                            "credential (--auth auto): {name}: skipped after {} s, {why}",
                            secs(began.elapsed())
                        );
                        errors.push(format!("{name}: {why}"));
                        continue;
                    }
                },
            };
            match credential.get_token(scopes, options.clone()).await {
                Ok(token) => {
                    tracing::info!(
                        "credential (--auth auto): {name} gave the token in {} s ({} s since \
                         the first step); kept for the rest of the run",
                        secs(began.elapsed()),
                        secs(start.elapsed())
                    );
                    *chosen = Some(i);
                    return Ok(token);
                }
                Err(e) => {
                    tracing::info!(
                        "credential (--auth auto): {name}: no token after {} s: {e}",
                        secs(began.elapsed())
                    );
                    errors.push(format!("{name}: {e}"));
                }
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!(
                "no credential worked (--auth auto, {} s): {}",
                secs(start.elapsed()),
                errors.join("; ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::time::OffsetDateTime;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A credential that counts its calls and gives a token or fails.
    #[derive(Debug)]
    struct Fake {
        calls: AtomicUsize,
        ok: bool,
    }

    impl Fake {
        fn new(ok: bool) -> Arc<Self> {
            Arc::new(Fake {
                calls: AtomicUsize::new(0),
                ok,
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait::async_trait]
    impl TokenCredential for Fake {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.ok {
                Ok(AccessToken::new(
                    Secret::new("t"),
                    OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
                ))
            } else {
                Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    "fake refusal",
                ))
            }
        }
    }

    /// A probe with a fixed answer, counting its calls.
    struct FixedProbe {
        answer: std::result::Result<String, String>,
        calls: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl Probe for FixedProbe {
        async fn probe(&self) -> std::result::Result<String, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.answer.clone()
        }
    }

    fn probe(ok: bool) -> (Box<dyn Probe>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let answer = if ok {
            Ok("answered".into())
        } else {
            Err("no answer".into())
        };
        let p = FixedProbe {
            answer,
            calls: calls.clone(),
        };
        (Box::new(p), calls)
    }

    const SCOPES: &[&str] = &["https://vault.azure.net/.default"];

    #[tokio::test]
    async fn a_silent_probe_skips_its_credential_and_the_winner_is_kept() {
        let (secret, mi, az) = (Fake::new(false), Fake::new(true), Fake::new(true));
        let (p, probes) = probe(false);
        let chain = Chain::new(vec![
            Source {
                name: "absent",
                step: Step::Absent("not set".into()),
            },
            Source {
                name: "secret",
                step: Step::Try(secret.clone()),
            },
            Source {
                name: "mi",
                step: Step::Probe(p, mi.clone()),
            },
            Source {
                name: "az",
                step: Step::Try(az.clone()),
            },
        ]);
        chain.get_token(SCOPES, None).await.unwrap();
        chain.get_token(SCOPES, None).await.unwrap();
        chain.get_token(SCOPES, None).await.unwrap();
        // The chain was walked once: the probe asked once, its credential never, and az
        // alone from then on.
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        assert_eq!(mi.calls(), 0);
        assert_eq!(secret.calls(), 1);
        assert_eq!(az.calls(), 3);
    }

    #[tokio::test]
    async fn an_answered_probe_asks_its_credential() {
        let (mi, az) = (Fake::new(true), Fake::new(true));
        let (p, probes) = probe(true);
        let chain = Chain::new(vec![
            Source {
                name: "mi",
                step: Step::Probe(p, mi.clone()),
            },
            Source {
                name: "az",
                step: Step::Try(az.clone()),
            },
        ]);
        chain.get_token(SCOPES, None).await.unwrap();
        chain.get_token(SCOPES, None).await.unwrap();
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        assert_eq!((mi.calls(), az.calls()), (2, 0));
    }

    #[tokio::test]
    async fn concurrent_first_requests_walk_the_chain_once() {
        let (secret, az) = (Fake::new(false), Fake::new(true));
        let chain = Arc::new(Chain::new(vec![
            Source {
                name: "secret",
                step: Step::Try(secret.clone()),
            },
            Source {
                name: "az",
                step: Step::Try(az.clone()),
            },
        ]));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let chain = chain.clone();
                tokio::spawn(async move { chain.get_token(SCOPES, None).await.map(|_| ()) })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!((secret.calls(), az.calls()), (1, 8));
    }

    #[tokio::test]
    async fn when_nothing_works_every_step_is_named() {
        let (p, _) = probe(false);
        let chain = Chain::new(vec![
            Source {
                name: "absent",
                step: Step::Absent("VAR not set".into()),
            },
            Source {
                name: "mi",
                step: Step::Probe(p, Fake::new(true)),
            },
            Source {
                name: "az",
                step: Step::Try(Fake::new(false)),
            },
        ]);
        let err = chain.get_token(SCOPES, None).await.unwrap_err().to_string();
        assert!(err.contains("absent: VAR not set"), "{err}");
        assert!(err.contains("mi: no answer"), "{err}");
        assert!(err.contains("az: fake refusal"), "{err}");
    }

    #[test]
    fn the_imds_endpoint_flag_takes_a_base_url_only() {
        let imds = Imds::new(Some("http://127.0.0.1:8080")).unwrap();
        assert_eq!(
            imds.token_url().as_str(),
            "http://127.0.0.1:8080/metadata/identity/oauth2/token"
        );
        assert_eq!(
            Imds::default().token_url().as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token"
        );
        for bad in [
            "127.0.0.1:8080",
            "ftp://h",
            "http://h/path",
            "http://h/?q=1",
        ] {
            assert!(Imds::new(Some(bad)).is_err(), "{bad}");
        }
    }

    /// A one-shot HTTP server answering `head` to the first request; the request it read.
    async fn answer_once(head: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            s.write_all(head.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf).into_owned()
        });
        (base, task)
    }

    #[tokio::test]
    async fn the_probe_takes_a_400_or_an_imds_server_and_nothing_else() {
        const LIMIT: Duration = Duration::from_secs(30);
        for (head, usable) in [
            (
                "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                true,
            ),
            (
                "HTTP/1.1 500 Internal Server Error\r\nserver: IMDS/150.870.65.1854\r\n\
                 content-length: 0\r\nconnection: close\r\n\r\n",
                true,
            ),
            (
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                false,
            ),
        ] {
            let (base, server) = answer_once(head).await;
            let probe = ImdsProbe::new(&Imds::new(Some(&base)).unwrap()).unwrap();
            let answer = tokio::time::timeout(LIMIT, probe.probe()).await.unwrap();
            assert_eq!(answer.is_ok(), usable, "{head}: {answer:?}");
            let request = tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
            assert!(
                request.starts_with(
                    "GET /metadata/identity/oauth2/token?api-version=2018-02-01 HTTP/1.1"
                ),
                "{request}"
            );
            // Without the header, IMDS issues no token.
            assert!(!request.to_ascii_lowercase().contains("metadata: true"));
        }
    }
}
