//! `--tls-*`: the chat over TLS, with a certificate from files or made at start-up, for a
//! rustls client, the real `openssl s_client`, and the browser page over https and wss.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tcpchat::Certificate;
use tcpchat::Config;

use crate::support::{self, PATIENCE, TempPath, start_chat};

/// A certificate for `localhost` written to PEM files, and the DER for clients to trust.
struct TestCertificate {
    cert: TempPath,
    key: TempPath,
    der: CertificateDer<'static>,
}

impl TestCertificate {
    /// The server's side: its certificate and key, as files.
    fn files(&self) -> Certificate {
        Certificate::Files {
            cert: self.cert.0.clone(),
            key: self.key.0.clone(),
        }
    }
}

fn test_certificate(name: &str) -> TestCertificate {
    let made =
        rcgen::generate_simple_self_signed(vec![String::from("localhost")]).expect("a certificate");
    let cert = TempPath::new(&format!("{name}-cert.pem"));
    let key = TempPath::new(&format!("{name}-key.pem"));
    std::fs::write(&cert.0, made.cert.pem()).expect("write cert");
    std::fs::write(&key.0, made.signing_key.serialize_pem()).expect("write key");
    TestCertificate {
        cert,
        key,
        der: made.cert.der().clone(),
    }
}

fn client_config(trusted: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(trusted.clone())
        .expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn tls_stream(
    address: SocketAddr,
    config: Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(address).expect("connect");
    tcp.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let name = ServerName::try_from("localhost").expect("name");
    let connection = ClientConnection::new(config, name).expect("client");
    StreamOwned::new(connection, tcp)
}

/// A line client over TLS.
struct TlsClient {
    reader: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsClient {
    fn join(address: SocketAddr, config: Arc<ClientConfig>) -> (TlsClient, String) {
        let mut client = TlsClient {
            reader: BufReader::new(tls_stream(address, config)),
        };
        let welcome = client.expect_line("* welcome, ");
        let nick = welcome["* welcome, ".len()..]
            .split('!')
            .next()
            .expect("nick")
            .to_owned();
        (client, nick)
    }

    fn send(&mut self, line: &str) {
        let stream = self.reader.get_mut();
        stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
        stream.flush().expect("flush");
    }

    fn expect_line(&mut self, pattern: &str) -> String {
        let mut seen = Vec::new();
        loop {
            let mut line = String::new();
            let count = self.reader.read_line(&mut line).expect("a line");
            assert!(count > 0, "closed before {pattern:?}; saw {seen:?}");
            let line = line.trim_end().to_owned();
            if line.contains(pattern) {
                return line;
            }
            seen.push(line);
        }
    }
}

#[test]
fn clients_chat_over_tls_with_a_certificate_from_files() {
    let certificate = test_certificate("files");
    let server = start_chat(Config {
        tls: Some(certificate.files()),
        ..Config::localhost()
    });
    let config = client_config(&certificate.der);
    let (mut ann, ann_nick) = TlsClient::join(server.local_addr(), Arc::clone(&config));
    let (mut bob, bob_nick) = TlsClient::join(server.local_addr(), config);
    ann.expect_line(&format!("* {bob_nick} joined"));
    ann.send("/op nobody");
    ann.expect_line("! there are no operators");
    ann.send("secret plans");
    assert_eq!(
        bob.expect_line("secret plans"),
        format!("[{ann_nick}] secret plans")
    );
    bob.send(&"x".repeat(100_000));
    bob.expect_line("! line too long");
}

/// A command-line TLS client (openssl, ncat): what is typed, and its output line by line.
struct ProgramClient {
    child: std::process::Child,
    typed: std::process::ChildStdin,
    shown: BufReader<std::process::ChildStdout>,
}

impl ProgramClient {
    fn start(program: &str, args: &[&str]) -> ProgramClient {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the client program");
        let typed = child.stdin.take().expect("stdin");
        let shown = BufReader::new(child.stdout.take().expect("stdout"));
        ProgramClient {
            child,
            typed,
            shown,
        }
    }

    fn expect_line(&mut self, pattern: &str) -> String {
        loop {
            let mut line = String::new();
            let count = self.shown.read_line(&mut line).expect("output");
            assert!(count > 0, "the client ended before {pattern:?}");
            if line.contains(pattern) {
                return line.trim_end().to_owned();
            }
        }
    }
}

impl Drop for ProgramClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn openssl_ncat_and_socat_chat_with_a_self_signed_server_whose_fingerprint_is_logged() {
    if !support::programs_available(&["openssl", "ncat", "socat"]) {
        return;
    }
    let mut server = support::BinaryServer::start(&["--tls-self-signed"]);
    let logged = server.expect_log("TLS certificate SHA-256 fingerprint: ");
    let fingerprint = logged.rsplit(' ').next().expect("fingerprint").to_owned();
    let address = server.address.to_string();
    // What openssl shows of the certificate is what the log says.
    let presented = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {address} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()
        .expect("fingerprint");
    let presented = String::from_utf8_lossy(&presented.stdout);
    assert!(
        presented.contains(&fingerprint),
        "{presented} vs {fingerprint}"
    );

    let mut openssl =
        ProgramClient::start("openssl", &["s_client", "-quiet", "-connect", &address]);
    let welcome = openssl.expect_line("* welcome, ");
    let nick = welcome["* welcome, ".len()..]
        .split('!')
        .next()
        .expect("nick")
        .to_owned();
    let mut ncat = ProgramClient::start(
        "ncat",
        &["--ssl", "127.0.0.1", &server.address.port().to_string()],
    );
    ncat.expect_line("* welcome, ");
    let socat_address = format!("OPENSSL:{address},verify=0");
    let mut socat = ProgramClient::start("socat", &["-", &socat_address]);
    socat.expect_line("* welcome, ");
    writeln!(openssl.typed, "hello from openssl").expect("type");
    for client in [&mut ncat, &mut socat] {
        assert_eq!(
            client.expect_line("hello from openssl"),
            format!("[{nick}] hello from openssl")
        );
    }
}

#[test]
fn a_stalled_or_failed_handshake_never_holds_up_anyone_else() {
    let certificate = test_certificate("stall");
    let server = start_chat(Config {
        tls: Some(certificate.files()),
        ..Config::localhost()
    });
    let address = server.local_addr();
    // One connects and says nothing; one sends plain text to a TLS port.
    let mut silent = TcpStream::connect(address).expect("connect");
    silent
        .set_read_timeout(Some(PATIENCE * 2))
        .expect("timeout");
    let mut plain = TcpStream::connect(address).expect("connect");
    plain.set_read_timeout(Some(PATIENCE)).expect("timeout");
    plain.write_all(b"hello, is this nc?\n").expect("send");
    let config = client_config(&certificate.der);
    let (mut ann, ann_nick) = TlsClient::join(address, Arc::clone(&config));
    let (mut bob, _) = TlsClient::join(address, config);
    ann.send("meanwhile");
    assert_eq!(
        bob.expect_line("meanwhile"),
        format!("[{ann_nick}] meanwhile")
    );
    // The plain client got a TLS alert at most, and was closed.
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("welcome"));
    // The silent one is cut off at the handshake deadline.
    let started = Instant::now();
    let mut nothing = Vec::new();
    let _ = silent.read_to_end(&mut nothing);
    assert!(nothing.is_empty());
    assert!(started.elapsed() < PATIENCE * 2);
}

#[test]
fn the_page_and_its_websocket_work_over_https_and_wss() {
    let certificate = test_certificate("web");
    let server = start_chat(Config {
        tls: Some(certificate.files()),
        web: Some(String::from("127.0.0.1:0")),
        ..Config::localhost()
    });
    let web = server.web_addr().expect("web address");
    let config = client_config(&certificate.der);
    let mut page = tls_stream(web, Arc::clone(&config));
    write!(
        page,
        "GET / HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
        web.port()
    )
    .expect("request");
    let mut response = Vec::new();
    let _ = page.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");

    let (mut ann, ann_nick) = TlsClient::join(server.local_addr(), Arc::clone(&config));
    let stream = tls_stream(web, config);
    let (mut socket, _) = tungstenite::client(format!("wss://localhost:{}/ws", web.port()), stream)
        .expect("wss handshake");
    let welcome = socket.read().expect("welcome").into_text().expect("text");
    assert!(welcome.starts_with("* welcome, "), "{welcome}");
    ann.send("over wss?");
    loop {
        let text = socket
            .read()
            .expect("a frame")
            .into_text()
            .expect("text")
            .to_string();
        if text.contains("over wss?") {
            assert_eq!(text, format!("[{ann_nick}] over wss?\n"));
            break;
        }
    }
}

#[test]
fn stalled_handshakes_hold_no_client_place_and_a_full_server_says_so_over_tls() {
    let certificate = test_certificate("places");
    let server = start_chat(Config {
        max_clients: 2,
        tls: Some(certificate.files()),
        ..Config::localhost()
    });
    let address = server.local_addr();
    // More connections than client places, none of which ever sends a ClientHello.
    let stalled: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(address).expect("connect"))
        .collect();
    let config = client_config(&certificate.der);
    let (mut ann, ann_nick) = TlsClient::join(address, Arc::clone(&config));
    let (mut bob, _) = TlsClient::join(address, Arc::clone(&config));
    ann.send("still room for real clients");
    assert_eq!(
        bob.expect_line("still room"),
        format!("[{ann_nick}] still room for real clients")
    );
    // The third real client finds the server full, and is told so in TLS it can read.
    let mut third = BufReader::new(tls_stream(address, config));
    let mut refusal = String::new();
    third.read_line(&mut refusal).expect("a line");
    assert_eq!(refusal, "! server full\n");
    drop(stalled);
}

#[test]
fn a_client_that_ends_its_session_gets_the_server_s_close_notify() {
    let certificate = test_certificate("close-notify");
    let server = start_chat(Config {
        tls: Some(certificate.files()),
        ..Config::localhost()
    });
    let (mut ann, _) = TlsClient::join(server.local_addr(), client_config(&certificate.der));
    let stream = ann.reader.get_mut();
    stream.conn.send_close_notify();
    stream.flush().expect("send close_notify");
    // rustls reads the end as Ok(0) only after the peer's close_notify; a bare TCP close
    // is an error (UnexpectedEof).
    let mut rest = Vec::new();
    ann.reader
        .read_to_end(&mut rest)
        .expect("the server's close_notify before the end");
}

/// Session tickets: a client that comes back resumes its session, however many clients
/// came in between (the server keeps no session of its own, so none is pushed out).
#[test]
fn a_client_that_comes_back_resumes_its_session_after_many_others() {
    let certificate = test_certificate("resume");
    let server = start_chat(Config {
        tls: Some(certificate.files()),
        ..Config::localhost()
    });
    let returning = client_config(&certificate.der);
    let (mut first, _) = TlsClient::join(server.local_addr(), Arc::clone(&returning));
    // TLS 1.3 tickets come after the handshake: a line back and forth has carried them.
    first.send("/op nobody");
    first.expect_line("! there are no operators");
    drop(first);
    // More clients than rustls' default server cache holds (256), each with its own
    // client-side store, as many students' laptops would be.
    let others = client_config(&certificate.der);
    for _ in 0..300 {
        let mut other = tls_stream(server.local_addr(), Arc::clone(&others));
        let mut byte = [0u8; 1];
        other.read_exact(&mut byte).expect("the welcome");
    }
    let (again, _) = TlsClient::join(server.local_addr(), returning);
    assert_eq!(
        again.reader.get_ref().conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
}
