//! docs/operations.md's embedding example, compiled by `cargo test` so that it keeps working.

fn main() -> Result<(), tcpchat::Error> {
    let config = tcpchat::Config {
        port: 0,
        ..tcpchat::Config::default()
    };
    let server = tcpchat::start(&config, &tcpchat::Mode::Chat)?;
    println!("listening on {}", server.local_addr());
    server.shutdown(); // or server.shutdown_handle().request() from another thread
    server.join()
}
