//! Running as a systemd service: socket activation through the real
//! `systemd-socket-activate`, READY=1 and STOPPING=1 on a notify socket, the journal's log
//! format, the unit files checked by `systemd-analyze`, and the man pages and completions
//! generated from the command line.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use crate::support::{
    BinaryServer, LineClient, LoggedProcess, PATIENCE, TempDir, forward_lines, programs_available,
    spawn_with_log,
};

const TCPCHAT: &str = env!("CARGO_BIN_EXE_tcpchat");

#[test]
fn socket_activation_serves_on_the_listener_systemd_passes() {
    if !programs_available(&["systemd-socket-activate"]) {
        return;
    }
    let address = free_address();
    // An address this machine does not have: binding it would fail, so serving at all
    // shows that tcpchat used the socket it was given.
    let mut activated = activated(
        &["-l", &address.to_string()],
        &["--host", "192.0.2.1", "--port", "1"],
    );
    // The first connection starts tcpchat; it waits in the socket's queue meanwhile.
    let (mut alice, _) = LineClient::join(address);
    let startup = activated.expect_log(&format!("listening on {address}"));
    assert!(
        startup.iter().any(|line| line.contains(&format!(
            "socket activation: the chat uses the listener systemd passed, on {address}; \
             --host and --port are ignored"
        ))),
        "{startup:?}"
    );
    let (mut bob, bob_nick) = LineClient::join(address);
    bob.send("hello through systemd's socket");
    assert_eq!(
        alice.expect_line("hello"),
        format!("[{bob_nick}] hello through systemd's socket")
    );
    activated.signal("TERM");
    alice.expect_line("* server is shutting down");
    bob.send("/quit");
    alice.send("/quit");
    alice.expect_closed();
    let (status, log) = activated.wait_exit();
    assert!(status.success(), "exit status {status:?}, log {log:?}");
    assert!(
        log.iter().any(|line| line.contains("server closed")),
        "{log:?}"
    );
}

#[test]
fn a_second_passed_socket_named_web_serves_the_web_page() {
    if !programs_available(&["systemd-socket-activate"]) {
        return;
    }
    let (web, chat) = (free_address(), free_address());
    // The web socket comes first: its name, not its place, says what it is for.
    let mut activated = activated(
        &[
            "-l",
            &web.to_string(),
            "-l",
            &chat.to_string(),
            "--fdname=web:chat",
        ],
        &[],
    );
    let (_alice, _) = LineClient::join(chat);
    let startup = activated.expect_log(&format!("listening on {chat}"));
    assert!(
        startup.iter().any(|line| line.contains(&format!(
            "socket activation: the web page uses the listener systemd passed, on {web}"
        ))),
        "{startup:?}"
    );
    let mut browser = TcpStream::connect(web).expect("connect to the web socket");
    browser.set_read_timeout(Some(PATIENCE)).expect("timeout");
    browser
        .write_all(format!("GET / HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("send request");
    let mut response = String::new();
    let _ = browser.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "{:?}",
        response.lines().next()
    );
}

#[test]
fn ready_is_notified_once_listening_and_stopping_when_the_drain_begins() {
    let folder = TempDir::new("notify");
    let notify_path = folder.0.join("notify.socket");
    let notify_socket = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    notify_socket
        .set_read_timeout(Some(PATIENCE))
        .expect("timeout");
    let mut command = Command::new(TCPCHAT);
    command
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("NOTIFY_SOCKET", &notify_path);
    let (child, log) = spawn_with_log(command);
    let mut server = BinaryServer::from_child(child, log);

    let ready = next_notice(&notify_socket);
    assert!(ready.lines().any(|line| line == "READY=1"), "{ready:?}");
    // The real port, known only once bound: READY=1 comes after `listening on`.
    assert!(
        ready.contains(&format!("STATUS=listening on {}", server.address)),
        "{ready:?}"
    );
    let (mut alice, _) = LineClient::join(server.address);

    server.signal("TERM");
    let stopping = next_notice(&notify_socket);
    assert!(
        stopping.lines().any(|line| line == "STOPPING=1"),
        "{stopping:?}"
    );
    alice.expect_line("* server is shutting down");
    server.expect_log("stopped accepting");
    alice.send("/quit");
    alice.expect_closed();
    let (status, _) = server.wait_exit();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn log_lines_to_the_journal_carry_a_priority_and_no_timestamp() {
    let mut command = Command::new(TCPCHAT);
    command.args(["--host", "127.0.0.1", "--port", "0", "-v"]);
    let (child, log) = spawn_with_stderr_as_journal(command, JournalStream::Matching);
    let mut server = LoggedProcess::new(child, log);
    let startup = server.expect_log("listening on ");
    let listening = startup.last().expect("the line found");
    assert!(
        listening.starts_with("<6>listening on 127.0.0.1:"),
        "{startup:?}"
    );
    let address: SocketAddr = listening
        .trim_start_matches("<6>listening on ")
        .parse()
        .expect("address");
    let (_alice, nick) = LineClient::join(address);
    let joined = server.expect_log(&format!("{nick} joined from"));
    assert!(
        joined
            .last()
            .is_some_and(|line| line.starts_with(&format!("<6>{nick} joined from 127.0.0.1:"))),
        "{joined:?}"
    );
    // -v: each connection's details are debug lines.
    assert!(
        joined.iter().any(|line| line.starts_with("<7>")),
        "no debug line in {joined:?}"
    );

    // An error from main itself: the port is taken now.
    let mut command = Command::new(TCPCHAT);
    command.args(["--host", "127.0.0.1", "--port", &address.port().to_string()]);
    let (mut child, log) = spawn_with_stderr_as_journal(command, JournalStream::Matching);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(1));
    let lines: Vec<String> = log.iter().collect();
    assert_eq!(
        lines,
        vec![format!(
            "<3>error: cannot listen on {address}: address already in use"
        )]
    );
}

#[test]
fn a_mistyped_option_is_an_error_in_the_journal_on_every_line() {
    let mut command = Command::new(TCPCHAT);
    command.args(["--prot", "4001"]);
    let (mut child, log) = spawn_with_stderr_as_journal(command, JournalStream::Matching);
    let status = child.wait().expect("wait");
    // 2: the unit's RestartPreventExitStatus (a typo is not mended by starting again).
    assert_eq!(status.code(), Some(2));
    let lines: Vec<String> = log.iter().collect();
    assert!(
        lines
            .first()
            .is_some_and(|line| line.starts_with("<3>error: unexpected argument '--prot'")),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|line| line.starts_with("<3>")),
        "{lines:?}"
    );
}

#[test]
fn a_journal_stream_that_is_not_stderr_keeps_the_terminal_format() {
    let mut command = Command::new(TCPCHAT);
    command.args(["--host", "127.0.0.1", "--port", "0"]);
    // As for a program whose stderr was redirected after systemd set the variable.
    let (child, log) = spawn_with_stderr_as_journal(command, JournalStream::Other);
    let server = BinaryServer::from_child(child, log);
    let (status, rest) = {
        server.signal("TERM");
        server.wait_exit()
    };
    assert!(status.success(), "exit status {status:?}");
    let closed = rest
        .iter()
        .find(|line| line.contains("server closed"))
        .unwrap_or_else(|| panic!("no `server closed` in {rest:?}"));
    // `2026-11-26T16:00:00.123Z INFO  server closed`
    assert!(
        closed.starts_with("20") && closed.contains("Z INFO  server closed"),
        "{closed:?}"
    );
}

#[test]
fn the_unit_files_pass_systemd_analyze_verify() {
    if !programs_available(&["systemd-analyze", "man"]) {
        return;
    }
    let folder = TempDir::new("units");
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    let service = fs::read_to_string(packaging.join("tcpchat.service")).expect("read service");
    // verify checks that ExecStart's program exists: the package installs it in /usr/bin,
    // this machine has it where cargo built it. Nothing else changes.
    let installed = "\nExecStart=/usr/bin/tcpchat $TCPCHAT_OPTS\n";
    assert!(service.contains(installed), "ExecStart changed");
    let service = service.replace(installed, &format!("\nExecStart={TCPCHAT} $TCPCHAT_OPTS\n"));
    fs::write(folder.0.join("tcpchat.service"), service).expect("write service");
    fs::copy(
        packaging.join("tcpchat.socket"),
        folder.0.join("tcpchat.socket"),
    )
    .expect("copy socket");
    // verify also looks up Documentation=man:tcpchat(1): the generated page.
    let man_folder = folder.0.join("man");
    let generated = Command::new(TCPCHAT)
        .args(["generate-assets"])
        .arg(man_folder.join("man1"))
        .output()
        .expect("run generate-assets");
    assert!(generated.status.success(), "{generated:?}");

    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(folder.0.join("tcpchat.service"))
        .arg(folder.0.join("tcpchat.socket"))
        .env("MANPATH", &man_folder)
        .output()
        .expect("run systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // An unknown or misspelt setting is only a warning: any output at all fails.
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {}\n{said}",
        verify.status
    );

    // The hardening stays in systemd's "OK" band (exposure 2.0 or less of 10).
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(folder.0.join("tcpchat.service"))
        .output()
        .expect("run systemd-analyze security");
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(
        security.status.success(),
        "exposure above 2.0: {}",
        report.lines().last().unwrap_or_default()
    );
}

#[test]
fn man_pages_and_completions_mention_every_long_option_of_help() {
    let folder = TempDir::new("assets");
    let generated = Command::new(TCPCHAT)
        .arg("generate-assets")
        .arg(&folder.0)
        .output()
        .expect("run generate-assets");
    assert!(generated.status.success(), "{generated:?}");
    let read = |name: &str| {
        fs::read_to_string(folder.0.join(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
    };
    // roff escapes each hyphen: `\-\-max\-clients`.
    let main_page = read("tcpchat.1").replace("\\-", "-");
    let (bash, zsh, fish) = (read("tcpchat.bash"), read("_tcpchat"), read("tcpchat.fish"));

    let options = long_options(&[]);
    assert!(options.len() > 20, "too few options found: {options:?}");
    for option in &options {
        assert!(main_page.contains(option), "tcpchat.1 lacks {option}");
        assert!(bash.contains(option), "tcpchat.bash lacks {option}");
        assert!(zsh.contains(option), "_tcpchat lacks {option}");
        let fish_option = format!("-l {}", option.trim_start_matches("--"));
        assert!(
            fish.contains(&fish_option),
            "tcpchat.fish lacks {fish_option}"
        );
    }
    for subcommand in ["chat", "echo", "dump", "send"] {
        let page = read(&format!("tcpchat-{subcommand}.1")).replace("\\-", "-");
        assert!(
            main_page.contains(&format!("tcpchat-{subcommand}(1)")),
            "tcpchat.1 does not point to tcpchat-{subcommand}(1)"
        );
        for option in long_options(&[subcommand]) {
            assert!(
                page.contains(&option),
                "tcpchat-{subcommand}.1 lacks {option}"
            );
            assert!(
                bash.contains(&option),
                "tcpchat.bash lacks {subcommand} {option}"
            );
            assert!(
                zsh.contains(&option),
                "_tcpchat lacks {subcommand} {option}"
            );
        }
    }
    for file in [&bash, &zsh, &fish] {
        assert!(
            !file.contains("generate-assets"),
            "completes generate-assets"
        );
    }
}

/// The long options `tcpchat ARGS --help` lists (`--max-clients`, ...).
fn long_options(args: &[&str]) -> BTreeSet<String> {
    let help = Command::new(TCPCHAT)
        .args(args)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(help.status.success(), "{help:?}");
    String::from_utf8_lossy(&help.stdout)
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("--"))
        .map(|word| {
            word.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .map(|name| format!("--{name}"))
        .collect()
}

/// An address on 127.0.0.1 that nothing listens on (a moment ago).
fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

/// The next datagram on the notify socket, as text.
fn next_notice(socket: &UnixDatagram) -> String {
    let mut buffer = [0; 4096];
    let count = socket
        .recv(&mut buffer)
        .unwrap_or_else(|error| panic!("no notice within {PATIENCE:?}: {error}"));
    String::from_utf8_lossy(&buffer[..count]).into_owned()
}

/// What JOURNAL_STREAM says, compared with the stderr tcpchat really has.
enum JournalStream {
    /// The device and inode of tcpchat's stderr, as systemd sets it.
    Matching,
    /// Another stream's.
    Other,
}

/// Spawns `command` with stderr on a pipe and JOURNAL_STREAM naming that pipe (or not);
/// the lines arrive on the channel.
fn spawn_with_stderr_as_journal(
    mut command: Command,
    journal: JournalStream,
) -> (Child, mpsc::Receiver<String>) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    let stream = match journal {
        JournalStream::Matching => &writer,
        JournalStream::Other => &std::io::pipe().expect("another pipe").1,
    };
    let metadata = fs::File::from(stream.as_fd().try_clone_to_owned().expect("dup"))
        .metadata()
        .expect("stat the pipe");
    command
        .env(
            "JOURNAL_STREAM",
            format!("{}:{}", metadata.dev(), metadata.ino()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer);
    let child = command.spawn().expect("spawn tcpchat");
    // The command holds the pipe's other writing end: without it, the reader sees the end
    // of the stream when tcpchat exits.
    drop(command);
    (child, forward_lines(reader))
}

/// Runs tcpchat under `systemd-socket-activate ACTIVATE_ARGS tcpchat TCPCHAT_ARGS`,
/// and waits until that listens. At the first connection it execs tcpchat (in the same
/// process) with the listening sockets as descriptors 3 and up.
fn activated(activate_args: &[&str], tcpchat_args: &[&str]) -> LoggedProcess {
    let mut command = Command::new("systemd-socket-activate");
    command.args(activate_args).arg(TCPCHAT).args(tcpchat_args);
    let mut activated = LoggedProcess::spawn(command);
    activated.expect_log("Listening on ");
    activated
}
