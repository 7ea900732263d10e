//! A fresh PKCS#11 token for one test or one run, in a directory of its own.
//!
//! Each module the tests use is one [`ModuleKind`] and one constructor on [`TestToken`];
//! callers only read the token's module path, environment, label and PINs:
//!
//! - SoftHSM 2 (Debian's 2.6.1): `SOFTHSM2_CONF`, initialised with `softhsm2-util`.
//! - kryoptic (1.5.4 from crates.io, built by `cargo xtask kryoptic` into
//!   `target/kryoptic/`): `KRYOPTIC_CONF` naming a `.sql` file, initialised with `pkcs11-tool`.
//! - NSS softokn (Debian's libnss3): a database made by `certutil -N`, reached through the
//!   module's init string (`PKCS11_INIT_ARGS`); its token is always "NSS Certificate DB", and
//!   since the module has two slots, `byok-offline` needs [`TestToken::token_args`].
//! - openCryptoki 3.27's soft token (Debian sid's, in a root `cargo xtask opencryptoki`
//!   makes in `target/opencryptoki/`): its own `pkcsslotd`, initialised with `pkcsconf`; every
//!   program of the token runs inside that root ([`TestToken::command`]; see
//!   [`crate::opencryptoki`]).

use crate::opencryptoki::{Daemon, opencryptoki_module};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The variable that names the SoftHSM module when it is not at [`SOFTHSM_MODULE_DEFAULT`].
pub const SOFTHSM_MODULE_ENV: &str = "BYOK_TEST_SOFTHSM_MODULE";
/// Where Debian's and Ubuntu's `softhsm2` package installs the module.
pub const SOFTHSM_MODULE_DEFAULT: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The variable that names the kryoptic module when it is not in `target/kryoptic/`.
pub const KRYOPTIC_MODULE_ENV: &str = "BYOK_TEST_KRYOPTIC_MODULE";
/// The variable that names NSS's softokn when it is not where Debian's `libnss3` puts it.
pub const NSS_MODULE_ENV: &str = "BYOK_TEST_NSS_MODULE";
/// The label NSS gives its token of persistent objects (the other slot holds none).
pub const NSS_TOKEN_LABEL: &str = "NSS Certificate DB";
/// The variable `byok-offline` reads the module path from (its `--module`).
pub const MODULE_ENV: &str = "PKCS11_MODULE";
/// The variable `byok-offline` reads the module's init string from (its `--init-args`).
pub const INIT_ARGS_ENV: &str = "PKCS11_INIT_ARGS";
/// The variable `byok-offline` reads the user PIN from by default.
pub const PIN_ENV: &str = "BYOK_PKCS11_PIN";
/// The security officer PIN every test token is initialised with.
pub const SO_PIN: &str = "5678";

/// A module path from `var` when it is set and not empty, else `default`.
fn module_from(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(default)
}

/// The SoftHSM module: `BYOK_TEST_SOFTHSM_MODULE` when set, else Debian's path.
pub fn softhsm_module() -> PathBuf {
    module_from(SOFTHSM_MODULE_ENV, PathBuf::from(SOFTHSM_MODULE_DEFAULT))
}

/// Where `cargo xtask kryoptic` puts the module: `<target dir>/kryoptic/libkryoptic_pkcs11.so`.
pub fn kryoptic_module_default() -> PathBuf {
    crate::target_dir()
        .join("kryoptic")
        .join("libkryoptic_pkcs11.so")
}

/// The kryoptic module: `BYOK_TEST_KRYOPTIC_MODULE` when set, else the one the xtask built.
pub fn kryoptic_module() -> PathBuf {
    module_from(KRYOPTIC_MODULE_ENV, kryoptic_module_default())
}

/// Where Debian's `libnss3` installs softokn on this architecture
/// (`/usr/lib/x86_64-linux-gnu/libsoftokn3.so` on amd64).
pub fn nss_module_default() -> PathBuf {
    PathBuf::from(format!(
        "/usr/lib/{}-linux-gnu/libsoftokn3.so",
        std::env::consts::ARCH
    ))
}

/// NSS softokn: `BYOK_TEST_NSS_MODULE` when set, else Debian's path.
pub fn nss_module() -> PathBuf {
    module_from(NSS_MODULE_ENV, nss_module_default())
}

/// The PKCS#11 modules the tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ModuleKind {
    /// SoftHSM 2 (`softhsm2-util`, `SOFTHSM2_CONF`); Debian's 2.6.1 zero-pads before RFC 5649.
    SoftHsm,
    /// kryoptic, built from crates.io by `cargo xtask kryoptic` (`KRYOPTIC_CONF`).
    Kryoptic,
    /// NSS softokn from Debian's libnss3 (init string in `PKCS11_INIT_ARGS`).
    Nss,
    /// openCryptoki 3.27's soft token, in the Debian sid root `cargo xtask opencryptoki`
    /// makes; the only one with native `CKM_RSA_AES_KEY_WRAP`.
    OpenCryptoki,
}

impl ModuleKind {
    /// Every module, in the order the matrix runs them.
    pub const ALL: [ModuleKind; 4] = [
        ModuleKind::SoftHsm,
        ModuleKind::Kryoptic,
        ModuleKind::Nss,
        ModuleKind::OpenCryptoki,
    ];

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            ModuleKind::SoftHsm => "SoftHSM",
            ModuleKind::Kryoptic => "kryoptic",
            ModuleKind::Nss => "NSS softokn",
            ModuleKind::OpenCryptoki => "openCryptoki",
        }
    }

    /// A name without spaces, for flags and directories (`softhsm`, `kryoptic`, `nss`,
    /// `opencryptoki`).
    pub fn id(self) -> &'static str {
        match self {
            ModuleKind::SoftHsm => "softhsm",
            ModuleKind::Kryoptic => "kryoptic",
            ModuleKind::Nss => "nss",
            ModuleKind::OpenCryptoki => "opencryptoki",
        }
    }

    /// The module's shared library (openCryptoki: its path inside the sid root, which only
    /// a program run by [`TestToken::command`] can load).
    pub fn module(self) -> PathBuf {
        match self {
            ModuleKind::SoftHsm => softhsm_module(),
            ModuleKind::Kryoptic => kryoptic_module(),
            ModuleKind::Nss => nss_module(),
            ModuleKind::OpenCryptoki => opencryptoki_module(),
        }
    }

    /// The module, or why it is missing and how to get it (openCryptoki: the sid root is made,
    /// holds the pinned version, and the host can run it).
    pub fn present_module(self) -> Result<PathBuf, String> {
        if self == ModuleKind::OpenCryptoki {
            return crate::opencryptoki::ready_root().map(|_| opencryptoki_module());
        }
        let module = self.module();
        if module.exists() {
            return Ok(module);
        }
        let fix = match self {
            ModuleKind::SoftHsm => format!(
                "apt-get install softhsm2 (.ci/run and `cargo xtask ci` do), or set \
                 {SOFTHSM_MODULE_ENV}"
            ),
            ModuleKind::Kryoptic => format!(
                "run `cargo xtask kryoptic` (it builds kryoptic 1.5.4 from crates.io into \
                 target/kryoptic/), or set {KRYOPTIC_MODULE_ENV}"
            ),
            ModuleKind::Nss => format!(
                "apt-get install libnss3 libnss3-tools (.ci/run does), or set {NSS_MODULE_ENV}"
            ),
            ModuleKind::OpenCryptoki => "run `cargo xtask opencryptoki`".to_string(),
        };
        Err(format!(
            "{} is not available: no module at {}; {fix}",
            self.name(),
            module.display()
        ))
    }
}

impl std::fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the token's files live: a temporary directory it owns, or one the caller laid out.
enum Home {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl Home {
    fn temp() -> Self {
        Home::Temp(tempfile::tempdir().expect("a temporary directory"))
    }

    fn given(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Home::Given(dir.to_path_buf()))
    }

    fn path(&self) -> &Path {
        match self {
            Home::Temp(dir) => dir.path(),
            Home::Given(dir) => dir,
        }
    }
}

/// One initialised token: its module, its directory, its label and PINs, and the environment
/// a process needs to see it.
pub struct TestToken {
    kind: ModuleKind,
    module: PathBuf,
    /// openCryptoki's pkcsslotd. Declared before `home` so that it is stopped (on drop, panics
    /// included) before the directory holding its state is removed.
    daemon: Option<Daemon>,
    home: Home,
    label: String,
    pin: String,
    env: Vec<(&'static str, OsString)>,
}

impl TestToken {
    /// A SoftHSM token `label` with user PIN `pin` in a new temporary directory (removed on
    /// drop); panics with the reason when SoftHSM is missing or refuses.
    pub fn softhsm(label: &str, pin: &str) -> Self {
        Self::init(ModuleKind::SoftHsm, Home::temp(), label, pin).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A SoftHSM token `label` with user PIN `pin` whose files (`softhsm2.conf`, `tokens/`)
    /// go into `dir`, which is made when missing and kept.
    pub fn softhsm_in(dir: &Path, label: &str, pin: &str) -> Result<Self, String> {
        Self::init(ModuleKind::SoftHsm, Home::given(dir)?, label, pin)
    }

    /// A kryoptic token `label` with user PIN `pin` in a new temporary directory; panics with
    /// the reason (e.g. "run `cargo xtask kryoptic`") when the module is missing or refuses.
    pub fn kryoptic(label: &str, pin: &str) -> Self {
        Self::init(ModuleKind::Kryoptic, Home::temp(), label, pin).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A kryoptic token `label` with user PIN `pin` whose database (`token.sql`) goes into
    /// `dir`, which is made when missing and kept.
    pub fn kryoptic_in(dir: &Path, label: &str, pin: &str) -> Result<Self, String> {
        Self::init(ModuleKind::Kryoptic, Home::given(dir)?, label, pin)
    }

    /// An NSS softokn database with password (user PIN) `pin` in a new temporary directory;
    /// its token is labelled [`NSS_TOKEN_LABEL`]. Panics with the reason when NSS is missing.
    pub fn nss(pin: &str) -> Self {
        Self::init(ModuleKind::Nss, Home::temp(), NSS_TOKEN_LABEL, pin)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// An NSS softokn database with password `pin` whose files (`cert9.db`, `key4.db`,
    /// `pkcs11.txt`) go into `dir`, which is made when missing and kept.
    pub fn nss_in(dir: &Path, pin: &str) -> Result<Self, String> {
        Self::init(ModuleKind::Nss, Home::given(dir)?, NSS_TOKEN_LABEL, pin)
    }

    /// An openCryptoki soft token `label` with user PIN `pin` (4 to 8 characters) in a new
    /// temporary directory, with a pkcsslotd of its own (stopped on drop); panics with the
    /// reason (e.g. "run `cargo xtask opencryptoki`") when the sid root is missing or refused.
    pub fn opencryptoki(label: &str, pin: &str) -> Self {
        Self::init(ModuleKind::OpenCryptoki, Home::temp(), label, pin)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// An openCryptoki soft token whose state (`opencryptoki/`) goes into `dir`, which is made
    /// when missing and kept; `dir` must hold no other openCryptoki token.
    pub fn opencryptoki_in(dir: &Path, label: &str, pin: &str) -> Result<Self, String> {
        Self::init(ModuleKind::OpenCryptoki, Home::given(dir)?, label, pin)
    }

    /// A token of `kind` in `dir` (NSS ignores `label`: its token is [`NSS_TOKEN_LABEL`];
    /// openCryptoki keeps its state in `dir/opencryptoki/` and takes PINs of 4 to 8
    /// characters).
    pub fn new_in(kind: ModuleKind, dir: &Path, label: &str, pin: &str) -> Result<Self, String> {
        let label = if kind == ModuleKind::Nss {
            NSS_TOKEN_LABEL
        } else {
            label
        };
        Self::init(kind, Home::given(dir)?, label, pin)
    }

    fn init(kind: ModuleKind, home: Home, label: &str, pin: &str) -> Result<Self, String> {
        let module = kind.present_module()?;
        let mut token = Self {
            kind,
            module,
            daemon: None,
            home,
            label: label.to_string(),
            pin: pin.to_string(),
            env: Vec::new(),
        };
        match kind {
            ModuleKind::SoftHsm => token.init_softhsm()?,
            ModuleKind::Kryoptic => token.init_kryoptic()?,
            ModuleKind::Nss => token.init_nss()?,
            ModuleKind::OpenCryptoki => token.init_opencryptoki()?,
        }
        Ok(token)
    }

    fn init_softhsm(&mut self) -> Result<(), String> {
        let tokens = self.path("tokens");
        std::fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
        let conf = self.path("softhsm2.conf");
        let text = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        );
        std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
        self.env = vec![("SOFTHSM2_CONF", conf.into_os_string())];
        let mut init = self.tool("softhsm2-util");
        init.args(["--init-token", "--free", "--label", &self.label])
            .args(["--so-pin", SO_PIN, "--pin", &self.pin]);
        run_tool(&mut init, "softhsm2-util --init-token", "softhsm2")
    }

    /// `pkcs11-tool --init-token`, then `--init-pin` as the security officer.
    fn init_kryoptic(&mut self) -> Result<(), String> {
        // A path ending in `.sql` is a one-token sqlite store in slot 0.
        self.env = vec![("KRYOPTIC_CONF", self.path("token.sql").into_os_string())];
        let mut init = self.tool("pkcs11-tool");
        init.arg("--module").arg(&self.module);
        init.args(["--init-token", "--label", &self.label, "--so-pin", SO_PIN]);
        run_tool(&mut init, "pkcs11-tool --init-token", "opensc")?;
        let mut pin = self.tool("pkcs11-tool");
        pin.arg("--module").arg(&self.module);
        pin.args(["--login", "--login-type", "so", "--so-pin", SO_PIN])
            .args(["--init-pin", "--pin", &self.pin]);
        run_tool(&mut pin, "pkcs11-tool --init-pin", "opensc")
    }

    /// `certutil -N` with the PIN as the database password (read from a file removed after).
    fn init_nss(&mut self) -> Result<(), String> {
        let dir = self.dir().to_str().filter(|d| !d.contains('\''));
        let Some(dir) = dir.map(str::to_string) else {
            return Err(format!(
                "NSS's init string cannot quote the directory {}: pick a path in UTF-8 without `'`",
                self.dir().display()
            ));
        };
        let password = self.path("nss-password");
        write_private(&password, &format!("{}\n", self.pin))?;
        let mut init = self.tool("certutil");
        init.args(["-N", "-d", &format!("sql:{dir}"), "-f"])
            .arg(&password);
        let made = run_tool(&mut init, "certutil -N", "libnss3-tools");
        let _ = std::fs::remove_file(&password);
        made?;
        let args =
            format!("configdir='sql:{dir}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=");
        self.env = vec![(INIT_ARGS_ENV, args.into())];
        Ok(())
    }

    /// A pkcsslotd of the token's own, then `pkcsconf` sets the label, the SO PIN and the
    /// user PIN (all on its stdin).
    fn init_opencryptoki(&mut self) -> Result<(), String> {
        let root = crate::opencryptoki::ready_root()?;
        let daemon = self.daemon.insert(Daemon::start(&root, self.home.path())?);
        daemon.init_token(self.home.path(), &self.label, SO_PIN, &self.pin)
    }

    /// `program` run in the token's directory with its environment, for initialising it.
    fn tool(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.dir())
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null());
        cmd
    }

    /// Which module holds the token.
    pub fn kind(&self) -> ModuleKind {
        self.kind
    }

    /// The module's shared library.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// The variables a process needs to find this token (SoftHSM: `SOFTHSM2_CONF`; kryoptic:
    /// `KRYOPTIC_CONF`; NSS: `PKCS11_INIT_ARGS`; openCryptoki: none, but its programs must
    /// run through [`TestToken::command`]).
    pub fn env(&self) -> &[(&'static str, OsString)] {
        &self.env
    }

    /// The module's init string (C_Initialize's `pReserved`), for NSS only.
    pub fn init_args(&self) -> Option<&str> {
        self.env
            .iter()
            .find(|(name, _)| *name == INIT_ARGS_ENV)
            .and_then(|(_, value)| value.to_str())
    }

    /// The token label (NSS: [`NSS_TOKEN_LABEL`]).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `byok-offline`'s flags that select this token: `--token LABEL`. NSS needs them (its
    /// module has two slots); for the others they are harmless.
    pub fn token_args(&self) -> [&str; 2] {
        ["--token", &self.label]
    }

    /// The user PIN.
    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// The security officer PIN.
    pub fn so_pin(&self) -> &str {
        SO_PIN
    }

    /// openCryptoki: the pid of the token's pkcsslotd (the same on the host and in the root).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    /// openCryptoki: the token's state directory (`opencryptoki/` in [`TestToken::dir`], as
    /// its daemon's namespace mounts it).
    pub fn state_dir(&self) -> Option<&Path> {
        self.daemon.as_ref().map(Daemon::state)
    }

    /// The token's directory (its configuration and object store live below it).
    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    /// A path in the token's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// `program` (e.g. `byok-offline`) set up for this token: run in [`TestToken::dir`], the
    /// module's variables (NSS's init string in `PKCS11_INIT_ARGS`), `PKCS11_MODULE`, no
    /// `BYOK_PKCS11_PIN`, stdin closed. It adds no arguments: pass
    /// [`TestToken::token_args`] to `byok-offline` on NSS.
    ///
    /// openCryptoki: `program` runs inside the sid root, in the token's daemon's namespaces
    /// (a launcher script comes first; [`Command::get_program`] is `/bin/sh`). Arguments,
    /// variables and the directory given to the command reach `program` as usual; the
    /// directory must be one the daemon's namespace mounts (the token's, the temporary, the
    /// target directory, the workspace), and a path `program` is given must lie in one too.
    /// A bare name (`pkcsconf`, `pkcs11-tool`) is looked up in the root.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = match &self.daemon {
            Some(daemon) => daemon.command(program.as_ref()),
            None => Command::new(program),
        };
        cmd.current_dir(self.dir())
            .envs(self.env.iter().cloned())
            .env(MODULE_ENV, &self.module)
            .env_remove(PIN_ENV)
            .stdin(Stdio::null());
        cmd
    }

    /// As [`TestToken::command`], with the user PIN in `BYOK_PKCS11_PIN`.
    pub fn command_with_pin(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = self.command(program);
        cmd.env(PIN_ENV, &self.pin);
        cmd
    }
}

/// Writes `text` to a new file only the owner can read.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs an initialising tool from Debian's `package`; its output in the error when it fails.
fn run_tool(cmd: &mut Command, what: &str, package: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| {
        format!(
            "could not run {:?}: {e} (apt-get install {package})",
            cmd.get_program()
        )
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
