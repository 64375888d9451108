//! What each kind of client does, over and over until the run ends: talkers join, maybe
//! take a nick, chat (lines, `/me`, `/msg` to a witness, `/who`, `/rooms`, a visit to
//! another room), fall silent a while, and leave (`/quit` or their client's own way:
//! Ctrl-C for nc, a close frame for a tab, close_notify for TLS); lurkers join, read and
//! leave without a word (some with a reset); silent visitors connect and go (before the
//! TLS handshake, right after it, or after the welcome) or only load the page; witnesses
//! stay the whole run (see ledger.rs). Every line any of them receives is checked.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::browser::load_page;
use crate::ledger::{LOBBY, Receiver};
use crate::plan::{Role, Transport};
use crate::session::{Context, Ended, Session};
use crate::stats::{Rng, Stats};
use crate::wire::{Wire, connect_tcp, connect_tls, reset_tcp};

/// Runs sessions of kind `kind` one after another until the run ends.
pub fn run_slot(context: &Context, kind: usize, slot: usize) {
    let mut rng = Rng::new(((kind as u64) << 32) ^ slot as u64 ^ 0x50a4);
    // Slots start spread over the first seconds, not all at once.
    let start = Instant::now() + rng.seconds(0.0, 5.0);
    if !pause(context, start) {
        return;
    }
    while !context.stop.load(Ordering::Relaxed) {
        let session = context.next_session.fetch_add(1, Ordering::Relaxed);
        Stats::add(&context.stats.by_kind[kind].sessions, 1);
        let seed = rng.next_u64();
        let _ = match context.kinds[kind].role {
            Role::Talker => talk(context, kind, session, seed),
            Role::Lurker => lurk(context, kind, seed),
            Role::Silent => visit_silently(context, kind, seed),
            Role::PageVisitor => visit_page(context, kind),
            Role::Witness(_) => Ok(()),
        };
        let (low, high) = match context.kinds[kind].role {
            Role::Silent | Role::PageVisitor => (1.0, 5.0),
            _ => (1.0, 4.0),
        };
        if !pause(context, Instant::now() + rng.seconds(low, high)) {
            return;
        }
    }
}

/// Waits until `until`; false if the run ends first.
fn pause(context: &Context, until: Instant) -> bool {
    while Instant::now() < until {
        if context.stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(250)),
        );
    }
    !context.stop.load(Ordering::Relaxed)
}

/// A talker's session: join, chat, fall silent a while, leave.
fn talk(context: &Context, kind: usize, session_number: u64, seed: u64) -> Result<(), Ended> {
    let transport = context.kinds[kind].transport;
    let mut session = Session::join(context, kind, Receiver::Other, seed)?;
    let stop = &context.stop;
    if transport == Transport::TelnetLinux {
        // Linux telnet starts in line mode; the user switches after a line or two.
        for _ in 0..session.rng.range(0, 3) {
            session.say()?;
            let pause = Instant::now() + session.rng.seconds(1.0, 3.0);
            if !session.idle(pause, stop)? {
                return session.close();
            }
        }
        if let Err(error) = session.link().telnet_mode(true) {
            return Err(session.lost(error, "switching to character mode"));
        }
    }
    if session.rng.chance(0.5) {
        session.set_nick(&format!("t{session_number}"))?;
    }
    let lines = session.rng.range(5, 26);
    let silence_at = session.rng.chance(0.3).then(|| session.rng.range(0, lines));
    let visit_at = session
        .rng
        .chance(0.2)
        .then(|| session.rng.range(0, lines.saturating_sub(4)));
    let typing = matches!(transport, Transport::TelnetLinux | Transport::TelnetWindows);
    for line in 0..lines {
        // Telnet users type their lines key by key, which takes seconds of its own.
        let (low, high) = if typing { (0.5, 3.0) } else { (0.3, 1.7) };
        let next = Instant::now() + session.rng.seconds(low, high);
        if !session.idle(next, stop)? {
            break;
        }
        if silence_at == Some(line) {
            let until = Instant::now() + session.rng.seconds(5.0, 20.0);
            if !session.idle(until, stop)? {
                break;
            }
        }
        if visit_at == Some(line) {
            session.enter(1)?;
        }
        if visit_at.is_some_and(|at| line == at + 4) {
            session.enter(LOBBY)?;
        }
        match session.rng.unit() {
            r if r < 0.02 => drop(session.command("/who", "* in ")?),
            r if r < 0.04 => drop(session.command("/rooms", "* rooms (")?),
            _ => session.say()?,
        }
    }
    // People pause before they change telnet's mode or leave. (A mode change sent in the
    // same segment as the Enter before it is taken by the server before that Enter: the
    // line is then not echoed, and the next incoming line lands on it.)
    let never = AtomicBool::new(false);
    let pause = Instant::now() + session.rng.seconds(1.0, 2.5);
    session.idle(pause, &never)?;
    if transport == Transport::TelnetLinux && session.rng.chance(0.3) {
        if let Err(error) = session.link().telnet_mode(false) {
            return Err(session.lost(error, "switching back to line mode"));
        }
        session.say()?;
        let pause = Instant::now() + session.rng.seconds(1.0, 2.5);
        session.idle(pause, &never)?;
    }
    if session.rng.chance(0.5) {
        session.quit()
    } else {
        session.close()
    }
}

/// A lurker: joins, reads for a while, leaves without a word (a tenth with a reset).
fn lurk(context: &Context, kind: usize, seed: u64) -> Result<(), Ended> {
    let mut session = Session::join(context, kind, Receiver::Other, seed)?;
    let until = Instant::now() + session.rng.seconds(20.0, 120.0);
    session.idle(until, &context.stop)?;
    if context.kinds[kind].transport != Transport::Nc && session.rng.chance(0.1) {
        session.reset();
        Ok(())
    } else {
        session.close()
    }
}

/// Connects and goes without a word: before a TLS handshake, right after it, at once
/// after connecting (a port scan), or after a few silent seconds.
fn visit_silently(context: &Context, kind: usize, seed: u64) -> Result<(), Ended> {
    let spec = &context.kinds[kind];
    let node = &context.nodes[spec.node];
    let mut rng = Rng::new(seed);
    let stats = &context.stats;
    let failed = |error: io::Error| {
        stats.fail(
            Some(kind),
            "silent visit failed",
            format!("{} on {}: {error}", spec.name, node.name),
        );
        Ended
    };
    match rng.range(0, 3) {
        0 => {
            let stream = connect_tcp(node.chat).map_err(failed)?;
            Stats::add(&stats.connections_opened, 1);
            drop(stream);
            Ok(())
        }
        1 if node.tls => {
            let mut stream = connect_tls(node.chat, &context.tls).map_err(failed)?;
            Stats::add(&stats.connections_opened, 1);
            let _ = stream.finish();
            reset_tcp(stream.tcp());
            Ok(())
        }
        _ => {
            let mut session = Session::join(context, kind, Receiver::Other, seed)?;
            let until = Instant::now() + rng.seconds(1.0, 5.0);
            session.idle(until, &context.stop)?;
            session.close()
        }
    }
}

/// Loads the page and goes (a visitor whose browser never opens the chat, a link checker).
fn visit_page(context: &Context, kind: usize) -> Result<(), Ended> {
    let node = &context.nodes[context.kinds[kind].node];
    let tls = node.tls.then_some(&context.tls);
    match load_page(node.web, tls, &["/"]) {
        Ok(opened) => {
            Stats::add(&context.stats.connections_opened, opened);
            Ok(())
        }
        Err(error) => {
            context.stats.fail(
                Some(kind),
                "page load failed",
                format!("{} on {}: {error}", context.kinds[kind].name, node.name),
            );
            Err(Ended)
        }
    }
}

/// A witness, set up: connected, named, in its room.
pub fn witness_join<'a>(
    context: &'a Context,
    kind: usize,
    index: usize,
    room: usize,
) -> Result<Session<'a>, Ended> {
    let mut session = Session::join(context, kind, Receiver::Witness(index), index as u64)?;
    if context.kinds[kind].transport == Transport::TelnetLinux
        && let Err(error) = session.link().telnet_mode(true)
    {
        return Err(session.lost(error, "switching to character mode"));
    }
    session.set_nick(&context.witness_nicks[index])?;
    if room != LOBBY {
        session.enter(room)?;
    }
    Ok(session)
}

/// A witness's run: reads until told to leave, then quits.
pub fn witness_run(context: &Context, mut session: Session<'_>, index: usize) {
    if session
        .idle(
            Instant::now() + Duration::from_secs(365 * 24 * 3600),
            &context.witnesses_leave,
        )
        .is_err()
    {
        context.ledger.witness_lost(index);
        return;
    }
    let _ = session.quit();
}
