//! A small INI reader with the syntax rules of the inih library as duo_unix builds it, so an
//! unmodified `pam_duo.conf` reads the same here:
//!
//! - A UTF-8 byte order mark at the start is skipped; lines end in LF or CRLF.
//! - Full-line comments start with `;` or `#` (after optional blanks).
//! - Inline comments start with `;` only when a blank comes right before it; `#` is never an
//!   inline comment. As in inih, the first character of a value is never a comment start, so
//!   `gecos_delim = ;` is the value `;`.
//! - `[section]` or `[section argument]`; after the `]` only blanks or a `;` comment.
//! - `key = value` or `key : value` (the first `=` or `:` separates); blanks around the key and
//!   the value are dropped; keys are case-sensitive.
//! - A line that starts with a blank, while a key has been seen in the current section,
//!   continues that key's value (inih's multi-line values; blank and comment lines in between do
//!   not end it). It comes out as [`EntryKind::Continuation`] and the typed layer decides.
//!
//! Stricter than inih, on purpose: invalid UTF-8, control characters, a line over
//! [`MAX_LINE_BYTES`], a file over [`MAX_FILE_BYTES`], text after `]`, a line without a
//! separator and an empty key are all errors. The reader never panics, whatever the input.

use std::fmt;

use zeroize::Zeroize;

/// The largest configuration file accepted.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The longest line accepted, without its line ending.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One meaningful line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number.
    pub line: usize,
    /// What the line says.
    pub kind: EntryKind,
}

/// The three kinds of meaningful lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// `[name]` or `[name argument]`.
    Section {
        /// First word inside the brackets.
        name: String,
        /// The rest, blanks trimmed, if any (`web01` in `[target web01]`).
        arg: Option<String>,
    },
    /// `key = value`.
    Pair {
        /// The key, as written.
        key: String,
        /// The value, blanks and inline comment removed; may be empty.
        value: String,
    },
    /// An indented line continuing the previous key of the section.
    Continuation {
        /// The key being continued.
        key: String,
        /// This line's text, blanks and inline comment removed.
        value: String,
    },
}

/// A syntax error on one line (or in the whole file when `line` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniError {
    /// 1-based line number, if the error is on a line.
    pub line: Option<usize>,
    /// What is wrong. Never contains the line's text (it could be a secret).
    pub message: String,
}

impl fmt::Display for IniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for IniError {}

/// The result of reading a file: the lines that parsed, and the errors of those that did not.
/// Lines with errors are left out of `entries`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    /// Meaningful lines, in file order.
    pub entries: Vec<Entry>,
    /// Errors, in file order.
    pub errors: Vec<IniError>,
}

impl Document {
    /// The entries if there was no error, else the first error.
    pub fn into_result(mut self) -> Result<Vec<Entry>, IniError> {
        match std::mem::take(&mut self.errors).into_iter().next() {
            Some(error) => Err(error),
            None => Ok(std::mem::take(&mut self.entries)),
        }
    }
}

impl Drop for Document {
    /// Values may hold the skey: zero them.
    fn drop(&mut self) {
        for entry in &mut self.entries {
            if let EntryKind::Pair { value, .. } | EntryKind::Continuation { value, .. } =
                &mut entry.kind
            {
                value.zeroize();
            }
        }
    }
}

/// Reads an INI file's bytes. Never panics; keeps going after a bad line so a caller can still
/// see what the rest of the file says.
pub fn parse(bytes: &[u8]) -> Document {
    let mut doc = Document::default();
    if bytes.len() > MAX_FILE_BYTES {
        doc.errors.push(IniError {
            line: None,
            message: format!(
                "file is {} bytes, larger than the limit of {MAX_FILE_BYTES}",
                bytes.len()
            ),
        });
        return doc;
    }
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    // The key a continuation line would extend; reset by a section header.
    let mut previous_key: Option<String> = None;

    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = index.saturating_add(1);
        match parse_line(raw, previous_key.as_deref()) {
            Ok(None) => {}
            Ok(Some(kind)) => {
                match &kind {
                    EntryKind::Section { .. } => previous_key = None,
                    EntryKind::Pair { key, .. } => previous_key = Some(key.clone()),
                    EntryKind::Continuation { .. } => {}
                }
                doc.entries.push(Entry { line, kind });
            }
            Err(message) => {
                // A broken line must not become the target of a later continuation line.
                previous_key = None;
                doc.errors.push(IniError {
                    line: Some(line),
                    message,
                });
            }
        }
    }
    doc
}

/// Blanks as inih's `isspace` sees them, minus the line endings (removed before) and the rare
/// vertical tab and form feed (rejected as control characters).
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Control characters (tab aside), and invisible or direction-changing ones that would make
/// the file read differently from what it says (a BOM after the start, zero-width spaces, bidi
/// overrides).
fn is_forbidden(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{feff}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

fn parse_line(raw: &[u8], previous_key: Option<&str>) -> Result<Option<EntryKind>, String> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if raw.len() > MAX_LINE_BYTES {
        return Err(format!(
            "line is {} bytes long, longer than the limit of {MAX_LINE_BYTES}",
            raw.len()
        ));
    }
    let text = std::str::from_utf8(raw)
        .map_err(|e| format!("not valid UTF-8 (at byte {} of the line)", e.valid_up_to()))?;
    if let Some(c) = text.chars().find(|c| is_forbidden(*c)) {
        return Err(format!(
            "control or invisible character U+{:04X} is not allowed",
            u32::from(c)
        ));
    }

    let content = text.trim_start_matches(is_blank);
    let indented = content.len() < text.len();
    let content = content.trim_end_matches(is_blank);

    if content.is_empty() || content.starts_with(';') || content.starts_with('#') {
        return Ok(None);
    }
    if indented {
        if let Some(key) = previous_key {
            return Ok(Some(EntryKind::Continuation {
                key: key.to_owned(),
                value: strip_inline_comment(content).to_owned(),
            }));
        }
    }
    if let Some(inner) = content.strip_prefix('[') {
        return parse_section(inner).map(Some);
    }
    parse_pair(content).map(Some)
}

/// Finds the first of `stops`, or a `;` right after a blank, as inih does. Returns its byte
/// offset and the character found.
fn find_stop_or_comment(s: &str, stops: &[char]) -> Option<(usize, char)> {
    let mut after_blank = false;
    for (offset, c) in s.char_indices() {
        if stops.contains(&c) || (after_blank && c == ';') {
            return Some((offset, c));
        }
        after_blank = is_blank(c);
    }
    None
}

/// Drops an inline comment and the blanks before it.
fn strip_inline_comment(s: &str) -> &str {
    match find_stop_or_comment(s, &[]) {
        Some((offset, _)) => s.get(..offset).unwrap_or(s).trim_end_matches(is_blank),
        None => s,
    }
}

fn parse_section(inner: &str) -> Result<EntryKind, String> {
    let Some((close, ']')) = find_stop_or_comment(inner, &[']']) else {
        return Err("section header has no closing `]`".to_owned());
    };
    let (name_part, rest) = inner.split_at_checked(close).unwrap_or((inner, ""));
    let after = rest
        .strip_prefix(']')
        .unwrap_or(rest)
        .trim_start_matches(is_blank);
    if !(after.is_empty() || after.starts_with(';')) {
        return Err("unexpected text after the section header's `]`".to_owned());
    }
    let name_part = name_part.trim_matches(is_blank);
    let mut words = name_part.splitn(2, is_blank);
    let name = words.next().unwrap_or("");
    if name.is_empty() {
        return Err("empty section name `[]`".to_owned());
    }
    let arg = words
        .next()
        .map(|a| a.trim_matches(is_blank))
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    Ok(EntryKind::Section {
        name: name.to_owned(),
        arg,
    })
}

fn parse_pair(content: &str) -> Result<EntryKind, String> {
    let (separator, rest) = match find_stop_or_comment(content, &['=', ':']) {
        Some((offset, '=' | ':')) => content.split_at_checked(offset).unwrap_or((content, "")),
        _ => return Err("expected `key = value` but found no `=` or `:`".to_owned()),
    };
    let key = separator.trim_end_matches(is_blank);
    if key.is_empty() {
        return Err("empty key before the `=`".to_owned());
    }
    // `rest` starts with the one-byte separator.
    let value = rest.get(1..).unwrap_or("").trim_start_matches(is_blank);
    let value = strip_inline_comment(value);
    Ok(EntryKind::Pair {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<Entry> {
        match parse(text.as_bytes()).into_result() {
            Ok(entries) => entries,
            Err(e) => panic!("unexpected error {e} for {text:?}"),
        }
    }

    fn err(bytes: &[u8]) -> IniError {
        match parse(bytes).into_result() {
            Ok(entries) => panic!("expected an error, got {entries:?}"),
            Err(e) => e,
        }
    }

    fn pair(line: usize, key: &str, value: &str) -> Entry {
        Entry {
            line,
            kind: EntryKind::Pair {
                key: key.into(),
                value: value.into(),
            },
        }
    }

    fn cont(line: usize, key: &str, value: &str) -> Entry {
        Entry {
            line,
            kind: EntryKind::Continuation {
                key: key.into(),
                value: value.into(),
            },
        }
    }

    fn section(line: usize, name: &str, arg: Option<&str>) -> Entry {
        Entry {
            line,
            kind: EntryKind::Section {
                name: name.into(),
                arg: arg.map(Into::into),
            },
        }
    }

    #[test]
    fn full_line_comments_and_blank_lines_are_skipped() {
        let entries = ok("; one\n# two\n   ; three\n\t# four\n\n   \n[duo]\nhost = h\n");
        assert_eq!(entries, vec![section(7, "duo", None), pair(8, "host", "h")]);
    }

    #[test]
    fn semicolon_after_a_blank_starts_an_inline_comment() {
        let entries = ok("[duo]\nhost = h ; the host\nikey = a;b\nskey = x\t; tab before\n");
        assert_eq!(
            entries,
            vec![
                section(1, "duo", None),
                pair(2, "host", "h"),
                pair(3, "ikey", "a;b"),
                pair(4, "skey", "x"),
            ]
        );
    }

    #[test]
    fn hash_is_never_an_inline_comment() {
        let entries = ok("[duo]\nhost = h # not a comment\nkey=#x\n");
        assert_eq!(
            entries.get(1..),
            Some(&[pair(2, "host", "h # not a comment"), pair(3, "key", "#x")][..])
        );
    }

    #[test]
    fn a_value_may_start_with_a_semicolon_as_in_inih() {
        let entries = ok("[duo]\ngecos_delim = ;\nother = ; x\n");
        assert_eq!(
            entries.get(1..),
            Some(&[pair(2, "gecos_delim", ";"), pair(3, "other", "; x")][..])
        );
    }

    #[test]
    fn colon_separates_like_equals_and_the_first_separator_wins() {
        let entries = ok("[s]\na: 1\nb = x:y\nc : p=q\nd=\n");
        assert_eq!(
            entries.get(1..),
            Some(
                &[
                    pair(2, "a", "1"),
                    pair(3, "b", "x:y"),
                    pair(4, "c", "p=q"),
                    pair(5, "d", "")
                ][..]
            )
        );
    }

    #[test]
    fn keys_keep_their_case_and_blanks_are_trimmed() {
        let entries = ok("[s]\n  Host\t=\t  Value with  spaces  \n");
        assert_eq!(
            entries.get(1..),
            Some(&[pair(2, "Host", "Value with  spaces")][..])
        );
    }

    #[test]
    fn indented_lines_continue_the_previous_key() {
        let entries = ok("[duo]\ngroups = a b\n  c d\n\n ; comment\n\te ; trailing\nhost = h\n");
        assert_eq!(
            entries,
            vec![
                section(1, "duo", None),
                pair(2, "groups", "a b"),
                cont(3, "groups", "c d"),
                cont(6, "groups", "e"),
                pair(7, "host", "h"),
            ]
        );
    }

    #[test]
    fn an_indented_line_right_after_a_section_header_is_a_key() {
        let entries = ok("[duo]\n  host = h\n[b]\n  k = v\n");
        assert_eq!(
            entries,
            vec![
                section(1, "duo", None),
                pair(2, "host", "h"),
                section(3, "b", None),
                pair(4, "k", "v"),
            ]
        );
    }

    #[test]
    fn section_headers_take_an_optional_argument_and_a_comment() {
        let entries = ok("[target  web01 ] ; the web box\n[ duo ]\n[policy];x\n");
        assert_eq!(
            entries,
            vec![
                section(1, "target", Some("web01")),
                section(2, "duo", None),
                section(3, "policy", None),
            ]
        );
    }

    #[test]
    fn text_after_a_section_header_is_an_error() {
        assert_eq!(err(b"[duo] x\n").line, Some(1));
        assert_eq!(err(b"[duo] # no\n").line, Some(1));
        assert_eq!(err(b"\n[duo\n").line, Some(2));
        assert_eq!(err(b"[duo ; comment]\n").line, Some(1));
        assert_eq!(err(b"[]\n").line, Some(1));
        assert_eq!(err(b"[  ]\n").line, Some(1));
    }

    #[test]
    fn a_line_without_separator_is_an_error() {
        let e = err(b"[duo]\nhost h\n");
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("no `=`"), "{e}");
        // A comment before any separator: inih also refuses this.
        assert_eq!(err(b"[duo]\nhost ;= h\n").line, Some(2));
        assert_eq!(err(b"[duo]\n= h\n").line, Some(2));
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let entries = ok("\u{feff}[duo]\nhost = h\n");
        assert_eq!(entries, vec![section(1, "duo", None), pair(2, "host", "h")]);
        // Only at the very start.
        assert_eq!(err("[duo]\n\u{feff}host = h\n".as_bytes()).line, Some(2));
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        let entries = ok("[duo]\r\nhost = h\r\n  more\r\n");
        assert_eq!(
            entries,
            vec![
                section(1, "duo", None),
                pair(2, "host", "h"),
                cont(3, "host", "more")
            ]
        );
    }

    #[test]
    fn invalid_utf8_names_the_line_and_the_rest_still_parses() {
        let doc = parse(b"[duo]\nhost = \xff\xfe\nikey = x\n");
        assert_eq!(doc.errors.len(), 1);
        let e = doc.errors.first().cloned();
        assert_eq!(e.as_ref().and_then(|e| e.line), Some(2));
        assert!(e.is_some_and(|e| e.message.contains("UTF-8")));
        assert_eq!(
            doc.entries,
            vec![section(1, "duo", None), pair(3, "ikey", "x")]
        );
    }

    #[test]
    fn control_characters_are_errors() {
        assert_eq!(err(b"[duo]\nhost = a\x00b\n").line, Some(2));
        assert_eq!(err(b"[duo]\nhost = a\rb\n").line, Some(2));
        assert_eq!(err(b"[duo]\nhost = a\x1bb\n").line, Some(2));
    }

    #[test]
    fn invisible_and_bidi_characters_are_errors() {
        assert_eq!(err("[duo]\nhost = a\u{200b}b\n".as_bytes()).line, Some(2));
        assert_eq!(err("[duo]\nhost = a\u{202e}b\n".as_bytes()).line, Some(2));
        // Other non-ASCII text is fine at this layer.
        assert!(parse("[duo]\n; café\nk = ü\n".as_bytes()).errors.is_empty());
    }

    #[test]
    fn a_line_over_64_kib_is_an_error() {
        let mut text = b"[duo]\nk = ".to_vec();
        text.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES));
        text.push(b'\n');
        let e = err(&text);
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("longer than"), "{e}");

        // Exactly the limit is fine.
        let mut text = b"[duo]\nk = ".to_vec();
        text.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES - 4));
        assert!(parse(&text).errors.is_empty());
    }

    #[test]
    fn a_file_over_1_mib_is_an_error() {
        let text = vec![b'\n'; MAX_FILE_BYTES + 1];
        let doc = parse(&text);
        assert_eq!(doc.errors.len(), 1);
        assert!(doc.entries.is_empty());
        assert_eq!(doc.errors.first().and_then(|e| e.line), None);
        assert!(parse(&vec![b'\n'; MAX_FILE_BYTES]).errors.is_empty());
    }

    #[test]
    fn errors_never_quote_the_line() {
        let e = err(b"[duo]\nskey hunter2secret\n");
        assert!(!e.message.contains("hunter2"), "{e}");
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let samples: &[&[u8]] = &[
            b"",
            b"[",
            b"]",
            b"=",
            b":",
            b";",
            b" ;",
            b" =",
            b"[a]\n =",
            b"[a]\nk=\n =\n",
            b"\xEF\xBB",
            b"\xEF\xBB\xBF",
            b"\r",
            b"\r\n\r\n",
            b"[\xc3]",
            b"k = \xe2\x82",
            b"[a]\n\t\t\n",
            b"[a b c]",
            "[é]\nü = ö\n  ß".as_bytes(),
        ];
        for sample in samples {
            let _ = parse(sample);
        }
        // Every byte value at every position of a short line.
        for b in 0..=255u8 {
            for template in [&b"[a]\nk = v"[..], b"[a]"] {
                for pos in 0..=template.len() {
                    let mut v = template.to_vec();
                    v.insert(pos, b);
                    let _ = parse(&v);
                }
            }
        }
    }
}
