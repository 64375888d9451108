//! Connection places: `--max-clients`, `--max-per-ip` (every port), and the handshakes and
//! scrapes allowed at once, each held by a slot guard that gives its place back when
//! dropped, however its connection ends.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::info;
use parking_lot::Mutex;

use crate::config::Config;
use crate::control::{ConnectionId, Control};
use crate::metrics::Metrics;

/// Connections on the way to becoming clients that may be in progress at once: TLS
/// handshakes, web page requests and WebSocket handshakes. A real one takes milliseconds,
/// so 256 carries a class whose browsers all load the page at once; when they are all
/// taken, the oldest is closed to make room, so connections that stall (never send a
/// ClientHello, trickle a request) can delay real ones by nothing more than their turn.
pub const MAX_HANDSHAKES: usize = 256;
/// `/metrics` scrapes served at once. Prometheus scrapes one at a time; 16 leaves room for
/// a few more watchers. When they are all taken, the oldest is closed to make room.
pub const MAX_SCRAPES: usize = 16;

/// What a connection holds a place for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlaceKind {
    /// A client: `--max-clients` (chat, echo, dump and send alike).
    Client,
    /// Not a client yet ([`MAX_HANDSHAKES`]): it becomes one with
    /// [`ConnectionSlot::become_client`].
    Handshake,
    /// A `/metrics` scrape ([`MAX_SCRAPES`]).
    Scrape,
}

/// Connections open now: clients, handshakes, scrapes, and per address.
#[derive(Debug, Default)]
pub(crate) struct Occupancy {
    clients: usize,
    /// Every connection from an address, whatever its port; kept only when `--max-per-ip`
    /// is set.
    per_ip: HashMap<IpAddr, usize>,
    /// Handshakes in progress by connection number (so oldest first), with their sockets,
    /// to close the oldest when all are taken.
    handshakes: BTreeMap<ConnectionId, Arc<TcpStream>>,
    scrapes: BTreeMap<ConnectionId, Arc<TcpStream>>,
    /// `--once`: the one client has come; nobody else becomes one.
    once_taken: bool,
    /// When closing the oldest was last logged, and how many were closed since: a flood
    /// of stalled connections is one log line per [`EVICTION_LOG_INTERVAL`], not one each.
    eviction_logged_at: Option<Instant>,
    evicted_since_log: u64,
}

/// At most how often closing the oldest handshakes or scrapes is logged.
const EVICTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Occupancy {
    /// Counts one connection closed to make room; returns how many to log, when a log
    /// line is due.
    fn note_eviction(&mut self, now: Instant) -> Option<u64> {
        self.evicted_since_log += 1;
        let due = self
            .eviction_logged_at
            .is_none_or(|at| now.duration_since(at) >= EVICTION_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.eviction_logged_at = Some(now);
        Some(std::mem::take(&mut self.evicted_since_log))
    }
}

/// Why a connection was refused, as the line the client gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    ServerFull,
    TooManyFromAddress,
}

impl Refusal {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Refusal::ServerFull => "server full",
            Refusal::TooManyFromAddress => "too many connections from your address",
        }
    }

    /// The reason as a metrics label.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Refusal::ServerFull => "server_full",
            Refusal::TooManyFromAddress => "per_ip",
        }
    }

    /// The line the refused client receives before the connection closes.
    pub(crate) fn line(&self) -> Vec<u8> {
        format!("! {}\n", self.reason()).into_bytes()
    }
}

/// Shared by the acceptor (which takes places) and the slots (which give them back).
#[derive(Clone)]
pub(crate) struct Places {
    occupancy: Arc<Mutex<Occupancy>>,
    max_clients: usize,
    max_per_ip: usize,
    /// `--once`: one client, then the supervisor is told to stop accepting.
    once: bool,
    metrics: Arc<Metrics>,
}

impl Places {
    pub(crate) fn new(config: &Config, metrics: Arc<Metrics>) -> Places {
        Places {
            occupancy: Arc::default(),
            max_clients: config.max_clients,
            max_per_ip: config.max_per_ip,
            once: config.once,
            metrics,
        }
    }

    /// Takes a place of `kind` for connection `id` from `ip`, or says why there is none. A
    /// handshake or scrape always gets one: when all are taken, the oldest is closed.
    pub(crate) fn take(
        &self,
        id: ConnectionId,
        ip: IpAddr,
        kind: PlaceKind,
        stream: &Arc<TcpStream>,
        control: Sender<Control>,
    ) -> Result<ConnectionSlot, Refusal> {
        // An IPv4 client reaching a `::` listener is `::ffff:a.b.c.d`: the same address as
        // on an IPv4 listener.
        let ip = ip.to_canonical();
        let mut occupancy = self.occupancy.lock();
        if kind == PlaceKind::Client {
            self.check_client_place(&occupancy)?;
        }
        if self.max_per_ip > 0 {
            let from_ip = occupancy.per_ip.entry(ip).or_insert(0);
            if *from_ip >= self.max_per_ip {
                return Err(Refusal::TooManyFromAddress);
            }
            *from_ip += 1;
        }
        let evicted = match kind {
            PlaceKind::Client => {
                self.count_client(&mut occupancy, &control);
                None
            }
            PlaceKind::Handshake => {
                let evicted = make_room(&mut occupancy.handshakes, MAX_HANDSHAKES);
                occupancy.handshakes.insert(id, Arc::clone(stream));
                evicted.map(|evicted| (evicted, "handshakes_full", "handshake"))
            }
            PlaceKind::Scrape => {
                let evicted = make_room(&mut occupancy.scrapes, MAX_SCRAPES);
                occupancy.scrapes.insert(id, Arc::clone(stream));
                evicted.map(|evicted| (evicted, "scrapes_full", "scrape"))
            }
        };
        let to_log = match evicted {
            Some(_) => occupancy.note_eviction(Instant::now()),
            None => None,
        };
        drop(occupancy);
        if let Some(((_, evicted_stream), label, what)) = evicted {
            // Wakes its thread, blocked in a read, which then ends the connection.
            let _ = evicted_stream.shutdown(Shutdown::Both);
            self.metrics.refused(label);
            if let Some(count) = to_log {
                info!(
                    "all {what} places taken: closed the oldest ({count} since the last such line)"
                );
            }
        }
        Ok(ConnectionSlot {
            id,
            ip,
            kind: Cell::new(kind),
            places: self.clone(),
            control,
        })
    }

    fn check_client_place(&self, occupancy: &Occupancy) -> Result<(), Refusal> {
        if occupancy.clients >= self.max_clients || (self.once && occupancy.once_taken) {
            return Err(Refusal::ServerFull);
        }
        Ok(())
    }

    fn count_client(&self, occupancy: &mut Occupancy, control: &Sender<Control>) {
        occupancy.clients += 1;
        if self.once && !occupancy.once_taken {
            occupancy.once_taken = true;
            let _ = control.send(Control::OneClientCame);
        }
    }

    fn give_back(&self, id: ConnectionId, ip: IpAddr, kind: PlaceKind) {
        let mut occupancy = self.occupancy.lock();
        match kind {
            PlaceKind::Client => occupancy.clients -= 1,
            PlaceKind::Handshake => {
                occupancy.handshakes.remove(&id);
            }
            PlaceKind::Scrape => {
                occupancy.scrapes.remove(&id);
            }
        }
        if let Some(count) = occupancy.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                occupancy.per_ip.remove(&ip);
            }
        }
    }
}

/// Takes the oldest connection out of `places` if all `capacity` are taken, to be closed
/// (once the lock is let go).
fn make_room(
    places: &mut BTreeMap<ConnectionId, Arc<TcpStream>>,
    capacity: usize,
) -> Option<(ConnectionId, Arc<TcpStream>)> {
    if places.len() < capacity {
        return None;
    }
    places.pop_first()
}

/// Holds one connection's place; gives it back and reports the end of the connection to
/// the supervisor when dropped, however its thread ends (return, error or panic).
pub(crate) struct ConnectionSlot {
    id: ConnectionId,
    ip: IpAddr,
    kind: Cell<PlaceKind>,
    places: Places,
    control: Sender<Control>,
}

impl ConnectionSlot {
    /// A handshake that is done becomes a client: it takes a client place (its address
    /// keeps its one count), or is refused as a new client would be.
    pub(crate) fn become_client(&self) -> Result<(), Refusal> {
        if self.kind.get() != PlaceKind::Handshake {
            return Ok(());
        }
        let places = &self.places;
        let mut occupancy = places.occupancy.lock();
        places.check_client_place(&occupancy)?;
        // Closed to make room for newer handshakes: its socket is shut, it is nobody.
        if occupancy.handshakes.remove(&self.id).is_none() {
            return Err(Refusal::ServerFull);
        }
        places.count_client(&mut occupancy, &self.control);
        self.kind.set(PlaceKind::Client);
        Ok(())
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.places.give_back(self.id, self.ip, self.kind.get());
        let _ = self.control.send(Control::Finished(self.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Places for `max_clients` and `max_per_ip`, with a socket to give each connection.
    struct PlacesUnderTest {
        places: Places,
        control: Sender<Control>,
        heard: crossbeam_channel::Receiver<Control>,
        listener: std::net::TcpListener,
    }

    impl PlacesUnderTest {
        fn new(max_clients: usize, max_per_ip: usize, once: bool) -> PlacesUnderTest {
            let config = Config {
                max_clients,
                max_per_ip,
                once,
                ..Config::localhost()
            };
            let (control, heard) = crossbeam_channel::unbounded();
            PlacesUnderTest {
                places: Places::new(&config, Arc::default()),
                control,
                heard,
                listener: std::net::TcpListener::bind("127.0.0.1:0").expect("bind"),
            }
        }

        /// A connected socket (the server's side), and the client's.
        fn socket(&self) -> (Arc<TcpStream>, TcpStream) {
            let client =
                TcpStream::connect(self.listener.local_addr().expect("address")).expect("connect");
            let (server_side, _) = self.listener.accept().expect("accept");
            (Arc::new(server_side), client)
        }

        fn take(&self, id: u64, ip: &str, kind: PlaceKind) -> Result<ConnectionSlot, Refusal> {
            let (stream, _client) = self.socket();
            let ip = ip.parse().expect("ip");
            self.places
                .take(id, ip, kind, &stream, self.control.clone())
        }
    }

    #[test]
    fn places_are_limited_in_total_and_per_address_and_given_back() {
        let test = PlacesUnderTest::new(3, 2, false);
        let first = test.take(1, "10.0.0.1", PlaceKind::Client).expect("first");
        let _second = test.take(2, "10.0.0.1", PlaceKind::Client).expect("second");
        assert_eq!(
            test.take(3, "10.0.0.1", PlaceKind::Client).err(),
            Some(Refusal::TooManyFromAddress)
        );
        let _third = test
            .take(4, "10.0.0.2", PlaceKind::Client)
            .expect("other address");
        assert_eq!(
            test.take(5, "10.0.0.2", PlaceKind::Client).err(),
            Some(Refusal::ServerFull)
        );
        drop(first);
        assert!(test.take(6, "10.0.0.1", PlaceKind::Client).is_ok());
    }

    #[test]
    fn max_per_ip_zero_lets_one_address_fill_every_place() {
        let test = PlacesUnderTest::new(2, 0, false);
        let first = test.take(1, "10.0.0.1", PlaceKind::Client).expect("first");
        let _second = test.take(2, "10.0.0.1", PlaceKind::Client).expect("second");
        assert_eq!(
            test.take(3, "10.0.0.1", PlaceKind::Client).err(),
            Some(Refusal::ServerFull)
        );
        drop(first);
        assert!(test.take(4, "10.0.0.1", PlaceKind::Client).is_ok());
    }

    #[test]
    fn handshakes_and_scrapes_count_per_address_but_take_no_client_place() {
        let test = PlacesUnderTest::new(1, 2, false);
        let _scrape = test.take(1, "10.0.0.1", PlaceKind::Scrape).expect("scrape");
        let handshake = test
            .take(2, "10.0.0.1", PlaceKind::Handshake)
            .expect("handshake");
        assert_eq!(
            test.take(3, "10.0.0.1", PlaceKind::Client).err(),
            Some(Refusal::TooManyFromAddress)
        );
        let _client = test.take(4, "10.0.0.2", PlaceKind::Client).expect("client");
        // The handshake is done, but the one client place is taken.
        assert_eq!(handshake.become_client(), Err(Refusal::ServerFull));
    }

    #[test]
    fn a_handshake_that_becomes_a_client_takes_a_client_place() {
        let test = PlacesUnderTest::new(1, 0, false);
        let handshake = test
            .take(1, "10.0.0.1", PlaceKind::Handshake)
            .expect("handshake");
        handshake.become_client().expect("a client place");
        assert_eq!(
            test.take(2, "10.0.0.1", PlaceKind::Client).err(),
            Some(Refusal::ServerFull)
        );
        drop(handshake);
        assert!(test.take(3, "10.0.0.1", PlaceKind::Client).is_ok());
    }

    #[test]
    fn when_every_handshake_place_is_taken_the_oldest_is_closed() {
        let test = PlacesUnderTest::new(1, 0, true);
        let mut clients = Vec::new();
        let mut slots = Vec::new();
        for id in 1..=MAX_HANDSHAKES as u64 + 1 {
            let (stream, client) = test.socket();
            let ip = "10.0.0.1".parse().expect("ip");
            let taken =
                test.places
                    .take(id, ip, PlaceKind::Handshake, &stream, test.control.clone());
            slots.push(taken.expect("a handshake always gets a place"));
            clients.push(client);
        }
        // The oldest was closed, and can no longer become a client (--once is untouched).
        assert_eq!(slots[0].become_client(), Err(Refusal::ServerFull));
        assert!(!test.places.occupancy.lock().once_taken);
        // The first connection was shut down: its client reads the end at once.
        let mut buffer = [0u8; 1];
        clients[0]
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        assert_eq!(
            std::io::Read::read(&mut clients[0], &mut buffer).ok(),
            Some(0)
        );
        assert_eq!(
            test.places.occupancy.lock().handshakes.len(),
            MAX_HANDSHAKES
        );
        assert!(!test.places.occupancy.lock().handshakes.contains_key(&1));
    }

    #[test]
    fn closing_the_oldest_is_logged_once_per_interval_with_a_count() {
        let mut occupancy = Occupancy::default();
        let start = Instant::now();
        assert_eq!(occupancy.note_eviction(start), Some(1));
        for _ in 0..999 {
            assert_eq!(occupancy.note_eviction(start), None);
        }
        assert_eq!(
            occupancy.note_eviction(start + EVICTION_LOG_INTERVAL),
            Some(1000)
        );
    }

    #[test]
    fn once_lets_one_client_in_and_tells_the_supervisor() {
        let test = PlacesUnderTest::new(10, 0, true);
        let _page = test
            .take(1, "10.0.0.1", PlaceKind::Handshake)
            .expect("page");
        let _scrape = test.take(2, "10.0.0.1", PlaceKind::Scrape).expect("scrape");
        assert!(
            test.heard.try_recv().is_err(),
            "pages and scrapes do not count"
        );
        let client = test
            .take(3, "10.0.0.1", PlaceKind::Handshake)
            .expect("client");
        client.become_client().expect("the one client");
        assert!(matches!(test.heard.try_recv(), Ok(Control::OneClientCame)));
        assert_eq!(
            test.take(4, "10.0.0.1", PlaceKind::Client).err(),
            Some(Refusal::ServerFull)
        );
        drop(client);
        assert_eq!(
            test.take(5, "10.0.0.1", PlaceKind::Client).err(),
            Some(Refusal::ServerFull),
            "one client, ever"
        );
    }
}
