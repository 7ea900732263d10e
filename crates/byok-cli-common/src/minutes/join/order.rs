//! The logs' entries in one order: a log whose entries another holds first is listed from
//! that one, the rest merged by time with each log's own order kept; and what each entry's
//! envelope says (when, where, by whom, with which tool).

use super::model::{At, LogView, push_new};
use crate::minutes::read::{Line, Log};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An entry's place in the merged order.
#[derive(Clone, Copy)]
pub(super) struct Pos {
    pub(super) log: usize,
    pub(super) index: usize,
}

/// For each log, the other log that holds all its entries first (a copy carried across the
/// gap and appended to), if any; of two equal logs, the later one is within the earlier.
pub(super) fn containment(logs: &[Log]) -> Vec<Option<usize>> {
    logs.iter()
        .enumerate()
        .map(|(i, log)| {
            let n = log.chain.entries();
            if n == 0 {
                return None;
            }
            let head = log.chain.head();
            logs.iter().enumerate().position(|(j, other)| {
                let m = other.chain.entries();
                j != i
                    && (m > n || (m == n && j < i))
                    && other.chain.entries_up_to(&head) == Some(n)
            })
        })
        .collect()
}

/// Every listed entry, merged by time; each log's own order is kept (an entry whose time
/// does not read takes the time of the entry before it).
pub(super) fn merged_order(logs: &[Log], within: &[Option<usize>]) -> Vec<Pos> {
    let times: Vec<Vec<Option<OffsetDateTime>>> = logs
        .iter()
        .map(|log| {
            let mut last = None;
            log.lines
                .iter()
                .map(|l| {
                    if let Some(t) = parse_time(&l.envelope.time) {
                        last = Some(t);
                    }
                    last
                })
                .collect()
        })
        .collect();
    let mut next: Vec<usize> = vec![0; logs.len()];
    let mut order = Vec::new();
    loop {
        let pick = (0..logs.len())
            .filter(|&l| within[l].is_none() && next[l] < logs[l].lines.len())
            .min_by_key(|&l| (times[l][next[l]], l));
        let Some(l) = pick else { break };
        order.push(Pos {
            log: l,
            index: next[l],
        });
        next[l] += 1;
    }
    order
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// A time as the minutes show it: `2026-11-20 10:00:05` (UTC); one that does not read, as
/// written.
pub fn shown_time(s: &str) -> String {
    match parse_time(s) {
        Some(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        }
        None => s.to_string(),
    }
}

pub(super) fn at_of(line: &Line, log: usize) -> At {
    At {
        time: shown_time(&line.envelope.time),
        host: line.envelope.host.clone(),
        operator: line.envelope.operator.clone(),
        log,
        line: line.number,
    }
}

pub(super) fn tool_of(line: &Line) -> String {
    match &line.envelope.commit {
        Some(commit) => format!("{} (commit {commit})", line.envelope.tool),
        None => line.envelope.tool.clone(),
    }
}

pub(super) fn log_view(log: &Log, within: Option<usize>) -> LogView {
    let mut hosts = Vec::new();
    let mut operators = Vec::new();
    for line in &log.lines {
        push_new(&mut hosts, &line.envelope.host);
        push_new(&mut operators, &line.envelope.operator);
    }
    LogView {
        path: crate::minutes::shown(&log.path),
        entries: log.chain.entries(),
        head: log.chain.head(),
        within,
        first: log.lines.first().map(|l| shown_time(&l.envelope.time)),
        last: log.lines.last().map(|l| shown_time(&l.envelope.time)),
        hosts,
        operators,
    }
}
