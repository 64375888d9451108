//! Binding the listeners and the socket options every accepted connection inherits.

use std::io;
use std::net::{TcpListener, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

use crate::config::Config;
use crate::error::Error;

/// How many connections may wait in the kernel's accept queue (capped by somaxconn).
/// Large, so a class connecting at once or a load test is not refused.
const LISTEN_BACKLOG: i32 = 4096;
/// After the first keepalive probe, probe this often (or every `keepalive` if shorter).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel declares the peer gone.
const KEEPALIVE_PROBES: u32 = 3;

/// Binds the listening socket: address reuse on (a restarted server does not wait for old
/// connections in TIME_WAIT), a large backlog, and `::` accepting IPv4 too.
pub fn bind(config: &Config) -> Result<TcpListener, Error> {
    bind_to(&config.host, config.port)
}

/// The listeners a server accepts on: the main port, and the `--web` and `--metrics` ones.
pub struct Listeners {
    pub main: TcpListener,
    pub web: Option<TcpListener>,
    pub metrics: Option<TcpListener>,
}

/// Binds the `--web` or `--metrics` listener, if asked for: `PORT` listens on the main
/// host, `HOST:PORT` (`[::]:PORT` for IPv6) where it says.
pub fn bind_extra(config: &Config, spec: &Option<String>) -> Result<Option<TcpListener>, Error> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let bad_spec = || Error::Listen {
        address: spec.clone(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "expected PORT or HOST:PORT"),
    };
    let (host, port) = match spec.rsplit_once(':') {
        Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']'), port),
        None => (config.host.as_str(), spec.as_str()),
    };
    let port = port.parse().map_err(|_| bad_spec())?;
    bind_to(host, port).map(Some)
}

fn bind_to(host: &str, port: u16) -> Result<TcpListener, Error> {
    let address = format_host_port(host, port);
    let listen_error = |source| Error::Listen {
        address: address.clone(),
        source,
    };
    let socket_address = (host, port)
        .to_socket_addrs()
        .map_err(listen_error)?
        .next()
        .ok_or_else(|| listen_error(io::Error::new(io::ErrorKind::NotFound, "no such host")))?;
    let socket = Socket::new(Domain::for_address(socket_address), Type::STREAM, None)
        .map_err(listen_error)?;
    socket.set_reuse_address(true).map_err(listen_error)?;
    if socket_address.is_ipv6() {
        socket.set_only_v6(false).map_err(listen_error)?;
    }
    socket.bind(&socket_address.into()).map_err(listen_error)?;
    socket.listen(LISTEN_BACKLOG).map_err(listen_error)?;
    Ok(socket.into())
}

pub(super) fn format_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Applies the per-connection socket options from the config to a listener: Linux gives
/// every connection it accepts the listener's options (Nagle, read timeout, keepalive),
/// which saves five system calls per connection.
pub(super) fn configure_socket(socket: SockRef<'_>, config: &Config) -> io::Result<()> {
    socket.set_nodelay(!config.nagle)?;
    socket.set_read_timeout(config.idle_timeout)?;
    match config.keepalive {
        Some(idle) => {
            let keepalive = TcpKeepalive::new()
                .with_time(idle)
                .with_interval(KEEPALIVE_INTERVAL.min(idle))
                .with_retries(KEEPALIVE_PROBES);
            socket.set_tcp_keepalive(&keepalive)
        }
        None => socket.set_keepalive(false),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    /// A connection accepted by a listener configured from `config`.
    fn accepted_pair(config: &Config) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        configure_socket(SockRef::from(&listener), config).expect("configure");
        let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (server_side, _) = listener.accept().expect("accept");
        (server_side, client)
    }

    #[test]
    fn socket_options_from_the_config_reach_every_accepted_socket() {
        let config = Config {
            idle_timeout: Some(Duration::from_secs(5)),
            keepalive: Some(Duration::from_secs(30)),
            ..Config::localhost()
        };
        let (stream, _client) = accepted_pair(&config);
        let socket = SockRef::from(&stream);
        assert!(socket.keepalive().expect("keepalive"));
        assert_eq!(
            socket.keepalive_time().expect("time"),
            Duration::from_secs(30)
        );
        assert_eq!(
            socket.keepalive_interval().expect("interval"),
            KEEPALIVE_INTERVAL
        );
        assert_eq!(
            socket.keepalive_retries().expect("retries"),
            KEEPALIVE_PROBES
        );
        assert!(socket.nodelay().expect("nodelay"));
        assert_eq!(
            stream.read_timeout().expect("timeout"),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn nagle_and_keepalive_can_be_turned_off() {
        let config = Config {
            keepalive: None,
            nagle: true,
            ..Config::localhost()
        };
        let (stream, _client) = accepted_pair(&config);
        let socket = SockRef::from(&stream);
        assert!(!socket.keepalive().expect("keepalive"));
        assert!(!socket.nodelay().expect("nodelay"));
        assert_eq!(stream.read_timeout().expect("timeout"), None);
    }
}
