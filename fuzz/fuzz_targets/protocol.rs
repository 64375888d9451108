//! Feeds arbitrary bytes, split at an arbitrary point, through the line decoder, the
//! sanitiser, the command parser and the byte-exact splitter, checking their promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpchat::protocol::{Decoded, LineDecoder, LineSplitter, parse_line, sanitize};

fuzz_target!(|data: &[u8]| {
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
});
