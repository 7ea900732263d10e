//! `byok-online`: the connected half of a BYOK ceremony. This file only dispatches: the flags
//! are in `cli`, the work in the library, the human printing in `print`.

mod cli;
mod print;

use byok_online::connect::ConnectOptions;
use byok_online::vault::AesGcm;
use byok_online::{Result, batch, commands, import};
use clap::Parser;
use cli::{Cli, Command, KekCommand};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    byok_cli_common::logging::init(cli.global.verbose);
    let output = cli.global.output;
    output.finish(run(cli).await)
}

async fn run(cli: Cli) -> Result<()> {
    let out = cli.global.output;
    let conn = ConnectOptions::from(cli.vault);
    match cli.command {
        Command::Kek {
            command:
                KekCommand::Create {
                    name,
                    size,
                    out: file,
                },
        } => {
            let r = commands::kek_create(&conn, &name, size, file.as_deref()).await?;
            out.print(&r, print::kek);
        }
        Command::Kek {
            command:
                KekCommand::Download {
                    name,
                    version,
                    out: file,
                    format,
                },
        } => {
            let r = commands::kek_download(&conn, &name, version.as_deref(), &file, format.into())
                .await?;
            out.print(&r, print::kek);
        }
        Command::Import(args) => {
            let r = import::import(&conn, &args.try_into()?).await?;
            out.print(&r, print::import);
        }
        Command::Verify {
            name,
            version,
            public_key,
        } => {
            let r = commands::verify(&conn, &name, version.as_deref(), &public_key).await?;
            out.print(&r, print::verify);
        }
        Command::ProveAes {
            name,
            version,
            size,
            out: file,
        } => {
            let gcm = AesGcm::for_bits(size).expect("clap checked the size");
            let r = commands::prove_aes(&conn, &name, version.as_deref(), gcm, &file).await?;
            out.print(&r, print::challenge);
        }
        Command::BatchImport(args) => {
            let r = batch::run(&conn, &args.into()).await?;
            out.print(&r, print::batch);
            r.check()?;
        }
        Command::Show { name, version } => {
            let r = commands::show(&conn, &name, version.as_deref()).await?;
            out.print(&r, print::key);
        }
        Command::Inspect { file } => out.print(&commands::inspect(&file)?, print::inspect),
    }
    Ok(())
}
