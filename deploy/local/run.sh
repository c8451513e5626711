#!/usr/bin/env bash
# Starts one Chatty node on CHATTY_ADDR (default 0.0.0.0:3000) with its PostgreSQL and Redis.
# Usage: deploy/local/run.sh [extra `chatty serve` flags]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/services.sh
source deploy/local/env.sh
cargo build --release --bin chatty
exec ./target/release/chatty serve "$@"
