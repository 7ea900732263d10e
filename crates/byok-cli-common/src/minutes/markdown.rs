//! The minutes as Markdown (CommonMark with GitHub's tables): the same content as the HTML.
//! Every string from a log is cleaned and has its Markdown punctuation backslash-escaped
//! (`|` among it, so a value cannot split a table's cell), and `<` so no HTML gets through.

use super::doc::{Block, Minutes, Section, Value};
use super::text::clean;
use std::fmt::Write;

/// Text as Markdown: cleaned, then every character Markdown or HTML could read as syntax
/// backslash-escaped.
pub fn esc(s: &str) -> String {
    let s = clean(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        // Inline syntax only: every escaped string follows a line's own prefix (`| `,
        // `- `, `# `), so the characters that start a block need nothing.
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '!' | '|' | '~' | '&'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A hash, id or path: a code span when it holds only characters a code span shows as they
/// are, else escaped text.
fn mono(s: &str) -> String {
    let s = clean(s);
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:/=+, @%".contains(c));
    if plain { format!("`{s}`") } else { esc(&s) }
}

/// Our own prose: `code` spans between backticks (kept), the rest escaped.
fn prose(s: &str) -> String {
    s.split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { mono(part) } else { esc(part) })
        .collect()
}

fn value(v: &Value) -> String {
    match v {
        Value::Text(s) => s.split('\n').map(esc).collect::<Vec<_>>().join("<br>"),
        Value::Mono(s) => s.split('\n').map(mono).collect::<Vec<_>>().join("<br>"),
        Value::None => "*not recorded*".into(),
    }
}

pub fn render(m: &Minutes) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", esc(&m.title));
    for line in &m.lead {
        let _ = writeln!(out, "{}\n", esc(line));
    }
    for section in &m.sections {
        write_section(&mut out, section);
    }
    out
}

fn write_section(out: &mut String, s: &Section) {
    let _ = writeln!(out, "## {}\n", esc(&s.title));
    for block in &s.blocks {
        write_block(out, block);
    }
}

fn write_block(out: &mut String, block: &Block) {
    match block {
        Block::Para(text) => {
            let _ = writeln!(out, "{}\n", prose(text));
        }
        Block::List(items) => {
            for item in items {
                let _ = writeln!(out, "- {}", esc(item));
            }
            out.push('\n');
        }
        Block::Fields(fields) => {
            out.push_str("| Field | Value |\n| --- | --- |\n");
            for (name, v) in fields {
                let _ = writeln!(out, "| {} | {} |", esc(name), value(v));
            }
            out.push('\n');
        }
        Block::Table { columns, rows } => {
            let heads: Vec<String> = columns.iter().map(|(name, _)| esc(name)).collect();
            let _ = writeln!(out, "| {} |", heads.join(" | "));
            let _ = writeln!(out, "|{}", " --- |".repeat(columns.len()));
            for row in rows {
                let cells: Vec<String> = row.iter().map(value).collect();
                let _ = writeln!(out, "| {} |", cells.join(" | "));
            }
            out.push('\n');
        }
        Block::Group { title, blocks, qr } => {
            let _ = writeln!(out, "### {}\n", esc(title));
            for b in blocks {
                write_block(out, b);
            }
            if let Some(data) = qr {
                let _ = writeln!(
                    out,
                    "![The head {}, as a QR code](data:image/svg+xml,{})\n",
                    mono(data),
                    percent_encode(&super::qr::svg(data, 160).unwrap_or_default())
                );
            }
        }
        Block::Signatures(people) => {
            let rule = "\\_".repeat(30);
            let date = "\\_".repeat(14);
            for (role, name) in people {
                let _ = writeln!(
                    out,
                    "**{}: {}**\n\nSignature: {rule} Date: {date}\n",
                    esc(role),
                    esc(name)
                );
            }
        }
    }
}

/// A data URL's payload: everything but unreserved characters percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
