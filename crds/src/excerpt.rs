//! Untrusted input in error messages: a short, escaped prefix and its size, never the whole
//! value.
//!
//! A manifest may hold a value of megabytes. Echoing it whole makes the log line, the stored
//! load error and the memory behind them as large as the input, and a control character in
//! it can forge log lines. Every message that quotes input renders it through [`excerpt`]
//! (one value) or [`clip`] (a message a parser wrote, which may quote the input itself).
use std::{
    borrow::Cow,
    fmt::{self, Write as _},
};

use serde_json::Value;

/// Characters of a value shown before it is cut.
pub const EXCERPT_CHARS: usize = 64;
/// Longest message of a [`FieldError`](crate::FieldError), in characters.
pub const MAX_MESSAGE_CHARS: usize = 512;
/// Longest field path of a [`FieldError`](crate::FieldError), in characters (map keys come
/// from the input).
pub const MAX_PATH_CHARS: usize = 256;

/// A string value as an error message shows it: quoted and escaped like `{:?}`, and when
/// longer than [`EXCERPT_CHARS`] characters cut with its length, e.g.
/// `"aaaa…" (52428800 bytes)`.
#[derive(Clone, Copy, Debug)]
pub struct Excerpt<'a>(&'a str);

/// Renders `text` for an error message (see [`Excerpt`]); formats without copying `text`.
pub fn excerpt(text: &str) -> Excerpt<'_> {
    Excerpt(text)
}

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (shown, cut) = prefix(self.0, EXCERPT_CHARS);
        f.write_char('"')?;
        write_escaped(f, shown, true)?;
        if cut {
            write!(f, "…\" ({} bytes)", self.0.len())
        } else {
            f.write_char('"')
        }
    }
}

/// A short name from the input as it is (a map key in a field path, an object's name):
/// unchanged when short and printable, else as its [`excerpt`].
pub fn inline(text: &str) -> Cow<'_, str> {
    if text.len() <= EXCERPT_CHARS && !text.chars().any(char::is_control) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(excerpt(text).to_string())
    }
}

/// Renders a JSON value of the input for an error message: strings as [`excerpt`], anything
/// else as compact JSON cut after [`EXCERPT_CHARS`] bytes (an object or array may be the
/// whole document).
pub fn excerpt_value(value: &Value) -> String {
    match value {
        Value::String(s) => excerpt(s).to_string(),
        Value::Array(items) => bounded_json(value, || counted(items.len(), "an array of", "item")),
        Value::Object(fields) => {
            bounded_json(value, || counted(fields.len(), "an object of", "field"))
        }
        other => bounded_json(other, || "a value".to_owned()),
    }
}

fn bounded_json(value: &Value, what: impl FnOnce() -> String) -> String {
    let mut out = Bounded {
        buf: Vec::new(),
        limit: EXCERPT_CHARS,
    };
    // The writer refuses bytes past its limit, which stops serialization early: only the
    // prefix is ever rendered.
    let cut = serde_json::to_writer(&mut out, value).is_err();
    let text = String::from_utf8_lossy(&out.buf);
    let mut rendered = String::with_capacity(text.len() + 32);
    let _ = write_escaped(&mut rendered, &text, false);
    if cut {
        let _ = write!(rendered, "… ({})", what());
    }
    rendered
}

fn counted(n: usize, what: &str, unit: &str) -> String {
    let plural = if n == 1 { "" } else { "s" };
    format!("{what} {n} {unit}{plural}")
}

/// A writer that takes at most `limit` bytes and fails after.
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = self.limit - self.buf.len();
        if room == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let taken = bytes.len().min(room);
        self.buf.extend_from_slice(&bytes[..taken]);
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bounds a message or path that may carry input: at most `max_chars` characters, control
/// characters escaped. A longer text keeps its head and its tail (where a parser says what
/// it expected) around `… (N bytes in all) …`. Borrows when the text needs neither.
pub fn clip(text: &str, max_chars: usize) -> Cow<'_, str> {
    let (shown, cut) = prefix(text, max_chars);
    if !cut && !shown.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(shown.len() + 32);
    if cut {
        let tail_chars = max_chars / 4;
        let (head, _) = prefix(text, max_chars - tail_chars);
        let tail_start = text
            .char_indices()
            .rev()
            .nth(tail_chars.saturating_sub(1))
            .map_or(text.len(), |(i, _)| i);
        let _ = write_escaped(&mut out, head, false);
        let _ = write!(out, "… ({} bytes in all) …", text.len());
        if tail_chars > 0 {
            let _ = write_escaped(&mut out, &text[tail_start..], false);
        }
    } else {
        let _ = write_escaped(&mut out, shown, false);
    }
    Cow::Owned(out)
}

/// The first `max_chars` characters of `text` (cut on a character boundary) and whether
/// anything was left out.
fn prefix(text: &str, max_chars: usize) -> (&str, bool) {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    }
}

/// Writes `text` with control characters escaped; inside quotes, `"` and `\` too (as `{:?}`).
fn write_escaped(out: &mut impl fmt::Write, text: &str, quoted: bool) -> fmt::Result {
    for c in text.chars() {
        if c.is_control() || (quoted && matches!(c, '"' | '\\')) {
            write!(out, "{}", c.escape_debug())?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn short_values_read_as_debug_does() {
        for value in ["", "web-01", "it's \"quoted\"\n\\", "Zürich"] {
            assert_eq!(excerpt(value).to_string(), format!("{value:?}"));
        }
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let value = "a".repeat(50 << 20);
        let shown = excerpt(&value).to_string();
        assert_eq!(
            shown,
            format!("\"{}…\" (52428800 bytes)", "a".repeat(EXCERPT_CHARS))
        );
        // Exactly the limit is shown whole.
        let edge = "b".repeat(EXCERPT_CHARS);
        assert_eq!(excerpt(&edge).to_string(), format!("{edge:?}"));
    }

    #[test]
    fn cuts_fall_on_character_boundaries_and_escape_controls() {
        let value = "é".repeat(100);
        let shown = excerpt(&value).to_string();
        assert!(shown.starts_with(&format!("\"{}…\"", "é".repeat(EXCERPT_CHARS))));
        assert!(shown.ends_with("(200 bytes)"), "{shown}");
        let forged = format!("x\n{}\u{1b}[31mERROR forged", " ".repeat(3));
        let shown = excerpt(&forged).to_string();
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(
            shown.contains("\\n") && shown.contains("\\u{1b}"),
            "{shown}"
        );
    }

    #[test]
    fn short_names_stay_unquoted() {
        assert_eq!(inline("rmm.cdot.io/site"), "rmm.cdot.io/site");
        assert_eq!(
            inline(&"k".repeat(1000)),
            format!("\"{}…\" (1000 bytes)", "k".repeat(64))
        );
        assert_eq!(inline("a\nb"), "\"a\\nb\"");
    }

    #[test]
    fn json_values_are_cut_without_rendering_them_whole() {
        assert_eq!(excerpt_value(&json!(42)), "42");
        assert_eq!(excerpt_value(&json!({"a": [1]})), r#"{"a":[1]}"#);
        let big: Vec<_> = (0..100_000).collect();
        let shown = excerpt_value(&json!(big));
        assert!(shown.len() < 200, "{shown}");
        assert!(shown.ends_with("… (an array of 100000 items)"), "{shown}");
        assert_eq!(
            excerpt_value(&json!("x".repeat(70))),
            format!("\"{}…\" (70 bytes)", "x".repeat(64))
        );
    }

    #[test]
    fn clip_keeps_head_and_tail_and_borrows_short_texts() {
        assert!(matches!(clip("spec.class: bad", 512), Cow::Borrowed(_)));
        let message = format!(
            "invalid type: string {:?}, expected u32",
            "z".repeat(10_000)
        );
        let clipped = clip(&message, 100);
        assert!(
            clipped.starts_with("invalid type: string \"zzz"),
            "{clipped}"
        );
        assert!(
            clipped.ends_with("z… (10037 bytes in all) …zzzzzzzzzz\", expected u32"),
            "{clipped}"
        );
        assert_eq!(
            clipped.chars().count(),
            100 + "… (10037 bytes in all) …".chars().count()
        );
        assert_eq!(clip("a\rb", 10), "a\\rb");
    }
}
