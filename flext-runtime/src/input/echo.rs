//! [`echo`]: untrusted text made safe and short to quote in an error or a log line;
//! [`redact_url`]: a connection string without its password.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// How much of an untrusted text [`echo`] keeps: 200 bytes (escapes included), the
/// first 150 and the last 50, so that the end of a message (`expected u32 at line 1`)
/// survives a huge value in its middle.
pub const ECHO_BYTES: usize = 200;
const ECHO_TAIL: usize = 50;

/// Untrusted text made safe to quote in an error message or a log line: control and
/// bidirectional-formatting characters (`\0`, ESC, U+202E, ...) are escaped as `\u{..}`,
/// so that a terminal or a log viewer shows them instead of obeying them, and a text
/// longer than [`ECHO_BYTES`] keeps its first 150 and last 50 bytes around a note of its
/// full length, so that a 100 MB value cannot make a 100 MB error.
///
/// ```
/// use flext::input::echo;
/// assert_eq!(echo("Create\u{1b}[31mUser\u{202e}"), "Create\\u{1b}[31mUser\\u{202e}");
/// let long = format!("start{}end", "x".repeat(1_000_000));
/// let e = echo(&long);
/// assert!(e.len() < 250);
/// assert!(e.starts_with("startxxx"));
/// assert!(e.contains("… (1000008 bytes) …"));
/// assert!(e.ends_with("xxxend"));
/// assert_eq!(echo("plain"), "plain");
/// ```
pub fn echo(text: &str) -> Cow<'_, str> {
    if text.len() <= ECHO_BYTES && !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    if text.len() <= 4 * ECHO_BYTES {
        return Cow::Owned(echo_display(&text));
    }
    // A long text: only its ends are looked at, whatever its length.
    let head_end = (0..=ECHO_BYTES)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let tail_start = (text.len() - 4 * ECHO_TAIL..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    let mut out = Bounded::default();
    let _ = out.write_str(&text[..head_end]);
    out.cut = true;
    out.total += tail_start - head_end;
    let _ = out.write_str(&text[tail_start..]);
    Cow::Owned(out.finish())
}

/// [`echo`] of what `value` displays, without ever holding all of it: the display is
/// written into a bounded buffer that counts the rest.
pub fn echo_display(value: &dyn fmt::Display) -> String {
    let mut out = Bounded::default();
    // `Bounded` never fails; a `Display` impl that fails leaves what it wrote.
    let _ = write!(out, "{value}");
    out.finish()
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200e}' | '\u{200f}' | '\u{061c}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}')
}

/// The first `ECHO_BYTES - ECHO_TAIL` bytes of escaped output, a rolling window of the
/// last `ECHO_TAIL`, and the count of input bytes.
#[derive(Default)]
struct Bounded {
    head: String,
    tail: String,
    total: usize,
    cut: bool,
}

impl Bounded {
    fn push(&mut self, piece: &str) {
        if !self.cut && self.head.len() + piece.len() <= ECHO_BYTES - ECHO_TAIL {
            self.head.push_str(piece);
            return;
        }
        self.cut = true;
        self.tail.push_str(piece);
        if self.tail.len() > 4 * ECHO_TAIL {
            self.trim_tail();
        }
    }

    fn trim_tail(&mut self) {
        let mut start = self.tail.len().saturating_sub(ECHO_TAIL);
        while !self.tail.is_char_boundary(start) {
            start += 1;
        }
        self.tail.drain(..start);
    }

    fn finish(mut self) -> String {
        if !self.cut {
            return self.head;
        }
        if self.head.len() + self.tail.len() <= ECHO_BYTES {
            self.head.push_str(&self.tail);
            return self.head;
        }
        self.trim_tail();
        let _ = write!(self.head, "… ({} bytes) …{}", self.total, self.tail);
        self.head
    }
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.total += s.len();
        let mut buf = [0u8; 4];
        for c in s.chars() {
            if needs_escape(c) {
                self.push(&c.escape_unicode().to_string());
            } else {
                self.push(c.encode_utf8(&mut buf));
            }
        }
        Ok(())
    }
}

/// `url` with its password replaced by `***` (`postgres://app:***@db/orders`), for
/// messages and logs: a connection string is often quoted in an error, and its password
/// must not be.
///
/// ```
/// use flext::input::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/orders"), "postgres://app:***@db:5432/orders");
/// assert_eq!(redact_url("postgres://db/orders"), "postgres://db/orders");
/// ```
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Cow::Borrowed(url);
    };
    // The authority ends at the first '/', '?' or '#'; its last '@' ends the user info.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else {
        return Cow::Borrowed(url);
    };
    let Some((user, _password)) = rest[..at].split_once(':') else {
        return Cow::Borrowed(url);
    };
    Cow::Owned(format!("{scheme}://{user}:***{}", &rest[at..]))
}
