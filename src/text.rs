//! Text that came in a notification, made safe to show on one line: in a terminal, a log
//! line, a menu.

/// `text` as one plain line. Runs of white space (newlines, tabs) become one space, and
/// control characters (terminal escapes) and bidirectional overrides are dropped, so that a
/// sender can neither forge a log line, nor move the cursor or recolour the terminal, nor
/// make what follows read backwards.
pub fn one_line(text: &str) -> String {
    let bidi = |c: char| matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    let words: Vec<String> = text
        .split(char::is_whitespace)
        .map(|w| w.chars().filter(|c| !c.is_control() && !bidi(*c)).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect();
    words.join(" ")
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
}
