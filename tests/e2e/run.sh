#!/usr/bin/env bash
# End-to-end tests with the official socket.io-client against a local cluster of 3 nodes
# behind nginx (deploy/local/cluster.sh). Starts the cluster and always stops it again; a
# cluster that was already running is used as it is and left running.
# Then the web client in headless Chromium (tests/browser/run.sh) against the same cluster,
# then a few seconds of the load generator, calm and through a crash.
# Usage: tests/e2e/run.sh [node --test arguments, e.g. --test-name-pattern=typing]
#        CHATTY_PROFILE=debug tests/e2e/run.sh   (debug build: faster to build, slower to run)
#        E2E_REDIS_CLUSTER=1 tests/e2e/run.sh    (the nodes on a Redis Cluster: start
#                                                 --redis-cluster; adds a load run through
#                                                 a Redis master failover)
# The cluster's ports and directory follow deploy/local/cluster.sh's environment
# (CHATTY_CLUSTER_PORT, CHATTY_CLUSTER_BASE_PORT, CHATTY_CLUSTER_REDIS_PORT,
# CHATTY_CLUSTER_REDIS_CLUSTER_PORT, CHATTY_CLUSTER_DIR), so a second cluster can run beside
# one on the default ports.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
cluster=$root/deploy/local/cluster.sh
state=${CHATTY_CLUSTER_DIR:-$root/.chatty/cluster}
redis_cluster=false
case ${E2E_REDIS_CLUSTER:-0} in
  1|true|yes) redis_cluster=true ;;
  0|false|no|'') ;;
  *) echo "e2e: E2E_REDIS_CLUSTER must be 1 or 0, got '$E2E_REDIS_CLUSTER'" >&2; exit 2 ;;
esac

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "e2e: Node.js >= 18 and npm are needed: sudo apt-get install nodejs npm" >&2
  exit 1
fi
npm ci --no-audit --no-fund

status=0
bash "$cluster" status >/dev/null 2>&1 || status=$?
case $status in
  0)
    echo "e2e: using the cluster that is already running (it stays running)" >&2
    if $redis_cluster && ! grep -q '^REDIS_CLUSTER_PORT=[0-9]' "$state/cluster.env" 2>/dev/null; then
      echo "e2e: E2E_REDIS_CLUSTER=1, but the running cluster was not started with --redis-cluster: stop it first" >&2
      exit 1
    fi ;;
  3)
    trap 'bash "$cluster" stop' EXIT
    if $redis_cluster; then
      bash "$cluster" start --nodes 3 --redis-cluster
    else
      bash "$cluster" start --nodes 3
    fi ;;
  *)
    echo "e2e: a cluster is running but not every process is ready:" >&2
    bash "$cluster" status >&2 || true
    echo "e2e: fix it (deploy/local/cluster.sh restart-node K) or stop it first" >&2
    exit 1 ;;
esac

# shellcheck source=/dev/null
source "$state/urls.env"
export CHATTY_URL CHATTY_NODES
# Lets the rolling-restart test restart nodes of this local cluster.
export CHATTY_CLUSTER_CTL=$cluster
node --test "$@"

# Two people in headless Chromium, each on another node, through a restart of one.
bash "$root/tests/browser/run.sh"

# A few seconds of the load generator through the balancer: seeds through the API, sends
# with acks, and exits non-zero if any message is lost, duplicated or out of order.
profile=${CHATTY_PROFILE:-release}
flag=(); [ "$profile" = release ] && flag=(--release)
(cd "$root" && cargo build "${flag[@]}" -p chatty-load)
load=${CARGO_TARGET_DIR:-$root/target}/$profile/chatty-load
"$load" --url "$CHATTY_URL" --nodes "$CHATTY_NODES" \
  --users 20 --group-size 5 --rate 40 --duration 3 --ramp-up 1

# The same through a crash: 3 s in, a random node is killed (SIGKILL) and, a second later,
# restarted by the launcher. Its clients reconnect through nginx, resume with `sync` from
# the last seq they hold and retry unacknowledged sends with the same client_msg_id;
# anything lost or stored twice fails the run.
"$load" --url "$CHATTY_URL" --nodes "$CHATTY_URL" --metrics "$CHATTY_NODES" \
  --users 20 --group-size 5 --rate 40 --duration 5 --ramp-up 1 \
  --chaos-kill-every 3 --cluster-ctl "$cluster"

# On a Redis Cluster, the same through a failover: 3 s in, the master of a random shard is
# killed and its replica takes over (the launcher then brings the old master back as the
# new replica, which takes it about 10 s). Nothing may be lost or stored twice, no device
# logged out, and everyone connected must show online within the presence lease.
if $redis_cluster; then
  "$load" --url "$CHATTY_URL" --nodes "$CHATTY_URL" --metrics "$CHATTY_NODES" \
    --users 20 --group-size 5 --rate 40 --duration 15 --ramp-up 1 \
    --chaos-redis-failover-at 3 --cluster-ctl "$cluster"
fi
