//! What each workstation binary does to its own process before anything else: no core dumps,
//! and secrets out of the environment.
//!
//! - [`harden`]: `PR_SET_DUMPABLE 0` (no core file, and other processes of the same user may
//!   not read this one's memory through `/proc` or ptrace) and `RLIMIT_CORE 0` (no core file
//!   even where the dumpable flag is set again).
//! - [`take_secret_vars`]: a secret in an environment variable stays in the process's
//!   environment block for its whole life: `unsetenv(3)` only unlinks it from `environ`, and
//!   `/proc/<pid>/environ` and a core file still show the original block. The only way to drop
//!   that block without `unsafe` is to replace the process image: the variables are read, this
//!   program is executed again in place (same process id, same arguments) without them, and
//!   their values cross the `execve` through a pipe, which the new image empties at once.
//!   `std::env::remove_var` is `unsafe` in edition 2024, and would not clear the block anyway.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use zeroize::Zeroizing;

/// The variable naming the pipe's descriptor in the re-executed process. Set by the binaries
/// for themselves; it carries a descriptor number, never a secret.
pub const HANDOVER_FD_ENV: &str = "BYOK_SECRET_HANDOVER_FD";

/// The most the handover carries: names and PINs. One page, the least any pipe buffers, so the
/// write before the exec never waits for a reader that does not exist yet.
const MAX_HANDOVER_BYTES: u64 = 4096;

/// Why the process could not be hardened, or its secrets moved out of the environment.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(
        "cannot turn core dumps off ({what}: {reason}); run on a Linux kernel that allows it, \
         or report this"
    )]
    Harden { what: &'static str, reason: String },
    #[error(
        "cannot remove {names} from the environment ({reason}); unset it and give the secret \
         another way (byok-offline: --pin-file, or the prompt on a terminal)"
    )]
    Handover { names: String, reason: String },
}

/// Turns core dumps off for this process and its children: first thing in `main`.
pub fn harden() -> Result<(), ProcessError> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior};
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        rustix::process::setrlimit(Resource::Core, none).map_err(|e| ProcessError::Harden {
            what: "RLIMIT_CORE 0",
            reason: e.to_string(),
        })?;
        set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(|e| ProcessError::Harden {
            what: "PR_SET_DUMPABLE 0",
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

/// The values of secret variables, taken out of the environment by [`take_secret_vars`];
/// zeroized when dropped.
#[derive(Default)]
pub struct SecretVars(HashMap<String, Zeroizing<String>>);

impl SecretVars {
    /// The value the variable `name` held when the program started.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.as_str())
    }
}

/// Takes the variables `names` out of the process environment, returning their values.
///
/// When any of them is set, this program is executed again in place without them (it does not
/// return then); the new image reads their values from the pipe named by
/// [`HANDOVER_FD_ENV`] and returns them. Call it in `main` before any thread starts and before
/// any library (a PKCS#11 module) is loaded, so no copy of the environment is taken first.
pub fn take_secret_vars(names: &[String]) -> Result<SecretVars, ProcessError> {
    let set: Vec<(&String, OsString)> = names
        .iter()
        .filter_map(|n| std::env::var_os(n).map(|v| (n, v)))
        .collect();
    if !set.is_empty() {
        let names = set.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>();
        let reason = reexec_without(&set);
        return Err(ProcessError::Handover {
            names: names.join(", "),
            reason,
        });
    }
    match std::env::var_os(HANDOVER_FD_ENV) {
        Some(fd) => receive(&fd).map_err(|reason| ProcessError::Handover {
            names: names.join(", "),
            reason,
        }),
        None => Ok(SecretVars::default()),
    }
}

/// Executes this program again without the variables in `set`, their values in a pipe. Returns
/// only on failure, with the reason.
#[cfg(target_os = "linux")]
fn reexec_without(set: &[(&String, OsString)]) -> String {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let mut record = Zeroizing::new(Vec::new());
    for (name, value) in set {
        // NUL cannot occur in a variable's name or value: a safe separator.
        record.extend_from_slice(name.as_bytes());
        record.push(0);
        record.extend_from_slice(value.as_bytes());
        record.push(0);
    }
    if record.len() as u64 > MAX_HANDOVER_BYTES {
        return format!(
            "together they hold {} bytes, more than any PIN (the limit is {MAX_HANDOVER_BYTES}): \
             check what the variables hold, or give the PIN with --pin-file",
            record.len()
        );
    }
    let (reader, mut writer) = match std::io::pipe() {
        Ok(pair) => pair,
        Err(e) => return e.to_string(),
    };
    // The record is far smaller than a pipe's buffer: the write does not wait for a reader.
    if let Err(e) = writer.write_all(&record) {
        return e.to_string();
    }
    drop(writer);
    // The read end must survive the exec; std opens pipes close-on-exec.
    if let Err(e) = rustix::io::fcntl_setfd(&reader, rustix::io::FdFlags::empty()) {
        return e.to_string();
    }
    use std::os::fd::AsRawFd;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    let mut command = std::process::Command::new("/proc/self/exe");
    command
        .arg0(arg0)
        .args(args)
        .env(HANDOVER_FD_ENV, reader.as_raw_fd().to_string());
    for (name, _) in set {
        command.env_remove(name);
    }
    command.exec().to_string()
}

#[cfg(not(target_os = "linux"))]
fn reexec_without(_: &[(&String, OsString)]) -> String {
    "this platform has no /proc/self/exe to execute again".into()
}

/// Reads the handed-over values from the pipe whose descriptor number is `fd`, through
/// `/proc/self/fd` (a descriptor number cannot be owned without `unsafe`): the pipe is emptied,
/// and its inherited descriptor is left open and empty, its writer gone.
fn receive(fd: &std::ffi::OsStr) -> Result<SecretVars, String> {
    let fd: u32 = fd
        .to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{HANDOVER_FD_ENV} is not a descriptor number"))?;
    let pipe = std::fs::File::open(format!("/proc/self/fd/{fd}")).map_err(|e| e.to_string())?;
    // Sized up front, so the buffer never grows and leaves a copy behind.
    let mut record = Zeroizing::new(Vec::with_capacity(MAX_HANDOVER_BYTES as usize + 1));
    pipe.take(MAX_HANDOVER_BYTES + 1)
        .read_to_end(&mut record)
        .map_err(|e| e.to_string())?;
    if record.len() as u64 > MAX_HANDOVER_BYTES {
        return Err(format!(
            "the handover holds more than {MAX_HANDOVER_BYTES} bytes"
        ));
    }
    let mut vars = HashMap::new();
    let mut fields = record.split(|&b| b == 0);
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if name.is_empty() {
            break;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        // A value that is not UTF-8 is refused, not tried with replacement characters: a wrong
        // PIN counts towards the token's lockout.
        let value =
            std::str::from_utf8(value).map_err(|_| format!("{name} does not hold UTF-8 text"))?;
        let value = Zeroizing::new(value.to_string());
        vars.insert(name, value);
    }
    Ok(SecretVars(vars))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_secret_set_means_nothing_to_take() {
        let names = vec!["BYOK_TEST_SURELY_UNSET_4411".to_string()];
        let vars = take_secret_vars(&names).unwrap();
        assert_eq!(vars.get("BYOK_TEST_SURELY_UNSET_4411"), None);
    }

    #[test]
    fn hardening_turns_core_dumps_off() {
        harden().unwrap();
        #[cfg(target_os = "linux")]
        {
            use rustix::process::{DumpableBehavior, Resource};
            assert_eq!(
                rustix::process::dumpable_behavior().unwrap(),
                DumpableBehavior::NotDumpable
            );
            assert_eq!(rustix::process::getrlimit(Resource::Core).current, Some(0));
        }
    }
}
