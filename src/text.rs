//! Text that came in a notification, made safe to show on one line: in a terminal, a log
//! line, a menu.

/// `text` as one plain line. Runs of white space (newlines, tabs) become one space, and
/// control characters (terminal escapes) and bidirectional overrides are dropped, so that a
/// sender can neither forge a log line, nor move the cursor or recolour the terminal, nor
/// make what follows read backwards.
pub fn one_line(text: &str) -> String {
    // Bidirectional marks and overrides; a zero-width space and a byte-order mark, which
    // only hide where words end.
    let hidden = |c: char| matches!(c, '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}');
    let words: Vec<String> = text
        .split(char::is_whitespace)
        .map(|w| w.chars().filter(|c| !c.is_control() && !hidden(*c)).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect();
    words.join(" ")
}

/// `text` cut to its first `max` characters, an ellipsis in place of the rest.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", text[..i].trim_end()),
        None => text.to_string(),
    }
}

/// `text` as [`one_line`], [`shorten`]ed to `max` characters: a sender's text for a terminal
/// column or a menu label.
pub fn one_line_within(text: &str, max: usize) -> String {
    shorten(&one_line(text), max)
}

/// The most characters of a sender's text in a log line.
const LOG_CHARS: usize = 200;

/// A sender's text for a log line: one line, at most [`LOG_CHARS`] characters (a body may
/// hold a megabyte of it). Log it quoted (`?`), so that it cannot pass for other fields.
pub fn for_log(text: &str) -> String {
    one_line_within(text, LOG_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_plain_line() {
        assert_eq!(one_line("web1:\n  load\t= 3\r\n"), "web1: load = 3");
        assert_eq!(one_line("evil\u{202E}gnp.exe\u{7}"), "evilgnp.exe");
        assert_eq!(one_line("ansi \u{1b}[31mRED\u{1b}[0m"), "ansi [31mRED[0m");
        assert_eq!(one_line("line1\n2026-11-29 ERROR forged"), "line1 2026-11-29 ERROR forged");
        assert_eq!(one_line("used_swap = 100%"), "used_swap = 100%");
    }

    #[test]
    fn shortened_on_characters_with_an_ellipsis() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("ab cd", 3), "ab…");
        assert_eq!(shorten(&"é".repeat(10), 4), "éééé…");
        assert_eq!(one_line("\u{FEFF}bom\u{200B}zw"), "bomzw");
        let logged = for_log(&format!("{}\nforged", "x".repeat(5000)));
        assert_eq!(logged.chars().count(), LOG_CHARS + 1);
        assert!(!logged.contains('\n'));
    }
}
