//! `--cluster`: nodes joined through a real `redis-server` on a free port (persistence
//! off), in-process and as the real binary: one chat, one order, and every failure told.

use std::net::SocketAddr;
use std::time::Duration;

use tcpchat::{Config, Server};

use crate::redis_server::RedisServer;
use crate::support::{BinaryServer, LineClient, start_chat};

fn node_config(redis: &RedisServer, name: &str) -> Config {
    Config {
        cluster: Some(redis.url()),
        node_name: Some(name.to_owned()),
        cluster_timeout: Duration::from_secs(2),
        rate: 0,
        ..Config::localhost()
    }
}

fn node(redis: &RedisServer, name: &str) -> Server {
    // The nodes' log, shown with a failing test's output.
    let _ = env_logger::builder()
        .is_test(true)
        .filter_level(log::LevelFilter::Debug)
        .filter_module("redis", log::LevelFilter::Info)
        .try_init();
    start_chat(node_config(redis, name))
}

/// Joins `server` and waits until the link works both ways: `witness`, on another node,
/// sees the join (the newcomer's node publishes, the witness's reads), and the newcomer gets
/// a private line from the witness (the other way round). A node whose link is not up yet
/// keeps what its clients say until it is, so seeing one direction says nothing of the other.
fn join_linked(server: SocketAddr, witness: &mut LineClient) -> (LineClient, String) {
    let (mut client, nick) = LineClient::join(server);
    loop {
        let line = witness.next_line().expect("the join notice");
        // Joins at the same moment share one notice: `* ann, bob and cy joined`.
        if line.starts_with("* ") && line.ends_with(" joined") && line.contains(&nick) {
            break;
        }
    }
    witness.send(&format!("/msg {nick} linked"));
    witness.expect_line(&format!("[you -> {nick}] linked"));
    client.expect_line("-> you] linked");
    (client, nick)
}

#[test]
fn nodes_share_one_chat_with_nicks_who_msg_and_kick() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = start_chat(Config {
        op_password: Some(String::from("sesame")),
        ..node_config(&redis, "a")
    });
    let b = node(&redis, "b");
    let (mut ann, _) = LineClient::join(a.local_addr());
    let (mut bob, bob_guest) = join_linked(b.local_addr(), &mut ann);
    assert!(bob_guest.starts_with("guest-"), "{bob_guest}");

    bob.send("/nick bob");
    assert_eq!(bob.expect_line("you are now"), "* you are now bob");
    assert_eq!(
        ann.expect_line("is now"),
        format!("* {bob_guest} is now bob")
    );
    // Nicks are unique across the nodes.
    ann.send("/nick BOB");
    assert_eq!(ann.expect_line("taken"), "! nick BOB is taken");
    ann.send("/nick ann");
    ann.expect_line("* you are now ann");
    bob.expect_line("* ");

    ann.send("/who");
    assert_eq!(ann.expect_line("* in lobby"), "* in lobby (2): ann, bob");
    ann.send("/msg bob psst");
    assert_eq!(ann.expect_line("psst"), "[you -> bob] psst");
    assert_eq!(bob.expect_line("psst"), "[ann -> you] psst");

    ann.send("/op sesame");
    ann.expect_line("you are now an operator");
    ann.send("/kick bob enough");
    assert_eq!(ann.expect_line("kicked"), "* kicked bob");
    let bob_saw = bob.expect_closed();
    assert!(
        bob_saw.contains(&String::from("* you were kicked by ann: enough")),
        "{bob_saw:?}"
    );
    assert_eq!(
        ann.expect_line("left"),
        "* bob left (kicked by ann: enough)"
    );
    // The nick is free again, on any node.
    let (mut carol, _) = join_linked(b.local_addr(), &mut ann);
    carol.send("/nick bob");
    carol.expect_line("* you are now bob");
}

#[test]
fn two_senders_on_two_nodes_are_seen_in_one_order_by_everyone() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let (mut reader_a, _) = LineClient::join(a.local_addr());
    let (mut reader_b, _) = join_linked(b.local_addr(), &mut reader_a);
    let (mut sender_a, _) = join_linked(a.local_addr(), &mut reader_b);
    let (mut sender_b, _) = join_linked(b.local_addr(), &mut reader_a);
    reader_b.expect_line("joined");
    const LINES: usize = 300;
    let a_thread = std::thread::spawn(move || {
        for n in 0..LINES {
            sender_a.send(&format!("a{n}"));
        }
        sender_a
    });
    for n in 0..LINES {
        sender_b.send(&format!("b{n}"));
    }
    let _sender_a = a_thread.join().expect("sender a");
    let collect = |reader: &mut LineClient| -> Vec<String> {
        let mut said = Vec::new();
        while said.len() < 2 * LINES {
            let line = reader.next_line().expect("a line");
            if let Some((_, text)) = line.split_once("] ")
                && (text.starts_with('a') || text.starts_with('b'))
                && text[1..].parse::<usize>().is_ok()
            {
                said.push(text.to_owned());
            }
        }
        said
    };
    let seen_on_a = collect(&mut reader_a);
    let seen_on_b = collect(&mut reader_b);
    assert_eq!(seen_on_a.len(), 2 * LINES);
    assert!(seen_on_a == seen_on_b, "the two nodes saw different orders");
    // Each sender's lines in the order sent, none lost or doubled.
    for prefix in ['a', 'b'] {
        let own: Vec<&String> = seen_on_a.iter().filter(|t| t.starts_with(prefix)).collect();
        let expected: Vec<String> = (0..LINES).map(|n| format!("{prefix}{n}")).collect();
        assert!(
            own.iter()
                .map(|s| s.as_str())
                .eq(expected.iter().map(|s| s.as_str()))
        );
    }
}

#[test]
fn a_killed_node_is_announced_as_lost_and_frees_its_nicks() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis, "a");
    let (mut ann, _) = LineClient::join(a.local_addr());
    let url = redis.url();
    let doomed = BinaryServer::start(&[
        "--cluster",
        &url,
        "--node-name",
        "doomed",
        "--cluster-timeout",
        "1",
    ]);
    let (mut bob, _) = join_linked(doomed.address, &mut ann);
    bob.send("/nick bob");
    ann.expect_line("is now bob");
    doomed.signal("KILL");
    // Once its lease runs out (1 s), a node that notices tells everyone.
    assert_eq!(ann.expect_line("left"), "* bob left (node lost)");
    ann.send("/nick bob");
    ann.expect_line("* you are now bob");
}

#[test]
fn a_node_stopped_with_ctrl_c_lets_its_users_leave_normally() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis, "a");
    let b = start_chat(Config {
        drain_timeout: Duration::from_secs(0),
        ..node_config(&redis, "b")
    });
    let (mut ann, _) = LineClient::join(a.local_addr());
    let (_bob, bob_nick) = join_linked(b.local_addr(), &mut ann);
    b.shutdown();
    b.join().expect("b stops cleanly");
    assert_eq!(
        ann.expect_line("left"),
        format!("* {bob_nick} left (server shutting down)")
    );
}

#[test]
fn redis_killed_or_paused_loses_nothing_and_doubles_nothing() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let (mut ann, ann_nick) = LineClient::join(a.local_addr());
    let (mut amy, amy_nick) = join_linked(a.local_addr(), &mut ann);
    let (mut bob, bob_nick) = join_linked(b.local_addr(), &mut ann);
    amy.expect_line(&format!("{bob_nick} joined"));

    for round in ["killed", "paused"] {
        if round == "killed" {
            redis.restart();
            // A restarted Redis is empty: the nodes must notice they lost it all the same.
        } else {
            redis.signal("STOP");
        }
        let lost = "* cluster link lost: you are chatting with this server only";
        if round == "paused" {
            ann.expect_line(lost);
            bob.expect_line(lost);
        }
        // Local chat goes on.
        ann.send(&format!("said while Redis was {round}"));
        assert_eq!(
            amy.expect_line(&format!("while Redis was {round}")),
            format!("[{ann_nick}] said while Redis was {round}")
        );
        bob.send(&format!("bob while Redis was {round}"));
        if round == "paused" {
            redis.signal("CONT");
        }
        // Back: each side gets what the other said meanwhile, once, marked (b's reader
        // may be back before its writer, and so before b calls the link back).
        let [said, _] = bob.expect_lines_in_any_order([
            &format!("said while Redis was {round}"),
            "* cluster link back",
        ]);
        assert_eq!(
            said,
            format!("* said during the split: [{ann_nick}] said while Redis was {round}")
        );
        assert_eq!(
            amy.expect_line(&format!("bob while Redis was {round}")),
            format!("* said during the split: [{bob_nick}] bob while Redis was {round}")
        );
        // And the cluster chats as one again, with nothing doubled before this line.
        amy.send(&format!("after {round}"));
        assert_eq!(
            bob.expect_line(&format!("after {round}")),
            format!("[{amy_nick}] after {round}")
        );
        assert_eq!(
            ann.expect_line(&format!("after {round}")),
            format!("[{amy_nick}] after {round}")
        );
        ann.expect_nothing_pending();
        bob.expect_nothing_pending();
    }
}

#[test]
fn a_nick_taken_on_both_sides_of_a_split_stays_with_whoever_took_it_first() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let (mut ann, _) = LineClient::join(a.local_addr());
    let (mut bob, _) = join_linked(b.local_addr(), &mut ann);
    redis.signal("STOP");
    let lost = "* cluster link lost: you are chatting with this server only";
    ann.expect_line(lost);
    bob.expect_line(lost);
    ann.send("/nick zed");
    ann.expect_line("* you are now zed");
    bob.send("/nick ZED");
    bob.expect_line("* you are now ZED");
    redis.signal("CONT");
    // bob took it later: bob is renamed and told why; ann keeps it. Bob's server may
    // settle the claim before ann's rename reaches it through the stream, or after.
    let [told, renamed, _] = bob.expect_lines_in_any_order([
        "! someone on another server had the nick",
        "* you are now guest-",
        " is now zed",
    ]);
    assert!(told.contains("you are now guest-"), "{told}");
    let guest = renamed.trim_start_matches("* you are now ").to_owned();
    bob.send("/who");
    let who = bob.expect_line("* in lobby");
    assert_eq!(who, format!("* in lobby (2): {guest}, zed"));
    ann.expect_line(&format!("is now {guest}"));
    ann.send("/who");
    assert_eq!(ann.expect_line("* in lobby"), who);
}

#[test]
fn a_node_that_reaches_redis_late_tells_its_clients_who_is_on_the_others() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let (mut ann, _) = LineClient::join(a.local_addr());
    let (mut bob, _) = join_linked(b.local_addr(), &mut ann);
    ann.send("/nick ann");
    ann.expect_line("* you are now ann");
    bob.send("/nick bob");
    bob.expect_line("* you are now bob");
    // c starts while Redis is stalled: what a and b said so far is in the stream before c
    // reads it, so c learns of ann and bob from their nodes' lists of members.
    redis.signal("STOP");
    let c = node(&redis, "c");
    let (mut cy, _) = LineClient::join(c.local_addr());
    redis.signal("CONT");
    let mut joined = String::new();
    while !(joined.contains("ann") && joined.contains("bob")) {
        joined += &cy.expect_line(" joined");
    }
    cy.send("/who");
    let who = cy.expect_line("* in lobby");
    assert!(
        who.starts_with("* in lobby (3): ") && who.contains("ann") && who.contains("bob"),
        "{who}"
    );
}

#[test]
fn two_renames_in_a_row_both_take_effect_in_order() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let (mut ann, _) = LineClient::join(a.local_addr());
    let (mut bob, _) = join_linked(b.local_addr(), &mut ann);
    bob.send_bytes(b"/nick first\n/nick second\n");
    assert_eq!(bob.expect_line("you are now"), "* you are now first");
    assert_eq!(bob.expect_line("you are now"), "* you are now second");
    ann.expect_line("is now first");
    ann.expect_line("first is now second");
    // The first nick was given back: someone else can take it.
    ann.send("/nick first");
    ann.expect_line("* you are now first");
}

/// The number of `talker`'s line `nN` (marked as said during the split or not).
fn number_of(line: &str, talker: &str) -> Option<usize> {
    let line = line
        .strip_prefix("* said during the split: ")
        .unwrap_or(line);
    line.strip_prefix(&format!("[{talker}] n"))?.parse().ok()
}

/// What `reader` receives of `talker`'s numbered lines until `nLAST`, in the order
/// received; `at_each` sees each number as it comes.
fn numbered_lines(
    reader: &mut LineClient,
    talker: &str,
    last: usize,
    mut at_each: impl FnMut(usize),
) -> Vec<usize> {
    let mut numbers = Vec::new();
    while numbers.last() != Some(&last) {
        let line = reader.next_line().expect("the talker's lines");
        if let Some(number) = number_of(&line, talker) {
            at_each(number);
            numbers.push(number);
        }
    }
    numbers
}

#[test]
fn a_talkers_lines_keep_their_order_on_every_node_when_redis_stalls() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // Heartbeats far apart, so that none falls in the stall below.
    let config = |name| Config {
        cluster_timeout: Duration::from_secs(30),
        ..node_config(&redis, name)
    };
    let (a, b) = (start_chat(config("a")), start_chat(config("b")));
    let (mut amy, _) = LineClient::join(a.local_addr());
    let (mut ann, ann_nick) = join_linked(a.local_addr(), &mut amy);
    let (mut bob, _) = join_linked(b.local_addr(), &mut amy);
    ann.expect_line("joined");
    const LINES: usize = 120;
    ann.send("n0");
    amy.expect_line(&format!("[{ann_nick}] n0"));
    // The stall's shape: Redis stops while the writer is idle, and ann goes on talking
    // (a line every 20 ms) only later, so that the reader finds the link lost while
    // ann's lines wait for the writer's answer. The sleep shapes the load; the test
    // waits for lines, never for time.
    redis.signal("STOP");
    std::thread::sleep(Duration::from_millis(800));
    let talker = std::thread::spawn(move || {
        for n in 1..LINES {
            ann.send(&format!("n{n}"));
            std::thread::sleep(Duration::from_millis(20));
        }
        ann
    });
    let mut on_a = vec![0];
    on_a.extend(numbered_lines(&mut amy, &ann_nick, LINES - 1, |n| {
        if n == LINES - 20 {
            redis.signal("CONT");
        }
    }));
    let _ann = talker.join().expect("the talker");
    let in_order: Vec<usize> = (0..LINES).collect();
    assert_eq!(on_a, in_order, "on the talker's node");
    let on_b = numbered_lines(&mut bob, &ann_nick, LINES - 1, |_| {});
    assert_eq!(on_b, in_order, "on the other node");
}

#[test]
fn a_line_said_just_before_redis_restarts_empty_reaches_every_node() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis, "a");
    let (mut ann, ann_nick) = LineClient::join(a.local_addr());
    let url = redis.url();
    let b = BinaryServer::start(&["--cluster", &url, "--node-name", "b"]);
    let (mut amy, _) = join_linked(a.local_addr(), &mut ann);
    let (mut bob, bob_nick) = join_linked(b.address, &mut ann);
    amy.expect_line("joined");
    // b stands still, so the line reaches a's clients through the stream and b has not
    // read it when Redis dies with it: b's reader must have stopped waiting in XREAD
    // (else Redis would hand b the line at once, into its socket's buffer).
    b.signal("STOP");
    redis.wait_until_a_reader_is_idle();
    ann.send("just before");
    amy.expect_line(&format!("[{ann_nick}] just before"));
    redis.restart();
    b.signal("CONT");
    let [just_before, _] = bob.expect_lines_in_any_order(["just before", "* cluster link back"]);
    assert_eq!(
        just_before,
        format!("* said during the split: [{ann_nick}] just before")
    );
    // Nobody gets it twice: a line after it is the next thing each node shows.
    bob.send("after the restart");
    for client in [&mut ann, &mut amy] {
        let next = client.expect_line("] ");
        assert_eq!(next, format!("[{bob_nick}] after the restart"));
    }
}
