//! Running as a systemd service: the listening sockets systemd passes (socket activation),
//! the readiness and stopping notices a `Type=notify` service sends, and whether stderr is
//! the journal. Each does nothing unless systemd started this process and asked for it, so
//! the same binary runs by hand, under a terminal, in tests and under systemd.
//!
//! Read `packaging/tcpchat.service` and `packaging/tcpchat.socket` for the other side.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, info, warn};
use sd_notify::NotifyState;
use socket2::{Socket, Type};

use crate::error::Error;

/// The name (`FileDescriptorName=web` in a .socket unit) that marks a passed socket as the
/// `--web` listener when its place in the order does not say it.
pub const WEB_SOCKET_NAME: &str = "web";

/// The listening sockets systemd passed to this process.
#[derive(Debug)]
pub struct InheritedListeners {
    /// The chat's (or the subcommand's) listener: the one socket passed, or of two the one
    /// not taken for the web page.
    pub main: TcpListener,
    /// The `--web` listener, when two sockets were passed: the one named `web`, or else
    /// the second.
    pub web: Option<TcpListener>,
}

/// Set once the passed sockets are taken: each descriptor must have one owner, however
/// often [`crate::start`] is called.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The listeners systemd passed for socket activation, if it passed any to this process:
/// `LISTEN_PID` is our pid and `LISTEN_FDS` is 1 or 2. One socket (descriptor 3) is the
/// chat's and replaces `--host`/`--port`. Of two, the one named [`WEB_SOCKET_NAME`] in
/// `LISTEN_FDNAMES` (`FileDescriptorName=`), or else the second (descriptor 4), serves the
/// web page as `--web` would (an address given with `--web` is ignored), and the other one
/// is the chat's.
///
/// As `sd_listen_fds(3)` does, the descriptors are made close-on-exec and `LISTEN_PID`,
/// `LISTEN_FDS` and `LISTEN_FDNAMES` are removed from the environment, so that nothing
/// this process starts takes them for its own. That happens once per process, and only in
/// a process systemd passed sockets to; [`crate::start`] calls this first, before it starts
/// any thread, and a program that embeds tcpchat under socket activation must call `start`
/// before it starts threads of its own that read the environment.
///
/// Returns `Ok(None)` when systemd passed nothing (every other way of starting), and an
/// error when what it passed is not one or two listening TCP sockets.
pub fn inherited_listeners() -> Result<Option<InheritedListeners>, Error> {
    let ours =
        std::env::var("LISTEN_PID").is_ok_and(|pid| pid.trim() == std::process::id().to_string());
    if !ours || TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    // SAFETY: removing variables races only with threads that read the environment
    // without std's lock (C code calling getenv) at the same time. This runs once, in a
    // process systemd started with sockets for it, from `start` before the server's threads
    // exist; the binary's one other thread by then, the signal handler's, reads variables
    // only through std (sd_notify's NOTIFY_SOCKET), which takes the same lock.
    let passed = unsafe { sd_notify::listen_fds_with_names_and_unset_env() };
    let passed: Vec<(RawFd, String)> = passed
        .map_err(|source| passed_socket_error("LISTEN_FDS", source))?
        .collect();
    let web_index = match passed.len() {
        0 => return Ok(None),
        1 => None,
        2 => Some(
            passed
                .iter()
                .position(|(_, name)| name == WEB_SOCKET_NAME)
                .unwrap_or(1),
        ),
        count => {
            return Err(Error::Usage(format!(
                "systemd passed {count} sockets (LISTEN_FDS); tcpchat takes one for the chat \
                 and an optional second one for the web page"
            )));
        }
    };
    // SAFETY: systemd passed these descriptors to this process (LISTEN_PID is ours) and
    // nothing else in it owns them: TAKEN makes this the only place that ever claims them.
    let mut sockets: Vec<(RawFd, Socket)> = passed
        .iter()
        .map(|&(fd, _)| (fd, Socket::from(unsafe { OwnedFd::from_raw_fd(fd) })))
        .collect();
    let web = web_index
        .map(|index| sockets.remove(index))
        .map(into_listener)
        .transpose()?;
    let main = sockets.into_iter().next().map(into_listener).transpose()?;
    let Some(main) = main else {
        return Ok(None);
    };
    log_taken("the chat", &main, "--host and --port are ignored");
    if let Some(web) = &web {
        log_taken(
            "the web page",
            web,
            "the address of --web, if given, is ignored",
        );
    }
    Ok(Some(InheritedListeners { main, web }))
}

/// Tells systemd that the server is ready (`READY=1`): `address` accepts connections. A
/// `Type=notify` service counts as started only then, so units ordered after tcpchat start
/// once clients can connect. Does nothing without `NOTIFY_SOCKET`.
pub fn notify_ready(address: SocketAddr) {
    let status = format!("listening on {address}");
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd that the server is stopping (`STOPPING=1`): it no longer accepts and
/// drains its clients. Does nothing without `NOTIFY_SOCKET`.
pub fn notify_stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("draining: no longer accepting"),
    ]);
}

/// Whether stderr is connected to the journal. systemd sets `JOURNAL_STREAM` to
/// `DEVICE:INODE` of the stream it connects to a service's stdout and stderr; a process
/// whose stderr was redirected after that (a child of a shell in the service, say) keeps
/// the variable but not the stream, hence the comparison (see systemd.exec(5)).
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = stream.to_str().and_then(|stream| stream.split_once(':')) else {
        return false;
    };
    let (Ok(device), Ok(inode)) = (device.parse::<u64>(), inode.parse::<u64>()) else {
        return false;
    };
    let stderr = match io::stderr().as_fd().try_clone_to_owned() {
        Ok(stderr) => std::fs::File::from(stderr),
        Err(_) => return false,
    };
    stderr
        .metadata()
        .is_ok_and(|metadata| metadata.dev() == device && metadata.ino() == inode)
}

/// The syslog priority the journal reads from a `<N>` prefix (sd-daemon(3)): error 3,
/// warning 4, info 6, debug and trace 7.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

fn notify(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        warn!("cannot notify systemd: {}", crate::error::describe(&error));
    }
}

/// The passed socket `fd` as a listener, after checking that it is a listening TCP socket
/// (a .socket unit with `Accept=yes`, or a UDP or Unix one, passes something else).
fn into_listener((fd, socket): (RawFd, Socket)) -> Result<TcpListener, Error> {
    let is_tcp_listener = socket.r#type().is_ok_and(|kind| kind == Type::STREAM)
        && socket.is_listener().unwrap_or(false)
        && socket
            .local_addr()
            .is_ok_and(|address| address.as_socket().is_some());
    if !is_tcp_listener {
        return Err(passed_socket_error(
            &format!("fd {fd}"),
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a listening TCP socket (the .socket unit needs ListenStream= and \
                 Accept=no)",
            ),
        ));
    }
    Ok(socket.into())
}

fn log_taken(purpose: &str, listener: &TcpListener, ignored: &str) {
    let address = listener
        .local_addr()
        .map_or_else(|_| String::from("an unknown address"), |a| a.to_string());
    info!("socket activation: {purpose} uses the listener systemd passed, on {address}; {ignored}");
}

fn passed_socket_error(what: &str, source: io::Error) -> Error {
    Error::Listen {
        address: format!("the socket systemd passed ({what})"),
        source,
    }
}
