//! A real browser in the chat: Debian's headless Chromium opens the `--web` page and chats
//! with an nc-like client both ways, typing with real key events. The test ends by saving a
//! screenshot of the page to docs/browser.png, which the README shows.
//!
//! Chromium is driven over the Chrome DevTools Protocol (CDP) by the smallest client that
//! does the job: one WebSocket to the page, one command at a time, each reply found by its
//! id. Events are read only to keep the page's errors for the failure messages.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tcpchat::Config;
use tungstenite::{Message, WebSocket};

use crate::support::{LineClient, PATIENCE, start_chat};

#[test]
fn headless_chromium_and_an_nc_client_chat_both_ways_through_the_page() {
    let Some(chromium) = chromium_program() else {
        return;
    };
    let server = start_chat(Config {
        web: Some("127.0.0.1:0".into()),
        ..Config::localhost()
    });
    let web_address = server
        .web_addr()
        .expect("a web address when Config::web is set");
    let (mut nc, nc_nick) = LineClient::join(server.local_addr());

    let mut browser = Browser::start(&chromium);
    browser.navigate(&format!("http://{web_address}/"));
    let browser_nick = browser.wait_for(
        "the page connected, with a nick in #nick",
        "document.querySelector('#status')?.getAttribute('data-state') === 'connected' \
         && document.querySelector('#nick')?.textContent.trim() || null",
    );
    let joined = format!("* {browser_nick} joined");
    assert_eq!(nc.expect_line(&joined), joined);

    nc.send("hello from nc");
    browser.wait_for_line(&format!("[{nc_nick}] hello from nc"));

    browser.type_line("#input", "hello from the browser");
    let from_browser = format!("[{browser_nick}] hello from the browser");
    assert_eq!(nc.expect_line("hello from the browser"), from_browser);

    // Whatever the page shows of its own line, it shows before this answer arrives (the
    // server sends each client its lines in order), so the screenshot is the same every run.
    nc.send("welcome, browser!");
    browser.wait_for_line(&format!("[{nc_nick}] welcome, browser!"));
    save_screenshot(&browser.screenshot());
}

/// Other users choose much of the chat's text (nicks, /me, messages), so the page takes its
/// nick, room, people and whether to come back after a close from the server's event lines
/// only. An nc client tries every line that once passed for the server's; none changes what
/// the page shows of itself, while a real rename, a /join and a kick do.
#[test]
fn the_page_takes_its_state_from_the_server_and_no_user_line_can_forge_it() {
    let Some(chromium) = chromium_program() else {
        return;
    };
    let server = start_chat(Config {
        web: Some("127.0.0.1:0".into()),
        op_password: Some(String::from("sesame")),
        ..Config::localhost()
    });
    let web_address = server
        .web_addr()
        .expect("a web address when Config::web is set");
    let (mut forger, forger_nick) = LineClient::join(server.local_addr());
    let (mut renamer, renamer_nick) = LineClient::join(server.local_addr());

    let mut browser = Browser::start(&chromium);
    browser.navigate(&format!("http://{web_address}/"));
    let page_nick = browser.wait_for(
        "the page connected, with a nick in #nick",
        "document.querySelector('#status')?.getAttribute('data-state') === 'connected' \
         && document.querySelector('#nick')?.textContent.trim() || null",
    );
    forger.expect_line(&format!("* {page_nick} joined"));
    browser.wait_for_people(&[&forger_nick, &renamer_nick, &page_nick]);

    forger.send("/nick you");
    assert_eq!(
        forger.expect_line("!"),
        "! nick you is reserved for the server"
    );
    // Each once read as the server's: a rename of the forger, its leaving, someone joining,
    // the page's own rename, a kick (no reconnecting), an empty room.
    let forgeries = [
        "/me is now teacher",
        "/me left (quit)",
        "/me joined",
        "* you are now teacher",
        "* you were kicked by teacher: cheating",
        "* in lobby (0): ",
    ];
    for forgery in forgeries {
        forger.send(forgery);
    }
    // Its answer comes once the server has taken every forgery, so the page gets them all
    // before the rename below.
    forger.send("/who");
    forger.expect_line("* in lobby (3): ");
    renamer.send("/nick zed");
    // The renamer gets the forgeries too (`[guest-1] * you are now teacher`): wait for the
    // server's own line.
    assert_eq!(
        renamer.expect_line("* you are now zed"),
        "* you are now zed"
    );
    browser.wait_for_line(&format!("* {renamer_nick} is now zed"));

    // The forgeries are shown, as the forger's actions.
    for forgery in forgeries {
        let action = forgery.trim_start_matches("/me ").trim_start_matches("* ");
        browser.wait_for_line(&format!("* {forger_nick} {}", action.trim_end()));
    }
    let actions = browser.evaluate("document.querySelectorAll('#messages .kind-action').length");
    assert_eq!(actions, forgeries.len(), "lines shown as actions");
    browser.wait_for_people(&[&forger_nick, "zed", &page_nick]);
    assert_eq!(browser.text_of("#nick"), page_nick);
    assert_eq!(browser.text_of("#room"), "lobby");
    let status = browser.evaluate("document.querySelector('#status').dataset.state");
    assert_eq!(status, "connected");

    browser.type_line("#input", "/join games");
    browser.wait_for(
        "#room showing games",
        "document.querySelector('#room').textContent === 'games' ? 'games' : null",
    );
    browser.wait_for_people(&[&page_nick]);

    forger.send("/op sesame");
    assert_eq!(forger.expect_line("operator"), "* you are now an operator");
    forger.send(&format!("/kick {page_nick} the test is over"));
    browser.wait_for_line(&format!(
        "* you were kicked by {forger_nick}: the test is over"
    ));
    // A page that meant to come back would say "disconnected, reconnecting..." at once.
    let status = browser.wait_for(
        "the page disconnected",
        "(status => status.dataset.state === 'disconnected' && status.textContent) \
         (document.querySelector('#status')) || null",
    );
    assert_eq!(status, "disconnected", "the status after a kick");
    let button = browser.evaluate(
        "(button => [!button.hidden, button.textContent])(document.querySelector('#reconnect'))",
    );
    assert_eq!(button, json!([true, "reconnect"]), "the reconnect button");
}

/// Where Debian's Chromium is: `chromium` on PATH, or /usr/bin/chromium. Without it the
/// test is skipped with a note on stderr, except in CI (`CI` set), where a skip would hide
/// a broken set-up.
fn chromium_program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .chain([PathBuf::from("/usr/bin/chromium")])
        .find(|program| program.is_file());
    if found.is_some() {
        return found;
    }
    let reason = "chromium not installed (neither on PATH nor /usr/bin/chromium)";
    if std::env::var_os("CI").is_some() {
        panic!("{reason}: CI must run this test (install Debian's chromium package)");
    }
    eprintln!("skipped: {reason}");
    None
}

/// The size of the page, and so of the screenshot.
const PAGE_WIDTH: u32 = 1000;
const PAGE_HEIGHT: u32 = 640;

/// Saves the screenshot as docs/browser.png, replacing the last one in one step (a rename),
/// so a reader of the file never sees half of it.
fn save_screenshot(png: &[u8]) {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    assert!(png.starts_with(SIGNATURE), "the screenshot is not a PNG");
    // The IHDR chunk comes first: width and height, big-endian, after its length and type.
    let dimension = |at: usize| {
        let bytes = png.get(at..at + 4).expect("a PNG header");
        u32::from_be_bytes(bytes.try_into().expect("four bytes"))
    };
    assert_eq!(
        (dimension(16), dimension(20)),
        (PAGE_WIDTH, PAGE_HEIGHT),
        "the screenshot's size"
    );
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    fs::create_dir_all(&docs).expect("create docs/");
    let unfinished = docs.join(format!("browser.png.{}", std::process::id()));
    fs::write(&unfinished, png).expect("write the screenshot");
    fs::rename(&unfinished, docs.join("browser.png")).expect("move the screenshot in place");
}

/// A headless Chromium with one page, driven over the DevTools protocol.
struct Browser {
    devtools: WebSocket<TcpStream>,
    next_id: u64,
    /// The page's errors and console output, and the browser's log entries about it (a
    /// WebSocket that failed, a resource not found), the latest last.
    page_log: Vec<String>,
    chromium: Chromium,
}

impl Browser {
    /// How long to wait between two looks at the page: nothing tells us when it changes.
    const POLL_PAUSE: Duration = Duration::from_millis(20);
    /// How many page log entries to keep for a failure message.
    const PAGE_LOG_KEPT: usize = 30;

    /// Starts Chromium with a fresh profile and connects to its page (about:blank).
    fn start(program: &Path) -> Browser {
        let mut chromium = Chromium::start(program);
        let port = chromium.wait_for_devtools_port();
        let page_url = chromium.wait_for_page(port);
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
        // A browser that stops answering fails the test instead of hanging it.
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        let (devtools, _) = tungstenite::client(page_url.as_str(), stream)
            .unwrap_or_else(|error| panic!("no WebSocket to {page_url}: {error}"));
        let mut browser = Browser {
            devtools,
            next_id: 0,
            page_log: Vec::new(),
            chromium,
        };
        for domain in ["Page", "Runtime", "Log"] {
            browser.call(&format!("{domain}.enable"), json!({}));
        }
        // Set here rather than with --window-size, from which headless Chromium takes room
        // for a toolbar it does not draw (1000x640 leaves a page of 1000x497).
        let page_size = json!({
            "width": PAGE_WIDTH,
            "height": PAGE_HEIGHT,
            "deviceScaleFactor": 1,
            "mobile": false,
        });
        browser.call("Emulation.setDeviceMetricsOverride", page_size);
        browser
    }

    /// Opens `url` and waits for its load event.
    fn navigate(&mut self, url: &str) {
        let result = self.call("Page.navigate", json!({ "url": url }));
        if let Some(error) = result.get("errorText") {
            panic!("cannot open {url}: {error}");
        }
        self.wait_for_event("Page.loadEventFired");
    }

    /// The value of a JavaScript expression, which must be JSON (a string, a boolean, an
    /// array...). Fails if it throws.
    fn evaluate(&mut self, expression: &str) -> Value {
        let mut result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        if let Some(details) = result.get("exceptionDetails") {
            let description = details["exception"]["description"].as_str();
            let description = description.or(details["text"].as_str()).unwrap_or("?");
            panic!("{expression} threw {description}");
        }
        result["result"]["value"].take()
    }

    /// Evaluates `expression` until it gives a string that is not empty, and returns that;
    /// fails with what the page shows if that does not happen within PATIENCE.
    fn wait_for(&mut self, what: &str, expression: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.evaluate(expression);
            if let Some(text) = value.as_str()
                && !text.is_empty()
            {
                return text.to_owned();
            }
            if Instant::now() >= deadline {
                let shown = self.evaluate("document.body?.innerText ?? '(no body)'");
                panic!(
                    "{what}: not within {PATIENCE:?} (last {value}); the page shows:\n{}\n\
                     the page's log:\n{}",
                    shown.as_str().unwrap_or_default(),
                    self.page_log.join("\n")
                );
            }
            std::thread::sleep(Self::POLL_PAUSE);
        }
    }

    /// Waits until a `.line` in `#messages` reads exactly `line`.
    fn wait_for_line(&mut self, line: &str) {
        self.wait_for(
            &format!("the line {line:?} in #messages"),
            &format!(
                "Array.from(document.querySelectorAll('#messages .line'), line => \
                 line.textContent).includes({}) ? 'shown' : null",
                js_string(line)
            ),
        );
    }

    /// Waits until the names in `#people` are `names`, in any order.
    fn wait_for_people(&mut self, names: &[&str]) {
        let mut names = names.to_vec();
        names.sort_unstable();
        let expected = Value::from(names.clone()).to_string();
        self.wait_for(
            &format!("#people listing {names:?}"),
            &format!(
                "JSON.stringify(Array.from(document.querySelectorAll('#people li'), item => \
                 item.textContent.trim()).sort()) === {} ? 'listed' : null",
                js_string(&expected)
            ),
        );
    }

    /// The text of the element `selector`, without the spaces around it.
    fn text_of(&mut self, selector: &str) -> String {
        let text = self.evaluate(&format!(
            "document.querySelector({}).textContent.trim()",
            js_string(selector)
        ));
        text.as_str().expect("an element's text").to_owned()
    }

    /// Clicks the text field `selector`, types `line` into it key by key and presses Enter.
    fn type_line(&mut self, selector: &str, line: &str) {
        self.click(selector);
        let field = format!("document.querySelector({})", js_string(selector));
        let focused = self.evaluate(&format!("document.activeElement === {field}"));
        assert_eq!(
            focused.as_bool(),
            Some(true),
            "{selector} not focused by a click"
        );
        for character in line.chars() {
            let key = character.to_string();
            self.key("keyDown", json!({ "key": key, "text": key }));
            self.key("keyUp", json!({ "key": key }));
        }
        let typed = self.evaluate(&format!("{field}.value"));
        assert_eq!(typed, line, "what {selector} holds before Enter");
        // As a keyboard sends Enter: the "\r" makes the keypress that submits a form, the
        // key and code are what keydown handlers look at.
        let enter = json!({ "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13 });
        let mut enter_down = enter.clone();
        enter_down["text"] = json!("\r");
        self.key("keyDown", enter_down);
        self.key("keyUp", enter);
    }

    /// A left click in the middle of the element `selector`.
    fn click(&mut self, selector: &str) {
        let center = self.evaluate(&format!(
            "(() => {{ const box = document.querySelector({}).getBoundingClientRect(); \
             return [box.x + box.width / 2, box.y + box.height / 2]; }})()",
            js_string(selector)
        ));
        let coordinate = |index: usize| center[index].as_f64().expect("a coordinate");
        for kind in ["mousePressed", "mouseReleased"] {
            let event = json!({
                "type": kind,
                "x": coordinate(0),
                "y": coordinate(1),
                "button": "left",
                "clickCount": 1,
            });
            self.call("Input.dispatchMouseEvent", event);
        }
    }

    /// Sends one key event, `kind` being keyDown or keyUp, with the fields in `event`.
    fn key(&mut self, kind: &str, mut event: Value) {
        event["type"] = json!(kind);
        self.call("Input.dispatchKeyEvent", event);
    }

    /// The page as a PNG image.
    fn screenshot(&mut self) -> Vec<u8> {
        // A focused text field shows a blinking caret, there in one picture and not in the
        // next: the same page must give the same picture.
        self.evaluate("document.activeElement?.blur(), true");
        let result = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let data = result["data"].as_str().expect("screenshot data");
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("a screenshot in base64")
    }

    /// Sends a command and returns its result; fails on an error reply. The events that come
    /// before the reply go to the page log.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({ "id": id, "method": method, "params": params });
        if let Err(error) = self.devtools.send(Message::text(command.to_string())) {
            panic!("cannot send {method}: {error}");
        }
        loop {
            let mut message = self.read(method);
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].take();
            }
            self.log_event(&message);
        }
    }

    /// Reads events until `method` comes, within PATIENCE.
    fn wait_for_event(&mut self, method: &str) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let event = self.read(method);
            if event["method"] == method {
                return;
            }
            self.log_event(&event);
        }
        panic!(
            "no {method} within {PATIENCE:?}; the page's log:\n{}",
            self.page_log.join("\n")
        );
    }

    /// The next message from DevTools; `awaited` names what for, in the failure message.
    fn read(&mut self, awaited: &str) -> Value {
        loop {
            match self.devtools.read() {
                Ok(Message::Text(text)) => {
                    return serde_json::from_str(text.as_str()).expect("JSON from DevTools");
                }
                // tungstenite answers pings itself.
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                Ok(other) => panic!("unexpected message from DevTools: {other:?}"),
                Err(error) => panic!(
                    "no {awaited} from DevTools: {error}; chromium's log:\n{}",
                    self.chromium.log()
                ),
            }
        }
    }

    /// Keeps what an event says about the page, if anything.
    fn log_event(&mut self, event: &Value) {
        let params = &event["params"];
        let entry = match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let description = details["exception"]["description"].as_str();
                format!(
                    "exception: {}",
                    description.or(details["text"].as_str()).unwrap_or_default()
                )
            }
            Some("Runtime.consoleAPICalled") => {
                let arguments: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|argument| match argument.get("value") {
                        Some(Value::String(text)) => text.clone(),
                        Some(value) => value.to_string(),
                        None => argument["description"].as_str().unwrap_or("?").to_owned(),
                    })
                    .collect();
                let kind = params["type"].as_str().unwrap_or("?");
                format!("console.{kind}: {}", arguments.join(" "))
            }
            Some("Log.entryAdded") => {
                let entry = &params["entry"];
                let field = |name: &str| entry[name].as_str().unwrap_or("?").to_owned();
                format!("{} {}: {}", field("level"), field("url"), field("text"))
            }
            _ => return,
        };
        if self.page_log.len() == Self::PAGE_LOG_KEPT {
            self.page_log.remove(0);
        }
        self.page_log.push(entry);
    }
}

/// A JavaScript string literal for `text` (JSON's is one).
fn js_string(text: &str) -> String {
    Value::from(text).to_string()
}

/// The Chromium process, its helpers and its profile folder. Dropping it kills them all and
/// removes the folder, also when a test panics.
struct Chromium {
    child: Child,
    folder: PathBuf,
}

impl Chromium {
    fn start(program: &Path) -> Chromium {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let folder = std::env::temp_dir().join(format!(
            "tcpchat-{}-chromium-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&folder);
        let profile = folder.join("profile");
        fs::create_dir_all(&profile).expect("create a profile folder");
        let log = File::create(folder.join("chromium.log")).expect("create chromium.log");
        let mut command = Command::new(program);
        // No network on a test machine: without the background flags Chromium keeps trying
        // to reach Google's services. Without --disable-partial-raster, a page repainted in
        // parts draws the edges of rounded boxes a few pixels differently from run to run, and
        // docs/browser.png would change with every run.
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--disable-partial-raster",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("share chromium.log"))
            .stderr(log)
            // A process group of its own, so that Drop can kill every process Chromium
            // starts (zygotes, renderers) and not only the first.
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", program.display()));
        Chromium { child, folder }
    }

    /// Waits for the port DevTools listens on, which Chromium writes to the file
    /// DevToolsActivePort in its profile (the port, a line feed, then the browser's path).
    fn wait_for_devtools_port(&mut self) -> u16 {
        let file = self.folder.join("profile").join("DevToolsActivePort");
        self.poll("the DevToolsActivePort file", || {
            let text = fs::read_to_string(&file).ok()?;
            text.split_once('\n')?.0.parse().ok()
        })
    }

    /// Waits for the page Chromium opens, and returns its WebSocket's URL.
    fn wait_for_page(&mut self, port: u16) -> String {
        self.poll("a page in /json/list", || {
            let targets = http_get_json(port, "/json/list");
            targets
                .as_array()?
                .iter()
                .find(|target| target["type"] == "page")?["webSocketDebuggerUrl"]
                .as_str()
                .map(str::to_owned)
        })
    }

    /// Calls `look` until it finds something, within PATIENCE; fails at once if Chromium
    /// exits.
    fn poll<T>(&mut self, what: &str, mut look: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = look() {
                return found;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromium exited ({status}); its log:\n{}", self.log());
            }
            if Instant::now() >= deadline {
                panic!(
                    "no {what} within {PATIENCE:?}; chromium's log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Browser::POLL_PAUSE);
        }
    }

    /// The end of what Chromium wrote on stdout and stderr.
    fn log(&self) -> String {
        let log = fs::read_to_string(self.folder.join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The whole group at once: no helper is left to write into the profile while it is
        // removed. Chromium's crash handler runs in a session of its own and exits by itself
        // when the browser is gone.
        if let Ok(group) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory effects; the group is the one started above.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.folder);
    }
}

/// GET `path` from DevTools' HTTP server on 127.0.0.1:`port`; its JSON answer.
fn http_get_json(port: u16, path: &str) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .expect("send a request to DevTools");
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).expect("a status line");
    assert!(status.starts_with("HTTP/1.1 200"), "GET {path}: {status:?}");
    let mut length = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).expect("a header");
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok();
        }
    }
    let length = length.unwrap_or_else(|| panic!("GET {path}: no Content-Length"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("the body");
    serde_json::from_slice(&body).expect("JSON from DevTools")
}
