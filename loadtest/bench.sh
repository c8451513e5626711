#!/usr/bin/env bash
# Benchmarks Chatty against the Node.js Socket.IO reference on this machine, with the same
# load tool and scenario, and prints (or appends to docs/benchmarks.md with --write) a table.
#
# Usage: loadtest/bench.sh [--write] [--only chatty|reference] [--scenario idle|send|both]
# Env:   NODES (3), USERS (2000), GROUP (10), RATE (2000), DURATION (20), IDLE_USERS (5000)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

write=false only="" scenario=both
while [ $# -gt 0 ]; do
  case "$1" in
    --write) write=true ;;
    --only) only=$2; shift ;;
    --scenario) scenario=$2; shift ;;
    *) echo "bench: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

NODES=${NODES:-3} USERS=${USERS:-2000} GROUP=${GROUP:-10} RATE=${RATE:-2000} DURATION=${DURATION:-20}
IDLE_USERS=${IDLE_USERS:-5000}

bash deploy/local/services.sh
source deploy/local/env.sh
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -p chatty -p chatty-load
chatty="$target/release/chatty"
load="$target/release/chatty-load"
work="$root/.chatty/bench"
mkdir -p "$work"
pids=()

cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
trap cleanup EXIT

wait_ready() {
  for _ in $(seq 1 200); do
    curl -sf "$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench: $1 never became ready" >&2
  return 1
}

# Starts $NODES servers of kind $1 on a fresh database and Redis prefix; sets node_urls.
# Runs in this shell (not a subshell) so that cleanup knows the pids.
start_cluster() {
  local kind=$1 base_port=$2 db=$3 prefix=$4 urls=()
  for i in $(seq 1 "$NODES"); do
    local port=$((base_port + i))
    if [ "$kind" = chatty ]; then
      DATABASE_URL="${CHATTY_TEST_PG}/$db" CHATTY_REDIS_PREFIX=$prefix CHATTY_ADDR=127.0.0.1:$port \
        CHATTY_NODE_ID="bench-$i" RUST_LOG=warn "$chatty" serve >"$work/$kind-$i.log" 2>&1 &
    else
      DATABASE_URL="${CHATTY_TEST_PG}/$db" CHATTY_REDIS_PREFIX=$prefix PORT=$port \
        node loadtest/reference/server.mjs >"$work/$kind-$i.log" 2>&1 &
    fi
    pids+=($!)
    urls+=("http://127.0.0.1:$port")
    # The first chatty node creates and migrates the database; the rest start after it.
    [ "$i" -eq 1 ] && wait_ready "http://127.0.0.1:$port"
  done
  for u in "${urls[@]}"; do wait_ready "$u"; done
  node_urls=$(IFS=,; echo "${urls[*]}")
}

fresh_db() {
  local db="chatty_bench_$1_$(date +%s)"
  # The schema always comes from chatty's migrations, for both servers.
  DATABASE_URL="${CHATTY_TEST_PG}/$db" "$chatty" migrate >/dev/null 2>&1
  echo "$db"
}

run_scenario() {
  local kind=$1 base_port=$2 name=$3; shift 3
  local db prefix nodes out
  db=$(fresh_db "$kind")
  prefix="bench:$kind:$(date +%s):"
  start_cluster "$kind" "$base_port" "$db" "$prefix" >&2
  nodes=$node_urls
  out="$work/$kind-$name.json"
  DATABASE_URL="${CHATTY_TEST_PG}/$db" CHATTY_REDIS_PREFIX=$prefix \
    "$load" --url "${nodes%%,*}" --nodes "$nodes" --seed-sql --json "$@" >"$out" 2>"$work/$kind-$name.err" || true
  cleanup
  psql "${CHATTY_TEST_PG}/postgres" -qc "drop database if exists \"$db\" with (force)" >/dev/null 2>&1 || true
  echo "$out"
}

kinds=(chatty reference)
[ -n "$only" ] && kinds=("$only")
if [ ! -d loadtest/reference/node_modules ]; then (cd loadtest/reference && npm ci --no-audit --no-fund >/dev/null); fi

declare -A results
for kind in "${kinds[@]}"; do
  port=3300; [ "$kind" = reference ] && port=3400
  if [ "$scenario" != send ]; then
    results[$kind-idle]=$(NODES=1 run_scenario "$kind" "$port" idle --users "$IDLE_USERS" --group-size 10 --idle 8 --connect-concurrency 128)
  fi
  if [ "$scenario" != idle ]; then
    results[$kind-send]=$(run_scenario "$kind" "$port" send --users "$USERS" --group-size "$GROUP" --rate "$RATE" \
      --duration "$DURATION" --ramp-up 2)
  fi
done

python3 - "$write" "${results[@]}" <<'PY'
import json, sys, os, platform, subprocess
write = sys.argv[1] == "true"
rows = []
for path in sys.argv[2:]:
    name = os.path.basename(path).removesuffix(".json")
    try:
        r = json.load(open(path))
    except Exception as e:
        rows.append(f"| {name} | failed: {e} |")
        continue
    lat = r.get("latency") or {}
    rows.append("| {} | {} | {:.0f} | {:.0f} | {} | {} | {} | {} | {} | {} |".format(
        name, r["connected"], r["sent_per_sec"], r["delivered_per_sec"],
        lat.get("p50_ms", "-"), lat.get("p99_ms", "-"), lat.get("max_ms", "-"),
        r["lost"], r["duplicated"], "{:.1f}".format(r["kb_per_connection"]) if r.get("kb_per_connection") is not None else "-"))
table = "\n".join([
    "| run | sockets | sent/s | delivered/s | p50 ms | p99 ms | max ms | lost | dup | KB/conn |",
    "|---|---|---|---|---|---|---|---|---|---|",
    *rows,
])
print(table)
PY
