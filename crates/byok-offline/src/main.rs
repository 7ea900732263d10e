//! `byok-offline`: the air-gapped half of a BYOK ceremony. This file only parses arguments,
//! calls the library, and prints; the flags are in `cli`, the human output in `print`.

mod cli;
mod print;

use byok_cli_common::files::FileError;
use byok_cli_common::logging;
use byok_cli_common::minutes::{MinutesArgs, MinutesError};
use byok_cli_common::output::Output;
use byok_cli_common::progress::Progress;
use byok_offline::batch::Batch;
use byok_offline::commands;
use byok_offline::{OfflineError, Result, log};
use clap::{CommandFactory, Parser};
use cli::{Cli, Command, ConnectionArgs, LogCommand};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before anything else: no core file may hold a PIN, and the environment's copy of one
    // goes before a module or a thread could see it.
    let started = byok_cli_common::process::harden()
        .and_then(|()| byok_offline::pin::move_out_of_environment(std::env::args_os()));
    if let Err(e) = started {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    logging::init(cli.global.verbose);
    match cli.global.output() {
        Ok(out) => match cli.command {
            Command::Minutes(a) => out.finish(minutes(&a, &out)),
            command => out.finish(run(Cli { command, ..cli }, &out)),
        },
        // The error document still goes out in the format asked for.
        Err(e) => Output::new(cli.global.output, None)
            .expect("no query to check")
            .finish(Err(OfflineError::from(e))),
    }
}

fn run(cli: Cli, out: &Output) -> Result<()> {
    let top = cli.connection;
    let connect = |args: ConnectionArgs| args.or(top.clone()).into_connection();
    match cli.command {
        Command::Tokens(a) => {
            let log = a.log().open_if_given()?;
            let conn = a.token.or(top.token_args()).into_connection();
            out.print(&commands::tokens(&conn, log.as_ref())?, print::tokens);
        }
        Command::Check(a) => {
            let log = a.log().open_if_given()?;
            let conn = connect(a.connection.clone())?;
            let report = commands::check(&conn, &a.try_into()?, log.as_ref())?;
            out.print(&report, print::check);
        }
        Command::Keys(a) => {
            let conn = connect(a.connection)?;
            out.print(&commands::list_keys(&conn)?, print::keys);
        }
        Command::Generate(a) => {
            let log = a.log.open()?;
            let conn = connect(a.connection.clone())?;
            let report = commands::generate(&conn, &a.try_into()?, &log)?;
            out.print(&report, print::generated);
        }
        Command::Package(a) => {
            let log = a.log.open()?;
            let conn = connect(a.connection.clone())?;
            let report = commands::package(&conn, &a.try_into()?, &log)?;
            out.print(&report, print::packaged);
        }
        Command::ProveAes(a) => {
            let log = a.log.open()?;
            let conn = connect(a.connection)?;
            let proof = commands::prove_aes(&conn, &a.label, &a.challenge, &log)?;
            out.print(&proof, print::proof);
        }
        Command::Batch(a) => {
            let conn = connect(a.connection.clone())?;
            let batch = Batch::prepare(a.into())?;
            let progress = Progress::new(batch.key_count());
            let report = batch.run(&conn, &progress);
            progress.finish();
            out.print(&report?, print::batch);
        }
        Command::Log {
            command: LogCommand::Verify(a),
        } => {
            let report = log::verify(&a.file, a.expect_head.as_deref())?;
            out.print(&report, print::log);
        }
        Command::Minutes(_) => unreachable!("main runs minutes"),
        Command::Inspect(a) => out.print(&commands::inspect(&a.file)?, print::inspect),
        Command::Completions(a) => a
            .run(Cli::command())
            .map_err(|e| write_error(Path::new("<stdout>"), e))?,
        Command::Man(a) => {
            let dir = a.dir.clone().unwrap_or_default();
            let pages = a.run(Cli::command()).map_err(|e| write_error(&dir, e))?;
            if a.dir.is_some() {
                out.print(&print::ManReport { pages }, print::man);
            }
        }
    }
    Ok(())
}

/// `minutes`: byok-cli-common's, reported under this binary's schema.
fn minutes(args: &MinutesArgs, out: &Output) -> std::result::Result<(), MinutesError> {
    let report = byok_cli_common::minutes::run(args, "byok-offline")?;
    out.print(&print::Minutes(report), print::minutes);
    Ok(())
}

fn write_error(path: &Path, e: std::io::Error) -> OfflineError {
    OfflineError::File(FileError::Write {
        path: path.into(),
        reason: e.to_string(),
    })
}
