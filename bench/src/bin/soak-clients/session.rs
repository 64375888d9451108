//! One connected client: it joins (connects, waits for the welcome), reads and checks
//! every line it receives, says marked lines and commands and waits for their replies, and
//! leaves. What each kind of client does with one is behaviour.rs.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::ClientConfig;

use crate::browser::{WsLink, load_page};
use crate::ledger::{Audience, Heard, LOBBY, Ledger, ROOMS, Receiver};
use crate::links::{LineLink, Link, NcLink, NcStyle};
use crate::plan::{Kind, Node, Transport};
use crate::stats::{ConnectedGuard, Rng, Stats};
use crate::telnet::{Flavour, TelnetLink};
use crate::wire::{connect_tcp, connect_tls};

/// How long a reply to a command (or the welcome) may take before it counts as a failure.
const REPLY_PATIENCE: Duration = Duration::from_secs(10);

/// What every session shares.
pub struct Context {
    pub nodes: Vec<Node>,
    pub kinds: Vec<Kind>,
    pub stats: Arc<Stats>,
    pub ledger: Ledger,
    /// The run is over: sessions leave and slots stop.
    pub stop: AtomicBool,
    /// The checks are done: witnesses leave.
    pub witnesses_leave: AtomicBool,
    pub witness_nicks: Vec<String>,
    pub nc: String,
    pub tls: Arc<ClientConfig>,
    pub next_session: AtomicU64,
}

/// The run ended (stop) or the session failed (already counted).
#[derive(Debug)]
pub struct Ended;

/// One connected client.
pub struct Session<'a> {
    context: &'a Context,
    link: Option<Box<dyn Link>>,
    kind: usize,
    receiver: Receiver,
    pub rng: Rng,
    room: usize,
    _connected: ConnectedGuard<'a>,
}

impl<'a> Session<'a> {
    /// Connects as kind `kind` and waits for the welcome.
    pub fn join(
        context: &'a Context,
        kind: usize,
        receiver: Receiver,
        seed: u64,
    ) -> Result<Session<'a>, Ended> {
        let spec = &context.kinds[kind];
        let node = &context.nodes[spec.node];
        let stats = &context.stats;
        let link = open(context, kind, seed).map_err(|error| {
            stats.fail(
                Some(kind),
                "cannot connect",
                format!("{} to {}: {error}", spec.name, node.name),
            );
            Ended
        })?;
        Stats::add(&stats.connections_opened, 1);
        let mut session = Session {
            context,
            link: Some(link),
            kind,
            receiver,
            rng: Rng::new(seed ^ 0x5eed),
            room: LOBBY,
            _connected: stats.count_in(spec.node),
        };
        session.expect("* welcome, ", "the welcome")?;
        Ok(session)
    }

    pub fn link(&mut self) -> &mut Box<dyn Link> {
        self.link
            .as_mut()
            .expect("a session's link lives until it leaves")
    }

    pub fn fail(&self, what: &str, detail: impl std::fmt::Display) -> Ended {
        let spec = &self.context.kinds[self.kind];
        self.context.stats.fail(
            Some(self.kind),
            what,
            format!(
                "{} on {}: {detail}",
                spec.name, self.context.nodes[spec.node].name
            ),
        );
        Ended
    }

    /// Checks and counts one received line.
    pub fn take(&self, line: &str) {
        let stats = &self.context.stats;
        if self
            .context
            .ledger
            .observe(self.receiver, line, stats, Some(self.kind))
            == Heard::Chat
        {
            return;
        }
        if line.starts_with('\u{1}') {
            Stats::add(&stats.page_events, 1);
        } else if line.starts_with("! ") {
            self.fail("error from the server", format!("{line:?}"));
        } else if line.contains("cluster link lost")
            || line.starts_with("* server is shutting down")
        {
            self.fail("node trouble", format!("{line:?}"));
        }
    }

    pub fn lost(&self, error: io::Error, while_doing: &str) -> Ended {
        let recent = self
            .link
            .as_ref()
            .map(|link| link.recent())
            .unwrap_or_default();
        self.fail(
            "connection lost",
            format!("while {while_doing}: {error}; {recent}"),
        )
    }

    /// Reads until a line starting with `prefix` arrives.
    pub fn expect(&mut self, prefix: &str, what: &str) -> Result<String, Ended> {
        let deadline = Instant::now() + REPLY_PATIENCE;
        loop {
            match self.link().next_line(deadline) {
                Ok(Some(line)) => {
                    self.take(&line);
                    if line.starts_with(prefix) {
                        return Ok(line);
                    }
                }
                Ok(None) => {
                    return Err(self.fail("no reply in time", format!("waiting for {what}")));
                }
                Err(error) => return Err(self.lost(error, &format!("waiting for {what}"))),
            }
        }
    }

    /// Reads what comes until `until`, or until `stop` is set (then `false`).
    pub fn idle(&mut self, until: Instant, stop: &AtomicBool) -> Result<bool, Ended> {
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(true);
            }
            match self
                .link()
                .next_line(until.min(now + Duration::from_secs(1)))
            {
                Ok(Some(line)) => self.take(&line),
                Ok(None) => {}
                Err(error) => return Err(self.lost(error, "reading")),
            }
        }
    }

    pub fn send(&mut self, text: &str) -> Result<(), Ended> {
        self.link().send_line(text).map_err(|error| {
            let shown: String = text.chars().take(40).collect();
            self.lost(error, &format!("sending {shown:?}"))
        })
    }

    /// Says a marked line: to the room, as `/me`, or to a witness by `/msg`.
    pub fn say(&mut self) -> Result<(), Ended> {
        let context = self.context;
        let roll = self.rng.unit();
        let line = if roll < 0.05 && !context.witness_nicks.is_empty() {
            let witness = self.rng.range(0, context.witness_nicks.len() as u64) as usize;
            let text = context.ledger.say(Audience::Witness(witness));
            format!("/msg {} {text}", context.witness_nicks[witness])
        } else if roll < 0.15 {
            format!("/me {}", context.ledger.say(Audience::Room(self.room)))
        } else {
            context.ledger.say(Audience::Room(self.room))
        };
        Stats::add(&context.stats.lines_said, 1);
        Stats::add(&context.stats.by_kind[self.kind].lines_said, 1);
        self.send(&line)
    }

    pub fn command(&mut self, line: &str, reply: &str) -> Result<String, Ended> {
        self.send(line)?;
        self.expect(reply, line)
    }

    pub fn set_nick(&mut self, nick: &str) -> Result<(), Ended> {
        self.command(&format!("/nick {nick}"), &format!("* you are now {nick}"))
            .map(drop)
    }

    pub fn enter(&mut self, room: usize) -> Result<(), Ended> {
        let name = ROOMS[room];
        self.command(
            &format!("/join {name}"),
            &format!("* you are now in {name} "),
        )?;
        self.room = room;
        Ok(())
    }

    /// Leaves with `/quit`: the server says `* bye!` and closes.
    pub fn quit(mut self) -> Result<(), Ended> {
        self.command("/quit see you", "* bye!")?;
        let link = self.link.take().expect("link");
        link.close(true)
            .map_err(|error| self.fail("unclean close", format!("after /quit: {error}")))
    }

    /// Leaves as the client does by itself.
    pub fn close(mut self) -> Result<(), Ended> {
        let link = self.link.take().expect("link");
        link.close(false)
            .map_err(|error| self.fail("unclean close", error))
    }

    pub fn reset(mut self) {
        if let Some(link) = self.link.take() {
            link.reset();
        }
    }

    /// Says `text` as it is, unmarked and unchecked (the start-up link check's probes).
    pub fn say_unmarked(&mut self, text: &str) -> Result<(), Ended> {
        self.send(text)
    }

    /// The lines that arrived within `wait`, each checked as usual.
    pub fn read_for(&mut self, wait: Duration) -> Result<Vec<String>, Ended> {
        let deadline = Instant::now() + wait;
        let mut lines = Vec::new();
        loop {
            match self.link().next_line(deadline) {
                Ok(Some(line)) => {
                    self.take(&line);
                    lines.push(line);
                }
                Ok(None) => return Ok(lines),
                Err(error) => return Err(self.lost(error, "starting")),
            }
        }
    }
}

/// Opens a connection of kind `kind` (for a web client: loads the page first).
fn open(context: &Context, kind: usize, seed: u64) -> io::Result<Box<dyn Link>> {
    let spec = &context.kinds[kind];
    let node = &context.nodes[spec.node];
    let tls = node.tls.then_some(&context.tls);
    Ok(match spec.transport {
        Transport::Nc => Box::new(NcLink::spawn(&context.nc, node.chat, NcStyle::Interactive)?),
        Transport::NcScript => Box::new(NcLink::spawn(&context.nc, node.chat, NcStyle::Script)?),
        Transport::TelnetLinux | Transport::TelnetWindows => {
            let flavour = if spec.transport == Transport::TelnetLinux {
                Flavour::Linux
            } else {
                Flavour::Windows
            };
            let stats = Arc::clone(&context.stats);
            Box::new(TelnetLink::new(
                connect_tcp(node.chat)?,
                flavour,
                seed,
                stats,
                kind,
            )?)
        }
        Transport::WebSocket => {
            let pages = load_page(node.web, tls, &["/", "/app.js", "/app.css"])?;
            Stats::add(&context.stats.connections_opened, pages);
            match tls {
                Some(config) => Box::new(WsLink::open(
                    connect_tls(node.web, config)?,
                    node.web,
                    true,
                )?),
                None => Box::new(WsLink::open(connect_tcp(node.web)?, node.web, false)?),
            }
        }
        Transport::Tls => Box::new(LineLink::new(connect_tls(node.chat, &context.tls)?)),
        Transport::Tcp => Box::new(LineLink::new(connect_tcp(node.chat)?)),
    })
}
