//! Telnet commands in a client's byte stream (RFC 854) and option negotiation by the Q
//! method of RFC 1143: agree to the options the server supports, refuse the rest, never
//! answer an answer, and never loop.
//!
//! Longer than 500 lines with its tests: about 370 lines of code, the rest the Q method's
//! cases and hostile byte streams, each tested.

/// Interpret As Command: starts every telnet command.
pub(crate) const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
/// Subnegotiation begins (runs to IAC SE).
const SB: u8 = 250;
/// Erase Line and Erase Character: the editing keys of a telnet that sends them as commands.
const EL: u8 = 248;
const EC: u8 = 247;
/// Subnegotiation ends; also the lowest command byte: IAC followed by a byte below it is no
/// command.
const SE: u8 = 240;

/// The most content a subnegotiation may have before it is abandoned. The server supports
/// no option that subnegotiates, and a real client's (a terminal type, a window size) fits
/// many times over; without a cap, a stray IAC SB would swallow all a client sends after it.
const MAX_SUBNEGOTIATION: u16 = 256;

/// The options this server has anything to say about.
const ECHO: u8 = 1;
const SUPPRESS_GO_AHEAD: u8 = 3;

/// What the line decoder should see for EC and EL: the keys that do the same.
const DELETE: u8 = 0x7f;
const CTRL_U: u8 = 0x15;

/// One client's telnet state: where the parser is in a command, and the options agreed.
#[derive(Debug, Default)]
pub(crate) struct Negotiation {
    parser: Parser,
    /// Commands taken out of the stream since [`Negotiation::take_commands`], for flood
    /// control: each costs the server work, like a line.
    commands: u32,
    /// Allocated when the client first negotiates: plain clients never pay for it.
    options: Option<Box<Options>>,
    answers: Vec<u8>,
}

/// Where the parser is; commands may be split across reads at any byte.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Parser {
    #[default]
    Data,
    /// After IAC.
    Command,
    /// After IAC and WILL, WONT, DO or DONT: the option byte is next.
    Option(u8),
    /// Inside IAC SB ... IAC SE, whose content is skipped; `content` bytes so far.
    Subnegotiation { content: u16 },
    /// After IAC inside a subnegotiation.
    SubnegotiationCommand { content: u16 },
}

impl Negotiation {
    /// The client's data with telnet commands taken out (`IAC IAC` is a data byte 255, EC
    /// and EL become the editing keys Backspace and Ctrl-U); answers wait in
    /// [`Negotiation::take_answers`]. What is not a telnet command stays data: IAC before
    /// a byte that is no command, and IAC SB from a client that never negotiated (both a
    /// plain client's Latin-1 or binary bytes). Without any IAC in `input`, no copy is made.
    pub(crate) fn data<'a>(&mut self, input: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
        if self.parser == Parser::Data && !input.contains(&IAC) {
            return input;
        }
        scratch.clear();
        for &byte in input {
            self.parser = self.step(self.parser, byte, scratch);
        }
        scratch
    }

    /// Telnet commands taken out of the stream since the last call (an option request, a
    /// two-byte command, a whole subnegotiation: one each; `IAC IAC` is data).
    pub(crate) fn take_commands(&mut self) -> u32 {
        std::mem::take(&mut self.commands)
    }

    /// Whether the client has negotiated: it is a telnet client, whose lines end in CR LF.
    pub(crate) fn is_telnet(&self) -> bool {
        self.options.is_some()
    }

    /// Whether the client agreed that the server echoes what it types (character mode).
    pub(crate) fn server_echoes(&self) -> bool {
        self.options
            .as_ref()
            .is_some_and(|options| options.ours[usize::from(ECHO)].state == State::Yes)
    }

    /// Bytes to send the client, in order; empty when nothing is owed.
    pub(crate) fn take_answers(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.answers)
    }

    /// Where the parser goes from `state` on `byte`; data bytes are pushed to `data`.
    fn step(&mut self, state: Parser, byte: u8, data: &mut Vec<u8>) -> Parser {
        match (state, byte) {
            (Parser::Data, IAC) => Parser::Command,
            (Parser::Data, _) => {
                data.push(byte);
                Parser::Data
            }
            (Parser::Command, IAC) => {
                data.push(IAC);
                Parser::Data
            }
            // No command: a plain client's 0xFF, and the byte after it (a LF still ends the
            // line). The sanitiser turns the lone 0xFF into U+FFFD.
            (Parser::Command, 0..SE) => {
                data.extend_from_slice(&[IAC, byte]);
                Parser::Data
            }
            // A client that never negotiated has no option to subnegotiate: this is its
            // Latin-1 "ÿú", which must not start a state that waits for IAC SE.
            (Parser::Command, SB) if self.options.is_none() => {
                data.extend_from_slice(&[IAC, SB]);
                Parser::Data
            }
            (Parser::Command, SB) => Parser::Subnegotiation { content: 0 },
            (Parser::Command, WILL | WONT | DO | DONT) => Parser::Option(byte),
            (Parser::Command, EC) => {
                self.count_command();
                data.push(DELETE);
                Parser::Data
            }
            (Parser::Command, EL) => {
                self.count_command();
                data.push(CTRL_U);
                Parser::Data
            }
            // NOP, GA, AYT, BRK, IP, AO, DM and a stray SE: nothing to do.
            (Parser::Command, _) => {
                self.count_command();
                Parser::Data
            }
            (Parser::Option(verb), option) => {
                self.count_command();
                self.receive(verb, option);
                Parser::Data
            }
            (Parser::Subnegotiation { content }, IAC) => Parser::SubnegotiationCommand { content },
            (Parser::SubnegotiationCommand { .. }, SE) => {
                self.count_command();
                Parser::Data
            }
            // Content, within the cap. After an IAC: IAC IAC is a 255 in the content, and
            // anything else is an error a robust reader skips.
            (Parser::Subnegotiation { content } | Parser::SubnegotiationCommand { content }, _)
                if content < MAX_SUBNEGOTIATION =>
            {
                Parser::Subnegotiation {
                    content: content + 1,
                }
            }
            (Parser::Subnegotiation { .. }, _) => {
                self.abandon_subnegotiation();
                self.step(Parser::Data, byte, data)
            }
            // The IAC read inside the abandoned subnegotiation starts a command outside it.
            (Parser::SubnegotiationCommand { .. }, _) => {
                self.abandon_subnegotiation();
                self.step(Parser::Command, byte, data)
            }
        }
    }

    fn count_command(&mut self) {
        self.commands = self.commands.saturating_add(1);
    }

    /// Gives up a subnegotiation past [`MAX_SUBNEGOTIATION`]: it counts as one command,
    /// and what follows is read as if it had ended.
    fn abandon_subnegotiation(&mut self) {
        self.count_command();
        // Only a client that negotiated can be inside a subnegotiation.
        if let Some(options) = self.options.as_mut()
            && !options.abandoned_subnegotiation
        {
            options.abandoned_subnegotiation = true;
            log::info!("telnet subnegotiation longer than {MAX_SUBNEGOTIATION} bytes abandoned");
        }
    }

    /// Bytes that may still come out as data: an IAC whose next byte decides.
    #[cfg(any(test, fuzzing))]
    fn held(&self) -> usize {
        match self.parser {
            Parser::Command => 1,
            Parser::SubnegotiationCommand { content } if content == MAX_SUBNEGOTIATION => 1,
            _ => 0,
        }
    }

    fn receive(&mut self, verb: u8, option: u8) {
        let first_time = self.options.is_none();
        let options = self.options.get_or_insert_with(Box::default);
        let index = usize::from(option);
        // WILL and WONT are about the client's side of an option, DO and DONT about ours.
        let (side, supported, positive, negative) = match verb {
            WILL | WONT => (
                &mut options.theirs[index],
                option == SUPPRESS_GO_AHEAD,
                DO,
                DONT,
            ),
            _ => (
                &mut options.ours[index],
                matches!(option, ECHO | SUPPRESS_GO_AHEAD),
                WILL,
                WONT,
            ),
        };
        let reply = match verb {
            WILL | DO => side.receive_enable(supported),
            _ => side.receive_disable(),
        };
        match reply {
            Some(Reply::Agree) => self.answers.extend_from_slice(&[IAC, positive, option]),
            Some(Reply::Refuse) => self.answers.extend_from_slice(&[IAC, negative, option]),
            None => {}
        }
        if first_time {
            // A client that negotiates is offered character mode: the server echoes and
            // needs no go-ahead. One that refuses keeps its own line editing.
            for offered in [ECHO, SUPPRESS_GO_AHEAD] {
                if options.ours[usize::from(offered)].request_enable() {
                    self.answers.extend_from_slice(&[IAC, WILL, offered]);
                }
            }
        }
    }
}

/// Both sides of every option.
#[derive(Debug)]
struct Options {
    ours: [Side; 256],
    theirs: [Side; 256],
    /// A subnegotiation was abandoned and logged: the log says so once per connection.
    /// Kept here because only a client that negotiated can subnegotiate.
    abandoned_subnegotiation: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ours: [Side::default(); 256],
            theirs: [Side::default(); 256],
            abandoned_subnegotiation: false,
        }
    }
}

/// One side of one option (RFC 1143: `us`/`usq` or `him`/`himq`).
#[derive(Debug, Default, Clone, Copy)]
struct Side {
    state: State,
    /// The opposite of the pending request was asked for meanwhile (the queue bit).
    opposite_queued: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    No,
    Yes,
    WantNo,
    WantYes,
}

/// The answer owed to the client: the positive verb (DO, WILL) or the negative one.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Agree,
    Refuse,
}

impl Side {
    /// The client asks for the option, or agrees to our request (WILL or DO).
    fn receive_enable(&mut self, supported: bool) -> Option<Reply> {
        let (state, queued, reply) = match (self.state, self.opposite_queued) {
            (State::No, _) if supported => (State::Yes, false, Some(Reply::Agree)),
            (State::No, _) => (State::No, false, Some(Reply::Refuse)),
            (State::Yes, queued) => (State::Yes, queued, None),
            // Our DONT was answered by WILL: an error in the peer, taken as its answer.
            (State::WantNo, false) => (State::No, false, None),
            (State::WantNo, true) => (State::Yes, false, None),
            (State::WantYes, false) => (State::Yes, false, None),
            (State::WantYes, true) => (State::WantNo, false, Some(Reply::Refuse)),
        };
        self.state = state;
        self.opposite_queued = queued;
        reply
    }

    /// The client refuses the option, or turns it off (WONT or DONT).
    fn receive_disable(&mut self) -> Option<Reply> {
        let (state, reply) = match (self.state, self.opposite_queued) {
            (State::No, _) => (State::No, None),
            (State::Yes, _) => (State::No, Some(Reply::Refuse)),
            (State::WantNo, false) => (State::No, None),
            (State::WantNo, true) => (State::WantYes, Some(Reply::Agree)),
            (State::WantYes, _) => (State::No, None),
        };
        self.state = state;
        self.opposite_queued = false;
        reply
    }

    /// We ask to enable the option; returns whether to send the request now.
    fn request_enable(&mut self) -> bool {
        match (self.state, self.opposite_queued) {
            (State::No, _) => {
                self.state = State::WantYes;
                true
            }
            (State::WantNo, _) => {
                self.opposite_queued = true;
                false
            }
            (State::WantYes, _) => {
                self.opposite_queued = false;
                false
            }
            (State::Yes, _) => false,
        }
    }
}

/// Fuzzing (fuzz/): any bytes, cut at any two points, as one client's stream. The parser
/// never puts out more than came in (nor holds more than one byte back), and whatever
/// state the bytes left it in, a line sent after more than [`MAX_SUBNEGOTIATION`] bytes of
/// text comes out whole.
#[cfg(fuzzing)]
pub(crate) fn fuzz(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = if rest.is_empty() {
        0
    } else {
        usize::from(cut) % rest.len()
    };
    let mut negotiation = Negotiation::default();
    let mut scratch = Vec::new();
    let mut out = 0;
    for piece in [&rest[..cut], &rest[cut..]] {
        out += negotiation.data(piece, &mut scratch).len();
        assert!(out + negotiation.held() <= rest.len() + 1);
        let _ = negotiation.take_answers();
    }
    let mut tail = vec![b'a'; usize::from(MAX_SUBNEGOTIATION) + 2];
    tail.extend_from_slice(b"\nend\n");
    let data = negotiation.data(&tail, &mut scratch);
    assert!(
        data.ends_with(b"\nend\n"),
        "the line after the text was swallowed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one read at a time; returns the data and the answers.
    fn run(negotiation: &mut Negotiation, chunks: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let mut data = Vec::new();
        let mut answers = Vec::new();
        for chunk in chunks {
            let mut scratch = Vec::new();
            data.extend_from_slice(negotiation.data(chunk, &mut scratch));
            answers.extend(negotiation.take_answers());
        }
        (data, answers)
    }

    #[test]
    fn a_client_without_commands_gets_no_answer_and_its_bytes_unchanged() {
        let mut negotiation = Negotiation::default();
        let (data, answers) = run(&mut negotiation, &[b"hello\r\n", "héllo\n".as_bytes()]);
        assert_eq!(data, "hello\r\nhéllo\n".as_bytes());
        assert!(answers.is_empty());
        assert!(!negotiation.is_telnet());
    }

    #[test]
    fn character_mode_is_agreed_and_offers_are_made_once() {
        let mut negotiation = Negotiation::default();
        // Linux telnet's `mode character`: DO ECHO, then DO SGA.
        let (_, answers) = run(&mut negotiation, &[&[IAC, DO, ECHO]]);
        assert_eq!(
            answers,
            [IAC, WILL, ECHO, IAC, WILL, SUPPRESS_GO_AHEAD],
            "agreed to ECHO, offered SGA, and did not offer ECHO twice"
        );
        // Its DO SGA answers our offer: nothing more to say.
        let (_, answers) = run(&mut negotiation, &[&[IAC, DO, SUPPRESS_GO_AHEAD]]);
        assert!(answers.is_empty());
        assert!(negotiation.server_echoes());
        // Asking again is no change: never answer an answer.
        let (_, answers) = run(&mut negotiation, &[&[IAC, DO, ECHO]]);
        assert!(answers.is_empty());
        // Back to line mode: acknowledged once.
        let (_, answers) = run(&mut negotiation, &[&[IAC, DONT, ECHO], &[IAC, DONT, ECHO]]);
        assert_eq!(answers, [IAC, WONT, ECHO]);
        assert!(!negotiation.server_echoes());
    }

    #[test]
    fn unsupported_options_are_refused_and_refusals_not_answered() {
        let mut negotiation = Negotiation::default();
        const NAWS: u8 = 31;
        const BINARY: u8 = 0;
        let (_, answers) = run(&mut negotiation, &[&[IAC, WILL, NAWS, IAC, DO, BINARY]]);
        assert_eq!(
            answers,
            [
                IAC,
                DONT,
                NAWS,
                IAC,
                WILL,
                ECHO,
                IAC,
                WILL,
                SUPPRESS_GO_AHEAD,
                IAC,
                WONT,
                BINARY
            ]
        );
        // The client refuses our offers: no answer to an answer.
        let (_, answers) = run(
            &mut negotiation,
            &[&[
                IAC,
                DONT,
                ECHO,
                IAC,
                DONT,
                SUPPRESS_GO_AHEAD,
                IAC,
                WONT,
                NAWS,
            ]],
        );
        assert!(answers.is_empty());
        assert!(!negotiation.server_echoes());
        assert!(negotiation.is_telnet());
    }

    #[test]
    fn commands_split_across_reads_and_subnegotiations_are_taken_out() {
        let mut negotiation = Negotiation::default();
        // After a negotiation, a NAWS subnegotiation whose height is 10 (a LF byte), one
        // byte per read, around text; IAC IAC is a 255 in the data.
        let stream = [
            b'h', IAC, WILL, 24, IAC, SB, 31, 0, 80, 0, 10, IAC, SE, b'i', IAC, IAC, b'!',
        ];
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let (data, answers) = run(&mut negotiation, &chunks);
        assert_eq!(data, [b'h', b'i', IAC, b'!']);
        assert_eq!(
            answers,
            [IAC, DONT, 24, IAC, WILL, ECHO, IAC, WILL, SUPPRESS_GO_AHEAD]
        );
        let (data, _) = run(&mut negotiation, &[&[b'a', IAC, EC, b'b', IAC, EL]]);
        assert_eq!(data, [b'a', DELETE, b'b', CTRL_U]);
    }

    #[test]
    fn a_lone_0xff_before_a_newline_is_data_and_the_newline_ends_the_line() {
        let mut negotiation = Negotiation::default();
        let (data, answers) = run(&mut negotiation, &[b"caf\xff\nsecond line\n"]);
        assert_eq!(data, b"caf\xff\nsecond line\n");
        // Split after the 0xFF, and before every byte that is no command.
        let (data, _) = run(&mut negotiation, &[b"caf\xff", b"\n"]);
        assert_eq!(data, b"caf\xff\n");
        for byte in 0..SE {
            let (data, _) = run(&mut negotiation, &[&[IAC], &[byte]]);
            assert_eq!(data, [IAC, byte]);
        }
        assert!(answers.is_empty());
        assert!(!negotiation.is_telnet());
        assert_eq!(negotiation.take_commands(), 0);
    }

    #[test]
    fn a_plain_client_s_iac_sb_is_data() {
        let mut negotiation = Negotiation::default();
        // Latin-1 "ÿú", then a line that a subnegotiation would have swallowed.
        let (data, answers) = run(&mut negotiation, &[&[IAC, SB], b"\nhello\n"]);
        assert_eq!(data, [&[IAC, SB][..], b"\nhello\n"].concat());
        assert!(answers.is_empty());
        assert!(!negotiation.is_telnet());
        assert_eq!(negotiation.take_commands(), 0);
        // Once the client negotiates, IAC SB is a subnegotiation.
        let (data, _) = run(
            &mut negotiation,
            &[&[IAC, DO, ECHO, IAC, SB, 24, 0, b'x', IAC, SE], b"after"],
        );
        assert_eq!(data, b"after");
    }

    #[test]
    fn a_subnegotiation_longer_than_the_cap_is_abandoned() {
        let cap = usize::from(MAX_SUBNEGOTIATION);
        let negotiated = || {
            let mut negotiation = Negotiation::default();
            run(&mut negotiation, &[&[IAC, DO, ECHO]]);
            negotiation.take_commands();
            negotiation
        };
        // Exactly the cap, ended by IAC SE: a whole subnegotiation.
        let mut negotiation = negotiated();
        let content = vec![b'a'; cap];
        let (data, _) = run(&mut negotiation, &[&[IAC, SB], &content, &[IAC, SE], b"ok"]);
        assert_eq!(data, b"ok");
        assert_eq!(negotiation.take_commands(), 1);
        // One byte more: the parser is back in the data at that byte, and a line after it
        // arrives.
        let mut negotiation = negotiated();
        let content = vec![b'a'; cap + 44];
        let (data, _) = run(&mut negotiation, &[&[IAC, SB], &content, b"\nhello\n"]);
        assert_eq!(data, [&[b'a'; 44][..], b"\nhello\n"].concat());
        assert_eq!(negotiation.take_commands(), 1);
        // An IAC met at the cap starts a command outside the abandoned subnegotiation.
        let mut negotiation = negotiated();
        let content = vec![b'a'; cap];
        let (data, _) = run(
            &mut negotiation,
            &[&[IAC, SB], &content, &[IAC, b'b', IAC, IAC]],
        );
        assert_eq!(data, [IAC, b'b', IAC]);
        // IAC IAC inside counts as one byte of content.
        let mut negotiation = negotiated();
        let content = [IAC, IAC].repeat(cap);
        let (data, _) = run(&mut negotiation, &[&[IAC, SB], &content, &[IAC, SE]]);
        assert!(data.is_empty(), "{data:?}");
    }

    #[test]
    fn commands_are_counted() {
        const NOP: u8 = 241;
        let mut negotiation = Negotiation::default();
        let stream = [
            IAC, DO, ECHO, IAC, NOP, b'a', IAC, IAC, IAC, SB, 31, 0, 80, 0, 24, IAC, SE, IAC, EC,
            IAC, b'x',
        ];
        // An option request, NOP, a subnegotiation and EC; IAC IAC and IAC x are data.
        let (data, _) = run(&mut negotiation, &[&stream]);
        assert_eq!(data, [b'a', IAC, DELETE, IAC, b'x']);
        assert_eq!(negotiation.take_commands(), 4);
        assert_eq!(negotiation.take_commands(), 0, "the count starts again");
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        run(&mut negotiation, &chunks);
        assert_eq!(negotiation.take_commands(), 4, "split or not");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Streams with many telnet bytes: IAC and the commands around it, LF, and any byte.
        /// (Mapped from plain bytes in one step: a strategy per byte is slow to generate.)
        fn telnet_bytes() -> impl Strategy<Value = Vec<u8>> {
            const SPECIAL: [u8; 8] = [IAC, IAC, SB, SE, WILL, DO, ECHO, b'\n'];
            proptest::collection::vec(any::<(u8, u8)>(), 0..800).prop_map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(choice, byte)| {
                        SPECIAL
                            .get(usize::from(choice % 16))
                            .copied()
                            .unwrap_or(byte)
                    })
                    .collect()
            })
        }

        /// Feeds `bytes` cut at `cuts`; returns the data and the commands counted. Checks
        /// after each read that no more came out, or may still come out, than went in.
        fn feed_in_pieces(
            negotiation: &mut Negotiation,
            bytes: &[u8],
            cuts: &[usize],
        ) -> (Vec<u8>, u32) {
            let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut data = Vec::new();
            let mut commands = 0;
            let mut start = 0;
            for end in cuts.into_iter().chain([bytes.len()]) {
                let mut scratch = Vec::new();
                data.extend_from_slice(negotiation.data(&bytes[start..end], &mut scratch));
                commands += negotiation.take_commands();
                assert!(
                    data.len() + negotiation.held() <= end,
                    "{} data bytes and {} held out of {end}",
                    data.len(),
                    negotiation.held()
                );
                start = end;
            }
            (data, commands)
        }

        proptest! {
            #[test]
            fn no_more_comes_out_than_went_in_however_the_input_is_split(
                bytes in telnet_bytes(),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let whole = feed_in_pieces(&mut Negotiation::default(), &bytes, &[]);
                let split = feed_in_pieces(&mut Negotiation::default(), &bytes, &cuts);
                prop_assert_eq!(whole, split);
            }

            #[test]
            fn a_plain_client_s_bytes_without_0xff_come_out_unchanged(
                bytes in proptest::collection::vec(any::<u8>(), 0..800)
                    .prop_map(|bytes| bytes.into_iter().filter(|&byte| byte != IAC).collect::<Vec<u8>>()),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let mut negotiation = Negotiation::default();
                let (data, commands) = feed_in_pieces(&mut negotiation, &bytes, &cuts);
                prop_assert_eq!(data, bytes);
                prop_assert_eq!(commands, 0);
                prop_assert!(!negotiation.is_telnet());
            }

            #[test]
            fn a_plain_client_s_0xff_before_no_command_or_sb_comes_out_unchanged(
                pairs in proptest::collection::vec(any::<(u8, u8)>(), 0..800),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                // Latin-1 text and binary data: each 0xFF followed by a byte that is no
                // command (below SE), or by SB ("ÿú").
                let mut bytes = Vec::new();
                for (choice, byte) in pairs {
                    bytes.push(byte);
                    if byte == IAC {
                        bytes.push(if choice % 4 == 0 { SB } else { choice % SE });
                    }
                }
                let mut negotiation = Negotiation::default();
                let (data, commands) = feed_in_pieces(&mut negotiation, &bytes, &cuts);
                prop_assert_eq!(data, bytes);
                prop_assert_eq!(commands, 0);
                prop_assert!(!negotiation.is_telnet());
            }
        }
    }

    #[test]
    fn the_queue_bit_settles_crossing_requests() {
        let mut side = Side::default();
        assert!(side.request_enable());
        assert_eq!(side.state, State::WantYes);
        // The peer refuses: no answer, and we do not ask again by ourselves.
        assert_eq!(side.receive_disable(), None);
        assert_eq!(side.state, State::No);
        assert!(side.request_enable());
        assert_eq!(side.receive_enable(true), None);
        assert_eq!(side.state, State::Yes);
        // The peer turns it off: acknowledged.
        assert_eq!(side.receive_disable(), Some(Reply::Refuse));
        let mut waiting = Side {
            state: State::WantNo,
            opposite_queued: true,
        };
        // Our DONT is answered by WONT while we queued a DO: ask again.
        assert_eq!(waiting.receive_disable(), Some(Reply::Agree));
        assert_eq!(waiting.state, State::WantYes);
    }
}
