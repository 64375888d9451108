//! The chat protocol as pure functions, no I/O: splitting bytes into lines with a size cap,
//! making a line safe to show on other people's terminals, parsing commands, and the text
//! of every line the server sends.

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

/// Makes a received line safe to print on anyone's terminal: ANSI escape sequences and
/// other control characters are removed (telnet commands were taken out of the stream
/// before it was split into lines), a tab becomes a space,
/// bidirectional overrides (which can make text read backwards) are removed, and invalid
/// UTF-8 becomes U+FFFD.
pub fn sanitize(raw: &[u8]) -> String {
    // Most lines are plain printable ASCII: nothing to remove, one copy.
    if raw.iter().all(|&byte| (0x20..0x7f).contains(&byte))
        && let Ok(text) = std::str::from_utf8(raw)
    {
        return text.to_owned();
    }
    let text = String::from_utf8_lossy(raw);
    let mut clean = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' => clean.push(' '),
            '\u{1b}' => skip_escape_sequence(&mut chars),
            // CSI as a single C1 character: skip its parameters like ESC [.
            '\u{9b}' => skip_until(&mut chars, |c| ('\u{40}'..='\u{7e}').contains(&c)),
            c if c.is_control() || is_bidi_control(c) => {}
            c => clean.push(c),
        }
    }
    clean
}

fn skip_escape_sequence(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => skip_until(chars, |c| ('\u{40}'..='\u{7e}').contains(&c)),
        // OSC, DCS, SOS, PM and APC strings end with BEL or ESC \ (ST).
        Some(']' | 'P' | 'X' | '^' | '_') => {
            while let Some(c) = chars.next() {
                if c == '\u{7}' || c == '\u{9c}' {
                    break;
                }
                if c == '\u{1b}' {
                    chars.next_if_eq(&'\\');
                    break;
                }
            }
        }
        // Two-character sequences (ESC c, ESC 7, ...): the second one is gone too.
        _ => {}
    }
}

fn skip_until(chars: &mut impl Iterator<Item = char>, is_final: impl Fn(char) -> bool) {
    for c in chars.by_ref() {
        if is_final(c) {
            break;
        }
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// What a client's line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// A line for everyone else in the room.
    Message(String),
    /// `/nick NAME`
    Nick(String),
    /// `/who`
    Who,
    /// `/me ACTION`
    Me(String),
    /// `/msg NICK TEXT`
    Private { to: String, text: String },
    /// `/quit [REASON]`
    Quit(Option<String>),
    /// `/help`
    Help,
    /// `/join ROOM`
    Join(String),
    /// `/rooms`
    Rooms,
    /// `/time on` or `/time off`
    Time(bool),
    /// `/op PASSWORD`
    Op(String),
    /// `/kick NICK [REASON]` (operators)
    Kick {
        nick: String,
        reason: Option<String>,
    },
    /// `/mute NICK` (operators)
    Mute(String),
    /// `/unmute NICK` (operators)
    Unmute(String),
    /// `/wall TEXT` (operators): a notice to every room
    Wall(String),
    /// A known command without the arguments it needs; holds its usage text.
    Usage(&'static str),
    /// A command nobody knows, with its name.
    Unknown(String),
    /// The line was longer than the limit and was dropped.
    TooLong,
}

/// Parses one sanitised line, reusing its memory for a message. Blank lines ask for
/// nothing and give `None`.
pub fn parse_line(mut line: String) -> Option<Input> {
    line.truncate(line.trim_end().len());
    if line.trim_start().is_empty() {
        return None;
    }
    if line.starts_with("//") {
        line.remove(0);
        return Some(Input::Message(line));
    }
    if !line.starts_with('/') {
        return Some(Input::Message(line));
    }
    let command_line = &line[1..];
    let (name, rest) = match command_line.split_once(' ') {
        Some((name, rest)) => (name, rest.trim()),
        None => (command_line, ""),
    };
    let input = match name.to_ascii_lowercase().as_str() {
        "help" => Input::Help,
        "who" => Input::Who,
        "rooms" => Input::Rooms,
        "join" if rest.is_empty() => Input::Usage("/join ROOM"),
        "join" => Input::Join(rest.to_owned()),
        "time" => match rest.to_ascii_lowercase().as_str() {
            "on" => Input::Time(true),
            "off" => Input::Time(false),
            _ => Input::Usage("/time on|off"),
        },
        "quit" => Input::Quit((!rest.is_empty()).then(|| rest.to_owned())),
        "nick" if rest.is_empty() => Input::Usage("/nick NAME"),
        "nick" => Input::Nick(rest.to_owned()),
        "op" if rest.is_empty() => Input::Usage("/op PASSWORD"),
        "op" => Input::Op(rest.to_owned()),
        "kick" if rest.is_empty() => Input::Usage("/kick NICK [REASON]"),
        "kick" => match rest.split_once(' ') {
            Some((nick, reason)) => Input::Kick {
                nick: nick.to_owned(),
                reason: Some(reason.trim().to_owned()),
            },
            None => Input::Kick {
                nick: rest.to_owned(),
                reason: None,
            },
        },
        "mute" if rest.is_empty() => Input::Usage("/mute NICK"),
        "mute" => Input::Mute(rest.to_owned()),
        "unmute" if rest.is_empty() => Input::Usage("/unmute NICK"),
        "unmute" => Input::Unmute(rest.to_owned()),
        "wall" if rest.is_empty() => Input::Usage("/wall TEXT"),
        "wall" => Input::Wall(rest.to_owned()),
        "me" if rest.is_empty() => Input::Usage("/me ACTION"),
        "me" => Input::Me(rest.to_owned()),
        "msg" => match rest.split_once(' ') {
            Some((to, text)) if !text.trim().is_empty() => Input::Private {
                to: to.to_owned(),
                text: text.trim().to_owned(),
            },
            _ => Input::Usage("/msg NICK TEXT"),
        },
        _ => Input::Unknown(name.to_owned()),
    };
    Some(input)
}

/// Longest nick, in characters.
pub const MAX_NICK_LEN: usize = 20;

/// Why a nick was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum NickError {
    /// Not 1 to 20 of A-Z a-z 0-9 _ -.
    Invalid,
    /// `guest-...` names are handed out by the server.
    Reserved,
}

/// Whether a nick or room name is 1 to 20 of A-Z a-z 0-9 _ -.
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NICK_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a nick's spelling. Uniqueness is the hub's business: it knows who is online.
pub fn validate_nick(nick: &str) -> Result<(), NickError> {
    if !is_valid_name(nick) {
        return Err(NickError::Invalid);
    }
    if nick.to_ascii_lowercase().starts_with("guest-") {
        return Err(NickError::Reserved);
    }
    Ok(())
}

/// The nick the server gives connection number `id`.
pub fn guest_nick(id: u64) -> String {
    format!("guest-{id}")
}

/// The chapter's idle-timeout line, for the servers without notices (echo, dump, send).
pub const IDLE_FAREWELL: &[u8] = b"idle timeout, disconnecting, bye!\n";

/// The lines of `/help`.
pub const HELP: &str = "\
* commands:
*   /nick NAME       change your nick (1 to 20 of A-Z a-z 0-9 _ -)
*   /who             list who is in your room
*   /join ROOM       go to ROOM (created if needed); everyone starts in lobby
*   /rooms           list the rooms and how many are in each
*   /time on|off     prefix each line you receive with the time (HH:MM)
*   /op PASSWORD     become an operator, who can:
*     /kick NICK [REASON]   /mute NICK   /unmute NICK   /wall TEXT
*   /me ACTION       tell everyone what you do (* nick ACTION)
*   /msg NICK TEXT   send TEXT to NICK only
*   /quit [REASON]   leave
*   //TEXT           send a line that starts with /
";

/// A list of names for a notice: `a`, `a and b`, `a, b and c`, `a, b, c and 7 others`.
pub fn name_list(names: &[String], total: usize) -> String {
    const SHOWN: usize = 3;
    let shown = &names[..names.len().min(SHOWN)];
    let others = total - shown.len();
    match (shown, others) {
        ([only], 0) => only.clone(),
        (_, 0) => {
            let (last, first) = shown.split_last().expect("two or more names");
            format!("{} and {last}", first.join(", "))
        }
        (_, 1) => format!("{} and 1 other", shown.join(", ")),
        (_, others) => format!("{} and {others} others", shown.join(", ")),
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

    #[test]
    fn sanitize_removes_escapes_controls_and_telnet() {
        assert_eq!(sanitize(b"\x1b[31mred\x1b[0m"), "red");
        assert_eq!(sanitize(b"a\tb\x07c\x7f"), "a bc");
        assert_eq!(sanitize(b"\x1b]0;title\x07x"), "x");
        assert_eq!(sanitize(b"caf\xe9"), "caf\u{fffd}");
        assert_eq!(sanitize("\u{202e}abc".as_bytes()), "abc");
        assert_eq!(sanitize("\u{9b}2Jok".as_bytes()), "ok");
    }

    #[test]
    fn commands_parse_with_their_arguments() {
        let parse_line = |line: &str| parse_line(line.to_owned());
        assert_eq!(
            parse_line("trailing  "),
            Some(Input::Message("trailing".into()))
        );
        assert_eq!(
            parse_line("hi there"),
            Some(Input::Message("hi there".into()))
        );
        assert_eq!(parse_line("//etc"), Some(Input::Message("/etc".into())));
        assert_eq!(parse_line("/NICK bob"), Some(Input::Nick("bob".into())));
        assert_eq!(parse_line("/nick"), Some(Input::Usage("/nick NAME")));
        assert_eq!(parse_line("/quit"), Some(Input::Quit(None)));
        assert_eq!(
            parse_line("/quit gone home"),
            Some(Input::Quit(Some("gone home".into())))
        );
        assert_eq!(
            parse_line("/msg bob hi you"),
            Some(Input::Private {
                to: "bob".into(),
                text: "hi you".into()
            })
        );
        assert_eq!(parse_line("/msg bob"), Some(Input::Usage("/msg NICK TEXT")));
        assert_eq!(parse_line("/dance"), Some(Input::Unknown("dance".into())));
        assert_eq!(parse_line("/join games"), Some(Input::Join("games".into())));
        assert_eq!(parse_line("/join"), Some(Input::Usage("/join ROOM")));
        assert_eq!(parse_line("/rooms"), Some(Input::Rooms));
        assert_eq!(
            parse_line("/kick bob spamming the room"),
            Some(Input::Kick {
                nick: "bob".into(),
                reason: Some("spamming the room".into())
            })
        );
        assert_eq!(
            parse_line("/kick bob"),
            Some(Input::Kick {
                nick: "bob".into(),
                reason: None
            })
        );
        assert_eq!(parse_line("/wall"), Some(Input::Usage("/wall TEXT")));
        assert_eq!(parse_line("/time ON"), Some(Input::Time(true)));
        assert_eq!(
            parse_line("/time later"),
            Some(Input::Usage("/time on|off"))
        );
        assert_eq!(parse_line("   "), None);
    }

    #[test]
    fn nicks_are_short_plain_and_not_guests() {
        assert_eq!(validate_nick("alice_2-b"), Ok(()));
        assert_eq!(validate_nick(""), Err(NickError::Invalid));
        assert_eq!(validate_nick("a b"), Err(NickError::Invalid));
        assert_eq!(validate_nick("ä"), Err(NickError::Invalid));
        assert_eq!(validate_nick(&"x".repeat(21)), Err(NickError::Invalid));
        assert_eq!(validate_nick("Guest-9"), Err(NickError::Reserved));
    }

    #[test]
    fn name_lists_count_the_rest() {
        let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(name_list(&names[..1], 1), "a");
        assert_eq!(name_list(&names[..2], 2), "a and b");
        assert_eq!(name_list(&names[..3], 3), "a, b and c");
        assert_eq!(name_list(&names[..3], 4), "a, b, c and 1 other");
        assert_eq!(name_list(&names[..3], 10), "a, b, c and 7 others");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

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
                bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..600),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
                max_line in 1usize..64,
            ) {
                let whole = decode_in_pieces(&bytes, &[], max_line);
                let split = decode_in_pieces(&bytes, &cuts, max_line);
                prop_assert_eq!(whole, split);
            }

            #[test]
            fn decoded_lines_respect_the_limit(
                bytes in proptest::collection::vec(any::<u8>(), 0..600),
                max_line in 1usize..64,
            ) {
                for line in decode_in_pieces(&bytes, &[], max_line).into_iter().flatten() {
                    prop_assert!(line.len() <= max_line);
                    prop_assert!(!line.contains(&b'\n'));
                }
            }

            #[test]
            fn sanitized_text_holds_no_control_characters(
                bytes in proptest::collection::vec(prop_oneof![Just(0x1b_u8), Just(0xff), any::<u8>()], 0..300),
            ) {
                let clean = sanitize(&bytes);
                prop_assert!(!clean.chars().any(|c| c.is_control() || is_bidi_control(c)));
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
