#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and Redis (started when not running):
# the Rust integration tests, then the end-to-end tests through nginx.
# Usage: deploy/local/test.sh [extra `cargo test` arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/services.sh
source deploy/local/env.sh
cargo test --workspace "$@"
# The official socket.io-client against 3 nodes behind nginx, then a short load run.
# Debug build: the one `cargo test` just made, so CI compiles a single profile.
CHATTY_PROFILE=${CHATTY_PROFILE:-debug} bash tests/e2e/run.sh
