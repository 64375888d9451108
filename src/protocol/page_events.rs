//! Event lines for the web page: what the page needs to know of its own state (its nick,
//! its room, who is there, that it is being sent away), in a form no user can forge.
//!
//! An event line is U+0001 followed by one JSON object. Every line a client sends is
//! sanitised (no control characters), so no user line can start with U+0001: the page
//! takes its state from these lines only and merely shows the text lines. They go to
//! browsers only; nc and telnet users never see them.

/// What starts an event line.
pub const EVENT_MARK: char = '\u{1}';

/// `{"you":{"nick":..,"room":..}}`: who and where the client is.
pub fn you(nick: &str, room: &str) -> String {
    format!(
        "{EVENT_MARK}{{\"you\":{{\"nick\":{},\"room\":{}}}}}",
        json_string(nick),
        json_string(room)
    )
}

/// `{"people":{"room":..,"names":[..]}}`: everyone in the client's room.
pub fn people<'a>(room: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    format!(
        "{EVENT_MARK}{{\"people\":{{\"room\":{},\"names\":{}}}}}",
        json_string(room),
        json_list(names)
    )
}

/// `{"joined":{"names":[..],"more":N}}`: people came into the room; `more` were not named.
pub fn joined<'a>(names: impl IntoIterator<Item = &'a str>, more: usize) -> String {
    arrivals_or_departures("joined", names, more)
}

/// `{"left":{"names":[..],"more":N}}`: people left the room; `more` were not named.
pub fn left<'a>(names: impl IntoIterator<Item = &'a str>, more: usize) -> String {
    arrivals_or_departures("left", names, more)
}

fn arrivals_or_departures<'a>(
    key: &str,
    names: impl IntoIterator<Item = &'a str>,
    more: usize,
) -> String {
    format!(
        "{EVENT_MARK}{{\"{key}\":{{\"names\":{},\"more\":{more}}}}}",
        json_list(names)
    )
}

/// `{"renamed":{"old":..,"new":..}}`: someone in the room changed nick.
pub fn renamed(old: &str, new: &str) -> String {
    format!(
        "{EVENT_MARK}{{\"renamed\":{{\"old\":{},\"new\":{}}}}}",
        json_string(old),
        json_string(new)
    )
}

/// `{"stale":true}`: the room's changes just told cannot be applied one by one (gathered
/// joins and leaves crossed a rename, or someone left and came back): ask for the list.
pub fn stale() -> String {
    format!("{EVENT_MARK}{{\"stale\":true}}")
}

/// Why the server is closing a client that should not come straight back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    Quit,
    Kicked,
    Idle,
}

/// `{"closing":"quit"|"kicked"|"idle"}`: sent before the client's last line.
pub fn closing(why: Closing) -> String {
    let why = match why {
        Closing::Quit => "quit",
        Closing::Kicked => "kicked",
        Closing::Idle => "idle",
    };
    format!("{EVENT_MARK}{{\"closing\":\"{why}\"}}")
}

/// `{"taken":..}`: the nick the client asked for is someone else's.
pub fn taken(nick: &str) -> String {
    format!("{EVENT_MARK}{{\"taken\":{}}}", json_string(nick))
}

fn json_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(json_string).collect();
    format!("[{}]", items.join(","))
}

/// `text` as a JSON string. Nicks and rooms are plain names, but a name from another
/// node is escaped all the same: the page must be able to parse every event.
fn json_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_marked_json_lines() {
        assert_eq!(
            you("ann", "lobby"),
            "\u{1}{\"you\":{\"nick\":\"ann\",\"room\":\"lobby\"}}"
        );
        assert_eq!(
            people("games", ["ann", "bob"]),
            "\u{1}{\"people\":{\"room\":\"games\",\"names\":[\"ann\",\"bob\"]}}"
        );
        assert_eq!(
            joined(["a", "b", "c"], 7),
            "\u{1}{\"joined\":{\"names\":[\"a\",\"b\",\"c\"],\"more\":7}}"
        );
        assert_eq!(left([], 0), "\u{1}{\"left\":{\"names\":[],\"more\":0}}");
        assert_eq!(closing(Closing::Kicked), "\u{1}{\"closing\":\"kicked\"}");
        assert_eq!(taken("bob"), "\u{1}{\"taken\":\"bob\"}");
        assert_eq!(json_string("a\"b\\c\u{7}"), "\"a\\\"b\\\\c\\u0007\"");
    }
}
