#!/usr/bin/env bash
# A local Redis Cluster without Docker: 3 masters and 3 replicas on loopback ports, for
# nodes started with REDIS_CLUSTER_URLS (deploy/local/cluster.sh start --redis-cluster), the
# tests and the load tests. No persistence: a killed master's data survives only on its
# replica, as in a cluster that relies on replication.
#
# Usage: deploy/local/redis-cluster.sh COMMAND
#   start [--base-port B]   6 redis-server processes on 127.0.0.1:B..B+5 (default 7001),
#                           joined with `redis-cli --cluster create --cluster-replicas 1`;
#                           returns once the cluster is ok and every replica's link is up.
#                           A healthy cluster already running in the state directory is
#                           reused as it is.
#   stop                    stop every process of the cluster
#   status                  one line per process; exit 0 healthy, 1 degraded, 3 not running
#   urls                    print the REDIS_CLUSTER_URLS value (every node, comma-separated)
#   kill-master K           SIGKILL the master of the K-th slot range (1 to 3: slots 0-5460,
#                           5461-10922, 10923-16383, so K names the same shard after any
#                           number of failovers), wait until its replica is promoted and
#                           the cluster is ok, then start the killed process again so that
#                           it rejoins as that shard's replica, and wait for its link
#   flush                   FLUSHALL on every master (replicas follow)
#
# Environment: CHATTY_REDIS_CLUSTER_BASE_PORT (default of --base-port), CHATTY_REDIS_CLUSTER_DIR
# (state: pid files, node configs, logs; default .chatty/redis-cluster/),
# CHATTY_REDIS_CLUSTER_TIMEOUT (seconds each wait may take, default 60),
# CHATTY_REDIS_CLUSTER_NODE_TIMEOUT_MS (cluster-node-timeout: how long a master may be
# unreachable before its replica takes over, default 3000; Redis's own default, 15000,
# would stall a shard's writes for 15 s or more on every failover).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=${CHATTY_REDIS_CLUSTER_DIR:-$ROOT/.chatty/redis-cluster}
TIMEOUT=${CHATTY_REDIS_CLUSTER_TIMEOUT:-60}
NODE_TIMEOUT_MS=${CHATTY_REDIS_CLUSTER_NODE_TIMEOUT_MS:-3000}
NODES=6
MASTERS=3

log() { printf 'redis-cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  sed -n '/^# Usage:/,/^# Environment:/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

in_range() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- state -------------------------------------------------------------------------------

# The base port a running cluster was created with wins over the environment, so that
# `stop`, `status` and `kill-master` find it from any shell.
load_base() {
  BASE=${CHATTY_REDIS_CLUSTER_BASE_PORT:-7001}
  if [ -s "$DIR/cluster.env" ]; then
    # shellcheck source=/dev/null
    source "$DIR/cluster.env"
  fi
}

ports() { seq "$BASE" $((BASE + NODES - 1)); }
pid_file() { echo "$DIR/$1/redis.pid"; }
node_pid() { if [ -s "$(pid_file "$1")" ]; then cat "$(pid_file "$1")"; fi; }

# True when the process recorded for port $1 is a live redis-server: a stale pid file
# whose pid was reused by another program must not be signalled.
node_alive() {
  local pid cmd
  pid=$(node_pid "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ -r "/proc/$pid/cmdline" ] || return 0
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *redis-server* ]]
}

any_alive() {
  local p
  for p in $(ports); do node_alive "$p" && return 0; done
  return 1
}

rcli() { local p=$1; shift; redis-cli -h 127.0.0.1 -p "$p" "$@" 2>/dev/null; }

# One field of INFO (or CLUSTER INFO) of node $1: `field PORT SECTION NAME`.
field() {
  if [ "$2" = cluster-info ]; then rcli "$1" cluster info; else rcli "$1" info "$2"; fi |
    awk -F: -v k="$3" '$1 == k { sub(/\r$/, "", $2); print $2 }'
}

# `port role master-port first-slot` for every node, as node $1 sees the cluster (CLUSTER
# NODES); first-slot is that of a master's first range, "-" for replicas. Nodes flagged
# `fail` or `noaddr` are left out.
topology() {
  rcli "$1" cluster nodes | awk '
    {
      split($2, a, "[:@]"); port[$1] = a[2]
      role[$1] = ($3 ~ /master/) ? "master" : "replica"
      dead[$1] = ($3 ~ /fail|noaddr/ && $3 !~ /fail\?/)
      master[$1] = $4; first[$1] = "-"
      if ($9 != "") { split($9, s, "-"); first[$1] = s[1] }
    }
    END {
      for (id in port) if (!dead[id])
        print port[id], role[id], (master[id] == "-" ? "-" : port[master[id]]), first[id]
    }'
}

# The port of the master serving the K-th slot range ($2) as node $1 sees it.
master_of_range() {
  topology "$1" | awk '$2 == "master" && $4 != "-"' | sort -k4,4n | sed -n "${2}p" | cut -d' ' -f1
}

# Some live node to ask about the cluster.
any_live_port() {
  local p
  for p in $(ports); do
    if node_alive "$p" && [ "$(rcli "$p" ping)" = PONG ]; then echo "$p"; return 0; fi
  done
  return 1
}

# Healthy: all 6 processes answer, each says cluster_state:ok, 3 masters own every slot,
# each master has a replica whose link is up.
healthy() {
  local p asker masters=0 linked=0
  for p in $(ports); do
    node_alive "$p" || return 1
    [ "$(field "$p" cluster-info cluster_state)" = ok ] || return 1
  done
  asker=$(any_live_port) || return 1
  [ "$(field "$asker" cluster-info cluster_slots_assigned)" = 16384 ] || return 1
  while read -r p role _ _; do
    if [ "$role" = master ]; then
      masters=$((masters + 1))
    elif [ "$(field "$p" replication master_link_status)" = up ]; then
      linked=$((linked + 1))
    fi
  done < <(topology "$asker")
  [ "$masters" -eq "$MASTERS" ] && [ "$linked" -eq $((NODES - MASTERS)) ]
}

# wait_for WHAT COMMAND...: runs COMMAND until it succeeds, for up to TIMEOUT seconds.
wait_for() {
  local what=$1 deadline=$((SECONDS + TIMEOUT))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || { log "timed out after ${TIMEOUT} s waiting for $what"; return 1; }
    sleep 0.2
  done
}

# --- processes -----------------------------------------------------------------------------

start_process() {
  local p=$1
  mkdir -p "$DIR/$p"
  # setsid: a Ctrl-C in the terminal that ran `start` must not reach the cluster later.
  # cluster-replica-validity-factor 0: a replica may always take over, however long ago it
  # last heard its master, so repeated kills never leave a shard without a master.
  setsid nohup redis-server --port "$p" --bind 127.0.0.1 --dir "$DIR/$p" \
    --cluster-enabled yes --cluster-config-file "nodes-$p.conf" \
    --cluster-node-timeout "$NODE_TIMEOUT_MS" --cluster-replica-validity-factor 0 \
    --appendonly no --save '' --logfile "$DIR/$p/redis.log" \
    </dev/null >/dev/null 2>&1 &
  echo $! >"$(pid_file "$p")"
}

answers() { [ "$(rcli "$1" ping)" = PONG ]; }

wait_answers() {
  local p=$1 deadline=$((SECONDS + TIMEOUT))
  until answers "$p"; do
    if ! node_alive "$p"; then
      log "redis-server on port $p exited during start; last lines of $DIR/$p/redis.log:"
      tail -n 5 "$DIR/$p/redis.log" >&2 2>/dev/null || true
      return 1
    fi
    [ "$SECONDS" -lt "$deadline" ] || { log "redis-server on port $p did not answer within ${TIMEOUT} s"; return 1; }
    sleep 0.1
  done
}

stop_process() {
  local p=$1 signal=${2:-TERM} pid deadline
  pid=$(node_pid "$p")
  if node_alive "$p"; then
    kill "-$signal" "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; break; fi
      sleep 0.1
    done
  fi
  rm -f "$(pid_file "$p")"
}

# --- commands ------------------------------------------------------------------------------

cmd_start() {
  while [ $# -gt 0 ]; do
    case $1 in
      --base-port) CHATTY_REDIS_CLUSTER_BASE_PORT=${2:-}; shift 2 ;;
      *) usage ;;
    esac
  done
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    die "redis-server and redis-cli are needed: run 'sudo apt-get install redis-server'"
  fi
  local want=${CHATTY_REDIS_CLUSTER_BASE_PORT:-7001} p v
  in_range "$want" 1 $((55535 - NODES)) ||
    die "the base port must leave room for $NODES ports and their cluster bus ports (+10000), got '$want'"
  v=$(redis-server --version | grep -o 'v=[0-9]*' | tr -dc 0-9)
  [ "${v:-0}" -ge 7 ] || die "Redis ${v:-?} is too old: Chatty needs Redis 7 or newer (sharded pub/sub)"

  load_base
  if any_alive; then
    [ "$BASE" = "$want" ] || die "a cluster on ports $BASE-$((BASE + NODES - 1)) already runs from $DIR; stop it first to move it"
    # It may be in the middle of a failover or still linking a restarted replica.
    if TIMEOUT=$((TIMEOUT < 15 ? TIMEOUT : 15)) wait_for "the running cluster to be healthy" healthy; then
      log "reusing the healthy cluster already running on 127.0.0.1:$BASE-$((BASE + NODES - 1))"
      return 0
    fi
    cmd_status >&2 || true
    die "a cluster runs from $DIR but is not healthy; 'stop' it and start again"
  fi

  BASE=$want
  for p in $(ports); do
    ! port_busy "$p" || die "port $p is already in use (choose another base port with --base-port or CHATTY_REDIS_CLUSTER_BASE_PORT)"
    ! port_busy $((p + 10000)) || die "port $((p + 10000)) (cluster bus of $p) is already in use (choose another base port)"
  done
  # A fresh cluster: node configs of an earlier one would make the nodes refuse to join.
  rm -rf "$DIR"
  mkdir -p "$DIR"
  printf 'BASE=%q\n' "$BASE" >"$DIR/cluster.env"
  log "starting $NODES redis-server processes on 127.0.0.1:$BASE-$((BASE + NODES - 1)) (state in $DIR)"
  for p in $(ports); do start_process "$p"; done
  for p in $(ports); do
    wait_answers "$p" || { cmd_stop; exit 1; }
  done
  local addrs=()
  for p in $(ports); do addrs+=("127.0.0.1:$p"); done
  if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log" 2>&1; then
    log "redis-cli --cluster create failed; its output:"
    tail -n 20 "$DIR/create.log" >&2
    cmd_stop
    exit 1
  fi
  wait_for "cluster_state:ok on every node and every replica's link up" healthy || {
    cmd_status >&2 || true
    cmd_stop
    exit 1
  }
  log "ready: REDIS_CLUSTER_URLS=$(urls)"
}

cmd_stop() {
  load_base
  any_alive || { log "not running"; return 0; }
  local p
  for p in $(ports); do stop_process "$p" & done
  wait
  log "stopped"
}

cmd_status() {
  load_base
  any_alive || { log "not running"; return 3; }
  local p asker role master first link up=0
  asker=$(any_live_port || true)
  declare -A roles=() masters=() firsts=()
  if [ -n "$asker" ]; then
    while read -r p role master first; do
      roles[$p]=$role masters[$p]=$master firsts[$p]=$first
    done < <(topology "$asker")
  fi
  for p in $(ports); do
    if ! node_alive "$p"; then
      printf 'redis %s stopped\n' "$p"
      continue
    fi
    role=${roles[$p]:-?}
    case $role in
      master) link="slots from ${firsts[$p]}" ;;
      replica) link="of ${masters[$p]}, link $(field "$p" replication master_link_status)" ;;
      *) link="not in the cluster" ;;
    esac
    printf 'redis %s pid %-8s %-7s %-26s cluster_state %s\n' "$p" "$(node_pid "$p")" "$role" "$link" \
      "$(field "$p" cluster-info cluster_state)"
    up=$((up + 1))
  done
  healthy && return 0
  return 1
}

urls() {
  local p out=''
  for p in $(ports); do out+="redis://127.0.0.1:$p,"; done
  echo "${out%,}"
}

cmd_urls() {
  load_base
  urls
}

cmd_kill_master() {
  load_base
  in_range "${1:-}" 1 "$MASTERS" || die "kill-master needs a shard number from 1 to $MASTERS, got '${1:-}'"
  local k=$1 asker victim replica
  any_alive || die "not running: 'deploy/local/redis-cluster.sh start' first"
  # A shard whose replica is not linked yet (an earlier kill still resyncing) would lose
  # its slots instead of failing over.
  wait_for "a healthy cluster before killing a master" healthy || { cmd_status >&2 || true; exit 1; }
  asker=$(any_live_port) || die "no node answers"
  victim=$(master_of_range "$asker" "$k")
  [ -n "$victim" ] || die "no master serves slot range $k"
  replica=$(topology "$asker" | awk -v m="$victim" '$2 == "replica" && $3 == m { print $1; exit }')
  [ -n "$replica" ] || die "the master of slot range $k (port $victim) has no replica"
  log "slot range $k: SIGKILL master on port $victim (its replica is on port $replica)"
  stop_process "$victim" KILL
  # The replica takes over once the other masters have marked the dead one as failed:
  # cluster-node-timeout plus an election.
  promoted() {
    [ "$(rcli "$replica" role | head -n1)" = master ] &&
      [ "$(field "$replica" cluster-info cluster_state)" = ok ] &&
      [ "$(master_of_range "$replica" "$k")" = "$replica" ]
  }
  wait_for "the replica on port $replica to be promoted (cluster-node-timeout ${NODE_TIMEOUT_MS} ms)" promoted || {
    cmd_status >&2 || true
    exit 1
  }
  log "slot range $k: port $replica is its master now; cluster ok"
  # Empty (no persistence) and with its old node id: it learns it was failed over, becomes
  # the new master's replica and copies the shard from it.
  start_process "$victim"
  wait_answers "$victim" || exit 1
  rejoined() {
    [ "$(rcli "$victim" role | head -n1)" = slave ] &&
      [ "$(field "$victim" replication master_link_status)" = up ]
  }
  wait_for "port $victim to rejoin as a replica with its link up" rejoined || { cmd_status >&2 || true; exit 1; }
  wait_for "every node to say cluster_state:ok" healthy || { cmd_status >&2 || true; exit 1; }
  log "slot range $k: port $victim rejoined as the replica of port $replica; cluster healthy"
}

cmd_flush() {
  load_base
  local asker p
  asker=$(any_live_port) || die "not running"
  for p in $(topology "$asker" | awk '$2 == "master" { print $1 }'); do
    [ "$(rcli "$p" flushall)" = OK ] || die "FLUSHALL on port $p failed"
  done
  log "every master flushed"
}

case ${1:-} in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  urls) cmd_urls ;;
  kill-master) cmd_kill_master "${2:-}" ;;
  flush) cmd_flush ;;
  *) usage ;;
esac
