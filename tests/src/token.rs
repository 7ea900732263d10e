//! A fresh PKCS#11 token for one test or one run, in a directory of its own.
//!
//! Each module the tests use is one [`ModuleKind`] and one constructor on [`TestToken`];
//! callers only read the token's module path, environment, label and PINs, so another module
//! (kryoptic, NSS softokn) is another variant and another constructor.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The variable that names the SoftHSM module when it is not at [`SOFTHSM_MODULE_DEFAULT`].
pub const SOFTHSM_MODULE_ENV: &str = "BYOK_TEST_SOFTHSM_MODULE";
/// Where Debian's and Ubuntu's `softhsm2` package installs the module.
pub const SOFTHSM_MODULE_DEFAULT: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The variable `byok-offline` reads the module path from (its `--module`).
pub const MODULE_ENV: &str = "PKCS11_MODULE";
/// The variable `byok-offline` reads the user PIN from by default.
pub const PIN_ENV: &str = "BYOK_PKCS11_PIN";
/// The security officer PIN every test token is initialised with.
pub const SO_PIN: &str = "5678";

/// The SoftHSM module: `BYOK_TEST_SOFTHSM_MODULE` when set, else Debian's path.
pub fn softhsm_module() -> PathBuf {
    std::env::var_os(SOFTHSM_MODULE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SOFTHSM_MODULE_DEFAULT))
}

/// The PKCS#11 modules the tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModuleKind {
    /// SoftHSM 2 (`softhsm2-util`, `SOFTHSM2_CONF`).
    SoftHsm,
}

impl ModuleKind {
    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            ModuleKind::SoftHsm => "SoftHSM",
        }
    }

    /// The module's shared library.
    pub fn module(self) -> PathBuf {
        match self {
            ModuleKind::SoftHsm => softhsm_module(),
        }
    }
}

/// Where the token's files live: a temporary directory it owns, or one the caller laid out.
enum Home {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl Home {
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
    home: Home,
    label: String,
    pin: String,
    env: Vec<(&'static str, OsString)>,
}

impl TestToken {
    /// A SoftHSM token `label` with user PIN `pin` in a new temporary directory (removed on
    /// drop); panics with the reason when SoftHSM is missing or refuses.
    pub fn softhsm(label: &str, pin: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self::init_softhsm(Home::Temp(dir), label, pin).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A SoftHSM token `label` with user PIN `pin` whose files (`softhsm2.conf`, `tokens/`)
    /// go into `dir`, which is made when missing and kept.
    pub fn softhsm_in(dir: &Path, label: &str, pin: &str) -> Result<Self, String> {
        Self::init_softhsm(Home::Given(dir.to_path_buf()), label, pin)
    }

    fn init_softhsm(home: Home, label: &str, pin: &str) -> Result<Self, String> {
        let module = softhsm_module();
        if !module.exists() {
            return Err(format!(
                "SoftHSM is not installed: no module at {} (apt-get install softhsm2, which \
                 .ci/run and `cargo xtask ci` do; or set {SOFTHSM_MODULE_ENV})",
                module.display()
            ));
        }
        let tokens = home.path().join("tokens");
        std::fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
        let conf = home.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let token = Self {
            kind: ModuleKind::SoftHsm,
            module,
            home,
            label: label.to_string(),
            pin: pin.to_string(),
            env: vec![("SOFTHSM2_CONF", conf.into_os_string())],
        };
        let mut init = Command::new("softhsm2-util");
        init.args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", SO_PIN, "--pin", pin])
            .envs(token.env().iter().cloned());
        let out = init
            .output()
            .map_err(|e| format!("could not run softhsm2-util: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "softhsm2-util --init-token failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(token)
    }

    /// Which module holds the token.
    pub fn kind(&self) -> ModuleKind {
        self.kind
    }

    /// The module's shared library.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// The variables a process needs to find this token (SoftHSM: `SOFTHSM2_CONF`).
    pub fn env(&self) -> &[(&'static str, OsString)] {
        &self.env
    }

    /// The token label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The user PIN.
    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// The security officer PIN.
    pub fn so_pin(&self) -> &str {
        SO_PIN
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
    /// module's variables, `PKCS11_MODULE`, no `BYOK_PKCS11_PIN`, stdin closed.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
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
