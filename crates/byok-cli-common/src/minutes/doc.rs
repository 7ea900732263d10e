//! The minutes as a document of sections, fields, tables and signature lines: one content,
//! which `html` and `markdown` each write. Strings are kept as the logs
//! have them; the writers clean and escape every one.

use super::Context;
use super::join::{At, Ceremony, Kek, Key, LogView, Token};
use byok_core::evidence::{CheckedKind, Packaged};

/// The whole document.
#[derive(Debug, Clone)]
pub struct Minutes {
    pub title: String,
    /// Lines under the title.
    pub lead: Vec<String>,
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
pub enum Block {
    Para(String),
    List(Vec<String>),
    /// Name and value pairs.
    Fields(Vec<(String, Value)>),
    /// A table: each column's heading and share of the width (percent).
    Table {
        columns: Vec<(String, u8)>,
        rows: Vec<Vec<Value>>,
    },
    /// A titled group kept on one page where it fits, with a QR code of `qr` beside it.
    Group {
        title: String,
        blocks: Vec<Block>,
        qr: Option<String>,
    },
    /// A signature and a date line for each (role, name).
    Signatures(Vec<(String, String)>),
}

/// A value: text, a hash or id (set in a fixed-width font), or nothing recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Mono(String),
    None,
}

impl Value {
    fn opt(v: &Option<String>) -> Value {
        match v {
            Some(s) if !s.is_empty() => Value::Text(s.clone()),
            _ => Value::None,
        }
    }

    fn mono_opt(v: &Option<String>) -> Value {
        match v {
            Some(s) if !s.is_empty() => Value::Mono(s.clone()),
            _ => Value::None,
        }
    }

    fn text(s: &str) -> Value {
        if s.is_empty() {
            Value::None
        } else {
            Value::Text(s.into())
        }
    }

    fn mono(s: &str) -> Value {
        if s.is_empty() {
            Value::None
        } else {
            Value::Mono(s.into())
        }
    }

    /// Several values on their own lines (as one text, `; `-separated in Markdown).
    fn monos(list: &[String]) -> Value {
        if list.is_empty() {
            Value::None
        } else {
            Value::Mono(list.join("\n"))
        }
    }

    fn texts(list: &[String]) -> Value {
        if list.is_empty() {
            Value::None
        } else {
            Value::Text(list.join("\n"))
        }
    }
}

fn field(name: &str, value: Value) -> (String, Value) {
    (name.to_string(), value)
}

/// `2026-11-20 10:00:05 UTC on ws-1 by alice (L1:4)`.
fn when(at: &At) -> String {
    format!(
        "{} UTC on {} by {} ({})",
        at.time,
        at.host,
        at.operator,
        at.place()
    )
}

/// Builds the minutes of `c`.
pub fn build(c: &Ceremony, context: &Context) -> Minutes {
    let counts = c.counts;
    let sections = vec![
        summary(c),
        findings(c),
        logs(c),
        keks(c),
        tokens(c),
        keys(c),
        timeline(c),
        signatures(c, context),
    ];
    Minutes {
        title: "BYOK key ceremony: minutes".into(),
        lead: vec![
            format!(
                "{} keys packaged, {} imported, {} verified; {} log entries from {} logs.",
                counts.packaged,
                counts.imported,
                counts.verified,
                c.timeline.len(),
                c.logs.len()
            ),
            format!(
                "Rendered {} by {} from the logs listed below, each of whose hash chains \
                 verified. Times are UTC, as each workstation's clock gave them.",
                super::join::shown_time(&context.rendered_at),
                context.tool
            ),
        ],
        sections,
    }
}

fn summary(c: &Ceremony) -> Section {
    let dates = match (&c.first, &c.last) {
        (Some(first), Some(last)) => format!("{first} to {last} UTC"),
        _ => "no entries".into(),
    };
    let counts = c.counts;
    Section {
        title: "Summary".into(),
        blocks: vec![Block::Fields(vec![
            field("Dates", Value::Text(dates)),
            field("Hosts", Value::texts(&c.hosts)),
            field("Operators", Value::texts(&c.operators)),
            field("Tool versions", Value::texts(&c.tools)),
            field(
                "Keys",
                Value::Text(format!(
                    "{} packaged, {} imported, {} verified (of {} keys in the logs)",
                    counts.packaged,
                    counts.imported,
                    counts.verified,
                    c.keys.len()
                )),
            ),
            field("KEKs", Value::Text(format!("{}", distinct_keks(&c.keks)))),
            field("HSM tokens", Value::Text(format!("{}", c.tokens.len()))),
            field(
                "Logs",
                Value::Text(format!(
                    "{} ({} entries)",
                    c.logs.len(),
                    c.logs.iter().map(|l| l.entries).sum::<usize>()
                )),
            ),
        ])],
    }
}

fn distinct_keks(keks: &[Kek]) -> usize {
    let mut kids: Vec<&str> = keks.iter().map(|k| k.kid.as_str()).collect();
    kids.sort_unstable();
    kids.dedup();
    kids.len()
}

fn findings(c: &Ceremony) -> Section {
    let block = if c.findings.is_empty() {
        Block::Para(
            "None: every key packaged was imported and its import verified, and the two \
             sides' entries agree."
                .into(),
        )
    } else {
        Block::List(c.findings.clone())
    };
    Section {
        title: "Points to check".into(),
        blocks: vec![block],
    }
}

fn logs(c: &Ceremony) -> Section {
    let mut blocks: Vec<Block> = c
        .logs
        .iter()
        .enumerate()
        .map(|(i, log)| log_group(c, i, log))
        .collect();
    blocks.push(Block::Para(
        "To check a log file later against these minutes, run `byok-offline log verify FILE \
         --expect-head HEAD` with the head above: it exits 3 when an entry was edited, \
         removed or added since."
            .into(),
    ));
    Section {
        title: "Evidence logs".into(),
        blocks,
    }
}

fn log_group(c: &Ceremony, i: usize, log: &LogView) -> Block {
    let mut fields = vec![
        field("File", Value::Mono(log.path.clone())),
        field("Entries", Value::Text(log.entries.to_string())),
        field("Head (SHA-256)", Value::Mono(log.head.clone())),
        field(
            "First and last entry",
            match (&log.first, &log.last) {
                (Some(a), Some(b)) => Value::Text(format!("{a} to {b} UTC")),
                _ => Value::None,
            },
        ),
        field("Hosts", Value::texts(&log.hosts)),
        field("Operators", Value::texts(&log.operators)),
    ];
    if let Some(j) = log.within {
        fields.push(field(
            "Listed from",
            Value::Text(format!(
                "L{} ({}), which holds these entries first",
                j + 1,
                c.logs[j].path
            )),
        ));
    }
    Block::Group {
        title: format!("L{}: {}", i + 1, log.path),
        blocks: vec![Block::Fields(fields)],
        qr: Some(log.head.clone()),
    }
}

fn keks(c: &Ceremony) -> Section {
    let blocks = if c.keks.is_empty() {
        vec![Block::Para("No entry names a KEK.".into())]
    } else {
        c.keks.iter().map(kek).collect()
    };
    Section {
        title: "Key Exchange Key (KEK)".into(),
        blocks,
    }
}

fn kek(k: &Kek) -> Block {
    let mut fields = vec![
        field("Key id (kid)", Value::mono(&k.kid)),
        field("SHA-256 fingerprint (SPKI)", Value::mono(&k.sha256)),
        field("Vault", Value::opt(&k.vault)),
        field(
            "Key",
            match k.size {
                Some(size) => Value::Text(format!(
                    "RSA {size}, key operations: {}",
                    k.key_ops.join(", ")
                )),
                None => Value::None,
            },
        ),
        field(
            "Created",
            k.created
                .as_ref()
                .map_or(Value::None, |at| Value::Text(when(at))),
        ),
    ];
    if k.downloads.is_empty() {
        fields.push(field("Transfer file", Value::None));
    }
    for d in &k.downloads {
        fields.push(field("Downloaded", Value::Text(when(&d.at))));
        fields.push(field("Transfer file", Value::Mono(d.file.clone())));
        fields.push(field("Transfer file SHA-256", Value::mono(&d.sha256)));
    }
    fields.push(field(
        "Packages under it",
        Value::Text(k.packages.to_string()),
    ));
    Block::Group {
        title: format!("KEK {}", k.kid),
        blocks: vec![Block::Fields(fields)],
        qr: None,
    }
}

fn tokens(c: &Ceremony) -> Section {
    let blocks = if c.tokens.is_empty() {
        vec![Block::Para("No entry names an HSM token.".into())]
    } else {
        c.tokens.iter().map(token).collect()
    };
    Section {
        title: "HSM tokens and their checks".into(),
        blocks,
    }
}

fn token(t: &Token) -> Block {
    let mut fields = vec![
        field("Label", Value::text(&t.label)),
        field("Manufacturer", Value::text(&t.manufacturer)),
        field("Model", Value::text(&t.model)),
        field("Serial", Value::mono(&t.serial)),
        field("Firmware", Value::text(&t.firmware)),
    ];
    if t.modules.is_empty() {
        fields.push(field("PKCS#11 module", Value::None));
    }
    for (path, sha) in &t.modules {
        fields.push(field("PKCS#11 module", Value::Mono(path.clone())));
        fields.push(field("Module SHA-256", Value::mono(sha)));
    }
    if t.checks.is_empty() {
        fields.push(field(
            "Check",
            Value::Text("none recorded (`byok-offline check --log`)".into()),
        ));
    }
    let mut blocks = vec![Block::Fields(fields)];
    for check in &t.checks {
        blocks.push(Block::Fields(vec![
            field("Checked", Value::Text(when(&check.at))),
            field("Wrap path", Value::text(&check.wrap_path)),
            field(
                "Throwaway keys",
                Value::Text(format!(
                    "{} generated and destroyed; {} edge cases imported and destroyed",
                    check.throwaway_keys, check.edge_case_imports
                )),
            ),
        ]));
        blocks.push(Block::Table {
            columns: vec![
                ("Kind".into(), 12),
                ("Generated in the token".into(), 14),
                ("Imported into it".into(), 14),
                ("Throwaway keys".into(), 14),
                ("Details".into(), 46),
            ],
            rows: check
                .kinds
                .iter()
                .map(|k| {
                    vec![
                        Value::text(&k.kind),
                        Value::text(&k.generated),
                        Value::text(&k.imported),
                        Value::Text(throwaway(k)),
                        Value::Text(format!(
                            "generated: {}\nimported: {}",
                            k.generated_detail, k.imported_detail
                        )),
                    ]
                })
                .collect(),
        });
    }
    Block::Group {
        title: format!("Token {}", t.name()),
        blocks,
        qr: None,
    }
}

/// The keys a check of one kind generated and the edge cases it imported, each destroyed:
/// what the HSM's own audit trail shows of it. Logs written before the counts were kept per
/// kind say so.
fn throwaway(k: &CheckedKind) -> String {
    if k.generated_judged.is_none() && k.imported_judged.is_none() {
        return "not recorded per kind".into();
    }
    let generated = match &k.generated_judged {
        Some(j) => format!("{} keys generated", j.keys),
        None => "generated keys not checked".into(),
    };
    let imported = match &k.imported_judged {
        Some(j) => format!("{} edge cases imported", j.keys),
        None => "imported keys not checked".into(),
    };
    format!("{generated}; {imported}; each destroyed")
}

/// The verdict a package was admitted by, and the `token checked` entry it rests on: reused
/// from an earlier command, or run by this package first.
pub(super) fn cited_verdict(p: &Packaged) -> String {
    let verdict = p.check_verdict.clone().unwrap_or_default();
    match &p.check_entry {
        Some(e) if !verdict.is_empty() => {
            let how = if e.reused {
                "reused: no throwaway key made for this key"
            } else {
                "checked by this package first"
            };
            format!("{verdict} (entry {} of {}, {how})", e.entry, e.time)
        }
        _ => verdict,
    }
}

fn keys(c: &Ceremony) -> Section {
    let blocks = if c.keys.is_empty() {
        vec![Block::Para("No entry names a key.".into())]
    } else {
        c.keys.iter().map(key).collect()
    };
    Section {
        title: "Keys".into(),
        blocks,
    }
}

fn key(k: &Key) -> Block {
    let generated = match k.generated {
        Some(true) => "generated in the HSM by the ceremony",
        Some(false) => "found in the HSM (not generated by the ceremony)",
        None => "",
    };
    let mut fields = vec![
        field("Kind", Value::opt(&k.kind)),
        field("HSM label", Value::opt(&k.hsm_label)),
        field("CKA_ID", Value::mono_opt(&k.hsm_id)),
        field("Origin", Value::text(generated)),
        field("Token", Value::opt(&k.token)),
        field("Wrap path", Value::opt(&k.wrap_path)),
        field("Check verdict", Value::opt(&k.check_verdict)),
        field("KEK", Value::mono_opt(&k.kek_kid)),
        field("Package SHA-256", Value::monos(&k.packages)),
    ];
    if !k.package_files.is_empty() {
        fields.push(field("Package file", Value::monos(&k.package_files)));
    }
    fields.extend([
        field(
            "Public key SHA-256",
            match (&k.public_key_sha256, &k.kind) {
                (None, Some(kind)) if kind.starts_with("AES") => {
                    Value::Text("none: an AES key has no public key".into())
                }
                (fp, _) => Value::mono_opt(fp),
            },
        ),
        field("Vault key id", Value::monos(&k.vault_kids)),
        field(
            "Packaged",
            Value::texts(&k.packaged.iter().map(when).collect::<Vec<_>>()),
        ),
        field(
            "Imported",
            Value::texts(
                &k.imports
                    .iter()
                    .map(|(at, checked)| format!("{}: {checked}", when(at)))
                    .collect::<Vec<_>>(),
            ),
        ),
        field("Verified", Value::Text(k.verification())),
    ]);
    if !k.other_names.is_empty() {
        fields.push(field("Also named", Value::texts(&k.other_names)));
    }
    if !k.notes.is_empty() {
        fields.push(field("Notes", Value::texts(&k.notes)));
    }
    Block::Group {
        title: format!("Key {}", k.name),
        blocks: vec![Block::Fields(fields)],
        qr: None,
    }
}

fn timeline(c: &Ceremony) -> Section {
    let rows = c
        .timeline
        .iter()
        .map(|r| {
            vec![
                Value::Text(r.at.time.clone()),
                Value::Text(r.at.place()),
                Value::text(&r.at.host),
                Value::text(&r.at.operator),
                Value::text(&r.event),
                Value::Text(r.summary.clone()),
            ]
        })
        .collect();
    Section {
        title: "Timeline".into(),
        blocks: vec![
            Block::Para(
                "Every entry of every log, in time order (each log's own order kept); `L1:4` \
                 is log L1's line 4."
                    .into(),
            ),
            Block::Table {
                columns: vec![
                    ("Time (UTC)".into(), 12),
                    ("Log".into(), 7),
                    ("Host".into(), 11),
                    ("Operator".into(), 10),
                    ("Event".into(), 13),
                    ("Details".into(), 47),
                ],
                rows,
            },
        ],
    }
}

fn signatures(c: &Ceremony, context: &Context) -> Section {
    let mut people: Vec<(String, String)> = c
        .operators
        .iter()
        .map(|o| ("Operator".to_string(), o.clone()))
        .collect();
    people.extend(
        context
            .witnesses
            .iter()
            .map(|w| ("Witness".to_string(), w.clone())),
    );
    Section {
        title: "Signatures".into(),
        blocks: vec![
            Block::Para(
                "Signed by the operators and witnesses: the ceremony ran as these minutes \
                 record, from the evidence logs whose heads are given above. File this copy \
                 with the logs."
                    .into(),
            ),
            Block::Signatures(people),
        ],
    }
}
