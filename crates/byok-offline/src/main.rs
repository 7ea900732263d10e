//! `byok-offline`: the air-gapped half of a BYOK ceremony. This file only parses arguments,
//! calls the library, and prints; the flags are in `cli`, the human output in `print`.

mod cli;
mod print;

use byok_cli_common::files::FileError;
use byok_cli_common::logging;
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
    let cli = Cli::parse();
    logging::init(cli.global.verbose);
    match cli.global.output() {
        Ok(out) => out.finish(run(cli, &out)),
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
            let conn = a.token.or(top.token_args()).into_connection();
            out.print(&commands::tokens(&conn)?, print::tokens);
        }
        Command::Check(a) => {
            let conn = connect(a.connection.clone())?;
            out.print(&commands::check(&conn, &a.try_into()?)?, print::check);
        }
        Command::Keys(a) => {
            let conn = connect(a.connection)?;
            out.print(&commands::list_keys(&conn)?, print::keys);
        }
        Command::Generate(a) => {
            let conn = connect(a.connection.clone())?;
            out.print(
                &commands::generate(&conn, &a.try_into()?)?,
                print::generated,
            );
        }
        Command::Package(a) => {
            let conn = connect(a.connection.clone())?;
            out.print(&commands::package(&conn, &a.try_into()?)?, print::packaged);
        }
        Command::ProveAes(a) => {
            let conn = connect(a.connection)?;
            let proof = commands::prove_aes(&conn, &a.label, &a.challenge)?;
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

fn write_error(path: &Path, e: std::io::Error) -> OfflineError {
    OfflineError::File(FileError::Write {
        path: path.into(),
        reason: e.to_string(),
    })
}
