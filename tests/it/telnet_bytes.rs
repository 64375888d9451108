//! Only telnet is taken as telnet: a plain client's 0xFF bytes (Latin-1 `ÿ`, binary data)
//! reach others as text, and no subnegotiation swallows what a client sends after it.

use tcpchat::Config;

use crate::support::{LineClient, start_chat};

const IAC: u8 = 255;
const SB: u8 = 250;
const DO: u8 = 253;
const WILL: u8 = 251;
const ECHO: u8 = 1;

/// A chat without flood control (the junk below is thousands of reads), with two clients:
/// the one under test and a listener who reads lines.
fn two_clients() -> (tcpchat::Server, LineClient, String, LineClient) {
    let server = start_chat(Config {
        rate: 0,
        ..Config::localhost()
    });
    let (sender, nick) = LineClient::join(server.local_addr());
    let (mut listener, _) = LineClient::join(server.local_addr());
    listener.expect_nothing_pending();
    (server, sender, nick, listener)
}

/// 2 MB of pseudo-random bytes (xorshift, always the same) without 0xFF or a byte that ends
/// or edits a line (LF, CR, Backspace, DEL, Ctrl-U, Ctrl-W, ESC): once they are data, they
/// are one line over `--max-line`, dropped, and nothing in them ends it early.
fn junk() -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    let mut bytes = Vec::with_capacity(2_000_000);
    while bytes.len() < 2_000_000 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        bytes.extend(state.to_le_bytes().into_iter().filter(|byte| {
            !matches!(
                byte,
                b'\n' | b'\r' | 0x08 | 0x7f | 0x15 | 0x17 | 0x1b | 0xff
            )
        }));
    }
    bytes
}

#[test]
fn a_plain_client_s_0xff_is_text_and_the_newline_after_it_ends_the_line() {
    let (_server, mut sender, nick, mut listener) = two_clients();
    sender.send_bytes(b"caf\xff\nsecond line\n");
    assert_eq!(listener.next_line(), Some(format!("[{nick}] caf\u{fffd}")));
    assert_eq!(listener.next_line(), Some(format!("[{nick}] second line")));
}

#[test]
fn a_plain_client_s_iac_sb_swallows_nothing_after_it() {
    let (_server, mut sender, nick, mut listener) = two_clients();
    sender.send_bytes(&[IAC, SB]);
    sender.send_bytes(&junk());
    sender.send_bytes(b"\nhello\n");
    assert_eq!(listener.expect_line("hello"), format!("[{nick}] hello"));
}

#[test]
fn a_subnegotiation_from_a_telnet_client_swallows_no_more_than_its_cap() {
    let (_server, mut sender, nick, mut listener) = two_clients();
    sender.expect_line("joined");
    sender.send_bytes(&[IAC, DO, ECHO]);
    // The server's answer: the client is a telnet client from now on.
    assert_eq!(sender.expect_bytes(3), [IAC, WILL, ECHO]);
    sender.send_bytes(&[IAC, SB]);
    sender.send_bytes(&junk());
    sender.send_bytes(b"\nhello\n");
    assert_eq!(listener.expect_line("hello"), format!("[{nick}] hello"));
}
