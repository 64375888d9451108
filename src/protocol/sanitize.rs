//! Making a received line safe to show on other people's terminals.

/// Makes a received line safe to print on anyone's terminal: ANSI escape sequences and
/// other control characters are removed (telnet commands were taken out of the stream
/// before it was split into lines), a tab becomes a space,
/// bidirectional overrides (which can make text read backwards) are removed, and invalid
/// UTF-8 becomes U+FFFD.
pub fn sanitize(raw: &[u8]) -> String {
    // Most lines are plain printable ASCII: nothing to remove, one copy.
    if raw.iter().all(|&byte| (0x20..0x7f).contains(&byte))
        && let Ok(text) = std::str::from_utf8(raw)
    {
        return text.to_owned();
    }
    let text = String::from_utf8_lossy(raw);
    let mut clean = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' => clean.push(' '),
            '\u{1b}' => skip_escape_sequence(&mut chars),
            // CSI as a single C1 character: skip its parameters like ESC [.
            '\u{9b}' => skip_until(&mut chars, |c| ('\u{40}'..='\u{7e}').contains(&c)),
            c if c.is_control() || is_bidi_control(c) => {}
            c => clean.push(c),
        }
    }
    clean
}

fn skip_escape_sequence(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => skip_until(chars, |c| ('\u{40}'..='\u{7e}').contains(&c)),
        // OSC, DCS, SOS, PM and APC strings end with BEL or ESC \ (ST).
        Some(']' | 'P' | 'X' | '^' | '_') => {
            while let Some(c) = chars.next() {
                if c == '\u{7}' || c == '\u{9c}' {
                    break;
                }
                if c == '\u{1b}' {
                    chars.next_if_eq(&'\\');
                    break;
                }
            }
        }
        // Two-character sequences (ESC c, ESC 7, ...): the second one is gone too.
        _ => {}
    }
}

fn skip_until(chars: &mut impl Iterator<Item = char>, is_final: impl Fn(char) -> bool) {
    for c in chars.by_ref() {
        if is_final(c) {
            break;
        }
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sanitize_removes_escapes_controls_and_telnet() {
        assert_eq!(sanitize(b"\x1b[31mred\x1b[0m"), "red");
        assert_eq!(sanitize(b"a\tb\x07c\x7f"), "a bc");
        assert_eq!(sanitize(b"\x1b]0;title\x07x"), "x");
        assert_eq!(sanitize(b"caf\xe9"), "caf\u{fffd}");
        assert_eq!(sanitize("\u{202e}abc".as_bytes()), "abc");
        assert_eq!(sanitize("\u{9b}2Jok".as_bytes()), "ok");
    }

    proptest! {
        #[test]
        fn sanitized_text_holds_no_control_characters(
            bytes in proptest::collection::vec(prop_oneof![Just(0x1b_u8), Just(0xff), any::<u8>()], 0..300),
        ) {
            let clean = sanitize(&bytes);
            prop_assert!(!clean.chars().any(|c| c.is_control() || is_bidi_control(c)));
        }
    }
}
