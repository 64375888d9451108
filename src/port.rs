//! Which of the server's ports a connection came in on: it decides what the connection
//! is served as (a chat client, a web page or WebSocket, a metrics scrape).

/// Which listening port a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The main port: the chat (nc, telnet, socat, scripts), or the chapter's other servers.
    Chat,
    /// The `--web` port: HTTP for the page, WebSocket for the chat.
    Web,
    /// The `--metrics` port: `/metrics` for Prometheus (served by the server, not the chat).
    Metrics,
}
