//! Telnet as a port: what a telnet client needs beyond lines, read in this order.
//!
//! - `negotiation.rs`, on the client's thread: takes telnet commands (IAC ...) out of the
//!   byte stream before it is split into lines, and answers option requests by the Q method
//!   of RFC 1143. A client that never sends IAC (nc, socat, scripts) never gets one back.
//! - `typed_line.rs`, on the client's thread: for a client that lets the server echo (character
//!   mode), what to write so its screen shows the line it is typing.
//! - `screen.rs`, in the client's outbox on the hub's thread: lines end in CR LF, and the
//!   line being typed is cleared before incoming lines and drawn again after them.
//!
//! The client's thread never writes to its socket: its answers and echo go to the hub as
//! [`DirectOutput`] (see transport/mod.rs).

mod negotiation;
mod screen;
mod typed_line;

pub(crate) use screen::Screen;

#[cfg(fuzzing)]
pub(crate) use negotiation::fuzz;

use super::DirectOutput;

use negotiation::Negotiation;
use typed_line::TypedLine;

/// A chat client's telnet side, on its thread: negotiation and, in character mode, echo.
#[derive(Debug, Default)]
pub(crate) struct Terminal {
    negotiation: Negotiation,
    typed: TypedLine,
    /// Echo written during this read, sent after the read's negotiation answers.
    echoed: Vec<u8>,
    /// Whether the server echoed when this read began: a line ended in a read that also
    /// turns the echo off (Enter, then `mode line` at the telnet prompt) was typed while
    /// the client relied on the server's echo.
    echoed_at_read_start: bool,
}

impl Terminal {
    /// The client's data with telnet commands taken out (see [`Negotiation::data`]).
    pub(crate) fn data<'a>(&mut self, input: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
        self.echoed_at_read_start = self.negotiation.server_echoes();
        self.negotiation.data(input, scratch)
    }

    /// Telnet commands taken out of the stream since the last call (see
    /// [`Negotiation::take_commands`]), for flood control to charge.
    pub(crate) fn take_commands(&mut self) -> u32 {
        self.negotiation.take_commands()
    }

    /// A line was entered (its sanitised text): echoed in character mode.
    pub(crate) fn line_entered(&mut self, text: &str) {
        if self.echoed_at_read_start || self.negotiation.server_echoes() {
            self.typed.line_entered(text, &mut self.echoed);
        }
    }

    /// After a read: what the hub should write and show, if anything. `unfinished` is the
    /// line being typed, as the decoder holds it.
    pub(crate) fn end_of_read(&mut self, unfinished: &[u8]) -> Option<Box<DirectOutput>> {
        if !self.negotiation.is_telnet() {
            return None;
        }
        let input_line = if self.negotiation.server_echoes() {
            self.typed.show_unfinished(unfinished, &mut self.echoed);
            Some(self.typed.shown().to_owned())
        } else {
            self.typed.forget();
            None
        };
        let mut bytes = self.negotiation.take_answers();
        bytes.append(&mut self.echoed);
        if bytes.is_empty() {
            return None;
        }
        Some(Box::new(DirectOutput {
            bytes,
            input_line,
            closes: false,
        }))
    }
}
