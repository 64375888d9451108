//! A telnet client as a person uses one, byte for byte: Linux telnet (line mode until the
//! user types `mode character` at the `telnet>` prompt, which sends `IAC DO SGA IAC DO
//! ECHO`; Backspace as DEL, Enter as CR NUL; `mode line` sends `IAC DONT SGA IAC WILL
//! LINEMODE IAC DONT ECHO`), or Windows telnet and PuTTY (negotiate at connect, offering
//! window size, terminal speed and type and environment, which the server refuses; Backspace
//! as BS, Enter as CR LF). It answers the server by the Q method of RFC 1143, types its
//! lines one key at a time with typos it corrects (Backspace, Ctrl-W, Ctrl-U, a stray
//! cursor key), and keeps a screen like a terminal's: each line it typed must come back as
//! the server's echo exactly as it was meant, whatever lines arrived while it typed.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::links::Link;
use crate::stats::{Rng, Stats};
use crate::terminal::Screen;
use crate::wire::{CONNECT_PATIENCE, Wire, keep_tail, read_until, reset_tcp, show_bytes};

const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;
const ECHO: u8 = 1;
const SGA: u8 = 3;
const TTYPE: u8 = 24;
const NAWS: u8 = 31;
const TSPEED: u8 = 32;
const LINEMODE: u8 = 34;
const NEW_ENVIRON: u8 = 39;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Linux,
    /// Windows telnet and PuTTY.
    Windows,
}

/// One side of an option (RFC 1143, without the queue bit: this client never changes its
/// mind while a request is pending).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Side {
    #[default]
    No,
    Yes,
    WantYes,
    WantNo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parser {
    Data,
    Command,
    Option(u8),
    Subnegotiation,
    SubnegotiationCommand,
}

pub struct TelnetLink {
    stream: TcpStream,
    flavour: Flavour,
    rng: Rng,
    stats: Arc<Stats>,
    kind: usize,
    /// Our side (WILL/WONT) and the server's (DO/DONT) of each option.
    ours: [Side; 256],
    theirs: [Side; 256],
    parser: Parser,
    screen: Screen,
    /// Lines typed in character mode whose echo has not come back yet, in order.
    awaiting_echo: VecDeque<String>,
    /// Screen lines that are not our echo, for the session.
    lines: VecDeque<String>,
    /// The last bytes received, to show with a failure.
    tail: VecDeque<u8>,
}

impl TelnetLink {
    /// Connected; Windows telnet and PuTTY negotiate at once.
    pub fn new(
        stream: TcpStream,
        flavour: Flavour,
        seed: u64,
        stats: Arc<Stats>,
        kind: usize,
    ) -> io::Result<TelnetLink> {
        let mut link = TelnetLink {
            stream,
            flavour,
            rng: Rng::new(seed),
            stats,
            kind,
            ours: [Side::No; 256],
            theirs: [Side::No; 256],
            parser: Parser::Data,
            screen: Screen::default(),
            awaiting_echo: VecDeque::new(),
            lines: VecDeque::new(),
            tail: VecDeque::new(),
        };
        if flavour == Flavour::Windows {
            let mut opening = Vec::new();
            for option in [NAWS, TSPEED, TTYPE, NEW_ENVIRON, SGA] {
                link.ours[option as usize] = Side::WantYes;
                opening.extend_from_slice(&[IAC, WILL, option]);
            }
            for option in [ECHO, SGA] {
                link.theirs[option as usize] = Side::WantYes;
                opening.extend_from_slice(&[IAC, DO, option]);
            }
            link.stream.write_all(&opening)?;
            link.wait_for_echo_answer()?;
        }
        Ok(link)
    }

    fn character_mode(&self) -> bool {
        self.theirs[ECHO as usize] == Side::Yes
    }

    /// Waits until the server has answered our ECHO request.
    fn wait_for_echo_answer(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + CONNECT_PATIENCE;
        while matches!(self.theirs[ECHO as usize], Side::WantYes | Side::WantNo) {
            if !self.pump(deadline)? {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "no answer to the ECHO request",
                ));
            }
        }
        Ok(())
    }

    /// Reads once (until `deadline` at most) and takes in what came; false if nothing did.
    fn pump(&mut self, deadline: Instant) -> io::Result<bool> {
        let mut buffer = [0; 4096];
        let Some(n) = read_until(&mut self.stream, &mut buffer, deadline)? else {
            return Ok(false);
        };
        keep_tail(&mut self.tail, &buffer[..n]);
        let mut answers = Vec::new();
        let mut data = Vec::new();
        for &byte in &buffer[..n] {
            self.parser = match (self.parser, byte) {
                (Parser::Data, IAC) => Parser::Command,
                (Parser::Data, _) => {
                    data.push(byte);
                    Parser::Data
                }
                (Parser::Command, IAC) => {
                    data.push(IAC);
                    Parser::Data
                }
                (Parser::Command, WILL | WONT | DO | DONT) => Parser::Option(byte),
                (Parser::Command, SB) => Parser::Subnegotiation,
                (Parser::Command, _) => Parser::Data,
                (Parser::Option(verb), option) => {
                    self.receive(verb, option, &mut answers);
                    Parser::Data
                }
                (Parser::Subnegotiation, IAC) => Parser::SubnegotiationCommand,
                (Parser::Subnegotiation, _) => Parser::Subnegotiation,
                (Parser::SubnegotiationCommand, SE) => Parser::Data,
                (Parser::SubnegotiationCommand, _) => Parser::Subnegotiation,
            };
        }
        if !answers.is_empty() {
            self.stream.write_all(&answers)?;
        }
        let mut completed = VecDeque::new();
        self.screen.feed(&data, &mut completed);
        for line in completed {
            self.take_screen_line(line);
        }
        Ok(true)
    }

    /// A line finished on screen: our own echo, checked, or a line for the session.
    fn take_screen_line(&mut self, line: String) {
        if self.awaiting_echo.front() == Some(&line) {
            self.awaiting_echo.pop_front();
            Stats::add(&self.stats.echoes_checked, 1);
            return;
        }
        if let Some(position) = self
            .awaiting_echo
            .iter()
            .position(|typed| marker_of(typed).is_some_and(|m| line.contains(m)))
        {
            let typed = self.awaiting_echo.remove(position).unwrap_or_default();
            self.stats.fail(
                Some(self.kind),
                "telnet echo differs from what was typed",
                format!(
                    "typed {typed:?}, the screen shows {line:?}; {}",
                    self.recent()
                ),
            );
            return;
        }
        self.lines.push_back(line);
    }

    /// The server's WILL, WONT, DO or DONT, answered by the Q method.
    fn receive(&mut self, verb: u8, option: u8, answers: &mut Vec<u8>) {
        let index = option as usize;
        match verb {
            WILL => match self.theirs[index] {
                Side::WantYes => self.theirs[index] = Side::Yes,
                Side::No if matches!(option, ECHO | SGA) => {
                    self.theirs[index] = Side::Yes;
                    answers.extend_from_slice(&[IAC, DO, option]);
                }
                Side::No => answers.extend_from_slice(&[IAC, DONT, option]),
                // Our DONT answered by WILL: taken as its answer.
                Side::WantNo => self.theirs[index] = Side::No,
                Side::Yes => {}
            },
            WONT => match self.theirs[index] {
                Side::Yes => {
                    self.theirs[index] = Side::No;
                    answers.extend_from_slice(&[IAC, DONT, option]);
                }
                _ => self.theirs[index] = Side::No,
            },
            DO => match self.ours[index] {
                Side::WantYes => self.ours[index] = Side::Yes,
                Side::No if option == SGA => {
                    self.ours[index] = Side::Yes;
                    answers.extend_from_slice(&[IAC, WILL, option]);
                }
                Side::No => answers.extend_from_slice(&[IAC, WONT, option]),
                Side::WantNo => self.ours[index] = Side::No,
                Side::Yes => {}
            },
            _ => match self.ours[index] {
                Side::Yes => {
                    self.ours[index] = Side::No;
                    answers.extend_from_slice(&[IAC, WONT, option]);
                }
                _ => self.ours[index] = Side::No,
            },
        }
    }

    /// Types `text` key by key as a person does, with a typo or two put right, then Enter.
    fn type_line(&mut self, text: &str) -> io::Result<()> {
        let erase = if self.flavour == Flavour::Linux {
            0x7f
        } else {
            0x08
        };
        let mut keys: Vec<Vec<u8>> = Vec::new();
        if self.rng.chance(0.05) {
            // A false start, erased whole with Ctrl-U.
            keys.extend(b"oops".iter().map(|&b| vec![b]));
            keys.push(vec![0x15]);
        }
        for character in text.chars() {
            let mut bytes = [0; 4];
            keys.push(character.encode_utf8(&mut bytes).as_bytes().to_vec());
            if character.is_ascii_alphabetic() && self.rng.chance(0.04) {
                keys.push(vec![b'x']);
                keys.push(vec![erase]);
            } else if character == ' ' && self.rng.chance(0.05) {
                // A wrong word, taken back with Ctrl-W (the space before it stays).
                keys.extend(b"wrnog".iter().map(|&b| vec![b]));
                keys.push(vec![0x17]);
            } else if self.rng.chance(0.01) {
                // A cursor key, which the server ignores.
                keys.push(b"\x1b[D".to_vec());
            }
        }
        keys.push(match self.flavour {
            Flavour::Linux => b"\r\0".to_vec(),
            Flavour::Windows => b"\r\n".to_vec(),
        });
        self.awaiting_echo.push_back(text.to_owned());
        let last = keys.len() - 1;
        for (index, key) in keys.iter().enumerate() {
            self.stream.write_all(&escape_iac(key))?;
            if index == last {
                // After Enter the session reads the answer (which may end the connection).
                break;
            }
            // A fast typist: 8 to 25 keys a second; the screen keeps up meanwhile.
            let next_key = Instant::now() + self.rng.seconds(0.04, 0.125);
            while Instant::now() < next_key {
                self.pump(next_key)?;
            }
        }
        Ok(())
    }
}

/// A data byte 255 is sent doubled (none of ours is, but a telnet does this).
fn escape_iac(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len());
    for &byte in key {
        out.push(byte);
        if byte == IAC {
            out.push(IAC);
        }
    }
    out
}

/// The marker of a line we typed, to recognise its echo even if garbled.
fn marker_of(text: &str) -> Option<&str> {
    let start = text.find("~S")?;
    let end = start + 2 + text[start + 2..].find('~')?;
    Some(&text[start..=end])
}

impl Link for TelnetLink {
    fn send_line(&mut self, text: &str) -> io::Result<()> {
        if self.character_mode() {
            self.type_line(text)
        } else {
            // Line mode: telnet edits locally and sends the whole line with CR LF.
            self.stream.write_all(format!("{text}\r\n").as_bytes())
        }
    }

    fn next_line(&mut self, deadline: Instant) -> io::Result<Option<String>> {
        loop {
            if let Some(line) = self.lines.pop_front() {
                return Ok(Some(line));
            }
            if !self.pump(deadline)? {
                return Ok(None);
            }
        }
    }

    fn telnet_mode(&mut self, character: bool) -> io::Result<()> {
        let request: &[u8] = if character {
            self.theirs[SGA as usize] = Side::WantYes;
            self.theirs[ECHO as usize] = Side::WantYes;
            &[IAC, DO, SGA, IAC, DO, ECHO]
        } else {
            self.theirs[SGA as usize] = Side::WantNo;
            self.ours[LINEMODE as usize] = Side::WantYes;
            self.theirs[ECHO as usize] = Side::WantNo;
            &[IAC, DONT, SGA, IAC, WILL, LINEMODE, IAC, DONT, ECHO]
        };
        self.stream.write_all(request)?;
        self.wait_for_echo_answer()?;
        if self.character_mode() != character {
            return Err(io::Error::other("the server did not agree to the mode"));
        }
        Ok(())
    }

    fn close(mut self: Box<Self>, _after_quit: bool) -> io::Result<()> {
        // Everything typed must have been echoed before the connection ends.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.awaiting_echo.is_empty() && Instant::now() < deadline {
            if !self.pump(deadline)? {
                break;
            }
        }
        if let Some(typed) = self.awaiting_echo.front() {
            self.stats.fail(
                Some(self.kind),
                "telnet echo missing",
                format!("typed {typed:?}; {}", self.recent()),
            );
        }
        // `quit` at the telnet> prompt: telnet closes the connection.
        self.stream.finish()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.pump(deadline) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        "the server did not close",
                    ));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                    ) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn reset(self: Box<Self>) {
        reset_tcp(&self.stream);
    }

    fn recent(&self) -> String {
        show_bytes(&self.tail)
    }
}
