//! `--output table` and `--output tsv`, read as az reads them: a list of objects is a row per
//! object, one object is one row, and only scalar fields become columns (nested lists and
//! objects are left out; `--query` picks them out first). A document that holds one list of
//! objects (`{"schema": .., "keys": [{..}, ..]}`) is that list's rows: the list is what a table of it
//! is for. A list of lists (`--query "keys[].[label, kind]"`) is a row per inner list.

use serde_json::Value;

/// The rows' scalar cells, under the column names in first-seen order.
struct Grid {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn cell(v: &Value) -> Option<String> {
    match v {
        // A value from a file or a server: no control character reaches the terminal, and a
        // tab or newline cannot shift TSV's columns or rows.
        Value::String(s) => Some(crate::terminal::escape(s).into_owned()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        Value::Null => Some(String::new()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// The one field of an object that is a list of objects (rows), when it has exactly one.
fn sole_list(m: &serde_json::Map<String, Value>) -> Option<&Value> {
    let is_rows = |v: &&Value| {
        v.as_array()
            .is_some_and(|items| !items.is_empty() && items.iter().all(Value::is_object))
    };
    let mut lists = m.values().filter(is_rows);
    match (lists.next(), lists.next()) {
        (Some(list), None) => Some(list),
        _ => None,
    }
}

fn grid(doc: &Value) -> Grid {
    if let Some(list) = doc.as_object().and_then(sole_list) {
        return grid(list);
    }
    if let Some(items) = doc
        .as_array()
        .filter(|a| !a.is_empty() && a.iter().all(Value::is_array))
    {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|row| {
                row.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(cell)
                    .collect()
            })
            .collect();
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        return Grid {
            columns: (1..=width).map(|i| format!("Column{i}")).collect(),
            rows: rows
                .into_iter()
                .map(|mut r| {
                    r.resize(width, String::new());
                    r
                })
                .collect(),
        };
    }
    let objects: Vec<&serde_json::Map<String, Value>> = match doc {
        Value::Object(m) => vec![m],
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            items.iter().filter_map(Value::as_object).collect()
        }
        Value::Array(items) => {
            return Grid {
                columns: vec!["Result".into()],
                rows: items.iter().filter_map(cell).map(|c| vec![c]).collect(),
            };
        }
        scalar => {
            return Grid {
                columns: vec!["Result".into()],
                rows: cell(scalar).map(|c| vec![vec![c]]).unwrap_or_default(),
            };
        }
    };
    let mut columns: Vec<String> = Vec::new();
    for m in &objects {
        for (k, v) in *m {
            if cell(v).is_some() && !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let rows = objects
        .iter()
        .map(|m| {
            columns
                .iter()
                .map(|c| m.get(c).and_then(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    Grid { columns, rows }
}

/// Column headers, a dashed rule, then one line per row, columns padded to their widest cell.
pub fn render_table(doc: &Value) -> String {
    let g = grid(doc);
    let widths: Vec<usize> = (0..g.columns.len())
        .map(|i| {
            g.rows
                .iter()
                .map(|r| r[i].chars().count())
                .chain([g.columns[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let mut out = vec![line(&g.columns), line(&rule)];
    out.extend(g.rows.iter().map(|r| line(r)));
    out.join("\n")
}

/// One line per row, cells separated by tabs, no header.
pub fn render_tsv(doc: &Value) -> String {
    grid(doc)
        .rows
        .iter()
        .map(|r| r.join("\t"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_list_of_objects_is_a_row_each_with_scalar_columns() {
        let doc = json!([
            {"name": "a", "size": 2048, "ops": ["sign"]},
            {"name": "bb", "size": 3072, "enabled": true}
        ]);
        assert_eq!(
            render_table(&doc),
            "name  size  enabled\n----  ----  -------\na     2048\nbb    3072  true"
        );
        assert_eq!(render_tsv(&doc), "a\t2048\t\nbb\t3072\ttrue");
    }

    #[test]
    fn one_object_is_one_row_and_scalars_stand_alone() {
        assert_eq!(
            render_tsv(&json!({"kid": "https://x/keys/k/1", "n": 1})),
            "https://x/keys/k/1\t1"
        );
        assert_eq!(render_tsv(&json!("abc")), "abc");
        assert_eq!(render_tsv(&json!(["a", "b"])), "a\nb");
        assert_eq!(render_table(&json!(7)), "Result\n------\n7");
    }

    #[test]
    fn a_document_with_one_list_is_that_list_and_lists_of_lists_are_rows() {
        let doc = json!({"schema": "x/1", "token": "t", "keys": [{"label": "a"}, {"label": "b"}]});
        assert_eq!(render_tsv(&doc), "a\nb");
        assert_eq!(render_table(&doc), "label\n-----\na\nb");
        let pairs = json!([["a", "RSA"], ["b", "EC"]]);
        assert_eq!(render_tsv(&pairs), "a\tRSA\nb\tEC");
        assert!(render_table(&pairs).starts_with("Column1  Column2"));
        // A list of scalars is a field like any other, not rows.
        let key = json!({"kid": "k", "key_ops": ["sign"]});
        assert_eq!(render_tsv(&key), "k");
    }
}
