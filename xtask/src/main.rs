//! Build and test automation for the workspace (the `cargo xtask` pattern), one module a task:
//!
//! - `cargo xtask ci` ([`ci`]): format check, clippy with `-D warnings`, the whole test suite,
//!   then `e2e` on kryoptic, `e2e --matrix` on every token, `e2e --batch 12` on NSS and `e2e` on
//!   openCryptoki; the closing line counts the tests.
//! - `cargo xtask e2e [--token T] [--matrix | --batch N]` ([`e2e`], [`matrix`]): the whole
//!   ceremony on one machine, against a fresh token (kryoptic unless `--token` says otherwise)
//!   and kv-emulator, with the real binaries.
//! - `cargo xtask kryoptic` ([`kryoptic`]): builds kryoptic from crates.io into
//!   `target/kryoptic/` once (`ci` and `e2e` call it when they need it); [`packages`] installs
//!   what the tokens need from Debian.
//! - `cargo xtask opencryptoki` ([`opencryptoki`]): makes the Debian sid root with
//!   openCryptoki 3.27 in `target/opencryptoki/root` once (`ci` and `e2e --token
//!   opencryptoki` call it when they need it).
//! - `cargo xtask bench` ([`bench`]): each half measured against what a user would pick
//!   instead; figures in target/bench/.
//! - `cargo xtask dist [--check]` ([`dist`]): the release artefacts (`.tar.gz`, `.deb`, SBOMs,
//!   SHA256SUMS) in target/dist/, reproducibly; `--check` builds twice, compares, installs.
//!
//! `bench` also starts this binary as hidden children (`__keygen`, `__login`, `__load`,
//! `__floor`, `__populate`), so what it measures runs in a process of its own. This file only parses and dispatches.

mod bench;
mod ceremony;
mod ci;
mod disk;
mod dist;
mod e2e;
mod expectations;
mod kryoptic;
mod matrix;
mod opencryptoki;
mod packages;
mod record;
mod tokens;
mod util;

use byok_tests::ModuleKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
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
    /// fmt check, clippy -D warnings, cargo test --workspace, e2e (kryoptic), e2e --matrix
    /// (every token), e2e --batch 12 (NSS softokn: RSA and EC mixed), e2e on openCryptoki
    /// (native CKM_RSA_AES_KEY_WRAP), dist --check (dist-ci profile: two builds compared,
    /// .debs installed and run)
    Ci,
    /// The whole BYOK ceremony against a fresh token and kv-emulator (default: kryoptic, RSA
    /// 3072 under a 4096-bit KEK)
    E2e(E2eArgs),
    /// Build kryoptic 1.5.4 from crates.io into target/kryoptic/ (once; e2e and ci call this)
    Kryoptic,
    /// Make the Debian sid root with openCryptoki 3.27.0-1 in target/opencryptoki/root (as
    /// root, with mmdebstrap; once; e2e and ci call this)
    Opencryptoki,
    /// Each half against the tools a user would pick instead (target/bench/bench.md); with
    /// --scale, per-key cost as the token and the vault grow (target/bench/scale.md)
    Bench(BenchArgs),
    /// The release artefacts in target/dist/: per binary a .tar.gz, a .deb and a CycloneDX
    /// SBOM, and SHA256SUMS; built reproducibly
    Dist(DistArgs),
    /// bench's child: SoftHSM key generation alone, COUNT keys of KIND ("RSA 2048", "EC P-256")
    #[command(name = "__keygen", hide = true)]
    Keygen { kind: String, count: usize },
    /// bench's child: load the module and log in, nothing else
    #[command(name = "__login", hide = true)]
    Login,
    /// bench's child: GETs, BYOK imports or creates against the emulator
    #[command(name = "__load", hide = true)]
    Load(bench::load::LoadArgs),
    /// bench's child: the PKCS#11 calls byok-offline makes per key, in a loop
    #[command(name = "__floor", hide = true)]
    Floor {
        #[arg(value_enum)]
        mode: bench::floor::FloorMode,
        #[command(flatten)]
        args: bench::floor::FloorArgs,
        #[command(flatten)]
        calls: bench::floor::FloorCalls,
    },
    /// bench's child: COUNT AES keys on the token
    #[command(name = "__populate", hide = true)]
    Populate(bench::floor::FloorArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Per-key cost at token sizes 0, 1,000 and 5,000 on every token (SoftHSM, kryoptic, NSS
    /// softokn, openCryptoki) against the module's floor (same calls, same wrap path and
    /// look-up) and the openssl pipeline; native CKM_RSA_AES_KEY_WRAP against the two-step
    /// where a token has it; the emulator at 0, 10,000 and 100,000 keys, in memory and
    /// persisted (takes an hour or more). BYOK_BENCH_TOKENS, BYOK_BENCH_SCALE_SIZES,
    /// BYOK_BENCH_SCALE_BATCH and BYOK_BENCH_RUNS shrink it for a smoke run
    #[arg(long)]
    scale: bool,
    /// With --scale: only the offline half or only the emulator
    #[arg(long, value_enum, requires = "scale")]
    only: Option<bench::scale::Part>,
    /// What `byok-offline check` costs per kind on every token, against one cold `generate`
    /// of the kind, and its share of one cold `package --generate` (RSA 2048, EC P-256, AES
    /// 256) against one that reuses a recorded verdict (target/bench/check.md).
    /// BYOK_BENCH_TOKENS and BYOK_BENCH_RUNS shrink it for a smoke run
    #[arg(long, conflicts_with = "scale")]
    check_cost: bool,
}

#[derive(Args)]
struct E2eArgs {
    /// The token: kryoptic (the default; no leniency), nss, opencryptoki (3.27 in a Debian sid
    /// root; native CKM_RSA_AES_KEY_WRAP), or softhsm (Debian's 2.6.1, which needs
    /// --allow-zero-padded-kwp for RSA/EC). With --matrix: only this token.
    #[arg(long, value_enum)]
    token: Option<TokenArg>,
    /// Every RSA/EC kind on a vault and every AES kind on Managed HSM, on every token (no
    /// leniency); ends with a table token x kind -> proven, or refused with the tool's reason
    #[arg(long, conflicts_with = "batch")]
    matrix: bool,
    /// N mixed keys in one batch, each half interrupted (SIGKILL) and resumed
    #[arg(long, value_name = "N", value_parser = batch_size)]
    batch: Option<usize>,
}

#[derive(Args)]
struct DistArgs {
    /// Then prove them: build again in a copy of the tree and compare SHA256SUMS, check the
    /// SBOMs and `ldd`, install both .debs (dpkg -i, as root), run them, remove them
    #[arg(long)]
    check: bool,
    /// dist: the release build; dist-ci: the same packaging, built faster (CI's)
    #[arg(long, value_enum, default_value_t = dist::DistProfile::Dist)]
    profile: dist::DistProfile,
}

/// `--token`: the test kit's modules, by the names the flag takes.
#[derive(Clone, Copy, ValueEnum)]
enum TokenArg {
    Softhsm,
    Kryoptic,
    Nss,
    Opencryptoki,
}

impl From<TokenArg> for ModuleKind {
    fn from(t: TokenArg) -> Self {
        match t {
            TokenArg::Softhsm => ModuleKind::SoftHsm,
            TokenArg::Kryoptic => ModuleKind::Kryoptic,
            TokenArg::Nss => ModuleKind::Nss,
            TokenArg::Opencryptoki => ModuleKind::OpenCryptoki,
        }
    }
}

/// `--batch N`: a batch worth interrupting halfway has at least two keys.
fn batch_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 2 => Ok(n),
        _ => Err("a batch takes a number of keys, at least 2".into()),
    }
}

fn e2e_task(args: E2eArgs) -> Result<(), String> {
    let token = args.token.map(ModuleKind::from);
    match (args.batch, args.matrix) {
        (Some(n), _) => e2e::run_batch(n, token.unwrap_or(e2e::DEFAULT_TOKEN)),
        (None, true) => matrix::run(token.map_or(ModuleKind::ALL.to_vec(), |t| vec![t])),
        (None, false) => e2e::run(token.unwrap_or(e2e::DEFAULT_TOKEN)),
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        None => Cli::command().print_help().map_err(|e| e.to_string()),
        Some(Task::Ci) => ci::run(),
        Some(Task::E2e(args)) => e2e_task(args),
        Some(Task::Kryoptic) => kryoptic::run(),
        Some(Task::Opencryptoki) => opencryptoki::run(),
        Some(Task::Bench(args)) if args.scale => bench::scale::run(args.only),
        Some(Task::Bench(args)) if args.check_cost => bench::check_cost::run(),
        Some(Task::Bench(_)) => bench::run(),
        Some(Task::Dist(args)) if args.check => dist::check(args.profile),
        Some(Task::Dist(args)) => dist::run(args.profile),
        Some(Task::Keygen { kind, count }) => bench::floor::keygen_loop(&kind, count),
        Some(Task::Login) => bench::floor::login_only(),
        Some(Task::Load(args)) => bench::load::load(&args),
        Some(Task::Floor { mode, args, calls }) => bench::floor::floor(mode, &args, calls),
        Some(Task::Populate(args)) => bench::floor::populate(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
