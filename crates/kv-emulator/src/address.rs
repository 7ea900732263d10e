//! Where the emulator listens. Usually `--listen` as given (port 0: a free port); but a
//! `--persist` emulator whose state directory already holds keys comes back at the address of
//! its earlier run, since every key id in `state.db` and every `.byok` made for its KEK name
//! that URL: on another port the emulator would refuse them all as packages for another vault.
//!
//! The earlier URL and address are read from `connection.json`, which each start writes
//! (`vault_url`, `https://NAME.vault.azure.net:PORT`, and `vault_address`, the `IP:PORT`
//! it listened on). A restart must serve the same URL: same port, and the same `--vault-name`
//! and `--flavor`. `--public-url` turns all of this off: the operator then says which URL the
//! keys answer to.

use crate::state_dir::{CONNECTION_FILE, Connection, DB_FILE};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// Why the emulator could not listen on its address.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {}", listen_remedy(source))]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

fn listen_remedy(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => {
            "address in use; pick another --listen (port 0 picks a free one)".into()
        }
        ErrorKind::AddrNotAvailable => {
            "this machine has no such address; pick one of its own with --listen (127.0.0.1:0 \
             serves this machine only)"
                .into()
        }
        ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges); pick a port from 1024 up \
             with --listen"
                .into()
        }
        _ => format!("{e}; pick another --listen"),
    }
}

/// Why a `--persist` emulator cannot come back at the URL its stored keys name.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error(
        "--listen {listen}: the keys in {} have key ids naming {url} (an earlier run's URL), \
         and so does every package made for their KEK; served at https://{listen} they would \
         all be refused. Pass --listen {earlier} (a --listen with port 0 reuses it), or \
         --public-url URL to serve under another URL anyway (packages made before are then \
         refused), or move {} away to start with no keys",
        state.display(),
        state.display()
    )]
    Moved {
        listen: SocketAddr,
        earlier: SocketAddr,
        url: String,
        state: PathBuf,
    },
    #[error(
        "the keys in {} have key ids naming {url}, an earlier run's --public-url: start with \
         --public-url {url} again (and a --listen the proxy forwards to), or move {} away to \
         start with no keys",
        state.display(),
        state.display()
    )]
    NotAnAddress { url: String, state: PathBuf },
    #[error(
        "cannot tell which port the keys in {} were served on ({reason}); pass --listen with \
         the earlier run's address (HOST:PORT), or --public-url with its URL",
        state.display()
    )]
    Unknown { reason: String, state: PathBuf },
    #[error(
        "the keys in {} have key ids naming {url} (an earlier run's vault URL), and so does \
         every package made for their KEK; this start would serve {now}, where they would all \
         be refused. Start with the earlier run's --vault-name and --flavor, or --public-url \
         {url}, or move {} away to start with no keys",
        state.display(),
        state.display()
    )]
    Renamed {
        url: String,
        now: String,
        state: PathBuf,
    },
    #[error(
        "cannot listen on {addr}: port {} is in use. The keys in {} have key ids naming {url}, \
         so this --persist emulator comes back on that port: stop the process that holds port \
         {} (an earlier kv-emulator on this --state-dir?) and start again (or pass --listen \
         {addr} explicitly once it is free); or pass --listen with another port and \
         --public-url naming it (packages made before are then refused)",
        addr.port(),
        state.display(),
        addr.port()
    )]
    Taken {
        addr: SocketAddr,
        url: String,
        state: PathBuf,
    },
}

impl AddressError {
    /// Whether the flags contradict the state directory (nothing was done; exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Moved { .. } | Self::NotAnAddress { .. } | Self::Renamed { .. }
        )
    }
}

/// The address an earlier `--persist` run served its stored keys at.
#[derive(Debug)]
pub struct Earlier {
    addr: SocketAddr,
    url: String,
    state: PathBuf,
}

/// The earlier run's address when it binds this start: `--persist`, no `--public-url`, and
/// keys stored (with no key stored no key id names any URL, so any port will do). An empty
/// `state.db` does not count; a `state.json` still to import does ([`crate::store::holds_keys`]).
pub fn earlier(
    state_dir: &Path,
    persist: bool,
    public_url: bool,
    listen: SocketAddr,
) -> Result<Option<Earlier>, AddressError> {
    let state = state_dir.join(DB_FILE);
    if !persist
        || public_url
        || !state_dir.join(CONNECTION_FILE).exists()
        || !crate::store::holds_keys(state_dir)
    {
        return Ok(None);
    }
    let (url, address) = match Connection::load(state_dir) {
        Ok(connection) => (connection.vault_url, connection.vault_address),
        // An explicit --listen is the operator's answer; port 0 asks us, and we cannot tell.
        Err(_) if listen.port() != 0 => return Ok(None),
        Err(e) => {
            return Err(AddressError::Unknown {
                reason: e.to_string(),
                state,
            });
        }
    };
    // `vault_address` is where the URL's host was served; a connection.json from before it
    // existed has a URL of https://IP:PORT. Neither: an earlier --public-url.
    let addr = address.or_else(|| {
        url.strip_prefix("https://")
            .and_then(|rest| rest.parse::<SocketAddr>().ok())
    });
    match addr {
        Some(addr) => Ok(Some(Earlier { addr, url, state })),
        None => Err(AddressError::NotAnAddress { url, state }),
    }
}

/// The address to bind: the earlier run's when `listen` has port 0, `listen` itself when it
/// is that address; any other explicit address is refused.
pub fn choose(listen: SocketAddr, earlier: Option<&Earlier>) -> Result<SocketAddr, AddressError> {
    match earlier {
        None => Ok(listen),
        Some(e) if listen.port() == 0 || listen == e.addr => Ok(e.addr),
        Some(e) => Err(AddressError::Moved {
            listen,
            earlier: e.addr,
            url: e.url.clone(),
            state: e.state.clone(),
        }),
    }
}

/// Refuses a start whose vault URL is not the one the stored keys name.
pub fn same_url(earlier: Option<&Earlier>, now: &str) -> Result<(), AddressError> {
    match earlier {
        Some(e) if !e.url.eq_ignore_ascii_case(now) => Err(AddressError::Renamed {
            url: e.url.clone(),
            now: now.into(),
            state: e.state.clone(),
        }),
        _ => Ok(()),
    }
}

/// Binds the address, returning the listener and the address it got (port 0 picks one).
pub fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ListenError> {
    let fail = |source| ListenError { addr, source };
    let listener = TcpListener::bind(addr).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    Ok((listener, bound))
}

/// A busy port the stored keys pin this start to: the remedy is not "pick another port".
pub fn taken(e: ListenError, earlier: Option<&Earlier>) -> crate::StartError {
    match earlier {
        Some(earlier) if e.source.kind() == std::io::ErrorKind::AddrInUse => AddressError::Taken {
            addr: e.addr,
            url: earlier.url.clone(),
            state: earlier.state.clone(),
        }
        .into(),
        _ => e.into(),
    }
}
