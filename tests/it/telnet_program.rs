//! The real `telnet` program, typed into as a person would, under tmux: character mode works
//! end to end (negotiation, echo, editing keys, the input line kept under incoming chat).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tcpchat::Config;

use crate::support::{self, LineClient, PATIENCE, start_chat};

#[test]
fn telnet_in_character_mode_edits_and_keeps_its_input_line_under_incoming_chat() {
    if !support::programs_available(&["telnet", "tmux"]) {
        return;
    }
    let server = start_chat(Config::localhost());
    let address = server.local_addr();
    let (mut bob, bob_nick) = LineClient::join(address);

    let terminal = Terminal::start(&["telnet", "127.0.0.1", &address.port().to_string()]);
    terminal.wait_for_screen("the welcome", |screen| screen.contains("* welcome, "));
    let joined = bob.expect_line(" joined");
    let telnet_nick = joined
        .strip_prefix("* ")
        .and_then(|rest| rest.strip_suffix(" joined"))
        .unwrap_or_else(|| panic!("a join notice, not {joined:?}"));

    terminal.send_keys(&["C-]"]);
    terminal.wait_for_screen("the telnet> prompt", |screen| screen.contains("telnet>"));
    terminal.type_text("mode character");
    terminal.send_keys(&["Enter"]);
    // telnet turns its terminal's echo off once it has asked the server to echo (DO ECHO),
    // and the keys typed from then on reach the server after that request. Keys typed before
    // would be echoed twice: once by the terminal, once by the server.
    terminal.wait_for_character_mode();

    terminal.type_text("hellp");
    terminal.send_keys(&["BSpace"]);
    terminal.type_text("o wor");
    terminal.wait_for_screen("the edited input line", |screen| {
        last_line(screen) == Some("hello wor")
    });

    bob.send("hi from bob");
    let bob_line = format!("[{bob_nick}] hi from bob");
    // Waits for the whole redraw: the server writes it in one go, but the terminal may
    // show it in pieces.
    let screen = terminal.wait_for_screen("bob's line with the input line below it", |screen| {
        screen.lines().any(|line| line.contains(&bob_line))
            && last_line(screen) == Some("hello wor")
    });
    let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    let bob_row = lines
        .iter()
        .position(|line| line.contains(&bob_line))
        .expect("bob's line on screen");
    assert_eq!(
        lines.get(bob_row + 1).copied(),
        Some("hello wor"),
        "the input line is not redrawn right below bob's line:\n{screen}"
    );
    assert!(
        !lines
            .iter()
            .any(|line| line.contains("hello wor") && line.contains("hi from bob")),
        "the input line and bob's line share a row:\n{screen}"
    );

    terminal.type_text("ld");
    terminal.send_keys(&["Enter"]);
    assert_eq!(
        bob.expect_line("hello world"),
        format!("[{telnet_nick}] hello world")
    );
}

/// The last line of a screen with anything on it, without its trailing blanks.
fn last_line(screen: &str) -> Option<&str> {
    screen
        .lines()
        .map(str::trim_end)
        .rfind(|line| !line.is_empty())
}

/// A program running in a detached tmux session of its own, on a tmux server of its own
/// (a private socket), so a test never touches the user's tmux. Dropping it kills that
/// server, and with it the program, also when the test panics.
struct Terminal {
    name: String,
    socket_path: String,
}

impl Terminal {
    /// How long to wait between two looks at the screen: nothing tells us when it changes.
    const POLL_PAUSE: Duration = Duration::from_millis(20);

    fn start(program: &[&str]) -> Terminal {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "tcpchat-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        );
        let mut terminal = Terminal {
            name,
            socket_path: String::new(),
        };
        // No user configuration (-f /dev/null); a program that exits leaves its last
        // screen behind (remain-on-exit), for the failure message.
        let mut args = vec!["-f", "/dev/null", "start-server", ";"];
        args.extend(["set-option", "-g", "remain-on-exit", "on", ";"]);
        args.extend([
            "new-session",
            "-d",
            "-s",
            &terminal.name,
            "-x",
            "100",
            "-y",
            "30",
        ]);
        args.extend(program);
        terminal.tmux(&args);
        terminal.socket_path = terminal.display("#{socket_path}");
        terminal
    }

    /// Presses keys by tmux's names for them (`Enter`, `BSpace`, `C-]`).
    fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.name];
        args.extend(keys);
        self.tmux(&args);
    }

    /// Types `text` as it is, in one go.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", &self.name, "-l", text]);
    }

    /// What the screen shows now, one line per row.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    /// Looks at the screen until `shows` holds for it; returns that screen. Fails with the
    /// last screen seen if it does not happen within PATIENCE.
    fn wait_for_screen(&self, what: &str, shows: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if shows(&screen) {
                return screen;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{what} not on screen within {PATIENCE:?}; the screen:\n{}",
                    screen.trim_end()
                );
            }
            std::thread::sleep(Self::POLL_PAUSE);
        }
    }

    /// Waits until the program has put its terminal in character mode: no line editing and
    /// no echo by the terminal (`-icanon -echo`, as stty shows them).
    fn wait_for_character_mode(&self) {
        let tty = self.display("#{pane_tty}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let output = Command::new("stty")
                .args(["-F", &tty, "-a"])
                .output()
                .expect("run stty");
            let settings = String::from_utf8_lossy(&output.stdout);
            let mut flags = settings.split_whitespace();
            if flags.clone().any(|flag| flag == "-icanon") && flags.any(|flag| flag == "-echo") {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "terminal not in character mode within {PATIENCE:?}: {settings}{}\n\
                     the screen:\n{}",
                    String::from_utf8_lossy(&output.stderr),
                    self.screen().trim_end()
                );
            }
            std::thread::sleep(Self::POLL_PAUSE);
        }
    }

    /// A tmux format (`#{...}`) for the session's pane.
    fn display(&self, format: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", &self.name, format])
            .trim_end()
            .to_owned()
    }

    /// Runs a tmux command on this terminal's own server; returns its output.
    fn tmux(&self, args: &[&str]) -> String {
        let output = self.run_tmux(args);
        assert!(
            output.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("tmux output in UTF-8")
    }

    fn run_tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.name])
            .args(args)
            // Run from inside tmux, the test would otherwise be asked not to nest sessions.
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.run_tmux(&["kill-server"]);
        // tmux leaves its socket file behind.
        if !self.socket_path.is_empty() {
            let _ = std::fs::remove_file(Path::new(&self.socket_path));
        }
    }
}
