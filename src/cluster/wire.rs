//! What nodes tell each other, as fields of a Redis stream entry. Pure code, no I/O.
//!
//! Every entry carries its origin (node name and incarnation, so that a restarted node is
//! not taken for its old self) and a sequence number per incarnation: a receiver skips
//! what it has already seen, so an entry written twice (after a timeout whose write did
//! land) is delivered once.
//!
//! Longer than 500 lines with its tests: about 460 lines of code, the rest round trips and
//! refusals of every kind of entry.

use std::collections::HashMap;

use crate::protocol;

/// An event of the shared chat, in the order of the cluster's stream. Rooms are names on
/// the wire (`R = String`) and each node's room numbers in its hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shared<R = String> {
    /// A public line in a room: `[nick] text`, `[nick] * action` for `/me`.
    Said {
        room: R,
        id: u64,
        nick: String,
        line: String,
    },
    Joined {
        room: R,
        id: u64,
        nick: String,
    },
    Left {
        room: R,
        id: u64,
        nick: String,
        reason: String,
    },
    Renamed {
        room: R,
        id: u64,
        old: String,
        new: String,
    },
    /// A server line for one room, or every room (`/wall`).
    Notice {
        room: Option<R>,
        line: String,
    },
    /// `/msg`: delivered by the node that has `to`.
    Private {
        from: String,
        to: String,
        text: String,
    },
    /// `/kick`: carried out by the node that has `target`.
    Kick {
        target: String,
        by: String,
        reason: Option<String>,
    },
    /// `/mute` and `/unmute`: every node announces it in the target's room.
    Mute {
        target: String,
        by: String,
        muted: bool,
    },
    /// A node (re)joined the cluster, with who is on it; others answer with [`Shared::Members`].
    Hello {
        members: Vec<Member<R>>,
    },
    /// Who is on the origin node now.
    Members {
        members: Vec<Member<R>>,
    },
    /// A node's lease ran out: its members are gone.
    NodeLost {
        node: String,
    },
    /// `node`'s user with `nick` took it later than someone else (during a split): that
    /// node renames its user.
    NickLost {
        node: String,
        nick: String,
    },
}

/// One client on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member<R = String> {
    pub id: u64,
    pub nick: String,
    pub room: R,
}

impl<R> Shared<R> {
    /// The same event with its rooms given as `room` turns them.
    pub(crate) fn map_room<S>(self, mut room: impl FnMut(R) -> S) -> Shared<S> {
        let mut members = |list: Vec<Member<R>>| -> Vec<Member<S>> {
            list.into_iter()
                .map(|member| Member {
                    id: member.id,
                    nick: member.nick,
                    room: room(member.room),
                })
                .collect()
        };
        match self {
            Shared::Hello { members: list } => Shared::Hello {
                members: members(list),
            },
            Shared::Members { members: list } => Shared::Members {
                members: members(list),
            },
            Shared::Said {
                room: r,
                id,
                nick,
                line,
            } => Shared::Said {
                room: room(r),
                id,
                nick,
                line,
            },
            Shared::Joined { room: r, id, nick } => Shared::Joined {
                room: room(r),
                id,
                nick,
            },
            Shared::Left {
                room: r,
                id,
                nick,
                reason,
            } => Shared::Left {
                room: room(r),
                id,
                nick,
                reason,
            },
            Shared::Renamed {
                room: r,
                id,
                old,
                new,
            } => Shared::Renamed {
                room: room(r),
                id,
                old,
                new,
            },
            Shared::Notice { room: r, line } => Shared::Notice {
                room: r.map(room),
                line,
            },
            Shared::Private { from, to, text } => Shared::Private { from, to, text },
            Shared::Kick { target, by, reason } => Shared::Kick { target, by, reason },
            Shared::Mute { target, by, muted } => Shared::Mute { target, by, muted },
            Shared::NodeLost { node } => Shared::NodeLost { node },
            Shared::NickLost { node, nick } => Shared::NickLost { node, nick },
        }
    }
}

/// A [`Shared`] event with where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub node: String,
    pub incarnation: u64,
    pub seq: u64,
    /// Said on the origin node while its link to the cluster was down.
    pub split: bool,
    pub event: Shared,
}

impl Envelope {
    /// The entry's fields, as XADD takes them.
    pub(crate) fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("node", self.node.clone()),
            ("inc", self.incarnation.to_string()),
            ("seq", self.seq.to_string()),
        ];
        if self.split {
            fields.push(("split", String::from("1")));
        }
        let mut put = |name: &'static str, value: &str| fields.push((name, value.to_owned()));
        match &self.event {
            Shared::Said {
                room,
                id,
                nick,
                line,
            } => {
                put("kind", "said");
                put("room", room);
                put("id", &id.to_string());
                put("nick", nick);
                put("line", line);
            }
            Shared::Joined { room, id, nick } => {
                put("kind", "joined");
                put("room", room);
                put("id", &id.to_string());
                put("nick", nick);
            }
            Shared::Left {
                room,
                id,
                nick,
                reason,
            } => {
                put("kind", "left");
                put("room", room);
                put("id", &id.to_string());
                put("nick", nick);
                put("reason", reason);
            }
            Shared::Renamed { room, id, old, new } => {
                put("kind", "renamed");
                put("room", room);
                put("id", &id.to_string());
                put("nick", old);
                put("new", new);
            }
            Shared::Notice { room, line } => {
                put("kind", "notice");
                if let Some(room) = room {
                    put("room", room);
                }
                put("line", line);
            }
            Shared::Private { from, to, text } => {
                put("kind", "private");
                put("nick", from);
                put("to", to);
                put("line", text);
            }
            Shared::Kick { target, by, reason } => {
                put("kind", "kick");
                put("to", target);
                put("nick", by);
                if let Some(reason) = reason {
                    put("reason", reason);
                }
            }
            Shared::Mute { target, by, muted } => {
                put("kind", if *muted { "mute" } else { "unmute" });
                put("to", target);
                put("nick", by);
            }
            Shared::Hello { members } | Shared::Members { members } => {
                let kind = if matches!(self.event, Shared::Hello { .. }) {
                    "hello"
                } else {
                    "members"
                };
                put("kind", kind);
                let list: String = members
                    .iter()
                    .map(|member| format!("{}\t{}\t{}\n", member.id, member.nick, member.room))
                    .collect();
                put("members", &list);
            }
            Shared::NodeLost { node } => {
                put("kind", "node-lost");
                put("lost", node);
            }
            Shared::NickLost { node, nick } => {
                put("kind", "nick-lost");
                put("lost", node);
                put("nick", nick);
            }
        }
        fields
    }

    /// Reads an entry's fields; `None` for an entry this version does not understand.
    /// Whatever is in Redis is taken as a client's input is: nicks and rooms must be
    /// names, text is sanitised, so that nothing another writer put there reaches a
    /// terminal or a browser unsafe.
    pub(crate) fn from_fields(fields: &HashMap<String, String>) -> Option<Envelope> {
        let get = |field: &str| {
            let value = fields.get(field)?;
            match field {
                "nick" | "room" | "new" | "to" => {
                    protocol::is_valid_name(value).then(|| value.clone())
                }
                _ => Some(protocol::sanitize(value.as_bytes())),
            }
        };
        let number = |name: &str| fields.get(name)?.parse::<u64>().ok();
        let event = match fields.get("kind")?.as_str() {
            "said" => Shared::Said {
                room: get("room")?,
                id: number("id")?,
                nick: get("nick")?,
                line: get("line")?,
            },
            "joined" => Shared::Joined {
                room: get("room")?,
                id: number("id")?,
                nick: get("nick")?,
            },
            "left" => Shared::Left {
                room: get("room")?,
                id: number("id")?,
                nick: get("nick")?,
                reason: get("reason")?,
            },
            "renamed" => Shared::Renamed {
                room: get("room")?,
                id: number("id")?,
                old: get("nick")?,
                new: get("new")?,
            },
            "notice" => Shared::Notice {
                room: get("room"),
                line: get("line")?,
            },
            "private" => Shared::Private {
                from: get("nick")?,
                to: get("to")?,
                text: get("line")?,
            },
            "kick" => Shared::Kick {
                target: get("to")?,
                by: get("nick")?,
                reason: get("reason"),
            },
            kind @ ("mute" | "unmute") => Shared::Mute {
                target: get("to")?,
                by: get("nick")?,
                muted: kind == "mute",
            },
            kind @ ("hello" | "members") => {
                let members = parse_members(fields.get("members")?)?;
                if kind == "hello" {
                    Shared::Hello { members }
                } else {
                    Shared::Members { members }
                }
            }
            "node-lost" => Shared::NodeLost { node: get("lost")? },
            "nick-lost" => Shared::NickLost {
                node: get("lost")?,
                nick: get("nick")?,
            },
            _ => return None,
        };
        Some(Envelope {
            node: get("node")?,
            incarnation: number("inc")?,
            seq: number("seq")?,
            split: fields.get("split").is_some_and(|flag| flag == "1"),
            event,
        })
    }
}

/// Fuzzing (fuzz/): any bytes as a stream entry's fields (`NAME\x01VALUE`, separated by
/// NUL bytes): never a panic, and an entry that is read is safe.
#[cfg(fuzzing)]
pub(crate) fn fuzz_fields(data: &[u8]) {
    let fields: HashMap<String, String> = data
        .split(|&byte| byte == 0)
        .filter_map(|field| {
            let at = field.iter().position(|&byte| byte == 1)?;
            let (name, value) = (&field[..at], &field[at + 1..]);
            Some((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ))
        })
        .collect();
    if let Some(envelope) = Envelope::from_fields(&fields) {
        check_safe(&envelope);
    }
}

/// Panics unless what `envelope` names is a name and its text is safe to show.
#[cfg(fuzzing)]
pub(crate) fn check_safe(envelope: &Envelope) {
    let name = |name: &str| assert!(protocol::is_valid_name(name), "{name:?}");
    let text = |text: &str| assert!(!text.chars().any(char::is_control), "{text:?}");
    text(&envelope.node);
    match &envelope.event {
        Shared::Said {
            room, nick, line, ..
        } => {
            name(room);
            name(nick);
            text(line);
        }
        Shared::Joined { room, nick, .. } => {
            name(room);
            name(nick);
        }
        Shared::Left {
            room, nick, reason, ..
        } => {
            name(room);
            name(nick);
            text(reason);
        }
        Shared::Renamed { room, old, new, .. } => {
            name(room);
            name(old);
            name(new);
        }
        Shared::Notice { room, line } => {
            room.iter().for_each(|room| name(room));
            text(line);
        }
        Shared::Private {
            from,
            to,
            text: said,
        } => {
            name(from);
            name(to);
            text(said);
        }
        Shared::Kick { target, by, reason } => {
            name(target);
            name(by);
            reason.iter().for_each(|reason| text(reason));
        }
        Shared::Mute { target, by, .. } => {
            name(target);
            name(by);
        }
        Shared::Hello { members } | Shared::Members { members } => {
            for member in members {
                name(&member.nick);
                name(&member.room);
            }
        }
        Shared::NodeLost { node } => text(node),
        Shared::NickLost { node, nick } => {
            text(node);
            name(nick);
        }
    }
}

fn parse_members(list: &str) -> Option<Vec<Member>> {
    list.lines()
        .map(|line| {
            let mut parts = line.split('\t');
            let member = Member {
                id: parts.next()?.parse().ok()?,
                nick: parts.next()?.to_owned(),
                room: parts.next()?.to_owned(),
            };
            let named =
                protocol::is_valid_name(&member.nick) && protocol::is_valid_name(&member.room);
            named.then_some(member)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(event: Shared) {
        let envelope = Envelope {
            node: String::from("lab-1:4001"),
            incarnation: 17,
            seq: 42,
            split: true,
            event,
        };
        let fields: HashMap<String, String> = envelope
            .to_fields()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        assert_eq!(Envelope::from_fields(&fields), Some(envelope));
    }

    #[test]
    fn what_another_writer_put_in_the_stream_is_made_safe_or_ignored() {
        let entry = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            let mut fields: HashMap<String, String> =
                [("node", "lab-1"), ("inc", "1"), ("seq", "1")]
                    .iter()
                    .chain(pairs)
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect();
            fields.insert(String::from("id"), String::from("3"));
            fields
        };
        let said = entry(&[
            ("kind", "said"),
            ("room", "lobby"),
            ("nick", "ann"),
            ("line", "\u{1}{\"you\":{}}\u{1b}[2Jhi"),
        ]);
        let Some(Envelope {
            event: Shared::Said { line, .. },
            ..
        }) = Envelope::from_fields(&said)
        else {
            panic!("a said entry");
        };
        assert_eq!(line, "{\"you\":{}}hi");
        let bad_nick = entry(&[("kind", "joined"), ("room", "lobby"), ("nick", "a b")]);
        assert_eq!(Envelope::from_fields(&bad_nick), None);
        let bad_member = entry(&[("kind", "members"), ("members", "3\tann\tlob by\n")]);
        assert_eq!(Envelope::from_fields(&bad_member), None);
    }

    #[test]
    fn every_event_survives_the_stream() {
        let member = |id: u64, nick: &str| Member {
            id,
            nick: nick.to_owned(),
            room: String::from("lobby"),
        };
        for event in [
            Shared::Said {
                room: "lobby".into(),
                id: 3,
                nick: "ann".into(),
                line: "[ann] hi there".into(),
            },
            Shared::Joined {
                room: "games".into(),
                id: 4,
                nick: "bob".into(),
            },
            Shared::Left {
                room: "games".into(),
                id: 4,
                nick: "bob".into(),
                reason: "quit: bye".into(),
            },
            Shared::Renamed {
                room: "lobby".into(),
                id: 3,
                old: "ann".into(),
                new: "anna".into(),
            },
            Shared::Notice {
                room: None,
                line: "* notice from op: hi".into(),
            },
            Shared::Private {
                from: "ann".into(),
                to: "bob".into(),
                text: "psst".into(),
            },
            Shared::Kick {
                target: "bob".into(),
                by: "op".into(),
                reason: None,
            },
            Shared::Mute {
                target: "bob".into(),
                by: "op".into(),
                muted: false,
            },
            Shared::Hello {
                members: vec![member(1, "ann"), member(2, "guest-7")],
            },
            Shared::Members { members: vec![] },
            Shared::NodeLost {
                node: "lab-2:4001".into(),
            },
            Shared::NickLost {
                node: "lab-2:4001".into(),
                nick: "bob".into(),
            },
        ] {
            round_trip(event);
        }
    }

    #[test]
    fn an_entry_of_an_unknown_kind_is_skipped() {
        let fields: HashMap<String, String> =
            [("kind", "dance"), ("node", "x"), ("inc", "1"), ("seq", "1")]
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect();
        assert_eq!(Envelope::from_fields(&fields), None);
    }
}
