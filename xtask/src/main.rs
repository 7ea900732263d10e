//! Build and test automation for the workspace (the `cargo xtask` pattern), one module a task:
//!
//! - `cargo xtask ci` ([`ci`]): format check, clippy with `-D warnings`, the whole test suite,
//!   then `e2e --matrix` and `e2e --batch 12`; the closing line counts the tests.
//! - `cargo xtask e2e [--matrix | --batch N]` ([`e2e`]): the whole ceremony on one machine,
//!   against a fresh SoftHSM token and kv-emulator, with the real binaries.
//! - `cargo xtask bench` ([`bench`]): each half measured against what a user would pick
//!   instead; figures in target/bench/.
//!
//! `bench` also starts this binary as hidden children (`__keygen`, `__login`, `__load`), so
//! what it measures runs in a process of its own. This file only parses and dispatches.

mod bench;
mod ci;
mod e2e;

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Build and test automation for the BYOK workspace.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Option<Task>,
}

#[derive(Subcommand)]
enum Task {
    /// fmt check, clippy -D warnings, cargo test --workspace, e2e --matrix, e2e --batch 12
    Ci,
    /// The whole BYOK ceremony against SoftHSM and kv-emulator (default: RSA 3072 under a
    /// 4096-bit KEK)
    E2e(E2eArgs),
    /// Each half against the tools a user would pick instead (target/bench/)
    Bench,
    /// bench's child: SoftHSM key generation alone, COUNT keys of KIND ("RSA 2048", "EC P-256")
    #[command(name = "__keygen", hide = true)]
    Keygen { kind: String, count: usize },
    /// bench's child: load the module and log in, nothing else
    #[command(name = "__login", hide = true)]
    Login,
    /// bench's child: 8 connections of GETs or imports against the emulator for 10 s
    #[command(name = "__load", hide = true)]
    Load {
        state: PathBuf,
        #[arg(value_parser = ["get", "import"])]
        mode: String,
        package: PathBuf,
    },
}

#[derive(Args)]
struct E2eArgs {
    /// Every RSA/EC kind on a vault, and AES 256 on Managed HSM
    #[arg(long, conflicts_with = "batch")]
    matrix: bool,
    /// N mixed keys in one batch, each half interrupted (SIGKILL) and resumed
    #[arg(long, value_name = "N", value_parser = batch_size)]
    batch: Option<usize>,
}

/// `--batch N`: a batch worth interrupting halfway has at least two keys.
fn batch_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 2 => Ok(n),
        _ => Err("a batch takes a number of keys, at least 2".into()),
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        None => Cli::command().print_help().map_err(|e| e.to_string()),
        Some(Task::Ci) => ci::run(),
        Some(Task::E2e(E2eArgs { batch: Some(n), .. })) => e2e::run_batch(n),
        Some(Task::E2e(E2eArgs { matrix, .. })) => e2e::run(matrix),
        Some(Task::Bench) => bench::run(),
        Some(Task::Keygen { kind, count }) => bench::keygen_loop(&kind, count),
        Some(Task::Login) => bench::login_only(),
        Some(Task::Load {
            state,
            mode,
            package,
        }) => bench::load(&state, &mode, &package),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
