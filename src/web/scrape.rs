//! The `--metrics` port: `GET /metrics` answered with the counters in Prometheus's text
//! format (metrics.rs keeps the counters; this file only serves them).

use std::net::Shutdown;
use std::time::Duration;

use log::debug;

use super::http::{self, Body};
use crate::error::describe;
use crate::service::Connection;

/// Serves one connection on the metrics port: `GET /metrics` (or `HEAD`), or an error.
pub(crate) fn serve(connection: Connection) {
    let metrics = &connection.metrics;
    let peer = connection.peer;
    let response = match http::read_request(&connection) {
        Ok((request, _)) => {
            let sent = Body::for_method(&request.method);
            match (request.method.as_str(), request.path.as_str()) {
                ("GET" | "HEAD", "/metrics") => http::respond(
                    &connection,
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.render().as_bytes(),
                    sent,
                ),
                _ => http::respond_error(&connection, "404 Not Found", "try /metrics", sent),
            }
        }
        // Refused as the web port refuses: one mapping to a status, one log line, counted.
        Err(error) => match error.refusal(&connection, "metrics") {
            Some((status, why)) => http::respond_error(&connection, status, why, Body::Sent),
            None => return,
        },
    };
    if let Err(error) = response {
        debug!("metrics {peer}: {}", describe(&error));
    }
    let _ = connection.stream.shutdown(Shutdown::Write);
    connection.wait_for_close(Duration::from_secs(2));
}
