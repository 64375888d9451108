//! Entry points for the fuzz targets in fuzz/ (built with `--cfg fuzzing` only): each
//! parser of bytes a peer controls, with the properties it promises checked inside.

/// A client's bytes, cut at an arbitrary point, through the line decoder, the sanitiser,
/// the command parser and the byte-exact splitter: lines within the cap, no control
/// characters after sanitising, and the splitter gives back exactly what it was given.
pub fn protocol(data: &[u8]) {
    use crate::protocol::{Decoded, LineDecoder, LineSplitter, parse_line, sanitize};

    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let max_line = usize::from(first % 64) + 1;
    let cut = if rest.is_empty() {
        0
    } else {
        usize::from(first) % rest.len()
    };

    let mut decoder = LineDecoder::new(max_line);
    let mut check = |item: Decoded<'_>| {
        if let Decoded::Line(line) = item {
            assert!(line.len() <= max_line);
            let clean = sanitize(line);
            assert!(!clean.chars().any(char::is_control));
            let _ = parse_line(clean);
        }
    };
    decoder.feed(&rest[..cut], &mut check);
    assert!(decoder.buffered() <= max_line + 1);
    decoder.feed(&rest[cut..], &mut check);
    assert!(decoder.buffered() <= max_line + 1);
    decoder.finish(&mut check);

    let mut splitter = LineSplitter::new(max_line);
    let mut copy = Vec::new();
    splitter.feed(&rest[..cut], |piece| copy.extend_from_slice(piece.bytes));
    splitter.feed(&rest[cut..], |piece| copy.extend_from_slice(piece.bytes));
    splitter.finish(|piece| copy.extend_from_slice(piece.bytes));
    assert_eq!(copy, rest);
}

/// One client's byte stream through the telnet parser.
pub fn telnet(data: &[u8]) {
    crate::transport::telnet::fuzz(data);
}

/// A request head on the web and metrics ports.
pub fn http_head(data: &[u8]) {
    crate::web::fuzz_head(data);
}

/// A browser's WebSocket frames, and their messages split into lines.
pub fn websocket(data: &[u8]) {
    crate::transport::websocket::fuzz_frames(data);
}

/// A cluster stream entry's fields.
pub fn wire(data: &[u8]) {
    crate::cluster::wire::fuzz_fields(data);
}

/// Redis's answer to the cluster's XREAD.
pub fn redis_reply(data: &[u8]) {
    crate::cluster::fuzz_reply(data);
}
