//! The minutes as one self-contained HTML file: inline CSS with print rules (`@page` from
//! `--paper`, a footer with each log's head and the page number), each head's QR code as
//! inline SVG, no script, and a Content-Security-Policy that forbids any fetch or script
//! should a value ever get past the escaping.

use super::Context;
use super::doc::{Block, Minutes, Section, Value};
use super::text::clean;
use std::fmt::Write;

/// Text as HTML: cleaned ([`clean`]), then `& < > " '` escaped.
pub fn esc(s: &str) -> String {
    let s = clean(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Lines (`\n`-separated) as escaped HTML with `<br>` between them.
fn lines(s: &str) -> String {
    s.split('\n').map(esc).collect::<Vec<_>>().join("<br>")
}

/// Our own prose: `code` spans between backticks, the rest text.
fn prose(s: &str) -> String {
    s.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{}</code>", esc(part))
            } else {
                esc(part)
            }
        })
        .collect()
}

/// The page footer's font (margin boxes do not inherit the body's).
const MARGIN_FONT: &str = "font-family: 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif; \
                           font-size: 7pt; color: #444;";

const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif;
  font-size: 9.5pt; line-height: 1.35; color: #111; background: #fff;
  max-width: 182mm; margin: 0 auto; }
@media screen { body { margin: 8mm auto; padding: 0 4mm; } }
h1 { font-size: 17pt; margin: 0 0 2mm; }
h2 { font-size: 12.5pt; margin: 6mm 0 2mm; padding-bottom: 0.8mm;
  border-bottom: 0.4mm solid #222; break-after: avoid; page-break-after: avoid; }
h3 { font-size: 10pt; margin: 4mm 0 1.5mm; break-after: avoid; page-break-after: avoid;
  overflow-wrap: anywhere; }
p.lead { margin: 0 0 1.2mm; }
p, ul { margin: 1mm 0 2mm; }
li { margin: 0.6mm 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; margin: 1mm 0 2.5mm; }
th, td { border: 0.25mm solid #888; padding: 0.8mm 1.4mm; text-align: left;
  vertical-align: top; overflow-wrap: anywhere; word-break: break-word; }
th { background: #e8e8e8; font-weight: bold;
  -webkit-print-color-adjust: exact; print-color-adjust: exact; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
table.fields th { width: 25%; background: #f2f2f2; font-weight: 600; }
table.fields td.mono { font-size: 7.4pt; }
table.rows { font-size: 8pt; }
table.rows td.mono, table.rows .mono { font-size: 7pt; }
.mono, code { font-family: "DejaVu Sans Mono", "Liberation Mono", "Courier New", monospace;
  font-size: 8pt; overflow-wrap: anywhere; word-break: break-all; }
.none { color: #666; font-style: italic; }
section.group { break-inside: avoid; page-break-inside: avoid; }
.with-qr { display: flex; gap: 4mm; align-items: flex-start; }
.with-qr > div.body { flex: 1 1 auto; min-width: 0; }
.qr { flex: 0 0 34mm; text-align: center; font-size: 7pt; color: #333; }
.qr svg { width: 34mm; height: 34mm; display: block; }
.with-qr table.fields th { width: 23%; }
.with-qr td.mono { font-size: 7.4pt; }
.signatures { margin-top: 3mm; }
.signature { display: flex; gap: 6mm; align-items: flex-end; margin: 0 0 5mm;
  break-inside: avoid; page-break-inside: avoid; }
.signature .who { flex: 0 0 52mm; overflow-wrap: anywhere; padding-bottom: 4mm; }
.signature .sign { flex: 1 1 auto; }
.signature .date { flex: 0 0 38mm; }
.signature .rule { height: 12mm; border-bottom: 0.3mm solid #000; }
.signature .caption { font-size: 7pt; color: #444; }
footer { margin-top: 6mm; font-size: 7.5pt; color: #444; }
"#;

/// The whole page.
pub fn render(m: &Minutes, context: &Context) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // No fetch, no script, no form, no frame: only the inline style.
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">\n",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(out, "<title>{}</title>", esc(&m.title));
    let _ = writeln!(
        out,
        "<style>\n@page {{ size: {}; margin: 14mm 13mm 16mm 13mm;\n  \
         @bottom-left {{ content: \"{}\"; {MARGIN_FONT} }}\n  \
         @bottom-right {{ content: \"page \" counter(page) \" of \" counter(pages); \
         {MARGIN_FONT} }} }}{STYLE}</style>",
        context.paper.css_size(),
        footer_heads(m)
    );
    out.push_str("</head>\n<body>\n");
    let _ = writeln!(out, "<h1>{}</h1>", esc(&m.title));
    for line in &m.lead {
        let _ = writeln!(out, "<p class=\"lead\">{}</p>", esc(line));
    }
    for section in &m.sections {
        write_section(&mut out, section);
    }
    let _ = writeln!(
        out,
        "<footer>{}</footer>",
        esc(&format!(
            "Rendered by {}. The evidence logs are the record; these minutes are its readable \
             form, matched to each log by its head.",
            context.tool
        ))
    );
    out.push_str("</body>\n</html>\n");
    out
}

/// Each log's head, shortened, for every page's footer (CSS string content: the heads are
/// hex digits this tool computed, never a log's text).
fn footer_heads(m: &Minutes) -> String {
    let heads: Vec<String> = m
        .sections
        .iter()
        .flat_map(|s| &s.blocks)
        .filter_map(|b| match b {
            Block::Group { qr: Some(head), .. } => Some(head),
            _ => None,
        })
        .enumerate()
        .map(|(i, head)| {
            let short: String = head
                .chars()
                .filter(char::is_ascii_hexdigit)
                .take(16)
                .collect();
            format!("L{} head {short}", i + 1)
        })
        .collect();
    format!("BYOK ceremony minutes: {}", heads.join(", "))
}

fn write_section(out: &mut String, s: &Section) {
    let _ = writeln!(out, "<section>\n<h2>{}</h2>", esc(&s.title));
    for block in &s.blocks {
        write_block(out, block);
    }
    out.push_str("</section>\n");
}

fn write_block(out: &mut String, block: &Block) {
    match block {
        Block::Para(text) => {
            let _ = writeln!(out, "<p>{}</p>", prose(text));
        }
        Block::List(items) => {
            out.push_str("<ul>\n");
            for item in items {
                let _ = writeln!(out, "<li>{}</li>", esc(item));
            }
            out.push_str("</ul>\n");
        }
        Block::Fields(fields) => {
            out.push_str("<table class=\"fields\">\n");
            for (name, value) in fields {
                let _ = writeln!(out, "<tr><th>{}</th>{}</tr>", esc(name), cell(value));
            }
            out.push_str("</table>\n");
        }
        Block::Table { columns, rows } => {
            out.push_str("<table class=\"rows\">\n<colgroup>");
            for (_, width) in columns {
                let _ = write!(out, "<col style=\"width:{width}%\">");
            }
            out.push_str("</colgroup>\n<thead><tr>");
            for (name, _) in columns {
                let _ = write!(out, "<th>{}</th>", esc(name));
            }
            out.push_str("</tr></thead>\n<tbody>\n");
            for row in rows {
                out.push_str("<tr>");
                for value in row {
                    out.push_str(&cell(value));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody>\n</table>\n");
        }
        Block::Group { title, blocks, qr } => {
            out.push_str("<section class=\"group\">\n");
            let _ = writeln!(out, "<h3>{}</h3>", esc(title));
            if let Some(data) = qr {
                out.push_str("<div class=\"with-qr\"><div class=\"body\">\n");
                for b in blocks {
                    write_block(out, b);
                }
                let _ = writeln!(
                    out,
                    "</div><div class=\"qr\">{}<div>head, as a QR code</div></div></div>",
                    super::qr::svg(data, 160).unwrap_or_default()
                );
            } else {
                for b in blocks {
                    write_block(out, b);
                }
            }
            out.push_str("</section>\n");
        }
        Block::Signatures(people) => {
            out.push_str("<div class=\"signatures\">\n");
            for (role, name) in people {
                let _ = writeln!(
                    out,
                    "<div class=\"signature\"><div class=\"who\"><b>{}</b><br>{}</div>\
                     <div class=\"sign\"><div class=\"rule\"></div>\
                     <div class=\"caption\">signature</div></div>\
                     <div class=\"date\"><div class=\"rule\"></div>\
                     <div class=\"caption\">date</div></div></div>",
                    esc(role),
                    esc(name)
                );
            }
            out.push_str("</div>\n");
        }
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Text(s) => format!("<td>{}</td>", lines(s)),
        Value::Mono(s) => format!("<td class=\"mono\">{}</td>", lines(s)),
        Value::None => "<td class=\"none\">not recorded</td>".into(),
    }
}
