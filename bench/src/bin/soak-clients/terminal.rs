//! A terminal's screen, as far as a chat client needs it: the lines a telnet user sees,
//! after the server's echo, rub-outs, clears and redraws of the input line.

use std::collections::VecDeque;

/// What a terminal shows of the current line: characters overwrite at the cursor, CR
/// returns, BS steps back, `ESC [ K` erases to the end; LF finishes the line (before
/// negotiation the server sends LF alone, after it CR LF).
#[derive(Default)]
pub struct Screen {
    line: Vec<char>,
    cursor: usize,
    escape: Option<String>,
    partial: Vec<u8>,
}

impl Screen {
    pub fn feed(&mut self, bytes: &[u8], completed: &mut VecDeque<String>) {
        for &byte in bytes {
            if let Some(sequence) = self.escape.as_mut() {
                sequence.push(byte as char);
                if sequence.len() > 1 && (0x40..=0x7e).contains(&byte) || sequence.len() > 16 {
                    if sequence == "[K" || sequence == "[0K" {
                        self.line.truncate(self.cursor);
                    }
                    self.escape = None;
                }
                continue;
            }
            match byte {
                b'\r' => self.cursor = 0,
                b'\n' => {
                    let line: String = self.line.iter().collect();
                    completed.push_back(line.trim_end().to_owned());
                    self.line.clear();
                    self.cursor = 0;
                }
                0x08 => self.cursor = self.cursor.saturating_sub(1),
                0x1b => self.escape = Some(String::new()),
                0..0x20 | 0x7f => {}
                _ => {
                    self.partial.push(byte);
                    let character = match std::str::from_utf8(&self.partial) {
                        Ok(text) => text.chars().next(),
                        Err(e) if e.error_len().is_none() => continue,
                        Err(_) => Some('\u{fffd}'),
                    };
                    self.partial.clear();
                    if let Some(character) = character {
                        if self.cursor < self.line.len() {
                            self.line[self.cursor] = character;
                        } else {
                            self.line.push(character);
                        }
                        self.cursor += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen_lines(bytes: &[u8]) -> Vec<String> {
        let mut screen = Screen::default();
        let mut lines = VecDeque::new();
        screen.feed(bytes, &mut lines);
        lines.into()
    }

    #[test]
    fn the_screen_applies_rub_outs_clears_and_redraws() {
        assert_eq!(screen_lines(b"hellp\x08 \x08o\r\n"), ["hello"]);
        assert_eq!(
            screen_lines(b"hel\r\x1b[K[bob] hi\r\nhello\r\n"),
            ["[bob] hi", "hello"]
        );
        assert_eq!(screen_lines("caf\r\x1b[Kcafé\r\n".as_bytes()), ["café"]);
    }
}
