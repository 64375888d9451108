//! Entry points for the fuzz targets in fuzz/ (built with `--cfg fuzzing` only): each
//! parser of bytes a peer controls, with the properties it promises checked inside.

/// One client's byte stream through the telnet parser.
pub fn telnet(data: &[u8]) {
    crate::transport::telnet::fuzz(data);
}

/// A request head on the web and metrics ports.
pub fn http_head(data: &[u8]) {
    crate::web::fuzz_head(data);
}

/// A browser's WebSocket frames, and their messages split into lines.
pub fn websocket(data: &[u8]) {
    crate::transport::websocket::fuzz_frames(data);
}

/// A cluster stream entry's fields.
pub fn wire(data: &[u8]) {
    crate::cluster::wire::fuzz_fields(data);
}

/// Redis's answer to the cluster's XREAD.
pub fn redis_reply(data: &[u8]) {
    crate::cluster::fuzz_reply(data);
}
