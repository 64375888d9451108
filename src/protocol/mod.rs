//! The chat protocol as pure functions, no I/O: splitting bytes into lines with a size cap
//! and terminals' editing keys (lines.rs), making a line safe to show on other people's
//! terminals (sanitize.rs), and here: parsing commands and the text of the lines the
//! server sends.

mod lines;
pub mod page_events;
mod sanitize;

pub use lines::{Decoded, LineDecoder, LineSplitter};
pub use sanitize::sanitize;

/// What a client's line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// A line for everyone else in the room.
    Message(String),
    /// `/nick NAME`
    Nick(String),
    /// `/who`
    Who,
    /// `/me ACTION`
    Me(String),
    /// `/msg NICK TEXT`
    Private { to: String, text: String },
    /// `/quit [REASON]`
    Quit(Option<String>),
    /// `/help`
    Help,
    /// `/join ROOM`
    Join(String),
    /// `/rooms`
    Rooms,
    /// `/search TEXT`
    Search(String),
    /// `/time on` or `/time off`
    Time(bool),
    /// `/op PASSWORD`
    Op(String),
    /// `/kick NICK [REASON]` (operators)
    Kick {
        nick: String,
        reason: Option<String>,
    },
    /// `/mute NICK` (operators)
    Mute(String),
    /// `/unmute NICK` (operators)
    Unmute(String),
    /// `/wall TEXT` (operators): a notice to every room
    Wall(String),
    /// A known command without the arguments it needs; holds its usage text.
    Usage(&'static str),
    /// A command nobody knows, with its name.
    Unknown(String),
    /// The line was longer than the limit and was dropped.
    TooLong,
}

/// Parses one sanitised line, reusing its memory for a message. Blank lines ask for
/// nothing and give `None`.
pub fn parse_line(mut line: String) -> Option<Input> {
    line.truncate(line.trim_end().len());
    if line.trim_start().is_empty() {
        return None;
    }
    if line.starts_with("//") {
        line.remove(0);
        return Some(Input::Message(line));
    }
    if !line.starts_with('/') {
        return Some(Input::Message(line));
    }
    let command_line = &line[1..];
    let (name, rest) = match command_line.split_once(' ') {
        Some((name, rest)) => (name, rest.trim()),
        None => (command_line, ""),
    };
    let input = match name.to_ascii_lowercase().as_str() {
        "help" => Input::Help,
        "who" => Input::Who,
        "rooms" => Input::Rooms,
        "search" if rest.is_empty() => Input::Usage("/search TEXT"),
        "search" => Input::Search(rest.to_owned()),
        "join" if rest.is_empty() => Input::Usage("/join ROOM"),
        "join" => Input::Join(rest.to_owned()),
        "time" => match rest.to_ascii_lowercase().as_str() {
            "on" => Input::Time(true),
            "off" => Input::Time(false),
            _ => Input::Usage("/time on|off"),
        },
        "quit" => Input::Quit((!rest.is_empty()).then(|| rest.to_owned())),
        "nick" if rest.is_empty() => Input::Usage("/nick NAME"),
        "nick" => Input::Nick(rest.to_owned()),
        "op" if rest.is_empty() => Input::Usage("/op PASSWORD"),
        "op" => Input::Op(rest.to_owned()),
        "kick" if rest.is_empty() => Input::Usage("/kick NICK [REASON]"),
        "kick" => match rest.split_once(' ') {
            Some((nick, reason)) => Input::Kick {
                nick: nick.to_owned(),
                reason: Some(reason.trim().to_owned()),
            },
            None => Input::Kick {
                nick: rest.to_owned(),
                reason: None,
            },
        },
        "mute" if rest.is_empty() => Input::Usage("/mute NICK"),
        "mute" => Input::Mute(rest.to_owned()),
        "unmute" if rest.is_empty() => Input::Usage("/unmute NICK"),
        "unmute" => Input::Unmute(rest.to_owned()),
        "wall" if rest.is_empty() => Input::Usage("/wall TEXT"),
        "wall" => Input::Wall(rest.to_owned()),
        "me" if rest.is_empty() => Input::Usage("/me ACTION"),
        "me" => Input::Me(rest.to_owned()),
        "msg" => match rest.split_once(' ') {
            Some((to, text)) if !text.trim().is_empty() => Input::Private {
                to: to.to_owned(),
                text: text.trim().to_owned(),
            },
            _ => Input::Usage("/msg NICK TEXT"),
        },
        _ => Input::Unknown(name.to_owned()),
    };
    Some(input)
}

/// Longest nick, in characters.
pub const MAX_NICK_LEN: usize = 20;

/// Why a nick was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum NickError {
    /// Not 1 to 20 of A-Z a-z 0-9 _ -.
    Invalid,
    /// `guest-...` names are handed out by the server.
    Reserved,
    /// A word the server's own lines use (`server`, `you`, ...): see [`SERVER_WORDS`].
    ServerWord,
}

/// Nicks nobody may take, ignoring case: the words the server's own lines start with or
/// speak as (`* you are now ...`, `* in lobby (3): ...`, `* notice from ...`), and the
/// names people take for the server's. `[server] shutting down` would pass for the server.
pub const SERVER_WORDS: &[&str] = &[
    "server", "system", "admin", "operator", "notice", "you", "in", "history", "rooms", "welcome",
];

/// Whether a nick or room name is 1 to 20 of A-Z a-z 0-9 _ -.
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NICK_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a nick's spelling. Uniqueness is the hub's business: it knows who is online.
pub fn validate_nick(nick: &str) -> Result<(), NickError> {
    if !is_valid_name(nick) {
        return Err(NickError::Invalid);
    }
    let lower = nick.to_ascii_lowercase();
    if lower.starts_with("guest-") {
        return Err(NickError::Reserved);
    }
    if SERVER_WORDS.contains(&lower.as_str()) {
        return Err(NickError::ServerWord);
    }
    Ok(())
}

/// The nick the server gives connection number `id`.
pub fn guest_nick(id: u64) -> String {
    format!("guest-{id}")
}

/// The chapter's idle-timeout line, for the servers without notices (echo, dump, send).
pub const IDLE_FAREWELL: &[u8] = b"idle timeout, disconnecting, bye!\n";

/// The lines of `/help`.
pub const HELP: &str = "\
* commands:
*   /nick NAME       change your nick (1 to 20 of A-Z a-z 0-9 _ -)
*   /who             list who is in your room
*   /join ROOM       go to ROOM (created if needed); everyone starts in lobby
*   /rooms           list the rooms and how many are in each
*   /search TEXT     the last 20 lines of your room that contain TEXT
*   /time on|off     prefix each line you receive with the time (HH:MM)
*   /op PASSWORD     become an operator, who can:
*     /kick NICK [REASON]   /mute NICK   /unmute NICK   /wall TEXT
*   /me ACTION       tell everyone what you do ([nick] * ACTION)
*   /msg NICK TEXT   send TEXT to NICK only
*   /quit [REASON]   leave
*   //TEXT           send a line that starts with /
";

/// A list of names for a notice: `a`, `a and b`, `a, b and c`, `a, b, c and 7 others`.
pub fn name_list(names: &[String], total: usize) -> String {
    const SHOWN: usize = 3;
    let shown = &names[..names.len().min(SHOWN)];
    let others = total - shown.len();
    match (shown, others) {
        ([only], 0) => only.clone(),
        (_, 0) => {
            let (last, first) = shown.split_last().expect("two or more names");
            format!("{} and {last}", first.join(", "))
        }
        (_, 1) => format!("{} and 1 other", shown.join(", ")),
        (_, others) => format!("{} and {others} others", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_their_arguments() {
        let parse_line = |line: &str| parse_line(line.to_owned());
        assert_eq!(
            parse_line("trailing  "),
            Some(Input::Message("trailing".into()))
        );
        assert_eq!(
            parse_line("hi there"),
            Some(Input::Message("hi there".into()))
        );
        assert_eq!(parse_line("//etc"), Some(Input::Message("/etc".into())));
        assert_eq!(parse_line("/NICK bob"), Some(Input::Nick("bob".into())));
        assert_eq!(parse_line("/nick"), Some(Input::Usage("/nick NAME")));
        assert_eq!(parse_line("/quit"), Some(Input::Quit(None)));
        assert_eq!(
            parse_line("/quit gone home"),
            Some(Input::Quit(Some("gone home".into())))
        );
        assert_eq!(
            parse_line("/msg bob hi you"),
            Some(Input::Private {
                to: "bob".into(),
                text: "hi you".into()
            })
        );
        assert_eq!(parse_line("/msg bob"), Some(Input::Usage("/msg NICK TEXT")));
        assert_eq!(parse_line("/dance"), Some(Input::Unknown("dance".into())));
        assert_eq!(parse_line("/join games"), Some(Input::Join("games".into())));
        assert_eq!(parse_line("/join"), Some(Input::Usage("/join ROOM")));
        assert_eq!(parse_line("/rooms"), Some(Input::Rooms));
        assert_eq!(
            parse_line("/search Home Work"),
            Some(Input::Search(String::from("Home Work")))
        );
        assert_eq!(parse_line("/search"), Some(Input::Usage("/search TEXT")));
        assert_eq!(
            parse_line("/kick bob spamming the room"),
            Some(Input::Kick {
                nick: "bob".into(),
                reason: Some("spamming the room".into())
            })
        );
        assert_eq!(
            parse_line("/kick bob"),
            Some(Input::Kick {
                nick: "bob".into(),
                reason: None
            })
        );
        assert_eq!(parse_line("/wall"), Some(Input::Usage("/wall TEXT")));
        assert_eq!(parse_line("/time ON"), Some(Input::Time(true)));
        assert_eq!(
            parse_line("/time later"),
            Some(Input::Usage("/time on|off"))
        );
        assert_eq!(parse_line("   "), None);
    }

    #[test]
    fn nicks_are_short_plain_and_not_guests() {
        assert_eq!(validate_nick("alice_2-b"), Ok(()));
        assert_eq!(validate_nick(""), Err(NickError::Invalid));
        assert_eq!(validate_nick("a b"), Err(NickError::Invalid));
        assert_eq!(validate_nick("ä"), Err(NickError::Invalid));
        assert_eq!(validate_nick(&"x".repeat(21)), Err(NickError::Invalid));
        assert_eq!(validate_nick("Guest-9"), Err(NickError::Reserved));
        assert_eq!(validate_nick("Server"), Err(NickError::ServerWord));
        assert_eq!(validate_nick("you"), Err(NickError::ServerWord));
        assert_eq!(validate_nick("young"), Ok(()));
    }

    #[test]
    fn name_lists_count_the_rest() {
        let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(name_list(&names[..1], 1), "a");
        assert_eq!(name_list(&names[..2], 2), "a and b");
        assert_eq!(name_list(&names[..3], 3), "a, b and c");
        assert_eq!(name_list(&names[..3], 4), "a, b, c and 1 other");
        assert_eq!(name_list(&names[..3], 10), "a, b, c and 7 others");
    }
}
