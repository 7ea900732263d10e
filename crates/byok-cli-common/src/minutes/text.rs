//! Strings from a log made fit to print. A log comes on removable media and may be hostile:
//! every string the minutes show passes through [`clean`] (then the format's own escaping),
//! so none can carry a terminal escape, reorder the text around it, or fill pages.

use crate::terminal::is_bidi_control;

/// The most characters one value shows; a longer one is cut, and says so.
pub const MAX_CHARS: usize = 1000;

/// `s` without control characters (C0, DEL, C1: a newline or tab becomes a space) or
/// bidirectional controls, and cut to [`MAX_CHARS`].
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_CHARS * 4));
    let mut count = 0;
    for c in s.chars() {
        if is_bidi_control(c) {
            continue;
        }
        let c = match c {
            '\n' | '\t' | '\r' => ' ',
            c if c.is_control() => continue,
            c => c,
        };
        if count == MAX_CHARS {
            let left = s.chars().count() - MAX_CHARS;
            out.push_str(&format!("... ({left} more characters)"));
            break;
        }
        out.push(c);
        count += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_go_and_long_values_are_cut() {
        assert_eq!(clean("a\u{1b}[31mb\u{7f}c\u{9b}d"), "a[31mbcd");
        assert_eq!(clean("x\ny\tz"), "x y z");
        assert_eq!(clean("abc\u{202E}fed\u{2066}"), "abcfed");
        let long = "x".repeat(MAX_CHARS + 5);
        let cut = clean(&long);
        assert!(cut.ends_with("... (5 more characters)"), "{cut}");
        assert_eq!(clean("plain"), "plain");
    }
}
