//! `byok-online`: the connected half of a BYOK ceremony. This file only dispatches: the flags
//! are in `cli`, the work in the library, the human printing in `print`.

mod cli;
mod print;

use byok_cli_common::Output;
use byok_cli_common::exit::Classify;
use byok_cli_common::minutes::{MinutesArgs, MinutesError};
use byok_online::batch::BatchImportOptions;
use byok_online::commands::{self, ManReport};
use byok_online::connect::ConnectOptions;
use byok_online::vault::AesGcm;
use byok_online::{OnlineError, Result, batch, import, record};
use clap::{CommandFactory, Parser};
use cli::{Cli, Command, KekCommand, VaultArgs};
use std::io::IsTerminal;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // First: no core file may hold a client secret or a token.
    if let Err(e) = byok_cli_common::process::harden() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    byok_cli_common::logging::init(cli.global.verbose);
    let output = match cli.global.output() {
        Ok(output) => output,
        // A bad --query is a usage error, reported before anything is done.
        Err(e) => {
            let plain = Output::new(cli.global.output, None).expect("no query to check");
            return plain.finish(Err(OnlineError::Usage(e.to_string())));
        }
    };
    let cli = match cli.command {
        Command::Minutes(a) => return output.finish(minutes(&a, &output)),
        command => Cli { command, ..cli },
    };
    match run(cli, &output).await {
        Ok(Some(failed)) => {
            // The report on stdout already says what failed: a second (error) document
            // would break "one JSON document per command".
            byok_cli_common::say_err!("error: {failed}");
            ExitCode::from(failed.exit_kind().code())
        }
        Ok(None) => output.finish(Ok::<(), OnlineError>(())),
        Err(e) => output.finish(Err(e)),
    }
}

/// Runs the command; `Ok(Some(error))` when it failed after printing its report.
async fn run(cli: Cli, out: &Output) -> Result<Option<OnlineError>> {
    let top = cli.vault;
    let conn = |sub: VaultArgs| ConnectOptions::from(sub.or(&top));
    match cli.command {
        Command::Kek { command } => kek(command, &top, out).await?,
        Command::Import(mut args) => {
            let log = args.log.open()?;
            // The question about an existing name needs someone at the terminal to answer.
            let write = args.write.options(std::io::stdin().is_terminal());
            let conn = conn(std::mem::take(&mut args.vault));
            let r = import::import(&conn, &args.try_into()?, write).await?;
            if let Some(entry) = record::imported(&r) {
                log.append(entry)?;
            }
            out.print(&r, print::import);
        }
        Command::Verify(a) => {
            let log = a.log.open()?;
            let r = commands::verify(&conn(a.vault), &a.name, a.version.as_deref(), &a.public_key)
                .await?;
            log.append(record::verified(&a.name, &r))?;
            out.print(&r, print::verify);
        }
        Command::ProveAes(a) => {
            let log = a.log.open()?;
            let gcm = AesGcm::for_bits(a.size).expect("clap checked the size");
            let r = commands::prove_aes(&conn(a.vault), &a.name, a.version.as_deref(), gcm, &a.out)
                .await?;
            log.append(record::aes_challenge_made(&r)?)?;
            out.print(&r, print::challenge);
        }
        Command::BatchImport(mut args) => {
            let conn = conn(std::mem::take(&mut args.vault));
            let r = batch::run(&conn, &BatchImportOptions::from(args)).await?;
            out.print(&r, print::batch);
            return Ok(r.check().err());
        }
        Command::Show(a) => {
            let r = commands::show(&conn(a.vault), &a.name, a.version.as_deref()).await?;
            out.print(&r, print::key);
        }
        Command::Minutes(_) => unreachable!("main runs minutes"),
        Command::Inspect(a) => out.print(&commands::inspect(&a.file)?, print::inspect),
        Command::Completions(a) => a.run(Cli::command()).map_err(|e| OnlineError::Generate {
            what: "completion script",
            reason: e.to_string(),
        })?,
        Command::Man(a) => {
            let pages = a.run(Cli::command()).map_err(|e| OnlineError::Generate {
                what: "man pages",
                reason: e.to_string(),
            })?;
            // Pages on stdout are the output; pages in a directory are reported.
            if a.dir.is_some() {
                out.print(&ManReport { pages }, print::man);
            }
        }
    }
    Ok(None)
}

/// `minutes`: byok-cli-common's, reported under this binary's schema; no network.
fn minutes(args: &MinutesArgs, out: &Output) -> std::result::Result<(), MinutesError> {
    let report = byok_cli_common::minutes::run(args, "byok-online")?;
    out.print(&print::Minutes(report), print::minutes);
    Ok(())
}

async fn kek(command: KekCommand, top: &VaultArgs, out: &Output) -> Result<()> {
    match command {
        KekCommand::Create(a) => {
            let log = a.log.open()?;
            let write = a.write.options(std::io::stdin().is_terminal());
            let conn = ConnectOptions::from(a.vault.or(top));
            let r = commands::kek_create(&conn, &a.name, a.size, a.out.as_deref(), write).await?;
            if let Some(entry) = record::kek_created(&r) {
                log.append(entry)?;
            }
            if let Some(entry) = record::kek_downloaded(&r)? {
                log.append(entry)?;
            }
            out.print(&r, print::kek);
        }
        KekCommand::Download(a) => {
            let log = a.log.open()?;
            let conn = ConnectOptions::from(a.vault.or(top));
            let r = commands::kek_download(
                &conn,
                &a.name,
                a.version.as_deref(),
                &a.out,
                a.format.into(),
            )
            .await?;
            if let Some(entry) = record::kek_downloaded(&r)? {
                log.append(entry)?;
            }
            out.print(&r, print::kek);
        }
    }
    Ok(())
}
