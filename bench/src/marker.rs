//! The marker every benchmark line carries, `~B<sender>.<seq>.<nanos>~`, and how a line
//! is written. The marker is found anywhere in a received line, so whatever a server puts
//! in front of a message (`[nick] `, `<userN> `, nothing) does not matter.

use std::io;
use std::time::Instant;

use crate::clock::nanos_since;
use crate::wire::Writer;

/// Sender id of the lines that check every client is really in the room.
pub const SYNC_SENDER: u64 = 65_535;

/// One marker found in a received line.
pub struct Marker<'a> {
    pub sender: u64,
    pub seq: u64,
    /// Send time, in nanoseconds since the run's epoch.
    pub sent_ns: u64,
    /// What follows the marker: a server may have put several lines' markers in one line.
    pub rest: &'a [u8],
}

/// Finds `~B<sender>.<seq>.<nanos>~` anywhere in `line`.
pub fn parse_marker(line: &[u8]) -> Option<Marker<'_>> {
    let start = line.windows(2).position(|w| w == b"~B")? + 2;
    let body = &line[start..];
    let end = body.iter().position(|&b| b == b'~')?;
    let text = std::str::from_utf8(&body[..end]).ok()?;
    let mut fields = text.split('.').map(|f| f.parse::<u64>().ok());
    Some(Marker {
        sender: fields.next()??,
        seq: fields.next()??,
        sent_ns: fields.next()??,
        rest: &body[end + 1..],
    })
}

/// Sends one marked line, stamped with the time since `epoch`; waits as long as it takes.
pub fn send_marker(writer: &mut Writer, epoch: &Instant, sender: u64, seq: u64) -> io::Result<()> {
    send_marker_before(writer, epoch, sender, seq, None)
}

/// Like [`send_marker`], but gives up (`TimedOut`) at `give_up` if the server has stopped
/// reading: a scenario that must end by itself cannot wait on a frozen server forever.
pub fn send_marker_before(
    writer: &mut Writer,
    epoch: &Instant,
    sender: u64,
    seq: u64,
    give_up: Option<Instant>,
) -> io::Result<()> {
    let line = format!("~B{sender}.{seq}.{}~ bench\n", nanos_since(epoch));
    writer.send(line.as_bytes(), give_up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_marker_behind_any_prefix() {
        let marker = parse_marker(b"[guest-3] ~B2.17.123456~ bench").expect("a marker");
        assert_eq!(
            (marker.sender, marker.seq, marker.sent_ns),
            (2, 17, 123_456)
        );
        assert_eq!(marker.rest, b" bench");
    }

    #[test]
    fn finds_every_marker_of_a_joined_line() {
        let first = parse_marker(b"~B1.1.10~ a ~B2.5.20~ b").expect("a first marker");
        let second = parse_marker(first.rest).expect("a second marker");
        assert_eq!((second.sender, second.seq, second.sent_ns), (2, 5, 20));
        assert!(parse_marker(second.rest).is_none());
    }

    #[test]
    fn ignores_lines_without_a_whole_marker() {
        assert!(parse_marker(b"* guest-7 joined").is_none());
        assert!(parse_marker(b"~B1.2~ too few fields").is_none());
        assert!(parse_marker(b"~B1.2.x~ not a number").is_none());
        assert!(parse_marker(b"~B1.2.3 unterminated").is_none());
    }
}
