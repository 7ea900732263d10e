//! IBM's openCryptoki 3.27 soft token, the one test token with native `CKM_RSA_AES_KEY_WRAP`.
//!
//! Debian 12 has no openCryptoki 3.27 (only sid has), and its module needs glibc 2.38, so it
//! cannot load into a process built here. `cargo xtask opencryptoki` makes a Debian sid root
//! from Debian's packages with mmdebstrap, once, in `target/opencryptoki/root` (a marker file
//! written last; a half-made root is made again); the binaries built here (glibc floor 2.35)
//! run inside it unchanged. The kit refuses a root holding any other openCryptoki than
//! [`OPENCRYPTOKI_VERSION`].
//!
//! How a token runs (nothing is ever mounted in the host's namespace):
//!
//! - Its state is its own: `opencryptoki/` in the token's directory holds what the root's
//!   `/var/lib/opencryptoki`, `/run/opencryptoki`, `/run/lock/opencryptoki` and `/dev/shm`
//!   become for it, so tokens run side by side on one shared root nobody writes to.
//! - Its `pkcsslotd` runs in a mount and an IPC namespace of its own (`unshare --mount --ipc`):
//!   `/proc`, the state directories, and at their own paths the temporary directory, the
//!   target directory and the token's directory (read-write) and the workspace and the
//!   binaries' directories (read-only) are bind-mounted into the root, then it is started
//!   there (`chroot --userspec=pkcsslotd:pkcs11 ROOT pkcsslotd -f`; started as root it would
//!   re-execute itself without `-f` and leave us). The private IPC namespace matters: every
//!   daemon on one root keys its SysV shared memory by `ftok(/usr/sbin/pkcsslotd)`, the same
//!   key for all of them.
//! - Every other process of the token (`pkcsconf`, `byok-offline`, `pkcs11-tool`) joins the
//!   daemon's namespaces and root (`nsenter --mount --ipc --root`) and runs in the caller's
//!   directory, which must be one of those mounted ([`TestToken::command`](crate::TestToken)).
//! - The daemon is this process's child: on drop (panics included) it gets SIGTERM, is waited
//!   for within [`SHUTDOWN`] (SIGKILL after that), and its namespaces and mounts go with it.
//!   Each running daemon is recorded in `target/opencryptoki/daemons/` with the process that
//!   owns it; a daemon whose owner died without dropping it (SIGKILL, abort) is stopped by the
//!   next token made ([`sweep_orphaned_daemons`]).

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Debian version of `opencryptoki` and `libopencryptoki0` the kit runs, and no other.
pub const OPENCRYPTOKI_VERSION: &str = "3.27.0-1";
/// The Debian packages whose version the kit checks.
pub const OPENCRYPTOKI_PACKAGES: [&str; 2] = ["opencryptoki", "libopencryptoki0"];
/// The variable that names the sid root when it is not `target/opencryptoki/root`.
pub const OPENCRYPTOKI_ROOT_ENV: &str = "BYOK_TEST_OPENCRYPTOKI_ROOT";
/// The file, at the top of the root, that `cargo xtask opencryptoki` writes last.
pub const OPENCRYPTOKI_ROOT_MARKER: &str = "byok-root-made";
/// `/etc/opencryptoki/opencryptoki.conf` in the root: the soft token alone, in slot 3.
pub const OPENCRYPTOKI_CONF: &str = "version opencryptoki-3.27\n\nslot 3\n{\n    stdll = libpkcs11_sw.so\n    tokversion = 3.12\n}\n";
/// The slot [`OPENCRYPTOKI_CONF`] puts the soft token in.
pub const OPENCRYPTOKI_SLOT: &str = "3";
/// The security officer PIN of a soft token nobody has initialised.
pub const OPENCRYPTOKI_FACTORY_SO_PIN: &str = "87654321";
/// The soft token's PIN lengths (`pkcsconf -t`: "PIN Length: 4-8").
pub const OPENCRYPTOKI_PIN_LENGTHS: std::ops::RangeInclusive<usize> = 4..=8;

/// How long a daemon may take to write its pid file and socket.
const STARTUP: Duration = Duration::from_secs(20);
/// How long a daemon may take to exit after SIGTERM (then SIGKILL).
pub const SHUTDOWN: Duration = Duration::from_secs(10);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(10);
/// `PATH` for the launch scripts and for every program inside the root.
const SYSTEM_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The host commands a token needs, with the Debian package of each.
pub const HOST_TOOLS: [(&str, &str); 5] = [
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
    ("mount", "mount"),
    ("chroot", "coreutils"),
    ("cp", "coreutils"),
];

/// Run by `unshare --mount --ipc` as root: the mounts, then pkcsslotd as its own user.
/// `$1` root, `$2` state directory, `$3` uid:gid, then `wPATH` (read-write) or `rPATH`
/// (read-only) for each directory mounted at its own path, parents first.
const DAEMON_SCRIPT: &str = r#"# pkcsslotd for one openCryptoki test token (byok-tests, tests/src/opencryptoki.rs)
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
root=$1 state=$2 user=$3
shift 3
mount --bind /proc "$root/proc"
mount --bind "$state/lib" "$root/var/lib/opencryptoki"
mount --bind "$state/run" "$root/run/opencryptoki"
mount --bind "$state/lock" "$root/run/lock/opencryptoki"
mount --bind "$state/shm" "$root/dev/shm"
for entry do
  dir=${entry#?}
  mkdir -p "$root$dir"
  mount --bind "$dir" "$root$dir"
  case $entry in
    r*) mount -o remount,bind,ro "$root$dir" ;;
  esac
done
exec chroot --userspec="$user" "$root" env -i PATH="$PATH" pkcsslotd -f
"#;

/// Runs a program of the token: `$1` root, `$2` the daemon's pid, then the program and its
/// arguments; in the daemon's namespaces and root, in the caller's directory.
const ENTER_SCRIPT: &str = r#"# a program inside one openCryptoki test token's root (byok-tests, tests/src/opencryptoki.rs)
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
root=$1 pid=$2
shift 2
if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != pkcsslotd ] || [ "$(readlink "/proc/$pid/root")" != "$root" ]; then
  echo "byok-tests: the openCryptoki token's pkcsslotd (pid $pid) is not running: was its TestToken dropped?" >&2
  exit 125
fi
dir=$(pwd -P)
# The same directory inside (a bind mount keeps device and inode), not the root's own /etc.
if [ "$(stat -c %d:%i "$dir")" != "$(stat -c %d:%i "/proc/$pid/root$dir" 2>/dev/null)" ]; then
  echo "byok-tests: $dir is not visible inside the openCryptoki root $root; run in the token's directory, the temporary directory, the target directory or the workspace" >&2
  exit 125
fi
exec nsenter --target "$pid" --mount --ipc --root -- env --chdir="$dir" "$@"
"#;

/// Where `cargo xtask opencryptoki` makes the root: `<target dir>/opencryptoki/root`.
pub fn opencryptoki_root_default() -> PathBuf {
    crate::target_dir().join("opencryptoki").join("root")
}

/// The sid root: `BYOK_TEST_OPENCRYPTOKI_ROOT` when set, else the one the xtask makes.
pub fn opencryptoki_root() -> PathBuf {
    std::env::var_os(OPENCRYPTOKI_ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(opencryptoki_root_default)
}

/// The module's path INSIDE the root (what `--module` and `PKCS11_MODULE` name there):
/// `/usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0` on amd64.
pub fn opencryptoki_module() -> PathBuf {
    PathBuf::from(format!(
        "/usr/lib/{}-linux-gnu/opencryptoki/libopencryptoki.so.0",
        std::env::consts::ARCH
    ))
}

/// The marker `cargo xtask opencryptoki` writes last into `root`.
pub fn opencryptoki_root_marker(root: &Path) -> PathBuf {
    root.join(OPENCRYPTOKI_ROOT_MARKER)
}

/// What the host must offer: root (uid 0: mounts, namespaces, chroot) and [`HOST_TOOLS`].
pub fn opencryptoki_host_ready() -> Result<(), String> {
    if !is_root() {
        return Err(
            "the openCryptoki test token needs root (uid 0): it runs pkcsslotd and \
                    byok-offline in a chroot with mount and IPC namespaces of their own; run \
                    the tests (or `cargo xtask`) as root"
                .into(),
        );
    }
    let missing: Vec<&str> = HOST_TOOLS
        .iter()
        .filter(|(tool, _)| find_system_tool(tool).is_none())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let tools: Vec<&str> = HOST_TOOLS
        .iter()
        .filter(|(tool, _)| find_system_tool(tool).is_none())
        .map(|(tool, _)| *tool)
        .collect();
    let mut packages = missing;
    packages.dedup();
    Err(format!(
        "the openCryptoki test token needs {} (not in {SYSTEM_PATH}): apt-get install {}",
        tools.join(", "),
        packages.join(" ")
    ))
}

/// The Debian version of `package` installed in `root` (`chroot ROOT dpkg-query -W`).
pub fn opencryptoki_installed_version(root: &Path, package: &str) -> Result<String, String> {
    let out = Command::new("chroot")
        .arg(root)
        .args(["dpkg-query", "-W", "-f=${Version}", package])
        .env("PATH", SYSTEM_PATH)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run chroot (apt-get install coreutils): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`chroot {} dpkg-query -W {package}` failed ({}): {}; delete the root (`rm -rf {}`) \
             and run `cargo xtask opencryptoki` to make it again",
            root.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            root.display()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Why a root whose `package` is at version `found` is refused; `None` for the pinned one.
pub fn opencryptoki_version_refusal(root: &Path, package: &str, found: &str) -> Option<String> {
    (found != OPENCRYPTOKI_VERSION).then(|| {
        format!(
            "the openCryptoki root {root} holds {package} {found}, not the pinned \
             {OPENCRYPTOKI_VERSION} (the version the tests were measured on; the kit runs no \
             other): delete the cached root (`rm -rf {root}`) and run `cargo xtask \
             opencryptoki` to make it again from Debian's packages (should sid have moved past \
             {OPENCRYPTOKI_VERSION}, point BYOK_OPENCRYPTOKI_MIRROR at a snapshot.debian.org \
             date that has it)",
            root = root.display()
        )
    })
}

/// Checks `root` is a finished sid root with the pinned openCryptoki, on a host that can run
/// it; the error names what is wrong and the command that fixes it.
pub fn opencryptoki_check_root(root: &Path) -> Result<(), String> {
    opencryptoki_host_ready()?;
    let marker = opencryptoki_root_marker(root);
    if !marker.is_file() {
        let why = if root.exists() {
            format!(
                "{} is half made (no {} written last)",
                root.display(),
                marker.display()
            )
        } else {
            format!("there is no openCryptoki root at {}", root.display())
        };
        return Err(format!(
            "{why}: run `cargo xtask opencryptoki` (as root: it installs Debian's mmdebstrap \
             when missing and makes a Debian sid root with opencryptoki {OPENCRYPTOKI_VERSION} \
             there, about 160 MB, in about a minute), or set {OPENCRYPTOKI_ROOT_ENV}"
        ));
    }
    for package in OPENCRYPTOKI_PACKAGES {
        let found = opencryptoki_installed_version(root, package)?;
        if let Some(refusal) = opencryptoki_version_refusal(root, package, &found) {
            return Err(refusal);
        }
    }
    Ok(())
}

/// [`opencryptoki_root`], checked once per process (a failure is checked again next time).
pub(crate) fn ready_root() -> Result<PathBuf, String> {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    if let Some(root) = READY.get() {
        return Ok(root.clone());
    }
    let root = opencryptoki_root();
    opencryptoki_check_root(&root)?;
    let root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    Ok(READY.get_or_init(|| root).clone())
}

/// The ids of `pkcsslotd` (user) and `pkcs11` (group) in the root's own passwd and group.
#[derive(Clone, Copy)]
struct Ids {
    slotd_uid: u32,
    pkcs11_gid: u32,
}

impl Ids {
    fn of(root: &Path) -> Result<Self, String> {
        let field = |file: &str, name: &str, index: usize| -> Result<u32, String> {
            let path = root.join("etc").join(file);
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            text.lines()
                .map(|line| line.split(':').collect::<Vec<_>>())
                .find(|f| f.first() == Some(&name))
                .and_then(|f| f.get(index)?.parse().ok())
                .ok_or_else(|| {
                    format!(
                        "{} has no `{name}`: is opencryptoki installed in the root?",
                        path.display()
                    )
                })
        };
        Ok(Self {
            slotd_uid: field("passwd", "pkcsslotd", 2)?,
            pkcs11_gid: field("group", "pkcs11", 2)?,
        })
    }
}

/// A token's `pkcsslotd`: started in namespaces of its own, stopped on drop.
pub(crate) struct Daemon {
    child: Child,
    root: PathBuf,
    /// `opencryptoki/` in the token's directory: state, scripts, the daemon's log.
    state: PathBuf,
    /// This daemon's line in `target/opencryptoki/daemons/`, removed once it is stopped.
    record: PathBuf,
    stopped: bool,
}

impl Daemon {
    /// Lays out a fresh state in `dir/opencryptoki/` and starts the daemon for it in `root`
    /// (checked by [`ready_root`]), after stopping daemons whose owners died.
    pub(crate) fn start(root: &Path, dir: &Path) -> Result<Self, String> {
        sweep_orphaned_daemons();
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let state = dir.join("opencryptoki");
        if state.exists() {
            return Err(format!(
                "{} already holds an openCryptoki token's state: give each token a directory \
                 of its own",
                state.display()
            ));
        }
        let ids = Ids::of(root)?;
        lay_out_state(root, &state, ids)?;
        let records = records_dir();
        std::fs::create_dir_all(&records).map_err(|e| format!("{}: {e}", records.display()))?;
        let log_path = state.join("pkcsslotd.log");
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--ipc", "--propagation", "private", "--", "sh"])
            .arg(state.join("daemon.sh"))
            .arg(root)
            .arg(&state)
            .arg(format!("{}:{}", ids.slotd_uid, ids.pkcs11_gid))
            .args(exposed(&dir))
            .env("PATH", SYSTEM_PATH)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = cmd.spawn().map_err(|e| {
            format!("could not run unshare: {e} (apt-get install util-linux; needs root)")
        })?;
        let record = records.join(child.id().to_string());
        // From here on, Drop stops the daemon on every error path.
        let mut daemon = Self {
            child,
            root: root.to_path_buf(),
            state,
            record,
            stopped: false,
        };
        let (pid, start) = owner();
        let line = format!("owner {pid} {start}\nstate {}\n", daemon.state.display());
        std::fs::write(&daemon.record, line)
            .map_err(|e| format!("{}: {e}", daemon.record.display()))?;
        daemon.wait_ready()?;
        Ok(daemon)
    }

    /// The daemon's process id (the same inside the root: no PID namespace).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The token's state directory (`opencryptoki/` in the token's directory).
    pub(crate) fn state(&self) -> &Path {
        &self.state
    }

    /// Waits until the daemon has written its pid file and opened its socket.
    fn wait_ready(&mut self) -> Result<(), String> {
        let run = self.state.join("run");
        let pid_file = run.join("pkcsslotd.pid");
        let socket = run.join("pkcsslotd.socket");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                self.stopped = true;
                let _ = std::fs::remove_file(&self.record);
                return Err(format!(
                    "pkcsslotd exited ({status}) before it was ready; its output: {}",
                    self.log()
                ));
            }
            let written = std::fs::read_to_string(&pid_file)
                .is_ok_and(|p| p.trim() == self.child.id().to_string());
            if written && socket.exists() {
                return Ok(());
            }
            if started.elapsed() > STARTUP {
                return Err(format!(
                    "pkcsslotd (pid {}) was not ready after {} s (no {} naming it, or no {}); \
                     its output: {}",
                    self.child.id(),
                    STARTUP.as_secs(),
                    pid_file.display(),
                    socket.display(),
                    self.log()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.state.join("pkcsslotd.log")).unwrap_or_default();
        if text.trim().is_empty() {
            "(none)".into()
        } else {
            text.trim().to_string()
        }
    }

    /// `program` run inside the root for this token, in the caller's directory (which must be
    /// one the daemon's namespace mounts: the temporary, target or token directory, or the
    /// workspace). No directory, environment or stdin is set here.
    pub(crate) fn command(&self, program: &OsStr) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg(self.state.join("enter.sh"))
            .arg(&self.root)
            .arg(self.child.id().to_string())
            .arg(program);
        cmd
    }

    /// `pkcsconf -I` (label), `-P` (SO PIN from the factory one) and `-u` (user PIN) in slot
    /// 3, every PIN and the label on stdin. After `-u` the token flags no PIN to be changed,
    /// so `-p` is not needed.
    pub(crate) fn init_token(
        &self,
        dir: &Path,
        label: &str,
        so_pin: &str,
        pin: &str,
    ) -> Result<(), String> {
        for (what, value) in [("user PIN", pin), ("SO PIN", so_pin)] {
            if !OPENCRYPTOKI_PIN_LENGTHS.contains(&value.chars().count()) {
                return Err(format!(
                    "openCryptoki's soft token takes PINs of 4 to 8 characters; the {what} has {}",
                    value.chars().count()
                ));
            }
        }
        if label.len() > 32 || label.contains('\n') {
            return Err(format!(
                "a token label is at most 32 bytes on one line: `{label}`"
            ));
        }
        let factory = OPENCRYPTOKI_FACTORY_SO_PIN;
        let steps = [
            ("-I", format!("{factory}\n{label}\n")),
            ("-P", format!("{factory}\n{so_pin}\n{so_pin}\n")),
            ("-u", format!("{so_pin}\n{pin}\n{pin}\n")),
        ];
        for (flag, input) in steps {
            let mut cmd = self.command(OsStr::new("pkcsconf"));
            cmd.args(["-c", OPENCRYPTOKI_SLOT, flag]).current_dir(dir);
            feed(&mut cmd, &input, &format!("pkcsconf -c 3 {flag}"))?;
        }
        Ok(())
    }

    /// SIGTERM, then a bounded wait; SIGKILL when the deadline passes. Idempotent.
    pub(crate) fn stop(&mut self) -> Result<(), String> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let pid = self.child.id();
        let result = if self.child.try_wait().map_err(|e| e.to_string())?.is_some() {
            Ok(())
        } else {
            signal(pid, "TERM");
            let started = Instant::now();
            loop {
                if self.child.try_wait().map_err(|e| e.to_string())?.is_some() {
                    break Ok(());
                }
                if started.elapsed() > SHUTDOWN {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break Err(format!(
                        "pkcsslotd (pid {pid}, {}) did not exit within {} s of SIGTERM; killed it",
                        self.state.display(),
                        SHUTDOWN.as_secs()
                    ));
                }
                std::thread::sleep(POLL);
            }
        };
        let _ = std::fs::remove_file(&self.record);
        result
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("byok-tests: {e}");
        }
    }
}

/// `cmd` with `input` on its stdin; fails on a non-zero exit or an error on stderr (pkcsconf
/// exits 0 after some refusals, e.g. CKR_PIN_LEN_RANGE).
fn feed(cmd: &mut Command, input: &str, what: &str) -> Result<(), String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {what}: {e}"))?;
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes());
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && written.is_ok() && !stderr.contains("Error") {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr
    ))
}

/// Makes `state/` (`lib` from the root's `/var/lib/opencryptoki`, `run`, `lock`, `shm`) with
/// the owners and modes the daemon and its clients need, and the two scripts.
fn lay_out_state(root: &Path, state: &Path, ids: Ids) -> Result<(), String> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| format!("{}: {e}", path.display())
    };
    std::fs::create_dir_all(state).map_err(io(state))?;
    let lib = state.join("lib");
    let out = Command::new("cp")
        .arg("-a")
        .arg(root.join("var/lib/opencryptoki"))
        .arg(&lib)
        .output()
        .map_err(|e| format!("could not run cp: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "copying the root's /var/lib/opencryptoki failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The copy keeps root:pkcs11 and g+rwX from the root's preparation.
    let owned = |path: &Path, uid: u32, mode: u32| -> Result<(), String> {
        std::fs::create_dir_all(path).map_err(io(path))?;
        std::os::unix::fs::chown(path, Some(uid), Some(ids.pkcs11_gid)).map_err(io(path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
    };
    owned(&state.join("run"), ids.slotd_uid, 0o710)?;
    owned(&state.join("lock"), 0, 0o770)?;
    owned(&state.join("shm"), 0, 0o1777)?;
    for (name, text) in [("daemon.sh", DAEMON_SCRIPT), ("enter.sh", ENTER_SCRIPT)] {
        let path = state.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

/// The directories mounted at their own paths in a daemon's namespace, parents first, as
/// `w/PATH` (read-write) or `r/PATH` (read-only): the workspace and the binaries' directories
/// read-only; the temporary directory, the target directory and the token's directory
/// read-write. A directory under one mounted the same way is left out.
fn exposed(token_dir: &Path) -> Vec<String> {
    let target = crate::target_dir();
    let mut dirs: Vec<(PathBuf, bool)> = [
        (crate::workspace(), false),
        (std::env::temp_dir(), true),
        (target.clone(), true),
        (target.join("debug"), false),
        (target.join("release"), false),
        (token_dir.to_path_buf(), true),
    ]
    .into_iter()
    .filter_map(|(dir, rw)| Some((dir.canonicalize().ok()?, rw)))
    .collect();
    dirs.sort_by_key(|(dir, _)| dir.components().count());
    let mut kept: Vec<(PathBuf, bool)> = Vec::new();
    for (dir, rw) in dirs {
        let covering = kept
            .iter()
            .rev()
            .find(|(parent, _)| dir.starts_with(parent))
            .map(|(_, parent_rw)| *parent_rw);
        if covering != Some(rw) {
            kept.push((dir, rw));
        }
    }
    kept.into_iter()
        .map(|(dir, rw)| format!("{}{}", if rw { 'w' } else { 'r' }, dir.display()))
        .collect()
}

/// `target/opencryptoki/daemons/`: one file per running daemon, named by its pid.
fn records_dir() -> PathBuf {
    crate::target_dir().join("opencryptoki").join("daemons")
}

/// This process: its pid and start time (so a reused pid is not taken for it).
fn owner() -> (u32, u64) {
    let pid = std::process::id();
    (pid, start_time(pid).unwrap_or(0))
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks after boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is a process that has not exited (a zombie has).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Whether `pid` is a pkcsslotd whose namespace mounts `state` (a token's state directory).
pub fn is_daemon_of(pid: u32, state: &Path) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "pkcsslotd" || !alive(pid) {
        return false;
    }
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    mounts.contains(&escape_mountinfo(state))
}

/// A path as `/proc/*/mountinfo` writes it (space, tab, newline and backslash in octal).
fn escape_mountinfo(path: &Path) -> String {
    path.display()
        .to_string()
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012")
}

/// Sends `SIGname` to `pid` (the shell's `kill`; the kit has no unsafe code).
fn signal(pid: u32, name: &str) {
    let _ = Command::new("/bin/sh")
        .args(["-c", "kill -s \"$1\" \"$2\" 2>/dev/null", "sh", name])
        .arg(pid.to_string())
        .status();
}

/// Stops the daemons recorded in `target/opencryptoki/daemons/` whose owning process has
/// died without dropping its token (SIGKILL, abort), and forgets records of daemons that are
/// gone; returns the pids it stopped. Every token made calls it first.
pub fn sweep_orphaned_daemons() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(records_dir()) else {
        return Vec::new();
    };
    let mut stopped = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Some(pid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut owner = None;
        let mut state = None;
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("owner", rest)) => {
                    let mut f = rest.split(' ').map(|v| v.parse::<u64>().ok());
                    owner = f.next().flatten().zip(f.next().flatten());
                }
                Some(("state", rest)) => state = Some(PathBuf::from(rest)),
                _ => {}
            }
        }
        let Some(((owner_pid, owner_start), state)) = owner.zip(state) else {
            // Being written by a token starting right now, or torn: left alone.
            continue;
        };
        let owner_lives = u32::try_from(owner_pid)
            .ok()
            .is_some_and(|p| alive(p) && start_time(p) == Some(owner_start));
        if owner_lives {
            continue;
        }
        if is_daemon_of(pid, &state) && terminate(pid) {
            stopped.push(pid);
        }
        let _ = std::fs::remove_file(&path);
    }
    stopped
}

/// Stops a daemon that is not our child: SIGTERM, SIGKILL after [`SHUTDOWN`]; whether it
/// exited (its parent, init, reaps it).
fn terminate(pid: u32) -> bool {
    for (name, within) in [("TERM", SHUTDOWN), ("KILL", SHUTDOWN)] {
        signal(pid, name);
        let started = Instant::now();
        while started.elapsed() < within {
            if !alive(pid) {
                return true;
            }
            std::thread::sleep(POLL);
        }
    }
    eprintln!(
        "byok-tests: pkcsslotd (pid {pid}) of a dead test process survived SIGTERM and SIGKILL"
    );
    false
}

/// Whether this process runs as root (`/proc/self/status`, effective uid).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// `tool` in one of [`SYSTEM_PATH`]'s directories.
fn find_system_tool(tool: &str) -> Option<PathBuf> {
    SYSTEM_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pinned_version_passes() {
        let root = Path::new("/x/target/opencryptoki/root");
        assert_eq!(
            opencryptoki_version_refusal(root, "opencryptoki", OPENCRYPTOKI_VERSION),
            None
        );
        let refusal = opencryptoki_version_refusal(root, "opencryptoki", "3.28.0-1").unwrap();
        for needle in [
            "opencryptoki 3.28.0-1",
            "not the pinned 3.27.0-1",
            "rm -rf /x/target/opencryptoki/root",
            "cargo xtask opencryptoki",
        ] {
            assert!(refusal.contains(needle), "`{needle}` in: {refusal}");
        }
    }

    #[test]
    fn parents_are_mounted_first_and_covered_directories_not_at_all() {
        let dirs = exposed(&std::env::temp_dir());
        let paths: Vec<&str> = dirs.iter().map(|d| &d[1..]).collect();
        let depth = |p: &str| Path::new(p).components().count();
        assert!(paths.windows(2).all(|w| depth(w[0]) <= depth(w[1])));
        let temp = std::env::temp_dir().canonicalize().unwrap();
        assert_eq!(
            dirs.iter()
                .filter(|d| Path::new(&d[1..]) == temp.as_path())
                .count(),
            1,
            "the token's directory in the temporary directory is mounted once: {dirs:?}"
        );
        let target = crate::target_dir().canonicalize().unwrap();
        assert!(dirs.contains(&format!("w{}", target.display())), "{dirs:?}");
    }

    #[test]
    fn mountinfo_escapes_spaces() {
        assert_eq!(escape_mountinfo(Path::new("/a b/c")), "/a\\040b/c");
    }

    #[test]
    fn a_zombie_or_a_missing_process_is_not_alive() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
        assert!(start_time(std::process::id()).is_some());
    }
}
