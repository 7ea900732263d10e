//! `byok-offline`: the air-gapped half of a BYOK ceremony. This file only parses arguments,
//! calls the library, and prints; the flags are in `cli`, the human output in `print`.

mod cli;
mod print;

use byok_cli_common::logging;
use byok_cli_common::progress::Progress;
use byok_offline::Result;
use byok_offline::batch::Batch;
use byok_offline::commands::{self, Connection};
use clap::Parser;
use cli::{Cli, Command, LogCommand};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.global.verbose);
    let output = cli.global.output;
    output.finish(run(cli))
}

fn run(cli: Cli) -> Result<()> {
    let out = cli.global.output;
    let conn = Connection::from(cli.connection);
    match cli.command {
        Command::Tokens => out.print(&commands::tokens(&conn)?, |t| print::tokens(t)),
        Command::Check(args) => {
            out.print(&commands::check(&conn, &args.try_into()?)?, print::check);
        }
        Command::Keys => out.print(&commands::list_keys(&conn)?, |k| print::keys(k)),
        Command::Generate(args) => {
            let report = commands::generate(&conn, &args.try_into()?)?;
            out.print(&report, print::generated);
        }
        Command::Package(args) => {
            let outcome = commands::package(&conn, &args.try_into()?)?;
            out.print(&outcome, print::packaged);
        }
        Command::ProveAes { label, challenge } => {
            out.print(
                &commands::prove_aes(&conn, &label, &challenge)?,
                print::proof,
            );
        }
        Command::Batch(args) => {
            let batch = Batch::prepare(args.into())?;
            let progress = Progress::new(batch.key_count());
            let report = batch.run(&conn, &progress);
            progress.finish();
            out.print(&report?, print::batch);
        }
        Command::Log {
            command: LogCommand::Verify { file },
        } => out.print(&commands::verify_log(&file)?, print::log),
        Command::Inspect { file } => out.print(&commands::inspect(&file)?, print::inspect),
    }
    Ok(())
}
