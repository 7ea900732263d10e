//! Strings from files and servers made safe to show on a terminal.
//!
//! A `.byok`, sidecar, KEK transfer file or evidence log comes on removable media, and a
//! vault's or authority's answer over the network: any string in them may carry control
//! characters. Printed raw, `ESC [ 2 J` clears the operator's screen, a carriage return
//! overwrites the line it is on, and a newline draws lines the tool never wrote. Every human
//! printer of both binaries passes such strings through [`escape`], which shows each control
//! character as a visible escape (`\x1b`, `\r`, `\u{9b}`), and prints whole lines through
//! [`line`]/[`say!`](crate::say), which does the same but keeps the tool's own newlines. JSON
//! output needs neither: serde writes control characters as JSON escapes (`\u001b`).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Bidirectional controls and the Unicode line and paragraph separators: they make a printed
/// value read differently from its bytes ("Trojan Source"), or break a line.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Whether `c` must not reach a terminal as it is: C0 controls, DEL, C1 controls, and
/// [`is_bidi_control`].
fn is_unsafe(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

fn escaped(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    if !s
        .chars()
        .any(|c| is_unsafe(c) && !(keep_newlines && c == '\n'))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && is_unsafe(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `s` with every control character shown as an escape, newlines and tabs included: for one
/// value (a name, a label, a generator, a vault's message) inside a line the tool writes.
pub fn escape(s: &str) -> Cow<'_, str> {
    escaped(s, false)
}

/// `text` with every control character but the newline shown as an escape: for whole lines
/// the tool composed (its own newlines stay), as the last guard before a terminal.
pub fn line(text: &str) -> Cow<'_, str> {
    escaped(text, true)
}

/// JSON text (as serde_json writes it) with the characters it leaves raw and a terminal may
/// act on, DEL, C1 controls and bidirectional controls, written as `\uXXXX` escapes. serde
/// escapes C0 itself; outside strings JSON holds none of these, so the result is the same JSON
/// value.
pub fn json(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && c != '\n') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) && c != '\n' {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `println!`, with the line passed through [`line`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        ::std::println!("{}", $crate::terminal::line(&::std::format!($($arg)*)))
    };
}

/// `eprintln!`, with the line passed through [`line`].
#[macro_export]
macro_rules! say_err {
    ($($arg:tt)*) => {
        ::std::eprintln!("{}", $crate::terminal::line(&::std::format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_character_is_shown_as_an_escape() {
        assert_eq!(escape("plain text, ünïcode"), "plain text, ünïcode");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\x1b[2Jb\rc\nd\te\x07\x7f"),
            "a\\x1b[2Jb\\rc\\nd\\te\\x07\\x7f"
        );
        // C1 (CSI as one character) and a right-to-left override.
        assert_eq!(escape("x\u{9b}2Jy\u{202e}z"), "x\\u{9b}2Jy\\u{202e}z");
        // Whole lines keep their newlines, and nothing else.
        assert_eq!(line("one\ntwo\r\x1b"), "one\ntwo\\r\\x1b");
        // JSON keeps its value: only what serde leaves raw is escaped.
        let doc = serde_json::json!({"g": "a\x1b\u{9b}\u{202e}b"});
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let safe = json(&text);
        assert!(!safe.chars().any(|c| c != '\n' && is_unsafe(c)), "{safe}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&safe).unwrap(),
            doc
        );
        for s in [escape("\x00\x1f\u{85}\u{2028}"), line("\x00\x1f\u{85}")] {
            assert!(!s.chars().any(is_unsafe), "{s}");
        }
    }
}
