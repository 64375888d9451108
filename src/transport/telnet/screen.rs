//! A telnet client's screen as the hub keeps it, in the client's outbox: when lines arrive
//! while the user is typing (the server echoing, character mode), the input line is
//! cleared, the lines are written, and the input line is drawn again below them, so
//! incoming chat never garbles what is being typed.

use std::sync::Arc;

use super::typed_line::CLEAR_LINE;

/// The input line of a client the server echoes for, and whether it is on screen.
#[derive(Debug, Default)]
pub(crate) struct Screen {
    /// What the client has typed so far, as the echo drew it; `None` while the client
    /// echoes for itself.
    input_line: Option<String>,
    /// Lines were written over the input line since it was last drawn.
    input_hidden: bool,
}

impl Screen {
    /// Before incoming lines: the bytes that clear the input line, if it is on screen.
    pub(crate) fn clear_for_lines(&mut self) -> Option<Arc<Vec<u8>>> {
        let showing = self
            .input_line
            .as_ref()
            .is_some_and(|line| !line.is_empty());
        if !showing || self.input_hidden {
            return None;
        }
        self.input_hidden = true;
        Some(Arc::new(CLEAR_LINE.to_vec()))
    }

    /// Before the echo or a send: the input line again, if lines were written over it.
    pub(crate) fn redraw(&mut self) -> Option<Arc<Vec<u8>>> {
        if !std::mem::take(&mut self.input_hidden) {
            return None;
        }
        let line = self.input_line.as_deref()?;
        Some(Arc::new(line.as_bytes().to_vec()))
    }

    /// The echo moved the input line on (call after writing the echo).
    pub(crate) fn set_input_line(&mut self, line: Option<String>) {
        self.input_line = line;
    }

    /// The connection is closing: what follows is the last thing on its screen.
    pub(crate) fn stop_redrawing(&mut self) {
        self.input_line = None;
        self.input_hidden = false;
    }
}
