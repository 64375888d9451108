//! The frames a browser sends (RFC 6455, section 5), read with no buffer while it is silent.
//!
//! A thread per client makes an idle browser cost what its connection holds while it
//! waits: this reader holds only the bytes of a frame that has not wholly arrived (and the
//! text of a message sent in pieces), and gives its buffer back as soon as it is empty. A
//! library reader keeps its read buffer, zero-filled, for the whole connection.

/// The largest message (or frame) a browser may send, in bytes; a larger one closes the
/// connection with 1009. 64 KiB: a pasted page of text, far beyond what the page sends, and
/// what the thread holds at most while a message arrives.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The longest frame header: 2 bytes, 8 of length, 4 of mask.
#[cfg(any(fuzzing, test))]
pub(crate) const MAX_HEADER: usize = 14;

/// What a browser's frames amount to, one at a time.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A whole text message.
    Text(String),
    /// A ping, to be answered with a pong carrying the same bytes.
    Ping(Vec<u8>),
    /// A pong (to the server's ping) or an unasked one: nothing to do.
    Pong,
    /// The browser is leaving; the status code to send back, if it gave one.
    Close(Option<u16>),
}

/// Why the browser's frames end the connection: each has its close code.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Violation {
    /// 1002: the frames break RFC 6455.
    Protocol(&'static str),
    /// 1003: binary messages are not chat.
    Binary,
    /// 1007: a text message (or a close reason) that is not UTF-8.
    NotUtf8,
    /// 1009: a message over [`MAX_MESSAGE`].
    TooLarge,
}

impl Violation {
    /// The status code of the close frame that answers it.
    pub(crate) fn code(&self) -> u16 {
        match self {
            Violation::Protocol(_) => 1002,
            Violation::Binary => 1003,
            Violation::NotUtf8 => 1007,
            Violation::TooLarge => 1009,
        }
    }

    /// The close frame's reason, for the browser to show.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Violation::Protocol(why) => why,
            Violation::Binary => "binary frames are not supported",
            Violation::NotUtf8 => "text is not UTF-8",
            Violation::TooLarge => "message too large",
        }
    }
}

/// A frame's header, once its bytes are in.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Bytes of header (the payload starts there).
    size: usize,
    payload: usize,
}

/// Frames from one browser, taken as their bytes arrive.
#[derive(Default)]
pub(crate) struct FrameReader {
    /// Bytes received, from `taken` on not yet taken as frames; unallocated between frames.
    pending: Vec<u8>,
    /// Where the frames not yet taken start in `pending`: the bytes before it go when more
    /// arrive, not frame by frame (a read of many small frames would move the rest once
    /// per frame).
    taken: usize,
    /// The text so far of a message sent in pieces (a text frame without FIN, then
    /// continuations).
    fragments: Option<Vec<u8>>,
}

impl FrameReader {
    /// A reader that starts with `already_read` (bytes that came with the HTTP request).
    pub(crate) fn new(already_read: Vec<u8>) -> FrameReader {
        FrameReader {
            pending: already_read,
            taken: 0,
            fragments: None,
        }
    }

    /// Adds bytes as they arrived from the browser.
    pub(crate) fn receive(&mut self, bytes: &[u8]) {
        self.pending.drain(..self.taken);
        self.taken = 0;
        self.pending.extend_from_slice(bytes);
    }

    /// Bytes held for frames not yet complete (and their message so far).
    #[cfg(any(fuzzing, test))]
    pub(crate) fn held(&self) -> usize {
        self.pending.len() - self.taken + self.fragments.as_ref().map_or(0, Vec::len)
    }

    /// The next frame that means something, `None` when more bytes are needed.
    pub(crate) fn next(&mut self) -> Result<Option<Frame>, Violation> {
        loop {
            let Some(header) = self.header()? else {
                return Ok(None);
            };
            let start = self.taken + header.size;
            let end = start + header.payload;
            if self.pending.len() < end {
                return Ok(None);
            }
            let mut payload = self.pending[start..end].to_vec();
            for (index, byte) in payload.iter_mut().enumerate() {
                *byte ^= header.mask[index % 4];
            }
            if self.pending.len() == end {
                // Between frames the reader holds nothing.
                self.pending = Vec::new();
                self.taken = 0;
            } else {
                self.taken = end;
            }
            if let Some(frame) = self.meaning(&header, payload)? {
                return Ok(Some(frame));
            }
        }
    }

    /// Parses the header of the next frame, `None` if it has not wholly arrived.
    fn header(&self) -> Result<Option<Header>, Violation> {
        let bytes = &self.pending[self.taken..];
        let (Some(&first), Some(&second)) = (bytes.first(), bytes.get(1)) else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            return Err(Violation::Protocol("reserved bits set"));
        }
        let fin = first & 0x80 != 0;
        let opcode = first & 0x0f;
        if second & 0x80 == 0 {
            return Err(Violation::Protocol("frame not masked"));
        }
        let (length_bytes, short) = match second & 0x7f {
            126 => (2, None),
            127 => (8, None),
            short => (0, Some(usize::from(short))),
        };
        let size = 2 + length_bytes + 4;
        if bytes.len() < size {
            return Ok(None);
        }
        let payload = match short {
            Some(length) => length,
            None => {
                let mut length = 0u64;
                for &byte in &bytes[2..2 + length_bytes] {
                    length = length << 8 | u64::from(byte);
                }
                if length >> 63 != 0 {
                    return Err(Violation::Protocol("frame length out of range"));
                }
                usize::try_from(length).unwrap_or(usize::MAX)
            }
        };
        let control = opcode & 0x08 != 0;
        if control && !fin {
            return Err(Violation::Protocol("fragmented control frame"));
        }
        if control && payload > 125 {
            return Err(Violation::Protocol("control frame too long"));
        }
        if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            return Err(Violation::Protocol("unknown opcode"));
        }
        // Refused before its bytes are held.
        if payload > MAX_MESSAGE {
            return Err(Violation::TooLarge);
        }
        let mask = [
            bytes[size - 4],
            bytes[size - 3],
            bytes[size - 2],
            bytes[size - 1],
        ];
        Ok(Some(Header {
            fin,
            opcode,
            mask,
            size,
            payload,
        }))
    }

    /// What a whole frame means; `None` for a piece of a message not yet complete.
    fn meaning(&mut self, header: &Header, payload: Vec<u8>) -> Result<Option<Frame>, Violation> {
        match header.opcode {
            0 => {
                let Some(fragments) = &mut self.fragments else {
                    return Err(Violation::Protocol("continuation without a message"));
                };
                if fragments.len() + payload.len() > MAX_MESSAGE {
                    return Err(Violation::TooLarge);
                }
                fragments.extend_from_slice(&payload);
                if !header.fin {
                    return Ok(None);
                }
                let text = self.fragments.take().unwrap_or_default();
                text_message(text).map(Some)
            }
            1 | 2 if self.fragments.is_some() => {
                Err(Violation::Protocol("a new message inside a fragmented one"))
            }
            1 if header.fin => text_message(payload).map(Some),
            1 => {
                self.fragments = Some(payload);
                Ok(None)
            }
            2 => Err(Violation::Binary),
            8 => close(&payload).map(Some),
            9 => Ok(Some(Frame::Ping(payload))),
            _ => Ok(Some(Frame::Pong)),
        }
    }
}

fn text_message(bytes: Vec<u8>) -> Result<Frame, Violation> {
    String::from_utf8(bytes)
        .map(Frame::Text)
        .map_err(|_| Violation::NotUtf8)
}

/// A close frame's status code, checked as RFC 6455 (7.4) and the IANA registry ask.
fn close(payload: &[u8]) -> Result<Frame, Violation> {
    match payload {
        [] => Ok(Frame::Close(None)),
        [_] => Err(Violation::Protocol("close frame of one byte")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(Violation::Protocol("invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Violation::NotUtf8);
            }
            Ok(Frame::Close(Some(code)))
        }
    }
}

/// The header of a text frame holding `length` bytes, as a server sends it (unmasked).
pub(crate) fn text_frame_header(length: usize) -> Vec<u8> {
    server_frame_header(0x1, length)
}

/// A frame as the server sends it: unmasked, whole.
pub(crate) fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = server_frame_header(opcode, payload.len());
    frame.extend_from_slice(payload);
    frame
}

/// A close frame with `code` and a short `reason` the browser can show (cut to the 123
/// bytes a control frame leaves it, at a character boundary).
pub(crate) fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    server_frame(0x8, &payload)
}

fn server_frame_header(opcode: u8, length: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(10);
    header.push(0x80 | opcode);
    match length {
        0..=125 => header.push(length as u8),
        126..=0xffff => {
            header.push(126);
            header.extend_from_slice(&(length as u16).to_be_bytes());
        }
        _ => {
            header.push(127);
            header.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a browser sends it: masked.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![first];
        match payload.len() {
            0..=125 => frame.push(0x80 | payload.len() as u8),
            126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
            _ => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    #[test]
    fn frames_arriving_a_byte_at_a_time_are_read_whole_and_nothing_is_held_between_them() {
        let mut bytes = client_frame(0x81, b"hello");
        bytes.extend(client_frame(0x89, b"ping?"));
        bytes.extend(client_frame(0x01, b"two "));
        bytes.extend(client_frame(0x8A, b""));
        bytes.extend(client_frame(0x80, "pi\u{e8}ces".as_bytes()));
        bytes.extend(client_frame(0x81, &[b'x'; 300]));
        bytes.extend(client_frame(0x88, &[0x03, 0xe8, b'o', b'k']));
        let mut reader = FrameReader::default();
        let mut frames = Vec::new();
        for byte in bytes {
            reader.receive(&[byte]);
            while let Some(frame) = reader.next().expect("valid frames") {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            [
                Frame::Text("hello".into()),
                Frame::Ping(b"ping?".to_vec()),
                Frame::Pong,
                Frame::Text("two pi\u{e8}ces".into()),
                Frame::Text("x".repeat(300)),
                Frame::Close(Some(1000)),
            ]
        );
        assert_eq!(reader.held(), 0);
        assert_eq!(reader.pending.capacity(), 0, "its buffer given back");
    }

    #[test]
    fn a_read_of_many_frames_gives_them_one_by_one_and_then_holds_nothing() {
        let bytes = client_frame(0x89, b"p").repeat(1000);
        let mut reader = FrameReader::default();
        reader.receive(&bytes[..bytes.len() - 3]);
        let mut pings = 0;
        while let Some(frame) = reader.next().expect("valid frames") {
            assert_eq!(frame, Frame::Ping(b"p".to_vec()));
            pings += 1;
        }
        assert_eq!((pings, reader.held()), (999, 4));
        reader.receive(&bytes[bytes.len() - 3..]);
        assert_eq!(reader.next(), Ok(Some(Frame::Ping(b"p".to_vec()))));
        assert_eq!(reader.next(), Ok(None));
        assert_eq!((reader.held(), reader.pending.capacity()), (0, 0));
    }

    #[test]
    fn every_breach_of_the_protocol_has_its_close_code() {
        let cases: [(Vec<u8>, u16); 12] = [
            (vec![0x81, 0x02, b'h', b'i'], 1002),      // not masked
            (client_frame(0xC1, b"x"), 1002),          // RSV1
            (client_frame(0x83, b"x"), 1002),          // unknown opcode
            (client_frame(0x09, b"x"), 1002),          // fragmented ping
            (client_frame(0x89, &[0; 126]), 1002),     // long ping
            (client_frame(0x80, b"x"), 1002),          // continuation alone
            (client_frame(0x88, &[0x03]), 1002),       // close of one byte
            (client_frame(0x88, &[0x03, 0xed]), 1002), // close code 1005
            (client_frame(0x82, b"x"), 1003),          // binary
            (client_frame(0x81, &[0xff]), 1007),       // not UTF-8
            (client_frame(0x81, &vec![b'a'; MAX_MESSAGE + 1]), 1009),
            (
                [client_frame(0x01, b"a"), client_frame(0x81, b"b")].concat(),
                1002,
            ),
        ];
        for (bytes, code) in cases {
            let mut reader = FrameReader::new(bytes.clone());
            let result = loop {
                match reader.next() {
                    Ok(Some(_)) => continue,
                    other => break other,
                }
            };
            match result {
                Err(violation) => assert_eq!(violation.code(), code, "{bytes:x?}"),
                Ok(frame) => panic!("{bytes:x?}: {frame:?}"),
            }
        }
    }

    #[test]
    fn a_frame_too_large_is_refused_from_its_header_before_its_bytes_arrive() {
        let mut reader = FrameReader::default();
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&[0; 4]);
        reader.receive(&header);
        assert_eq!(reader.next(), Err(Violation::TooLarge));
        assert!(reader.held() <= MAX_HEADER);
    }

    #[test]
    fn the_server_s_frames_carry_their_length_in_the_shortest_form() {
        assert_eq!(text_frame_header(5), [0x81, 5]);
        assert_eq!(text_frame_header(126), [0x81, 126, 0, 126]);
        assert_eq!(text_frame_header(70_000)[..2], [0x81, 127]);
        let close = close_frame(1001, &"\u{e9}".repeat(100));
        // 61 two-byte characters fit in the 123 bytes a reason may have.
        assert_eq!(close[..4], [0x88, 124, 0x03, 0xe9]);
        assert!(
            std::str::from_utf8(&close[4..]).is_ok(),
            "cut at a character boundary"
        );
    }
}
