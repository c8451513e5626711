#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and Redis (started when not running).
# Usage: deploy/local/test.sh [extra `cargo test` arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/services.sh
source deploy/local/env.sh
cargo test --workspace "$@"
