//! The mix: which kinds of client run against which node, how many of each at once, and
//! their names in the log and the summary.

use std::net::SocketAddr;

use crate::ledger::{LOBBY, ROOMS};
use crate::session::Context;

/// A node of the cluster under test.
pub struct Node {
    pub name: String,
    pub chat: SocketAddr,
    pub web: SocketAddr,
    pub pid: u32,
    pub tls: bool,
}

/// How the client reaches the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `nc HOST PORT`, typed into by a person (leaves with Ctrl-C).
    Nc,
    /// `nc -N HOST PORT`, fed by a script (leaves at the end of its input).
    NcScript,
    TelnetLinux,
    TelnetWindows,
    /// The page, then its WebSocket (wss on a TLS node).
    WebSocket,
    /// A line client over TLS (`openssl s_client`, `socat OPENSSL:`).
    Tls,
    /// Plain TCP from the driver itself.
    Tcp,
}

/// What the client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Stays the whole run in a room (index into ROOMS) and checks what it receives.
    Witness(usize),
    Talker,
    Lurker,
    /// Connects and leaves without a word.
    Silent,
    /// Loads the web page and leaves.
    PageVisitor,
}

/// One kind of client in the mix: `slots` of them run at once, each one session after
/// another.
pub struct Kind {
    pub role: Role,
    pub transport: Transport,
    pub node: usize,
    pub slots: usize,
    pub name: String,
}

/// The mix: per plain node, nc (typed and scripted), both telnets and browsers; per TLS
/// node, TLS line clients and browsers over https; everywhere lurkers, silent visitors,
/// a page visitor, and witnesses in both rooms. Slots per kind are at `scale` 1.
pub fn plan(nodes: &[Node], scale: f64) -> Vec<Kind> {
    let mut kinds = Vec::new();
    let games = 1;
    for (node, spec) in nodes.iter().enumerate() {
        let mut add = |role: Role, transport: Transport, slots: usize| {
            let slots = match role {
                Role::Witness(_) => slots,
                _ => ((slots as f64 * scale).round() as usize).max(1),
            };
            let name = format!("{} {}", role_name(role), transport_name(transport));
            kinds.push(Kind {
                role,
                transport,
                node,
                slots,
                name,
            });
        };
        if spec.tls {
            add(Role::Witness(LOBBY), Transport::Tls, 1);
            add(Role::Witness(LOBBY), Transport::Tls, 1);
            add(Role::Witness(games), Transport::Tls, 1);
            add(Role::Witness(LOBBY), Transport::WebSocket, 1);
            add(Role::Witness(LOBBY), Transport::WebSocket, 1);
            add(Role::Witness(games), Transport::WebSocket, 1);
            add(Role::Talker, Transport::Tls, 14);
            add(Role::Talker, Transport::WebSocket, 10);
            add(Role::Lurker, Transport::Tls, 6);
            add(Role::Lurker, Transport::WebSocket, 4);
            add(Role::Silent, Transport::Tls, 3);
        } else {
            add(Role::Witness(LOBBY), Transport::Nc, 1);
            add(Role::Witness(LOBBY), Transport::NcScript, 1);
            add(Role::Witness(games), Transport::Nc, 1);
            add(Role::Witness(LOBBY), Transport::TelnetLinux, 1);
            add(Role::Witness(LOBBY), Transport::WebSocket, 1);
            add(Role::Witness(games), Transport::WebSocket, 1);
            add(Role::Talker, Transport::Nc, 10);
            add(Role::Talker, Transport::NcScript, 4);
            add(Role::Talker, Transport::TelnetLinux, 5);
            add(Role::Talker, Transport::TelnetWindows, 4);
            add(Role::Talker, Transport::WebSocket, 10);
            add(Role::Lurker, Transport::Nc, 6);
            add(Role::Lurker, Transport::WebSocket, 4);
            add(Role::Silent, Transport::Tcp, 3);
        }
        add(Role::PageVisitor, Transport::WebSocket, 1);
    }
    kinds
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Witness(_) => "witness",
        Role::Talker => "talker",
        Role::Lurker => "lurker",
        Role::Silent => "silent",
        Role::PageVisitor => "page visitor",
    }
}

pub fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Nc => "nc",
        Transport::NcScript => "nc -N",
        Transport::TelnetLinux => "telnet (Linux)",
        Transport::TelnetWindows => "telnet (Windows)",
        Transport::WebSocket => "browser",
        Transport::Tls => "TLS",
        Transport::Tcp => "TCP",
    }
}

pub fn describe_plan(context: &Context) {
    let slots: usize = context.kinds.iter().map(|k| k.slots).sum();
    eprintln!(
        "soak-clients: {} kinds of client, {slots} at once at most:",
        context.kinds.len()
    );
    for kind in &context.kinds {
        let room = match kind.role {
            Role::Witness(room) => format!(" in {}", ROOMS[room]),
            _ => String::new(),
        };
        eprintln!(
            "  {:>3} × {}{room} on {}",
            kind.slots, kind.name, context.nodes[kind.node].name
        );
    }
}
