//! WebSocket (RFC 6455) as a client speaks it: the upgrade request, text frames masked as
//! the RFC requires of every client frame, and the server's frames taken apart again into
//! the lines they carry.
//!
//! Written by hand rather than with tungstenite: the readers are non-blocking and hold
//! thousands of connections, and all they need of a frame is its payload. A server may put
//! one line or several in a frame (tcpchat puts a wake-up's run of lines in one; Node's
//! `ws` forwards each message as it came); the end of a message ends a line either way.

/// Where tcpchat's page opens its WebSocket; the Node peer upgrades on any path.
pub const UPGRADE_PATH: &str = "/ws";
/// A frame this large from a server is a broken stream, not a chat line: tcpchat's
/// largest is a wake-up's lines, far below it.
const MAX_FRAME: u64 = 16 * 1024 * 1024;

const FIN: u8 = 0x80;
const MASKED: u8 = 0x80;
const OPCODE_CONTINUATION: u8 = 0x0;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;
const OPCODE_CLOSE: u8 = 0x8;
/// Close code 1000, normal closure.
const NORMAL_CLOSURE: [u8; 2] = [0x03, 0xE8];

/// The upgrade request for the server at `host` (`HOST:PORT`). The key is the RFC's
/// example: a server checks its form, not its randomness; the answer's accept value is not
/// checked either (the benchmark measures cost, not conformance). No `Origin`: tcpchat
/// accepts a request without one from a client that is not a browser.
pub fn upgrade_request(host: &str) -> String {
    format!(
        "GET {UPGRADE_PATH} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// The server's answer to the upgrade, once its head is complete in `received`: the
/// length of the head when it switched protocols (what follows is already frames), or
/// its status line when it refused. `None` while the head is incomplete.
pub fn upgrade_answer(received: &[u8]) -> Option<Result<usize, String>> {
    let end = received.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&received[..end]);
    let status = head.lines().next().unwrap_or_default();
    let switched = status
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code == "101");
    Some(if switched {
        Ok(end)
    } else {
        Err(format!("upgrade refused: {status}"))
    })
}

/// A client's text frame (the whole message in one) holding `payload`, masked with `mask`.
pub fn text_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    client_frame(OPCODE_TEXT, payload, mask)
}

/// A client's close frame, code 1000 (normal closure), masked with `mask`.
pub fn close_frame(mask: [u8; 4]) -> Vec<u8> {
    client_frame(OPCODE_CLOSE, &NORMAL_CLOSURE, mask)
}

fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(FIN | opcode);
    match payload.len() {
        short @ 0..=125 => frame.push(MASKED | short as u8),
        medium @ 126..=0xFFFF => {
            frame.push(MASKED | 126);
            frame.extend_from_slice(&(medium as u16).to_be_bytes());
        }
        long => {
            frame.push(MASKED | 127);
            frame.extend_from_slice(&(long as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(
        payload
            .iter()
            .zip(mask.iter().cycle())
            .map(|(byte, key)| byte ^ key),
    );
    frame
}

/// Whether the server's stream goes on.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Open,
    /// A close frame, or a stream that is not WebSocket frames any more.
    Closed,
}

/// The server's frames, taken apart as their bytes arrive, however the reads cut them.
#[derive(Default)]
pub struct FrameDecoder {
    /// The start of a frame whose rest has not arrived yet.
    partial: Vec<u8>,
}

impl FrameDecoder {
    /// Takes `bytes` as they came and appends to `text` the payload of every whole data
    /// frame, ending each message with a newline if its text does not; pings and pongs
    /// are skipped (nobody here stays silent for the 30 s after which tcpchat pings).
    pub fn feed(&mut self, bytes: &[u8], text: &mut Vec<u8>) -> Decoded {
        if self.partial.is_empty() {
            let (used, decoded) = decode_frames(bytes, text);
            self.partial.extend_from_slice(&bytes[used..]);
            return decoded;
        }
        self.partial.extend_from_slice(bytes);
        let (used, decoded) = decode_frames(&self.partial, text);
        self.partial.drain(..used);
        decoded
    }
}

/// Decodes the whole frames at the start of `bytes`; returns how many bytes they took.
fn decode_frames(bytes: &[u8], text: &mut Vec<u8>) -> (usize, Decoded) {
    let mut used = 0;
    loop {
        let rest = &bytes[used..];
        let Some(frame) = parse_frame(rest) else {
            return (used, Decoded::Open);
        };
        let Ok(frame) = frame else {
            return (used, Decoded::Closed);
        };
        let payload = &rest[frame.payload_start..frame.end];
        match frame.opcode {
            OPCODE_TEXT | OPCODE_BINARY | OPCODE_CONTINUATION => {
                let start = text.len();
                text.extend_from_slice(payload);
                if let Some(mask) = frame.mask {
                    for (byte, key) in text[start..].iter_mut().zip(mask.iter().cycle()) {
                        *byte ^= key;
                    }
                }
                if frame.fin && text.last() != Some(&b'\n') {
                    text.push(b'\n');
                }
            }
            OPCODE_CLOSE => return (used + frame.end, Decoded::Closed),
            _ => {}
        }
        used += frame.end;
    }
}

/// Where one frame's parts lie, from the start of its header.
struct Frame {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload_start: usize,
    end: usize,
}

/// The frame at the start of `bytes`: `None` until it has all arrived, `Err` if its
/// length cannot be a server's frame.
fn parse_frame(bytes: &[u8]) -> Option<Result<Frame, ()>> {
    let (&first, &second) = (bytes.first()?, bytes.get(1)?);
    let (length, mut at) = match second & 0x7F {
        126 => (
            u64::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])),
            4,
        ),
        127 => {
            let field: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(field), 10)
        }
        short => (u64::from(short), 2),
    };
    if length > MAX_FRAME {
        return Some(Err(()));
    }
    let mask = if second & MASKED != 0 {
        let key: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    } else {
        None
    };
    // At most MAX_FRAME: it fits.
    let end = at + length as usize;
    (bytes.len() >= end).then_some(Ok(Frame {
        fin: first & FIN != 0,
        opcode: first & 0x0F,
        mask,
        payload_start: at,
        end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's frame: unmasked.
    fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![first];
        match payload.len() {
            short @ 0..=125 => frame.push(short as u8),
            medium => {
                frame.push(126);
                frame.extend_from_slice(&(medium as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn a_client_frame_is_masked_and_unmasks_to_its_payload() {
        let frame = text_frame(b"hello\n", [1, 2, 3, 4]);
        assert_eq!(frame[..2], [0x81, 0x80 | 6]);
        assert_eq!(frame[2..6], [1, 2, 3, 4]);
        assert_ne!(&frame[6..], b"hello\n");
        let mut text = Vec::new();
        assert_eq!(
            FrameDecoder::default().feed(&frame, &mut text),
            Decoded::Open
        );
        assert_eq!(text, b"hello\n");
        let long = text_frame(&[b'x'; 300], [9, 9, 9, 9]);
        assert_eq!(long[1], 0x80 | 126);
        assert_eq!(long[2..4], 300u16.to_be_bytes());
    }

    #[test]
    fn frames_cut_anywhere_give_their_lines_and_each_message_ends_a_line() {
        let mut stream = server_frame(0x81, b"[ann] one\n[bob] two\n");
        stream.extend(server_frame(0x89, b"ping"));
        stream.extend(server_frame(0x01, b"three, "));
        stream.extend(server_frame(0x80, b"four"));
        stream.extend(server_frame(0x81, &[b'y'; 200]));
        let mut expected = b"[ann] one\n[bob] two\nthree, four\n".to_vec();
        expected.extend_from_slice(&[b'y'; 200]);
        expected.push(b'\n');
        for cut in 0..stream.len() {
            let (mut decoder, mut text) = (FrameDecoder::default(), Vec::new());
            assert_eq!(decoder.feed(&stream[..cut], &mut text), Decoded::Open);
            assert_eq!(decoder.feed(&stream[cut..], &mut text), Decoded::Open);
            assert_eq!(text, expected, "cut at {cut}");
        }
    }

    #[test]
    fn a_close_frame_or_an_absurd_length_ends_the_stream() {
        let mut text = Vec::new();
        let close = server_frame(0x88, &NORMAL_CLOSURE);
        assert_eq!(
            FrameDecoder::default().feed(&close, &mut text),
            Decoded::Closed
        );
        let absurd = [0x81, 127, 0xFF, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            FrameDecoder::default().feed(&absurd, &mut text),
            Decoded::Closed
        );
        assert!(text.is_empty());
    }

    #[test]
    fn the_upgrade_answer_is_read_once_its_head_is_whole() {
        assert_eq!(upgrade_answer(b"HTTP/1.1 101 Switching"), None);
        let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x01x";
        assert_eq!(upgrade_answer(answer), Some(Ok(answer.len() - 3)));
        let refused = upgrade_answer(b"HTTP/1.1 403 Forbidden\r\n\r\n");
        assert_eq!(
            refused,
            Some(Err(String::from("upgrade refused: HTTP/1.1 403 Forbidden")))
        );
    }
}
