#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and Redis (started when not running):
# the Rust integration tests, whose fabric and bus suites also run on a Redis Cluster that
# this script starts (3 masters + 3 replicas, redis-server in cluster mode), then the
# end-to-end tests through nginx, once on a single Redis and once on a Redis Cluster.
# Usage: deploy/local/test.sh [extra `cargo test` arguments]
# Environment: CHATTY_TEST_REDIS_CLUSTER_PORT (first port of the tests' Redis Cluster,
# default 7301; it takes 6 ports and their cluster bus ports, +10000).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/services.sh
source deploy/local/env.sh

# The tests' own Redis Cluster, beside any the developer runs; stopped when the tests end.
test_cluster_dir=$PWD/.chatty/test-redis-cluster
test_cluster_port=${CHATTY_TEST_REDIS_CLUSTER_PORT:-7301}
test_cluster() {
  CHATTY_REDIS_CLUSTER_DIR=$test_cluster_dir CHATTY_REDIS_CLUSTER_BASE_PORT=$test_cluster_port \
    bash deploy/local/redis-cluster.sh "$@"
}
trap 'test_cluster stop >/dev/null 2>&1 || true' EXIT
test_cluster start
CHATTY_TEST_REDIS_CLUSTER=$(test_cluster urls)
export CHATTY_TEST_REDIS_CLUSTER
cargo test --workspace "$@"
test_cluster stop

# The official socket.io-client against 3 nodes behind nginx, then a short load run; then
# the same on a Redis Cluster, with a load run through a master failover.
# Debug build: the one `cargo test` just made, so CI compiles a single profile.
CHATTY_PROFILE=${CHATTY_PROFILE:-debug} bash tests/e2e/run.sh
CHATTY_PROFILE=${CHATTY_PROFILE:-debug} E2E_REDIS_CLUSTER=1 bash tests/e2e/run.sh
