//! Progress of long work: a bar on a terminal, plain numbered lines on stderr otherwise (so a
//! log or CI keeps every step).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts finished steps out of a known total.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: AtomicUsize,
}

impl Progress {
    /// A reporter for `total` steps; a bar only when stderr is a terminal.
    pub fn new(total: usize) -> Self {
        let bar = (std::io::stderr().is_terminal() && total > 0).then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
                    .expect("a valid template"),
            );
            bar
        });
        Self {
            bar,
            total,
            done: AtomicUsize::new(0),
        }
    }

    /// One step finished; `message` says which and how it went.
    pub fn step(&self, message: &str) {
        let n = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        // One line, whatever a key's name or a vault's error text in `message` holds.
        let line = format!(
            "[{n:>3}/{}] {}",
            self.total,
            crate::terminal::escape(message)
        );
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// A line about the step under way, which may take a while, without counting a step.
    pub fn note(&self, message: &str) {
        let n = self.done.load(Ordering::SeqCst) + 1;
        // One line, whatever a key's name or a vault's error text in `message` holds.
        let line = format!(
            "[{n:>3}/{}] {}",
            self.total,
            crate::terminal::escape(message)
        );
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None => eprintln!("{line}"),
        }
    }

    /// Clears the bar (plain lines stay).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
