//! `--output human|json`, and reporting the outcome of a command.

use crate::exit::Classify;
use serde::Serialize;
use std::process::ExitCode;

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Lines for a person.
    #[default]
    Human,
    /// One JSON document per command, for scripts.
    Json,
}

impl OutputFormat {
    pub fn is_json(self) -> bool {
        self == OutputFormat::Json
    }

    /// Prints a command's report: pretty JSON, or `human(value)`.
    pub fn print<T: Serialize>(self, value: &T, human: impl FnOnce(&T)) {
        match self {
            OutputFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).expect("reports serialize")
            ),
            OutputFormat::Human => human(value),
        }
    }

    /// Ends a command: success, or the error on stderr (and as JSON on stdout with `--output
    /// json`) with its exit code.
    pub fn finish<E: Classify>(self, result: Result<(), E>) -> ExitCode {
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let kind = e.exit_kind();
                if self.is_json() {
                    println!(
                        "{}",
                        serde_json::json!({ "error": e.to_string(), "exit_code": kind.code() })
                    );
                }
                eprintln!("error: {e}");
                ExitCode::from(kind.code())
            }
        }
    }
}
