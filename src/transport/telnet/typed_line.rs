//! The server's echo for a client in character mode: what to write so that the client's
//! screen shows the line being typed, edits included. Runs on the client's thread, which
//! hands the bytes to the hub (see mod.rs).

use crate::protocol::sanitize;

/// Carriage return, then erase to the end of the line (VT100, as every telnet in use has).
pub(crate) const CLEAR_LINE: &[u8] = b"\r\x1b[K";
/// Back one column, blank it, back again: erases one narrow character.
const RUB_OUT: &[u8] = b"\x08 \x08";

/// The input line as the client's screen shows it.
#[derive(Debug, Default)]
pub(crate) struct TypedLine {
    shown: String,
}

impl TypedLine {
    /// A line was entered: show it as it was sent (sanitised), then start a new line.
    pub(crate) fn line_entered(&mut self, text: &str, out: &mut Vec<u8>) {
        self.show(text, out);
        out.extend_from_slice(b"\r\n");
        self.shown.clear();
    }

    /// Shows the decoder's edited line so far.
    pub(crate) fn show_unfinished(&mut self, unfinished: &[u8], out: &mut Vec<u8>) {
        // A character whose last bytes are still on their way is shown when they arrive.
        let complete = match std::str::from_utf8(unfinished) {
            Err(error) if error.error_len().is_none() => &unfinished[..error.valid_up_to()],
            _ => unfinished,
        };
        self.show(&sanitize(complete), out);
    }

    /// The input line as shown now.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// The client echoes for itself again: its screen shows no line of ours.
    pub(crate) fn forget(&mut self) {
        self.shown.clear();
    }

    /// Writes what turns the shown line into `text`: typed characters are appended,
    /// narrow ones rubbed out one by one, and any other change redraws the line.
    fn show(&mut self, text: &str, out: &mut Vec<u8>) {
        if let Some(typed) = text.strip_prefix(self.shown.as_str()) {
            out.extend_from_slice(typed.as_bytes());
        } else if let Some(erased) = self.shown.strip_prefix(text)
            && erased
                .bytes()
                .all(|byte| byte.is_ascii_graphic() || byte == b' ')
        {
            for _ in 0..erased.len() {
                out.extend_from_slice(RUB_OUT);
            }
        } else {
            out.extend_from_slice(CLEAR_LINE);
            out.extend_from_slice(text.as_bytes());
        }
        self.shown.clear();
        self.shown.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown_after(echo: &mut TypedLine, unfinished: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        echo.show_unfinished(unfinished, &mut out);
        out
    }

    #[test]
    fn typing_is_echoed_and_backspace_rubs_out() {
        let mut echo = TypedLine::default();
        assert_eq!(shown_after(&mut echo, b"hel"), b"hel");
        assert_eq!(shown_after(&mut echo, b"hellp"), b"lp");
        assert_eq!(shown_after(&mut echo, b"hell"), RUB_OUT);
        assert_eq!(shown_after(&mut echo, b""), RUB_OUT.repeat(4));
    }

    #[test]
    fn wide_and_partial_characters_and_escapes_are_drawn_safely() {
        let mut echo = TypedLine::default();
        // The second byte of é is still to come: nothing shown yet.
        assert_eq!(shown_after(&mut echo, b"caf\xc3"), b"caf");
        assert_eq!(shown_after(&mut echo, "café".as_bytes()), "é".as_bytes());
        // Erasing a character that may be wide redraws the line.
        assert_eq!(shown_after(&mut echo, b"caf"), b"\r\x1b[Kcaf");
        // A colour escape typed by the user never reaches its own screen either.
        assert_eq!(shown_after(&mut echo, b"caf\x1b[31m!"), b"!");
        let mut out = Vec::new();
        echo.line_entered("caf!", &mut out);
        assert_eq!(out, b"\r\n");
        assert_eq!(echo.shown(), "");
    }
}
