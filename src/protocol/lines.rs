//! Splitting a client's byte stream into lines: the chat's decoder (every terminal's line
//! ends and editing keys, with a size cap) and the byte-exact splitter of echo and dump.
//!
//! Longer than 500 lines with its tests: about 360 lines of code, the rest every
//! terminal's line ends and editing keys, and the size cap, each tested.

/// Splits a chat client's byte stream into lines and applies its editing keys, holding at
/// most `max_line` bytes of an unfinished line however much a client sends without ending
/// one.
///
/// Every terminal ends a line its own way, and each of these ends exactly one line, at
/// once: LF (nc), CR LF (line-mode telnet), a bare CR (`stty raw` terminals) and CR NUL
/// (character-mode telnet, RFC 854). An LF or NUL right after a CR, even in the next read,
/// belongs to that CR's line end. Terminals that send keys as typed (Windows telnet,
/// character mode) send their editing keys too, so they are applied here, before a line is
/// used: Backspace (BS or DEL) erases the character before it (a whole UTF-8 character),
/// Ctrl-U the line so far, Ctrl-W the word before the cursor. Cursor keys (`ESC [ ...`,
/// `ESC O x`) are dropped as they arrive, since a line has no cursor to move.
#[derive(Debug)]
pub struct LineDecoder {
    max_line: usize,
    unfinished: Vec<u8>,
    /// The current line already passed `max_line`: skip to its end.
    discarding: bool,
    /// The last byte ended a line with CR: a LF or NUL next is part of that line end.
    after_cr: bool,
    escape: Escape,
}

/// Where the decoder is in a terminal's escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC (which is kept in the line until the next byte shows what follows).
    Started,
    /// In `ESC [` parameters, up to the final byte.
    ControlSequence,
    /// After `ESC O`: one more byte (F1 to F4 and cursor keys in application mode).
    SingleShift,
}

/// One item out of the decoder.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete line, edited, without its line ending.
    Line(&'a [u8]),
    /// A line longer than the limit; its bytes were dropped.
    TooLong,
}

const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;
const ERASE_LINE: u8 = 0x15; // Ctrl-U
const ERASE_WORD: u8 = 0x17; // Ctrl-W
const ESCAPE: u8 = 0x1b;

/// Bytes the decoder acts on; everything else is text (sanitised later).
fn is_special(byte: u8) -> bool {
    matches!(
        byte,
        b'\n' | b'\r' | BACKSPACE | DELETE | ERASE_LINE | ERASE_WORD | ESCAPE
    )
}

impl LineDecoder {
    /// A decoder for lines of at most `max_line` bytes (line ending excluded).
    pub fn new(max_line: usize) -> Self {
        LineDecoder {
            max_line,
            unfinished: Vec::new(),
            discarding: false,
            after_cr: false,
            escape: Escape::None,
        }
    }

    /// Feeds bytes as they were read, calling `on_item` for each line completed by them.
    /// An over-long line is reported once, as soon as it passes the limit.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_item: impl FnMut(Decoded<'_>)) {
        loop {
            if self.after_cr
                && let Some((&first, rest)) = bytes.split_first()
            {
                self.after_cr = false;
                if first == b'\n' || first == 0 {
                    bytes = rest;
                }
            }
            while self.escape != Escape::None
                && let Some((&byte, rest)) = bytes.split_first()
            {
                if !self.continue_escape(byte) {
                    break;
                }
                bytes = rest;
            }
            let text_end = bytes
                .iter()
                .position(|&byte| is_special(byte))
                .unwrap_or(bytes.len());
            let (text, rest) = bytes.split_at(text_end);
            let Some((&special, rest)) = rest.split_first() else {
                self.push_text(text, &mut on_item);
                return;
            };
            bytes = rest;
            match special {
                b'\n' | b'\r' => {
                    self.after_cr = special == b'\r';
                    if self.unfinished.is_empty() && !self.discarding {
                        // The whole line came in this read: no copy.
                        on_item(self.complete(text));
                    } else {
                        self.push_text(text, &mut on_item);
                        self.end_line(&mut on_item);
                    }
                }
                ESCAPE => {
                    // Kept until the next byte tells a key (dropped) from anything else
                    // (left for sanitising, which removes the whole sequence).
                    self.push_text(text, &mut on_item);
                    self.push_text(&[ESCAPE], &mut on_item);
                    if !self.discarding {
                        self.escape = Escape::Started;
                    }
                }
                _ => {
                    self.push_text(text, &mut on_item);
                    self.edit(special);
                }
            }
        }
    }

    /// The end of the stream: a last line without a line ending still counts.
    pub fn finish(&mut self, mut on_item: impl FnMut(Decoded<'_>)) {
        self.escape = Escape::None;
        if self.discarding || !self.unfinished.is_empty() {
            self.end_line(&mut on_item);
        }
    }

    /// Bytes held for an unfinished line (never more than `max_line`).
    #[cfg(any(test, fuzzing))]
    pub fn buffered(&self) -> usize {
        self.unfinished.len()
    }

    /// The line typed so far, edited (empty while an over-long line is being skipped).
    pub fn unfinished_line(&self) -> &[u8] {
        &self.unfinished
    }

    fn push_text(&mut self, text: &[u8], on_item: &mut impl FnMut(Decoded<'_>)) {
        if self.discarding || text.is_empty() {
            return;
        }
        if self.unfinished.len() + text.len() > self.max_line {
            self.release_unfinished();
            self.discarding = true;
            on_item(Decoded::TooLong);
        } else {
            self.unfinished.extend_from_slice(text);
        }
    }

    fn end_line(&mut self, on_item: &mut impl FnMut(Decoded<'_>)) {
        if std::mem::replace(&mut self.discarding, false) {
            return; // already reported when it passed the limit
        }
        let line = std::mem::take(&mut self.unfinished);
        on_item(self.complete(&line));
        self.unfinished = line;
        self.unfinished.clear();
    }

    /// Applies an editing key.
    fn edit(&mut self, key: u8) {
        if self.discarding {
            return;
        }
        match key {
            BACKSPACE | DELETE => {
                // A UTF-8 character is its lead byte and the continuation bytes after it.
                while let Some(byte) = self.unfinished.pop() {
                    if byte & 0b1100_0000 != 0b1000_0000 {
                        break;
                    }
                }
            }
            ERASE_LINE => self.unfinished.clear(),
            ERASE_WORD => {
                let is_blank = |byte: &u8| matches!(byte, b' ' | b'\t');
                let without_blanks = self.unfinished.len()
                    - self
                        .unfinished
                        .iter()
                        .rev()
                        .take_while(|b| is_blank(b))
                        .count();
                self.unfinished.truncate(without_blanks);
                let word = self
                    .unfinished
                    .iter()
                    .rev()
                    .take_while(|b| !is_blank(b))
                    .count();
                self.unfinished.truncate(without_blanks - word);
            }
            _ => {}
        }
    }

    /// Takes `byte` as part of the escape sequence under way, if it is; returns false for
    /// a byte that is not (the sequence is over and the byte is read as usual).
    fn continue_escape(&mut self, byte: u8) -> bool {
        let (next, taken) = match (self.escape, byte) {
            (Escape::Started, b'[') => (Escape::ControlSequence, true),
            (Escape::Started, b'O') => (Escape::SingleShift, true),
            (Escape::Started, _) => (Escape::None, false),
            // Parameter and intermediate bytes, then one final byte.
            (Escape::ControlSequence, 0x20..=0x3f) => (Escape::ControlSequence, true),
            (Escape::ControlSequence, 0x40..=0x7e) | (Escape::SingleShift, 0x20..=0x7e) => {
                (Escape::None, true)
            }
            (Escape::ControlSequence | Escape::SingleShift, _) => (Escape::None, false),
            (Escape::None, _) => (Escape::None, false),
        };
        if self.escape == Escape::Started && taken {
            self.unfinished.pop(); // the ESC of a key
        }
        self.escape = next;
        taken
    }

    /// A complete line: the limit applies.
    fn complete<'a>(&self, line: &'a [u8]) -> Decoded<'a> {
        if line.len() > self.max_line {
            Decoded::TooLong
        } else {
            Decoded::Line(line)
        }
    }

    /// Gives a large buffer back: an idle client should not keep a line's worth of memory.
    fn release_unfinished(&mut self) {
        self.unfinished = Vec::new();
    }
}

/// Splits a byte stream into lines for servers that must not lose or change a byte (echo,
/// dump): complete lines come out whole, with their line ending; a line longer than
/// `max_line` comes out in pieces as it arrives, so memory stays bounded.
#[derive(Debug)]
pub struct LineSplitter {
    max_line: usize,
    /// A CR ends a line too (with the LF or NUL right after it, if in the same read).
    ends_at_cr: bool,
    unfinished: Vec<u8>,
    /// Part of the current line already came out as a piece.
    continuing: bool,
}

/// A piece of the stream out of a [`LineSplitter`].
#[derive(Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The bytes, with the line ending if `ends_line`.
    pub bytes: &'a [u8],
    /// This piece is the start of a line.
    pub starts_line: bool,
    /// This piece ends with a newline.
    pub ends_line: bool,
}

impl Piece<'_> {
    /// A whole line, start to newline.
    pub fn is_whole_line(&self) -> bool {
        self.starts_line && self.ends_line
    }
}

impl LineSplitter {
    /// A splitter holding back at most `max_line` bytes of an unfinished line.
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            max_line,
            ends_at_cr: false,
            unfinished: Vec::new(),
            continuing: false,
        }
    }

    /// Also ends lines at a bare CR or CR NUL, as character-mode terminals send them
    /// (CR LF stays one line end when it arrives in one read). Every byte still comes out.
    pub fn ending_at_cr(self) -> Self {
        LineSplitter {
            ends_at_cr: true,
            ..self
        }
    }

    /// Where the first line in `bytes` ends (just past its line ending), if it does.
    fn line_end(&self, bytes: &[u8]) -> Option<usize> {
        let end = bytes
            .iter()
            .position(|&byte| byte == b'\n' || (self.ends_at_cr && byte == b'\r'))?;
        let after_cr = bytes[end] == b'\r' && matches!(bytes.get(end + 1), Some(b'\n' | 0));
        Some(end + 1 + usize::from(after_cr))
    }

    /// Feeds bytes as they were read; calls `on_piece` for each whole line and for each
    /// piece of an over-long one.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_piece: impl FnMut(Piece<'_>)) {
        while let Some(end) = self.line_end(bytes) {
            let (head, tail) = bytes.split_at(end);
            bytes = tail;
            let starts_line = !self.continuing;
            self.continuing = false;
            if self.unfinished.is_empty() {
                on_piece(Piece {
                    bytes: head,
                    starts_line,
                    ends_line: true,
                });
            } else {
                let mut line = std::mem::take(&mut self.unfinished);
                line.extend_from_slice(head);
                on_piece(Piece {
                    bytes: &line,
                    starts_line,
                    ends_line: true,
                });
                line.clear();
                self.unfinished = line;
            }
        }
        if self.unfinished.len() + bytes.len() <= self.max_line {
            self.unfinished.extend_from_slice(bytes);
            return;
        }
        let mut piece = std::mem::take(&mut self.unfinished);
        piece.extend_from_slice(bytes);
        on_piece(Piece {
            bytes: &piece,
            starts_line: !self.continuing,
            ends_line: false,
        });
        self.continuing = true;
    }

    /// The end of the stream: what is left of an unfinished line, if anything.
    pub fn finish(&mut self, on_piece: impl FnOnce(Piece<'_>)) {
        let rest = std::mem::take(&mut self.unfinished);
        let starts_line = !std::mem::replace(&mut self.continuing, false);
        if !rest.is_empty() {
            on_piece(Piece {
                bytes: &rest,
                starts_line,
                ends_line: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut LineDecoder, chunks: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, |item| {
                out.push(match item {
                    Decoded::Line(line) => Some(line.to_vec()),
                    Decoded::TooLong => None,
                })
            });
        }
        out
    }

    #[test]
    fn lines_end_in_lf_or_crlf_and_may_arrive_in_pieces() {
        let mut decoder = LineDecoder::new(100);
        let lines = decode_all(&mut decoder, &[b"he", b"llo\r", b"\nworld\n\n"]);
        assert_eq!(
            lines,
            vec![
                Some(b"hello".to_vec()),
                Some(b"world".to_vec()),
                Some(vec![])
            ]
        );
    }

    #[test]
    fn cr_and_cr_nul_end_one_line_even_when_the_lf_or_nul_comes_later() {
        let mut decoder = LineDecoder::new(100);
        let lines = decode_all(
            &mut decoder,
            &[
                b"raw\r",
                b"char\r\0",
                b"split\r",
                b"\0",
                b"crlf\r",
                b"\n\r\r\n",
            ],
        );
        let line = |text: &str| Some(text.as_bytes().to_vec());
        assert_eq!(
            lines,
            vec![
                line("raw"),
                line("char"),
                line("split"),
                line("crlf"),
                line(""),
                line("")
            ]
        );
    }

    #[test]
    fn editing_keys_edit_the_line_and_never_reach_it() {
        let mut decoder = LineDecoder::new(100);
        let lines = decode_all(
            &mut decoder,
            &[
                b"hellp\x08o\n",
                "naïve\x7f\x7f\x7f\n".as_bytes(),
                b"gone\x15kept\n",
                b"one  two \x17\x17three\n",
                b"\x08\x7f\x17\x15x\n",
                b"up\x1b[Ar\x1bOBight\x1b[1;5D\n",
            ],
        );
        let texts: Vec<String> = lines
            .into_iter()
            .map(|line| String::from_utf8(line.expect("line")).expect("utf-8"))
            .collect();
        assert_eq!(texts, ["hello", "na", "kept", "three", "x", "upright"]);
    }

    #[test]
    fn an_escape_that_is_not_a_key_is_left_for_sanitising() {
        let mut decoder = LineDecoder::new(100);
        let lines = decode_all(&mut decoder, &[b"a\x1b]0;title\x07b\n"]);
        assert_eq!(lines, vec![Some(b"a\x1b]0;title\x07b".to_vec())]);
        assert_eq!(crate::protocol::sanitize(b"a\x1b]0;title\x07b"), "ab");
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_skipped() {
        let mut decoder = LineDecoder::new(4);
        let lines = decode_all(&mut decoder, &[b"abcdefgh", b"ijkl", b"mn\nok\n"]);
        assert_eq!(lines, vec![None, Some(b"ok".to_vec())]);
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes_with_crlf() {
        let mut decoder = LineDecoder::new(4);
        let lines = decode_all(&mut decoder, &[b"abc", b"d\r", b"\nabcde\n"]);
        assert_eq!(lines, vec![Some(b"abcd".to_vec()), None]);
        // Erasing makes room: the limit is on the edited line.
        let lines = decode_all(&mut decoder, &[b"abcd\x08\x08ef\n"]);
        assert_eq!(lines, vec![Some(b"abef".to_vec())]);
    }

    #[test]
    fn the_last_line_counts_without_a_newline() {
        let mut decoder = LineDecoder::new(10);
        assert!(decode_all(&mut decoder, &[b"bye"]).is_empty());
        let mut last = None;
        decoder.finish(|item| last = Some(format!("{item:?}")));
        assert_eq!(last.as_deref(), Some("Line([98, 121, 101])"));
    }

    fn split_all(splitter: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool, bool)> {
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, |p| {
                out.push((p.bytes.to_vec(), p.starts_line, p.ends_line))
            });
        }
        splitter.finish(|p| out.push((p.bytes.to_vec(), p.starts_line, p.ends_line)));
        out
    }

    #[test]
    fn the_splitter_keeps_every_byte_and_bounds_long_lines() {
        let mut splitter = LineSplitter::new(4);
        let pieces = split_all(&mut splitter, &[b"ab", b"c\r\nabcdef", b"gh\nxy"]);
        assert_eq!(
            pieces,
            vec![
                (b"abc\r\n".to_vec(), true, true),
                (b"abcdef".to_vec(), true, false),
                (b"gh\n".to_vec(), false, true),
                (b"xy".to_vec(), true, false),
            ]
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Streams as terminals send them: text, every line end and editing key, escapes.
        /// (Mapped from plain bytes in one step: a strategy per byte is slow to generate.)
        fn terminal_bytes() -> impl Strategy<Value = Vec<u8>> {
            const KEYS: [u8; 9] = [b'\n', b'\r', 0, 0x08, 0x7f, 0x15, 0x17, 0x1b, b'['];
            proptest::collection::vec(any::<(u8, u8)>(), 0..600).prop_map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(choice, byte)| {
                        KEYS.get(usize::from(choice % 20)).copied().unwrap_or(byte)
                    })
                    .collect()
            })
        }

        fn decode_in_pieces(bytes: &[u8], cuts: &[usize], max_line: usize) -> Vec<Option<Vec<u8>>> {
            let mut decoder = LineDecoder::new(max_line);
            let mut out = Vec::new();
            let mut start = 0;
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            for end in cuts.into_iter().chain([bytes.len()]) {
                decoder.feed(&bytes[start..end.max(start)], |item| {
                    out.push(match item {
                        Decoded::Line(line) => Some(line.to_vec()),
                        Decoded::TooLong => None,
                    })
                });
                assert!(decoder.buffered() <= max_line + 1);
                start = end.max(start);
            }
            decoder.finish(|item| {
                out.push(match item {
                    Decoded::Line(line) => Some(line.to_vec()),
                    Decoded::TooLong => None,
                })
            });
            out
        }

        proptest! {
            #[test]
            fn lines_do_not_depend_on_how_the_stream_is_split(
                bytes in terminal_bytes(),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
                max_line in 1usize..64,
            ) {
                let whole = decode_in_pieces(&bytes, &[], max_line);
                let split = decode_in_pieces(&bytes, &cuts, max_line);
                prop_assert_eq!(whole, split);
            }

            #[test]
            fn decoded_lines_respect_the_limit_and_hold_no_line_end_or_editing_key(
                bytes in terminal_bytes(),
                max_line in 1usize..64,
            ) {
                for line in decode_in_pieces(&bytes, &[], max_line).into_iter().flatten() {
                    prop_assert!(line.len() <= max_line);
                    prop_assert!(!line.iter().any(|&byte| matches!(byte, b'\n' | b'\r' | 0x08 | 0x7f | 0x15 | 0x17)));
                }
            }

            #[test]
            fn every_line_end_ends_exactly_one_line(
                // Non-empty: an empty line after a bare CR would make CR + LF, which is one line end.
                lines in proptest::collection::vec("[a-z ]{1,12}", 1..20),
                ends in proptest::collection::vec(prop_oneof![Just("\n"), Just("\r\n"), Just("\r"), Just("\r\0")], 20),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let mut stream = Vec::new();
                for (line, end) in lines.iter().zip(&ends) {
                    stream.extend_from_slice(line.as_bytes());
                    stream.extend_from_slice(end.as_bytes());
                }
                let decoded = decode_in_pieces(&stream, &cuts, 64);
                let expected: Vec<Option<Vec<u8>>> = lines.iter().map(|line| Some(line.as_bytes().to_vec())).collect();
                prop_assert_eq!(decoded, expected);
            }

            #[test]
            fn the_splitter_never_loses_or_changes_a_byte(
                bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..600),
                cut in any::<usize>(),
                max_line in 1usize..64,
            ) {
                let cut = cut % (bytes.len() + 1);
                let mut splitter = LineSplitter::new(max_line);
                let mut out = Vec::new();
                for part in [&bytes[..cut], &bytes[cut..]] {
                    splitter.feed(part, |piece| out.extend_from_slice(piece.bytes));
                }
                splitter.finish(|piece| out.extend_from_slice(piece.bytes));
                prop_assert_eq!(out, bytes);
            }
        }
    }
}
