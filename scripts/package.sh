#!/usr/bin/env bash
# Builds the Debian package target/debian/tcpchat_VERSION-1_ARCH.deb: the release binary,
# its man pages and shell completions generated from its own command line (so they
# match --help), the systemd units and /etc/default/tcpchat from packaging/.
# Installs cargo-deb first if it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The version tested with this packaging; `cargo deb --version` tells which one runs.
CARGO_DEB_VERSION=3.8.0
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"

cargo build --release --quiet
rm -rf target/assets
./target/release/tcpchat generate-assets target/assets >/dev/null
# --no-build: the binary above is the one the assets were generated from. --strip: the
# release profile keeps line tables for profiling, which the service does not need.
cargo deb --no-build --strip
