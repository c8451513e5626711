#!/usr/bin/env bash
# Benchmarks Chatty against the Node.js Socket.IO reference (loadtest/reference) on this
# machine: the same load tool, scenarios, balancer and Redis for both. Every run gets a
# fresh cluster (deploy/local/cluster.sh with its own Redis) and a fresh database, and is
# bounded to tens of seconds. Prints the tables; --write puts them into docs/benchmarks.md
# between the `bench:begin` and `bench:end` markers.
#
# Usage: loadtest/bench.sh [--write] [--only chatty|reference] [--scenario NAME]...
#   idle       1 node, IDLE_USERS authenticated idle sockets held IDLE_HOLD s, opened from
#              the local addresses IDLE_SOURCE_ADDRS: memory per connection, connect rate
#              (sockets/s) and the node's CPU while only heartbeats flow
#   saturate   NODES nodes behind nginx, USERS users in groups of GROUP: offered rates from
#              RATES until delivery stops following the offer (deliveries while sending
#              < 97% of acked sends x group size, or sends acked < 90% of offered) or p99
#              explodes (> 5x the first rate's and > 100 ms); saturation = the last rate
#              that kept up
#   send       the same at 50% and 90% of each server's saturation (or of SAT_chatty /
#              SAT_reference when given), DURATION seconds each
#   chaos      send at CHAOS_SHARE% of saturation while a random node is killed every
#              CHAOS_KILL_EVERY s and restarted, and Redis is crashed once at
#              CHAOS_REDIS_AT s
#   hostile    Chatty only (the reference has no per-socket limits): HOSTILE_NODES nodes,
#              HOSTILE_RUNS runs of `chatty-load --hostile`: one socket emits HOSTILE_EVENTS
#              acked events at once while another user of its group measures REST and
#              socket round trip latency (users registered through the API)
#   notify     Chatty only (the reference has no notification centre): message notification
#              latency, every device with a `/notifications` socket too (--notifications):
#              on an idle cluster (NOTIFY_IDLE_USERS users in groups of NOTIFY_IDLE_GROUP
#              sending NOTIFY_IDLE_RATE msg/s for NOTIFY_IDLE_DURATION s), then at
#              NOTIFY_SHARE% of saturation (as `send` finds it) like `send`
#   fanout     Chatty only (what it measures is Chatty's bus): FANOUT_NODES nodes, every
#              socket straight to the first FANOUT_LOADED of them, the others holding none
#              but still measured; FANOUT_RATE msg/s from USERS users in groups of GROUP for
#              FANOUT_DURATION s. Per node: CPU seconds, bus messages received, channels;
#              and idle nodes' mean CPU over loaded nodes': what hearing events that none
#              of a node's sockets needs costs (near 0 once nodes hear only their sockets'
#              rooms)
#   scaling    Chatty only: the same SCALING_RATE msg/s (groups of GROUP, USERS users) through
#              nginx, as `send` does, on each cluster size of SCALING_NODES, SCALING_DURATION
#              s each: node CPU (mean, max), deliveries/s, p99, lost / dup / out of order
#   send-cluster
#              Chatty only: `send` on a single Redis and on a Redis Cluster (3 masters + 3
#              replicas, deploy/local/redis-cluster.sh) at the same offered rates, one run
#              on each Redis per rate, alternating: SEND_CLUSTER_RATES msg/s, or 50% and 90%
#              of saturation when unset; results labelled redis-single / redis-cluster
#   chaos-redis-failover
#              Chatty only: send at CHAOS_SHARE% of saturation on a Redis Cluster while the
#              master of one shard (CHAOS_REDIS_MASTER, default random) is killed at
#              CHAOS_REDIS_AT s and its replica takes over; fails unless nothing is lost, no
#              device is logged out and presence is right within its lease afterwards
#   chaos-redis-restart
#              Chatty only: the same on a single Redis that is crashed at CHAOS_REDIS_AT s
#              and comes back empty, as a Redis without persistence does
#   storm      Chatty only: STORM_NODES nodes, STORM_SOCKETS sockets straight to the nodes
#              (~1/STORM_NODES each; or through nginx with STORM_VIA=balancer) from
#              STORM_PROCS load processes of disjoint users
#              (one process holds < 20,000 descriptors), sending STORM_RATE msg/s in all
#              with resume on; at STORM_KILL_AT s the first process SIGKILLs node
#              STORM_KILL_NODE for good and every socket it held reconnects to the others
#              (walking --nodes, spread evenly) and resumes with `sync`. Per process and
#              merged (bench_report.py): sockets dropped, time until 99% / all back and
#              resumed, failed attempts, the other users' send-to-ack and send-to-delivery
#              p99 and max over STORM_WINDOW s from the first drop, lost, duplicated,
#              presence afterwards
#   rolling    Chatty only: ROLLING_NODES nodes, ROLLING_SOCKETS sockets straight to the
#              nodes sending ROLLING_RATE msg/s with resume on; at ROLLING_AT s every node
#              is restarted in turn (cluster.sh rolling-restart: SIGTERM, exit, start,
#              ready). Twice: nodes dropping all sockets at once on SIGTERM
#              (CHATTY_DRAIN_SPREAD_SECS=0, "burst") and pacing them over
#              ROLLING_DRAIN_SPREAD s (grace ROLLING_GRACE s, "paced"). Reports the
#              reconnect rate (per second, peak), lost, duplicated, failed attempts
#   (default: idle, saturate, send, chaos, in that order; hostile, notify, fanout,
#   scaling, send-cluster, storm, rolling and the Redis chaos scenarios only when asked
#   for)
# A server build without the bus metrics (chatty_bus_received_total, chatty_bus_channels)
# is measured all the same; its bus columns read "n/a". To compare builds, measure the old
# one into a results directory of its own and give it to the report:
#   CHATTY_BIN=/path/to/old/chatty BENCH_RESULTS=.chatty/bench/before loadtest/bench.sh \
#     --only chatty --scenario fanout
#   BENCH_BEFORE=.chatty/bench/before loadtest/bench.sh --only chatty --scenario fanout
# Env: NODES (3) USERS (2000) GROUP (10) DURATION (20) IDLE_USERS (5000) RATES (250 500 ...)
#      STEP_DURATION (12) BENCH_RESULTS (.chatty/bench/results) CHATTY_BIN (a server build to
#      measure instead of building this checkout's) LOAD_MAX (1.0) BUSY_MAX (25) LOAD_WAIT
#      (300): before the first run, wait up to LOAD_WAIT s for the 1-minute load average to
#      fall to LOAD_MAX; before each run, for other work to use at most BUSY_MAX% of the CPU
#      HOSTILE_NODES (1) HOSTILE_RUNS (2) HOSTILE_EVENTS (15000) NOTIFY_IDLE_USERS (20)
#      NOTIFY_IDLE_GROUP (5) NOTIFY_IDLE_RATE (5) NOTIFY_IDLE_DURATION (10) NOTIFY_SHARE (50)
#      FANOUT_NODES (4) FANOUT_LOADED (2) FANOUT_RATE (300) FANOUT_DURATION (15)
#      SCALING_NODES (2 4 6) SCALING_RATE (400) SCALING_DURATION (DURATION)
#      BENCH_BEFORE (results of another build: the report sets fanout and scaling beside it)
#      SEND_CLUSTER_RATES (unset: 50% and 90% of saturation) CHAOS_REDIS_MASTER (random)
#      BALANCER_PORT (8190) BASE_PORT (3190: nodes on BASE_PORT+1..) BENCH_REDIS_PORT (6392)
#      BENCH_REDIS_CLUSTER_PORT (7391: the Redis Cluster on 7391..7396, buses 17391..17396)
#      IDLE_HOLD (30) IDLE_SOURCE_ADDRS (127.0.0.2,127.0.0.3)
#      STORM_NODES (3) STORM_SOCKETS (30000) STORM_PROCS (3) STORM_RATE (150)
#      STORM_KILL_AT (10) STORM_KILL_NODE (1) STORM_DURATION (30) STORM_WINDOW (10)
#      STORM_VIA (direct, or balancer: through nginx) STORM_NGINX_WORKERS (6)
#      ROLLING_NODES (3) ROLLING_SOCKETS (9000) ROLLING_RATE (150) ROLLING_AT (5)
#      ROLLING_DURATION (10: sending goes on until the restarts are over)
#      ROLLING_DRAIN_SPREAD (20) ROLLING_GRACE (25) ROLLING_MODES (burst paced)
# --write also puts the fanout table into docs/benchmarks.md between `fanout:begin` and
# `fanout:end`, the single Redis against Redis Cluster tables (send-cluster and the Redis
# chaos scenarios) between `redis-cluster:begin` and `redis-cluster:end`, and the scaling
# table into docs/scaling.md between `scaling:begin` and `scaling:end`, where those markers
# exist, and the idle-at-scale, storm and rolling tables between `connections:begin` and
# `connections:end` in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

write=false only="" scenarios=()
while [ $# -gt 0 ]; do
  case "$1" in
    --write) write=true ;;
    --only) only=${2:?}; shift ;;
    --scenario) scenarios+=("${2:?}"); shift ;;
    *) echo "bench: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=(idle saturate send chaos)

NODES=${NODES:-3} USERS=${USERS:-2000} GROUP=${GROUP:-10} DURATION=${DURATION:-20}
IDLE_USERS=${IDLE_USERS:-5000} STEP_DURATION=${STEP_DURATION:-12}
RATES=${RATES:-250 500 750 1000 1250 1500 2000 2500 3000 4000}
LOAD_MAX=${LOAD_MAX:-1.0} LOAD_WAIT=${LOAD_WAIT:-300} BUSY_MAX=${BUSY_MAX:-25}
CHAOS_SHARE=${CHAOS_SHARE:-50} CHAOS_KILL_EVERY=${CHAOS_KILL_EVERY:-6} CHAOS_REDIS_AT=${CHAOS_REDIS_AT:-10}
HOSTILE_NODES=${HOSTILE_NODES:-1} HOSTILE_RUNS=${HOSTILE_RUNS:-2} HOSTILE_EVENTS=${HOSTILE_EVENTS:-15000}
NOTIFY_IDLE_USERS=${NOTIFY_IDLE_USERS:-20} NOTIFY_IDLE_GROUP=${NOTIFY_IDLE_GROUP:-5}
NOTIFY_IDLE_RATE=${NOTIFY_IDLE_RATE:-5} NOTIFY_IDLE_DURATION=${NOTIFY_IDLE_DURATION:-10}
NOTIFY_SHARE=${NOTIFY_SHARE:-50}
IDLE_HOLD=${IDLE_HOLD:-30} IDLE_SOURCE_ADDRS=${IDLE_SOURCE_ADDRS:-127.0.0.2,127.0.0.3}
STORM_NODES=${STORM_NODES:-3} STORM_SOCKETS=${STORM_SOCKETS:-30000} STORM_PROCS=${STORM_PROCS:-3}
STORM_RATE=${STORM_RATE:-150} STORM_KILL_AT=${STORM_KILL_AT:-10} STORM_KILL_NODE=${STORM_KILL_NODE:-1}
STORM_DURATION=${STORM_DURATION:-30} STORM_WINDOW=${STORM_WINDOW:-10}
STORM_VIA=${STORM_VIA:-direct} STORM_NGINX_WORKERS=${STORM_NGINX_WORKERS:-6}
ROLLING_NODES=${ROLLING_NODES:-3} ROLLING_SOCKETS=${ROLLING_SOCKETS:-9000} ROLLING_RATE=${ROLLING_RATE:-150}
ROLLING_AT=${ROLLING_AT:-5} ROLLING_DURATION=${ROLLING_DURATION:-10}
ROLLING_DRAIN_SPREAD=${ROLLING_DRAIN_SPREAD:-20} ROLLING_GRACE=${ROLLING_GRACE:-25}
ROLLING_MODES=${ROLLING_MODES:-burst paced}
FANOUT_NODES=${FANOUT_NODES:-4} FANOUT_LOADED=${FANOUT_LOADED:-2} FANOUT_RATE=${FANOUT_RATE:-300}
FANOUT_DURATION=${FANOUT_DURATION:-15}
SCALING_NODES=${SCALING_NODES:-2 4 6} SCALING_RATE=${SCALING_RATE:-400} SCALING_DURATION=${SCALING_DURATION:-$DURATION}
BALANCER_PORT=${BALANCER_PORT:-8190} BASE_PORT=${BASE_PORT:-3190} BENCH_REDIS_PORT=${BENCH_REDIS_PORT:-6392}
BENCH_REDIS_CLUSTER_PORT=${BENCH_REDIS_CLUSTER_PORT:-7391}
SEND_CLUSTER_RATES=${SEND_CLUSTER_RATES:-} CHAOS_REDIS_MASTER=${CHAOS_REDIS_MASTER:-}

# Every process of a run (nodes, nginx, load tool) inherits this: tens of thousands of
# sockets need far more than the usual soft limit of 1,024 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

bash deploy/local/services.sh
# shellcheck source=deploy/local/env.sh
source deploy/local/env.sh
target=${CARGO_TARGET_DIR:-$root/target}
[[ $target == /* ]] || target=$root/$target
# CHATTY_BIN=/path/chatty measures another build of the server (e.g. before a change).
[ -n "${CHATTY_BIN:-}" ] || cargo build --release -p chatty -p chatty-load
# The load tool is always this checkout's, so that an older server's results have the same
# fields (the older build's own chatty-load may sit next to CHATTY_BIN).
[ -z "${CHATTY_BIN:-}" ] || cargo build --release -p chatty-load
export CHATTY_BIN=${CHATTY_BIN:-$target/release/chatty}
load=$target/release/chatty-load
work=$root/.chatty/bench
results=${BENCH_RESULTS:-$work/results}
[[ $results == /* ]] || results=$root/$results
export CHATTY_CLUSTER_DIR=$work/cluster
ctl=$root/deploy/local/cluster.sh
mkdir -p "$results" "$work"

log() { printf 'bench: %s\n' "$*" >&2; }

current_db='' run_name=''
cleanup() {
  bash "$ctl" stop >/dev/null 2>&1 || true
  # The nodes' warnings (RUST_LOG=warn) next to the run's results, e.g. presence
  # transitions a node could not record.
  if [ -n "$run_name" ]; then
    for f in "$CHATTY_CLUSTER_DIR"/node-*.log; do
      [ ! -s "$f" ] || cp "$f" "$results/$run_name.$(basename "$f")"
    done
    run_name=''
  fi
  if [ -n "$current_db" ]; then
    psql "${CHATTY_TEST_PG}/postgres" -qc "drop database if exists \"$current_db\" with (force)" >/dev/null 2>&1 || true
    current_db=''
  fi
}
trap cleanup EXIT

# Percent of the whole machine's CPU busy over the next 3 seconds.
busy_now() {
  local a b
  a=$(head -1 /proc/stat) && sleep 3 && b=$(head -1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {
    n = split(a, x); split(b, y); busy = 0; total = 0
    for (i = 2; i <= 9 && i <= n; i++) { d = y[i] - x[i]; total += d; if (i != 5 && i != 6) busy += d }
    printf "%.0f", (total > 0 ? 100 * busy / total : 0) }'
}

# Waits (bounded) until other work on the machine is light, so runs compare: once for the
# 1-minute load average, then before every run for the CPU in use right now (the load
# average still carries the previous run for a minute or two). What each run found is kept
# next to its result.
wait_load() {
  local deadline=$((SECONDS + LOAD_WAIT)) l
  while l=$(cut -d' ' -f1 /proc/loadavg); ! awk -v l="$l" -v m="$LOAD_MAX" 'BEGIN { exit !(l <= m) }'; do
    [ "$SECONDS" -lt "$deadline" ] || { log "load average still $l; starting anyway"; return; }
    log "load average $l > $LOAD_MAX from other work; waiting"
    sleep 15
  done
}

quiet_busy=''
quiet_machine() {
  local deadline=$((SECONDS + LOAD_WAIT)) b
  while b=$(busy_now); [ "$b" -gt "$BUSY_MAX" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { log "other work still uses $b% of the CPU; running anyway (recorded)"; break; }
    log "other work uses $b% of the CPU; waiting"
    sleep 10
  done
  quiet_busy=$b
}

# cluster_up KIND NAME NODES: a fresh cluster and database for one run. Sets `targets`
# (where sockets go), `load_env` (what the load tool needs to reach the cluster's database
# and Redis) and `seed`. Sockets go through nginx, or straight to the nodes with VIA=direct
# (to the first K only with DIRECT_NODES=K; every node's /metrics is read all the same).
# Users are seeded straight into PostgreSQL and Redis, or through the API with SEED=api.
# The nodes run on a Redis of the cluster's own, or on a Redis Cluster of its own with
# REDIS=cluster. NODE_ENV ("NAME=value ...") adds node settings (e.g. how they drain),
# CLUSTER_ARGS ("--opt value ...") options of `cluster.sh start`.
cluster_up() {
  local kind=$1 name=$2 nodes=$3 redis=(--redis-port "$BENCH_REDIS_PORT") node_env=() start_args=()
  seed=(--seed-sql)
  [ "${SEED:-sql}" != api ] || seed=()
  [ "${REDIS:-single}" != cluster ] || redis=(--redis-cluster-port "$BENCH_REDIS_CLUSTER_PORT")
  [ -z "${NODE_ENV:-}" ] || read -r -a node_env <<<"$NODE_ENV"
  [ -z "${CLUSTER_ARGS:-}" ] || read -r -a start_args <<<"$CLUSTER_ARGS"
  current_db="chatty_bench_${kind}_$(date +%s)"
  # The nodes append to their logs: each run's start with empty ones, kept with its results.
  rm -rf "$CHATTY_CLUSTER_DIR/redis" "$CHATTY_CLUSTER_DIR"/node-*.log
  run_name=$kind-$name
  quiet_machine
  printf '{"busy_before_pct": %s, "loadavg": "%s"}\n' "${quiet_busy:-null}" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" >"$results/$kind-$name.quiet"
  env DATABASE_URL="${CHATTY_TEST_PG}/$current_db" CHATTY_REDIS_PREFIX="bench:" RUST_LOG=warn "${node_env[@]}" \
    bash "$ctl" start --nodes "$nodes" --server "$kind" --port "$BALANCER_PORT" \
    --base-port "$BASE_PORT" "${redis[@]}" "${start_args[@]}" >"$work/$kind-$name.cluster.log" 2>&1 ||
    { log "cluster did not start; see $work/$kind-$name.cluster.log"; cleanup; return 1; }
  unset REDIS_CLUSTER_URLS
  # shellcheck source=/dev/null
  source "$CHATTY_CLUSTER_DIR/urls.env"
  # The load tool seeds sessions and reads figures where the nodes keep them.
  load_env=(DATABASE_URL="${CHATTY_TEST_PG}/$current_db" CHATTY_REDIS_PREFIX="bench:" REDIS_URL="$REDIS_URL")
  [ -z "${REDIS_CLUSTER_URLS:-}" ] || load_env[2]=REDIS_CLUSTER_URLS="$REDIS_CLUSTER_URLS"
  targets=$CHATTY_URL
  [ "${VIA:-}" != direct ] || targets=$CHATTY_NODES
  [ -z "${DIRECT_NODES:-}" ] || targets=$(cut -d, -f1-"$DIRECT_NODES" <<<"$targets")
}

load_failed() {
  log "$1: chatty-load exited $2 (2: lost, duplicated or out of order, or after chaos a device logged out or presence wrong)"
}

# run KIND NAME NODES [chatty-load args...]: one fresh cluster, one run; prints the JSON path.
run() {
  local kind=$1 name=$2 nodes=$3 out status=0
  shift 3
  out=$results/$kind-$name.json
  cluster_up "$kind" "$name" "$nodes" || return 1
  log "$kind $name: chatty-load $*"
  env "${load_env[@]}" \
    "$load" --url "$CHATTY_URL" --nodes "$targets" --metrics "$CHATTY_NODES" "${seed[@]}" --json \
    --cluster-ctl "$ctl" "$@" >"$out" 2>"$work/$kind-$name.err" || status=$?
  cleanup
  [ "$status" -eq 0 ] || load_failed "$kind $name" "$status"
  echo "$out"
}

# run_procs KIND NAME NODES PROCS [chatty-load args...]: one fresh cluster, PROCS load
# processes started together (one process holds fewer than 20,000 descriptors), each
# seeding users of its own and waiting for the others before it sends (--ready-dir). The
# first also gets FIRST_ARGS ("--opt value ..."), the others OTHER_ARGS. With SOURCE_BASE=B
# process i opens its sockets from 127.0.0.(B+i-1): through one balancer address, one
# local address has only ~28,000 ports. Results in NAME-p1.json ... NAME-pPROCS.json;
# prints their paths.
run_procs() {
  local kind=$1 name=$2 nodes=$3 procs=$4 i status pids=() extra=() ready
  shift 4
  cluster_up "$kind" "$name" "$nodes" || return 1
  ready=$work/$name.ready
  rm -rf "$ready"
  log "$kind $name: $procs x chatty-load $* (first: ${FIRST_ARGS:-}; others: ${OTHER_ARGS:-})"
  for i in $(seq 1 "$procs"); do
    if [ "$i" -eq 1 ]; then read -r -a extra <<<"${FIRST_ARGS:-}"; else read -r -a extra <<<"${OTHER_ARGS:-}"; fi
    [ -z "${SOURCE_BASE:-}" ] || extra+=(--source-addrs "127.0.0.$((SOURCE_BASE + i - 1))")
    env "${load_env[@]}" \
      "$load" --url "$CHATTY_URL" --nodes "$targets" --metrics "$CHATTY_NODES" "${seed[@]}" --json \
      --cluster-ctl "$ctl" --ready-dir "$ready" --ready-count "$procs" "$@" "${extra[@]}" \
      >"$results/$kind-$name-p$i.json" 2>"$work/$kind-$name-p$i.err" &
    pids+=($!)
  done
  for i in $(seq 1 "$procs"); do
    status=0
    wait "${pids[$((i - 1))]}" || status=$?
    [ "$status" -eq 0 ] || load_failed "$kind $name process $i" "$status"
  done
  cleanup
  for i in $(seq 1 "$procs"); do echo "$results/$kind-$name-p$i.json"; done
}

# Reads one figure from a result: jq-like path in Python.
field() { python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    r = (r or {}).get(k) if isinstance(r, dict) else None
print("" if r is None else r)' "$1" "$2"; }

kinds=(chatty reference)
[ -z "$only" ] || kinds=("$only")
# The reference's dependencies, only when it runs.
if [[ " ${kinds[*]} " == *" reference "* ]] && [ ! -d loadtest/reference/node_modules ]; then
  (cd loadtest/reference && npm ci --no-audit --no-fund >/dev/null)
fi
declare -A saturation
for kind in "${kinds[@]}"; do
  var=SAT_$kind
  [ -z "${!var:-}" ] || saturation[$kind]=${!var}
done

wait_load
for scenario in "${scenarios[@]}"; do
  for kind in "${kinds[@]}"; do
    case $scenario in
      idle)
        # Straight to the node: through nginx each socket would cost the balancer two
        # descriptors, and only the node's memory is measured.
        # Several local addresses: one (local, server) address pair has ~28,000 ports.
        VIA=direct run "$kind" idle 1 --users "$IDLE_USERS" --group-size "$GROUP" --idle "$IDLE_HOLD" \
          --connect-concurrency 128 --source-addrs "$IDLE_SOURCE_ADDRS" >/dev/null || true ;;
      saturate)
        rm -f "$results/$kind"-rate-*.json "$results/$kind-saturation"
        first_p99='' last_ok=''
        for rate in $RATES; do
          f=$(run "$kind" "rate-$rate" "$NODES" --users "$USERS" --group-size "$GROUP" --rate "$rate" \
            --duration "$STEP_DURATION" --ramp-up 2 --drain 10) || break
          delivered=$(field "$f" delivered_in_window_per_sec) sent=$(field "$f" sent_per_sec)
          p99=$(field "$f" latency.p99_ms)
          { [ -n "$delivered" ] && [ -n "$p99" ]; } || break
          [ -n "$first_p99" ] || first_p99=$p99
          log "$kind at $rate msg/s: acked $sent/s, delivered $delivered/s while sending, p99 $p99 ms"
          # The 2 s ramp offers one second less than rate x duration.
          if python3 -c 'import sys
rate, group, secs, sent, delivered, p99, first = map(float, sys.argv[1:])
kept = delivered >= 0.97 * sent * group and sent >= 0.9 * rate * (secs - 1) / secs
sys.exit(0 if kept and not (p99 > 5 * first and p99 > 100) else 1)' \
            "$rate" "$GROUP" "$STEP_DURATION" "$sent" "$delivered" "$p99" "$first_p99"; then
            last_ok=$rate
          else
            break
          fi
        done
        saturation[$kind]=${last_ok:-0}
        echo "${last_ok:-0}" >"$results/$kind-saturation"
        log "$kind saturates at ${last_ok:-?} msg/s" ;;
      send|chaos)
        sat=${saturation[$kind]:-$(cat "$results/$kind-saturation" 2>/dev/null || echo 0)}
        [ "$sat" -gt 0 ] || { log "$kind: no saturation figure; run --scenario saturate first or set SAT_$kind"; continue; }
        if [ "$scenario" = send ]; then
          for share in 50 90; do
            run "$kind" "send-$share" "$NODES" --users "$USERS" --group-size "$GROUP" \
              --rate $((sat * share / 100)) --duration "$DURATION" --ramp-up 2 --drain 10 >/dev/null || true
          done
        else
          run "$kind" chaos "$NODES" --users "$USERS" --group-size "$GROUP" \
            --rate $((sat * CHAOS_SHARE / 100)) --duration "$DURATION" --ramp-up 2 --drain 10 \
            --chaos-kill-every "$CHAOS_KILL_EVERY" --chaos-restart-redis-at "$CHAOS_REDIS_AT" >/dev/null || true
        fi ;;
      send-cluster)
        # The reference's Redis adapter has no Redis Cluster mode here: Chatty's bus is what
        # the comparison is about.
        [ "$kind" = chatty ] || { log "send-cluster: skipped for $kind (Chatty only)"; continue; }
        rates=$SEND_CLUSTER_RATES
        if [ -z "$rates" ]; then
          sat=${saturation[$kind]:-$(cat "$results/$kind-saturation" 2>/dev/null || echo 0)}
          [ "$sat" -gt 0 ] || { log "send-cluster: no saturation figure; run --scenario saturate first, or set SAT_chatty or SEND_CLUSTER_RATES"; continue; }
          rates="$((sat * 50 / 100)) $((sat * 90 / 100))"
        fi
        rm -f "$results/$kind"-redis-single-*.json "$results/$kind"-redis-cluster-*.json
        for rate in $rates; do
          for redis in single cluster; do
            f=$(REDIS=$redis run "$kind" "redis-$redis-$rate" "$NODES" --users "$USERS" --group-size "$GROUP" \
              --rate "$rate" --duration "$DURATION" --ramp-up 2 --drain 10) || continue
            [ -s "$f" ] || continue
            log "$kind on $([ "$redis" = single ] && echo "a single Redis" || echo "a Redis Cluster") at $rate msg/s: delivered $(field "$f" delivered_in_window_per_sec)/s while sending, p99 $(field "$f" latency.p99_ms) ms"
          done
        done ;;
      chaos-redis-failover|chaos-redis-restart)
        [ "$kind" = chatty ] || { log "$scenario: skipped for $kind (Chatty only)"; continue; }
        sat=${saturation[$kind]:-$(cat "$results/$kind-saturation" 2>/dev/null || echo 0)}
        [ "$sat" -gt 0 ] || { log "$kind: no saturation figure; run --scenario saturate first or set SAT_$kind"; continue; }
        if [ "$scenario" = chaos-redis-failover ]; then
          redis=cluster blow=(--chaos-redis-failover-at "$CHAOS_REDIS_AT")
          [ -z "$CHAOS_REDIS_MASTER" ] || blow+=(--chaos-redis-master "$CHAOS_REDIS_MASTER")
        else
          redis=single blow=(--chaos-restart-redis-at "$CHAOS_REDIS_AT" --chaos-redis-empty)
        fi
        if f=$(REDIS=$redis run "$kind" "$scenario" "$NODES" --users "$USERS" --group-size "$GROUP" \
          --rate $((sat * CHAOS_SHARE / 100)) --duration "$DURATION" --ramp-up 2 --drain 10 "${blow[@]}"); then
          log "$kind $scenario: lost $(field "$f" lost), duplicated $(field "$f" duplicated), devices logged out $(field "$f" aftermath.logged_out), users not online $(field "$f" aftermath.not_online)"
        fi ;;
      hostile)
        # The reference has no per-socket rate or queue limits: flooding it measures nothing
        # this scenario is about.
        [ "$kind" = chatty ] || { log "hostile: skipped for $kind (Chatty only)"; continue; }
        rm -f "$results/$kind"-hostile-*.json
        for i in $(seq 1 "$HOSTILE_RUNS"); do
          f=$(SEED=api run "$kind" "hostile-$i" "$HOSTILE_NODES" --hostile --hostile-events "$HOSTILE_EVENTS") || continue
          log "$kind hostile $i: victim REST p99 $(field "$f" victim_burst.rest.p99_ms) ms, socket RTT p99 $(field "$f" victim_burst.socket_rtt.p99_ms) ms"
        done ;;
      notify)
        # The reference has no notification centre: no `/notifications` namespace, no
        # `notification` event.
        [ "$kind" = chatty ] || { log "notify: skipped for $kind (no notification centre)"; continue; }
        rm -f "$results/$kind"-notify-*.json
        if f=$(run "$kind" notify-idle "$NODES" --users "$NOTIFY_IDLE_USERS" --group-size "$NOTIFY_IDLE_GROUP" \
          --rate "$NOTIFY_IDLE_RATE" --duration "$NOTIFY_IDLE_DURATION" --notifications); then
          log "$kind notify idle: notification p99 $(field "$f" notifications.latency.p99_ms) ms over $(field "$f" notifications.events) events"
        fi
        sat=${saturation[$kind]:-$(cat "$results/$kind-saturation" 2>/dev/null || echo 0)}
        [ "$sat" -gt 0 ] || { log "$kind notify: no saturation figure for the loaded run; run --scenario saturate first or set SAT_$kind"; continue; }
        if f=$(run "$kind" "notify-$NOTIFY_SHARE" "$NODES" --users "$USERS" --group-size "$GROUP" \
          --rate $((sat * NOTIFY_SHARE / 100)) --duration "$DURATION" --ramp-up 2 --drain 10 --notifications); then
          log "$kind notify at $NOTIFY_SHARE%: notification p99 $(field "$f" notifications.latency.p99_ms) ms over $(field "$f" notifications.events) events"
        fi ;;
      fanout)
        # The reference's Redis adapter is a single-channel firehose by design and counts
        # nothing of what it receives: there is no routing of its own to measure.
        [ "$kind" = chatty ] || { log "fanout: skipped for $kind (Chatty only)"; continue; }
        [ "$FANOUT_LOADED" -lt "$FANOUT_NODES" ] || { log "fanout: FANOUT_LOADED must leave idle nodes"; exit 2; }
        if f=$(VIA=direct DIRECT_NODES=$FANOUT_LOADED run "$kind" fanout "$FANOUT_NODES" --users "$USERS" \
          --group-size "$GROUP" --rate "$FANOUT_RATE" --duration "$FANOUT_DURATION" --ramp-up 2 --drain 10); then
          log "$kind fanout: delivered $(field "$f" delivered_in_window_per_sec)/s while sending, p99 $(field "$f" latency.p99_ms) ms"
        fi ;;
      scaling)
        [ "$kind" = chatty ] || { log "scaling: skipped for $kind (Chatty only)"; continue; }
        rm -f "$results/$kind"-scaling-*.json
        for n in $SCALING_NODES; do
          f=$(run "$kind" "scaling-$n" "$n" --users "$USERS" --group-size "$GROUP" --rate "$SCALING_RATE" \
            --duration "$SCALING_DURATION" --ramp-up 2 --drain 10) || continue
          log "$kind scaling on $n nodes: delivered $(field "$f" delivered_in_window_per_sec)/s while sending, p99 $(field "$f" latency.p99_ms) ms"
        done ;;
      storm)
        # STORM_VIA=direct: straight to the nodes; a device whose node dies walks on to the
        # next nodes of --nodes, as the load tool's clients always do. STORM_VIA=balancer:
        # through nginx, where each socket costs two descriptors (60,000 for 30,000
        # sockets), so it runs STORM_NGINX_WORKERS workers sharing the port, each under the
        # 20,000 per-process limit, and every load process its own local address.
        [ "$kind" = chatty ] || { log "storm: skipped for $kind (Chatty only)"; continue; }
        rm -f "$results/$kind"-storm-p*.json
        per=$((STORM_SOCKETS / STORM_PROCS)) via=direct source_base='' cluster_args=''
        if [ "$STORM_VIA" = balancer ]; then
          via=balancer source_base=2 cluster_args="--nginx-workers $STORM_NGINX_WORKERS"
        fi
        FIRST_ARGS="--chaos-kill-node-at $STORM_KILL_AT --chaos-kill-node $STORM_KILL_NODE" \
          OTHER_ARGS="--storm --storm-at $STORM_KILL_AT" VIA=$via SOURCE_BASE=$source_base \
          CLUSTER_ARGS=$cluster_args run_procs "$kind" storm "$STORM_NODES" "$STORM_PROCS" \
          --users "$per" --group-size "$GROUP" --rate "$(awk -v r="$STORM_RATE" -v p="$STORM_PROCS" 'BEGIN { print r / p }')" \
          --duration "$STORM_DURATION" --ramp-up 2 --drain 15 --storm-window "$STORM_WINDOW" \
          --connect-concurrency 128 >/dev/null || true
        python3 loadtest/bench_report.py "$results" --storm-summary "$kind-storm" >&2 || true ;;
      rolling)
        [ "$kind" = chatty ] || { log "rolling: skipped for $kind (Chatty only)"; continue; }
        for mode in $ROLLING_MODES; do
          case $mode in
            burst) node_env="CHATTY_DRAIN_SPREAD_SECS=0 CHATTY_SHUTDOWN_GRACE_SECS=$ROLLING_GRACE" ;;
            paced) node_env="CHATTY_DRAIN_SPREAD_SECS=$ROLLING_DRAIN_SPREAD CHATTY_SHUTDOWN_GRACE_SECS=$ROLLING_GRACE" ;;
            *) log "rolling: ROLLING_MODES takes burst and paced, not $mode"; exit 2 ;;
          esac
          if f=$(NODE_ENV=$node_env VIA=direct run "$kind" "rolling-$mode" "$ROLLING_NODES" \
            --users "$ROLLING_SOCKETS" --group-size "$GROUP" --rate "$ROLLING_RATE" \
            --duration "$ROLLING_DURATION" --ramp-up 2 --drain 15 --chaos-rolling-restart-at "$ROLLING_AT" \
            --connect-concurrency 128); then
            log "$kind rolling ($mode): reconnects peak $(field "$f" reconnect_rate.peak_per_sec)/s, lost $(field "$f" lost), duplicated $(field "$f" duplicated), failed attempts $(field "$f" resume.reconnect_failures)"
          fi
        done ;;
      *) log "unknown scenario $scenario"; exit 2 ;;
    esac
  done
done

report=(python3 loadtest/bench_report.py "$results")
[ -z "${BENCH_BEFORE:-}" ] || report+=(--before "$BENCH_BEFORE")
if $write; then
  report+=(--write docs/benchmarks.md)
  # These tables have sections of their own, which a document may not have (yet).
  if grep -q '<!-- fanout:begin -->' docs/benchmarks.md; then report+=(--write-fanout docs/benchmarks.md)
  else log "docs/benchmarks.md has no fanout:begin/fanout:end markers; fanout table not written"; fi
  if grep -q '<!-- redis-cluster:begin -->' docs/benchmarks.md; then report+=(--write-redis-cluster docs/benchmarks.md)
  else log "docs/benchmarks.md has no redis-cluster:begin/redis-cluster:end markers; Redis Cluster tables not written"; fi
  if grep -q '<!-- connections:begin -->' docs/benchmarks.md; then report+=(--write-connections docs/benchmarks.md)
  else log "docs/benchmarks.md has no connections:begin/connections:end markers; connection tables not written"; fi
  if grep -q '<!-- scaling:begin -->' docs/scaling.md; then report+=(--write-scaling docs/scaling.md)
  else log "docs/scaling.md has no scaling:begin/scaling:end markers; scaling table not written"; fi
fi
"${report[@]}"
