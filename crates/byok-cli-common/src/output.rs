//! `--output human|json|table|tsv` and `--query`, and reporting the outcome of a command.
//!
//! Every JSON document a command prints is an object whose first field, `schema`, names the
//! document type and its version (`byok-offline.tokens/1`): scripts check it before reading
//! the rest. A field is only ever added under the same version; a field renamed or removed
//! bumps it.

use crate::exit::Classify;
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::process::ExitCode;

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Lines for a person.
    #[default]
    Human,
    /// One JSON document per command, for scripts.
    Json,
    /// A table of the document's top-level values, as az's `-o table`.
    Table,
    /// Tab-separated values without a header, as az's `-o tsv`.
    Tsv,
}

/// A command's report: what it serializes to, and the name and version of that document.
pub trait Document: Serialize {
    /// `<binary>.<document>/<version>`, e.g. `byok-online.import/1`.
    const SCHEMA: &'static str;
}

/// `#[serde(serialize_with = "as_display")]`: a typed field (a key kind, a wrap path, an
/// outcome) in a report's JSON as the text a person reads for it. Reports hold values typed;
/// their text is made here, at the edge.
pub fn as_display<T: fmt::Display + ?Sized, S: Serializer>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// `#[serde(serialize_with = "as_hex")]`: bytes (a `CKA_ID`) in a report's JSON as lowercase
/// hex, the text [`Hex`] prints.
pub fn as_hex<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Hex(bytes))
}

/// Bytes shown as lowercase hex, two digits a byte (`0a0b`; nothing for none).
#[derive(Debug, Clone, Copy)]
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The schema of the error document every command prints with `--output json`.
pub const ERROR_SCHEMA: &str = "byok.error/1";

/// Why `--query` cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "--query `{expression}` is not a JMESPath expression: {reason}. See https://jmespath.org (az uses the same language)"
)]
pub struct QueryError {
    expression: String,
    reason: String,
}

/// Where and how a command's report goes: the format, and a JMESPath query on its JSON.
#[derive(Debug, Clone, Default)]
pub struct Output {
    format: OutputFormat,
    query: Option<String>,
}

/// `schema` first, then the report's own fields.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    schema: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

impl Output {
    /// `query` is checked here, so a bad one is a usage error before any work is done.
    pub fn new(format: OutputFormat, query: Option<String>) -> Result<Self, QueryError> {
        if let Some(q) = &query {
            jmespath::compile(q).map_err(|e| QueryError {
                expression: q.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(Self { format, query })
    }

    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// Whether stdout carries a machine-readable document (JSON, table or TSV, or any format
    /// with `--query`): progress and chatter then stay on stderr.
    pub fn is_structured(&self) -> bool {
        self.format != OutputFormat::Human || self.query.is_some()
    }

    /// The report as the JSON document `--output json` prints: `schema` first.
    pub fn document<T: Document>(value: &T) -> Value {
        serde_json::to_value(Envelope {
            schema: T::SCHEMA,
            body: value,
        })
        .expect("reports serialize to a JSON object")
    }

    /// Prints a command's report: `human(value)`, or the document (after `--query`) as JSON,
    /// a table or TSV. `--query` with human output prints JSON, as az does.
    pub fn print<T: Document>(&self, value: &T, human: impl FnOnce(&T)) {
        if !self.is_structured() {
            return human(value);
        }
        let doc = self.queried(Self::document(value));
        println!("{}", self.render(&doc));
    }

    fn queried(&self, doc: Value) -> Value {
        let Some(q) = &self.query else { return doc };
        let expr = jmespath::compile(q).expect("checked in Output::new");
        let found = expr
            .search(doc)
            .map_err(|e| format!("--query `{q}`: {e}"))
            .and_then(|v| serde_json::to_value(&*v).map_err(|e| e.to_string()));
        found.unwrap_or_else(|e| {
            crate::say_err!("warning: {e}");
            Value::Null
        })
    }

    fn render(&self, doc: &Value) -> String {
        match self.format {
            OutputFormat::Table => crate::table::render_table(doc),
            OutputFormat::Tsv => crate::table::render_tsv(doc),
            // serde leaves DEL and C1 raw: escaped too, the same JSON value.
            OutputFormat::Human | OutputFormat::Json => crate::terminal::json(
                &serde_json::to_string_pretty(doc).expect("JSON values serialize"),
            )
            .into_owned(),
        }
    }

    /// Ends a command: success, or the error on stderr (and as a `byok.error/1` document on
    /// stdout with structured output) with its exit code.
    pub fn finish<E: Classify>(&self, result: Result<(), E>) -> ExitCode {
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let kind = e.exit_kind();
                if self.format == OutputFormat::Json {
                    let doc = serde_json::json!({
                        "schema": ERROR_SCHEMA,
                        "error": e.to_string(),
                        "exit_code": kind.code(),
                    });
                    println!("{}", crate::terminal::json(&doc.to_string()));
                }
                // The message may quote a file or a server (a vault's error text).
                crate::say_err!("error: {e}");
                ExitCode::from(kind.code())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Report {
        name: &'static str,
        keys: Vec<u32>,
    }

    impl Document for Report {
        const SCHEMA: &'static str = "test.report/1";
    }

    #[test]
    fn documents_lead_with_their_schema() {
        let doc = Output::document(&Report {
            name: "k",
            keys: vec![1, 2],
        });
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(
            text,
            r#"{"schema":"test.report/1","name":"k","keys":[1,2]}"#
        );
    }

    #[derive(Serialize)]
    struct Typed {
        #[serde(serialize_with = "as_hex")]
        id: Vec<u8>,
        #[serde(serialize_with = "as_display")]
        kind: byok_core::target::KeyKind,
    }

    #[test]
    fn typed_fields_serialize_as_their_text() {
        let typed = Typed {
            id: vec![0x0a, 0xff, 0x00],
            kind: byok_core::target::KeyKind::Rsa { bits: 2048 },
        };
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            r#"{"id":"0aff00","kind":"RSA 2048"}"#
        );
        assert_eq!(Hex(&[]).to_string(), "");
    }

    #[test]
    fn queries_select_from_the_document() {
        let out = Output::new(OutputFormat::Json, Some("keys[1]".into())).unwrap();
        let doc = Output::document(&Report {
            name: "k",
            keys: vec![1, 2],
        });
        assert_eq!(out.queried(doc.clone()), serde_json::json!(2));
        let out = Output::new(OutputFormat::Json, Some("schema".into())).unwrap();
        assert_eq!(out.queried(doc), serde_json::json!("test.report/1"));
        let err = Output::new(OutputFormat::Json, Some("keys[".into())).unwrap_err();
        assert!(
            err.to_string().contains("not a JMESPath expression"),
            "{err}"
        );
    }
}
