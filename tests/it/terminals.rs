//! Every terminal's bytes through the chat: line ends, editing keys, telnet negotiation and
//! character mode, at the byte level (one byte per packet where a terminal sends so).

use tcpchat::Config;

use crate::support::{LineClient, start_chat};

const IAC: u8 = 255;
const WILL: u8 = 251;
const WONT: u8 = 252;
const DO: u8 = 253;
const DONT: u8 = 254;
const ECHO: u8 = 1;
const SGA: u8 = 3;
const NAWS: u8 = 31;

/// Sends each byte in its own packet, as a terminal in character mode does.
fn type_slowly(client: &mut LineClient, bytes: &[u8]) {
    client.stream().set_nodelay(true).expect("nodelay");
    for byte in bytes {
        client.send_bytes(&[*byte]);
    }
}

/// A raw client's received bytes, read on demand and consumed in order.
#[derive(Default)]
struct Received {
    bytes: Vec<u8>,
    /// Where the unconsumed bytes start.
    consumed: usize,
}

impl Received {
    /// Reads until `expected` has arrived; returns the bytes up to and including it and
    /// keeps the rest for the next call. Fails with what arrived instead.
    fn until(&mut self, client: &mut LineClient, expected: &[u8]) -> Vec<u8> {
        loop {
            let unconsumed = &self.bytes[self.consumed..];
            if let Some(at) = unconsumed
                .windows(expected.len())
                .position(|window| window == expected)
            {
                let end = self.consumed + at + expected.len();
                let taken = self.bytes[self.consumed..end].to_vec();
                self.consumed = end;
                return taken;
            }
            let mut buffer = [0u8; 4096];
            let count = client.read_some(&mut buffer);
            assert!(
                count > 0,
                "closed before {:?}; saw {:?}",
                String::from_utf8_lossy(expected),
                String::from_utf8_lossy(unconsumed)
            );
            self.bytes.extend_from_slice(&buffer[..count]);
        }
    }
}

/// A server with two plain clients: the one under test and a listener who reads lines.
fn two_clients() -> (tcpchat::Server, LineClient, String, LineClient) {
    let server = start_chat(Config::localhost());
    let (typist, nick) = LineClient::join(server.local_addr());
    let (mut listener, _) = LineClient::join(server.local_addr());
    listener.expect_nothing_pending();
    (server, typist, nick, listener)
}

#[test]
fn a_bare_cr_and_cr_nul_end_a_line_at_once_and_only_once() {
    let (_server, mut typist, nick, mut listener) = two_clients();
    // A raw terminal's bare CR: forwarded without waiting for a LF that never comes.
    typist.send_bytes(b"raw terminal\r");
    assert_eq!(
        listener.expect_line("raw"),
        format!("[{nick}] raw terminal")
    );
    // Character-mode telnet's CR NUL, the NUL in the next packet.
    type_slowly(&mut typist, b"char mode\r\0");
    assert_eq!(listener.expect_line("char"), format!("[{nick}] char mode"));
    // The LF of a CR LF split across packets is not a second line end: the text after it
    // starts a line of its own and nothing is glued or lost.
    typist.send_bytes(b"split\r");
    typist.send_bytes(b"\nnext\n");
    assert_eq!(listener.next_line(), Some(format!("[{nick}] split")));
    assert_eq!(listener.next_line(), Some(format!("[{nick}] next")));
}

#[test]
fn editing_keys_are_applied_before_a_line_is_used() {
    let (_server, mut typist, nick, mut listener) = two_clients();
    // Windows telnet: one byte per packet, Backspace as BS.
    type_slowly(&mut typist, b"hellp\x08o\r\n");
    assert_eq!(listener.next_line(), Some(format!("[{nick}] hello")));
    // DEL erases a whole UTF-8 character, never half of one.
    type_slowly(&mut typist, "café\x7f\x7fe\r\0".as_bytes());
    assert_eq!(listener.next_line(), Some(format!("[{nick}] cae")));
    // Ctrl-U erases the line so far, Ctrl-W the word before the cursor.
    type_slowly(&mut typist, b"oops\x15one two \x17three\n");
    assert_eq!(listener.next_line(), Some(format!("[{nick}] one three")));
    // Cursor keys are dropped as they arrive, and editing applies to commands too.
    type_slowly(&mut typist, b"/nicx\x1b[D\x1b[A\x08k carol\r");
    assert_eq!(listener.next_line(), Some(format!("* {nick} is now carol")));
}

#[test]
fn clients_that_never_negotiate_never_receive_telnet_bytes() {
    let (_server, mut typist, _, mut listener) = two_clients();
    typist.send("plain line");
    listener.expect_line("plain line");
    // A negotiating client in the same room does not change what the others get.
    let (mut telnet, _) = LineClient::join(_server.local_addr());
    let mut telnet_screen = Received::default();
    telnet.send_bytes(&[IAC, DO, ECHO]);
    telnet_screen.until(&mut telnet, &[IAC, WILL, ECHO]);
    telnet.send_bytes(b"from telnet\r\0");
    let mut listener_screen = Received::default();
    let mut received = listener_screen.until(&mut listener, b"] from telnet\n");
    typist.send("done");
    received.extend(listener_screen.until(&mut listener, b"] done\n"));
    assert!(!received.contains(&IAC), "{received:?}");
    assert!(!received.contains(&b'\r'), "{received:?}");
    assert!(
        String::from_utf8_lossy(&received).contains("] from telnet\n"),
        "{received:?}"
    );
}

#[test]
fn telnet_requests_are_answered_once_even_split_across_packets() {
    let server = start_chat(Config::localhost());
    let (mut telnet, nick) = LineClient::join(server.local_addr());
    let mut telnet_screen = Received::default();
    // PuTTY-like opening: WILL NAWS (unsupported, refused) and DO ECHO (agreed), split.
    type_slowly(&mut telnet, &[IAC, WILL, NAWS, IAC, DO, ECHO]);
    let answers = telnet_screen.until(&mut telnet, &[IAC, WILL, SGA]);
    assert_eq!(
        answers,
        [IAC, DONT, NAWS, IAC, WILL, ECHO, IAC, WILL, SGA],
        "a refusal, the agreement and the one offer not yet answered"
    );
    // Answers to our offer and a repeated request get no answer: the next bytes are the
    // reply to /who, with a CR LF now that the client speaks telnet.
    telnet.send_bytes(&[IAC, DO, SGA, IAC, DO, ECHO, IAC, WONT, NAWS]);
    telnet.send_bytes(b"/who\r\0");
    let reply = telnet_screen.until(&mut telnet, format!("): {nick}\r\n").as_bytes());
    assert!(!reply.contains(&IAC), "answered an answer: {reply:?}");
}

#[test]
fn character_mode_echoes_and_keeps_the_input_line_below_incoming_chat() {
    let (_server, mut typist, nick, mut listener) = two_clients();
    let mut typist_screen = Received::default();
    typist.send_bytes(&[IAC, DO, ECHO, IAC, DO, SGA]);
    typist_screen.until(&mut typist, &[IAC, WILL, SGA]);
    type_slowly(&mut typist, b"hellp");
    typist_screen.until(&mut typist, b"p");
    // The echo: typed characters, and Backspace rubbed out on screen.
    type_slowly(&mut typist, b"\x7f");
    typist_screen.until(&mut typist, b"\x08 \x08");
    type_slowly(&mut typist, b"o");
    typist_screen.until(&mut typist, b"o");
    listener.send("ping");
    // The input line is cleared, the line printed with CR LF, and the input drawn again.
    typist_screen.until(&mut typist, b"\r\x1b[K[");
    typist_screen.until(&mut typist, b"] ping\r\nhello");
    type_slowly(&mut typist, b"!\r\0");
    typist_screen.until(&mut typist, b"!\r\n");
    assert_eq!(listener.next_line(), Some(format!("[{nick}] hello!")));
    // With nothing typed, incoming lines need no redraw.
    listener.send("pong");
    let screen = typist_screen.until(&mut typist, b"] pong\r\n");
    assert!(!screen.contains(&0x1b), "{screen:?}");
}

#[test]
fn a_telnet_client_that_refuses_server_echo_keeps_its_own_line_editing() {
    let (_server, mut typist, nick, mut listener) = two_clients();
    let mut typist_screen = Received::default();
    typist.send_bytes(&[IAC, WILL, NAWS]);
    typist_screen.until(&mut typist, &[IAC, WILL, SGA]);
    typist.send_bytes(&[IAC, DONT, ECHO, IAC, DONT, SGA]);
    typist.send_bytes(b"line mode\r\n");
    assert_eq!(listener.next_line(), Some(format!("[{nick}] line mode")));
    listener.send("reply");
    // CR LF as telnet's newline, and no echo or redraw.
    let screen = typist_screen.until(&mut typist, b"] reply\r\n");
    assert!(!screen.contains(&0x1b), "{screen:?}");
    assert!(!String::from_utf8_lossy(&screen).contains("line mode"));
}

#[test]
fn a_line_ended_with_the_request_to_leave_character_mode_is_still_echoed() {
    let (_server, mut typist, nick, mut listener) = two_clients();
    let mut typist_screen = Received::default();
    typist.send_bytes(&[IAC, DO, ECHO, IAC, DO, SGA]);
    typist_screen.until(&mut typist, &[IAC, WILL, SGA]);
    type_slowly(&mut typist, b"bye");
    typist_screen.until(&mut typist, b"bye");
    // Enter, then `mode line` at the telnet prompt, in one packet.
    let mut bytes = b"\r\0".to_vec();
    bytes.extend_from_slice(&[IAC, DONT, ECHO, IAC, DONT, SGA]);
    typist.send_bytes(&bytes);
    assert_eq!(listener.next_line(), Some(format!("[{nick}] bye")));
    // The line ends on the typist's screen before anything else is printed on it.
    typist_screen.until(&mut typist, b"\r\n");
    listener.send("next");
    let screen = typist_screen.until(&mut typist, b"] next\r\n");
    assert!(!screen.starts_with(b"bye"), "{screen:?}");
}
