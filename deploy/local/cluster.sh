#!/usr/bin/env bash
# A local Chatty cluster without Docker: N `chatty serve` nodes on loopback ports behind one
# nginx, sharing the local PostgreSQL and Redis. Used by people, the e2e tests and load tests.
#
# Usage: deploy/local/cluster.sh COMMAND
#   start [--nodes N] [--port P] [--base-port B] [--redis-port R] [--server chatty|reference]
#         [--redis-cluster] [--redis-cluster-port C] [--nginx-workers W]
#                      build chatty, start N nodes (default 3) on ports B+1..B+N (default
#                      B=3100) and nginx on P (default 8080); wait until all are ready.
#                      --redis-port: the cluster gets a Redis of its own on 127.0.0.1:R
#                      that persists every write (append-only file), so restart-redis can
#                      crash it without logging anyone out or touching the shared Redis.
#                      --redis-cluster: the nodes run on a Redis Cluster of their own
#                      (deploy/local/redis-cluster.sh: 3 masters + 3 replicas on ports
#                      C..C+5, default 7001) with REDIS_CLUSTER_URLS instead of REDIS_URL;
#                      --redis-cluster-port C implies it. A healthy one that
#                      `redis-cluster.sh start` left on those ports is used, not stopped
#                      --server reference: run loadtest/reference (Node.js Socket.IO) as
#                      the nodes instead, for benchmarks
#                      --nginx-workers W: W nginx workers sharing the port (reuseport),
#                      each holding up to the descriptor limit: W x ~10,000 sockets with
#                      a limit of 20,000 (default 1, or CHATTY_CLUSTER_NGINX_WORKERS)
#   stop               SIGTERM every node (each drains), then stop nginx (and own Redis)
#   status             one line per process; exit 0 all up, 1 degraded, 3 not running
#   logs [-f] [K|nginx|all]   last lines of the logs (-f: follow)
#   restart-node K     SIGTERM node K, wait for it to exit, start it again, wait until it is
#                      ready and back in nginx's rotation (rolling restarts)
#   rolling-restart    restart-node for every node in turn (1, 2, ...): each drained with
#                      SIGTERM, gone, started and ready before the next one is touched
#   kill-node K        SIGKILL node K (a crash: no drain, its presence leases expire)
#   restart-redis [--empty]
#                      SIGKILL the cluster's own Redis and start it again on the same port
#                      from its append-only file (needs start --redis-port); --empty: start
#                      it with no data, as a Redis without persistence comes back
#   kill-redis-master K
#                      fail over shard K (1-3) of the cluster's Redis Cluster (needs start
#                      --redis-cluster): SIGKILL its master, wait until its replica took
#                      over, then bring the killed process back as the new replica
#
# Environment: CHATTY_PROFILE=release|debug (default release), CARGO_TARGET_DIR (honoured),
# CHATTY_BIN (use this binary, build nothing), CHATTY_CLUSTER_LISTEN (nginx address, default
# 127.0.0.1), CHATTY_CLUSTER_PORT / CHATTY_CLUSTER_BASE_PORT / CHATTY_CLUSTER_REDIS_PORT /
# CHATTY_CLUSTER_REDIS_CLUSTER_PORT (defaults of --port, --base-port, --redis-port and
# --redis-cluster-port; the last does not turn --redis-cluster on), CHATTY_CLUSTER_DIR
# (runtime files, default .chatty/cluster/), CHATTY_CLUSTER_TIMEOUT (seconds to wait for
# readiness, default 180), and every node setting of the README (DATABASE_URL, REDIS_URL,
# JWT_SECRET, CHATTY_*, e.g. CHATTY_SHUTDOWN_GRACE_SECS and CHATTY_DRAIN_SPREAD_SECS for how a
# node drains on SIGTERM), which deploy/local/env.sh fills in; `start` keeps them for every
# later restart-node. REDIS_CLUSTER_URLS set without
# --redis-cluster runs the nodes on that (external) Redis Cluster instead of REDIS_URL.
# Runtime files live in .chatty/ (gitignored).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${CHATTY_CLUSTER_DIR:-$ROOT/.chatty/cluster}
NGX=$STATE/nginx
TEMPLATE=$ROOT/deploy/nginx/cluster.conf.template
# How long nginx leaves a node out of rotation after one failed attempt (see render_nginx).

log() { printf 'cluster: %s\n' "$*" >&2; }

# Every process this launcher starts (nodes, nginx, Redis) inherits the soft descriptor
# limit, which is often 1024: raised to the hard limit here, for the nodes restarted by
# restart-node from another shell too. One process never holds more than the hard limit
# (20,000 on some CI machines, where it cannot be raised): size node counts by it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
die() { log "$*"; exit 1; }

usage() {
  sed -n '/^# Usage:/,/^# deploy\/local\/env.sh/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- processes -------------------------------------------------------------------------

# True when $1 is a live process whose command line contains $2: a stale pid file whose pid
# was reused by another program must not be signalled.
alive() {
  local pid=$1 what=$2 cmd
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ -r "/proc/$pid/cmdline" ] || return 0
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$what"* ]]
}

pid_of() { if [ -s "$1" ]; then cat "$1"; fi; }
node_pid() { pid_of "$STATE/node-$1.pid"; }
nginx_pid() { pid_of "$STATE/nginx.pid"; }
redis_pid() { pid_of "$STATE/redis.pid"; }
# What a node's command line contains: the chatty binary, or the reference server's script.
node_match() { if [ "${SERVER:-chatty}" = reference ]; then echo reference/server.mjs; else echo chatty; fi; }
node_alive() { alive "$(node_pid "$1")" "$(node_match)"; }
nginx_alive() { alive "$(nginx_pid)" nginx; }
redis_alive() { alive "$(redis_pid)" redis-server; }

# The Redis Cluster of `start --redis-cluster`, through its own launcher.
redis_cluster() {
  CHATTY_REDIS_CLUSTER_DIR=$REDIS_CLUSTER_DIR CHATTY_REDIS_CLUSTER_BASE_PORT=$REDIS_CLUSTER_PORT \
    bash "$ROOT/deploy/local/redis-cluster.sh" "$@"
}
# Whether any process of a Redis Cluster this launcher started is up (status exits 3 when none).
redis_cluster_alive() {
  [ "${REDIS_CLUSTER_OWNED:-0}" = 1 ] || return 1
  local status=0
  redis_cluster status >/dev/null 2>&1 || status=$?
  [ "$status" -ne 3 ]
}

# Waits up to $2 seconds for pid $1 to exit; 1 if it is still there.
wait_exit() {
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

http_code() { curl -s -o /dev/null -m 3 -w '%{http_code}' "$1" 2>/dev/null || true; }

# True when $1 is a whole number from $2 to $3.
in_range() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

port_busy() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# --- state ---------------------------------------------------------------------------------

load_state() {
  [ -s "$STATE/cluster.env" ] || die "no cluster state in $STATE: run 'deploy/local/cluster.sh start' first"
  # shellcheck source=/dev/null
  source "$STATE/cluster.env"
}

node_port() { echo $((BASE_PORT + $1)); }

check_node_arg() {
  in_range "${1:-}" 1 "$NODES" || die "node must be a number from 1 to $NODES, got '${1:-}'"
}

any_running() {
  local k
  nginx_alive && return 0
  redis_alive && return 0
  redis_cluster_alive && return 0
  for k in $(seq 1 "${NODES:-0}"); do node_alive "$k" && return 0; done
  return 1
}

# --- build and tools ---------------------------------------------------------------------

chatty_binary() {
  if [ -n "${CHATTY_BIN:-}" ]; then
    [ -x "$CHATTY_BIN" ] || die "CHATTY_BIN=$CHATTY_BIN is not an executable"
    (cd "$(dirname "$CHATTY_BIN")" && echo "$PWD/$(basename "$CHATTY_BIN")")
    return
  fi
  local profile=${CHATTY_PROFILE:-release} target=${CARGO_TARGET_DIR:-$ROOT/target}
  [[ $target == /* ]] || target=$ROOT/$target
  command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs), or set CHATTY_BIN"
  case $profile in
    release)
      log "building chatty (release; the first build takes about 4 minutes on 2 cores)"
      (cd "$ROOT" && cargo build --release --bin chatty) >&2 ;;
    debug)
      log "building chatty (debug)"
      (cd "$ROOT" && cargo build --bin chatty) >&2 ;;
    *) die "CHATTY_PROFILE must be release or debug, got '$profile'" ;;
  esac
  echo "$target/$profile/chatty"
}

nginx_binary() {
  local bin
  bin=$(command -v nginx || true)
  [ -n "$bin" ] || [ ! -x /usr/sbin/nginx ] || bin=/usr/sbin/nginx
  if [ -z "$bin" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      # Debian's nginx package may also start its own default site on port 80; this
      # launcher never uses or changes that instance.
      log "installing the Debian package nginx"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
      bin=$(command -v nginx || echo /usr/sbin/nginx)
    else
      die "nginx is not installed: run 'sudo apt-get install nginx' (Debian/Ubuntu) and start again"
    fi
  fi
  echo "$bin"
}

# --- nginx -----------------------------------------------------------------------------

# Renders the template for NODES nodes into $NGX/nginx.conf.
render_nginx() {
  local servers='' k conf user_directive='' conns
  for k in $(seq 1 "$NODES"); do
    # max_fails=0: nginx never benches a node by itself. On loopback a stopped or draining
    # node refuses at once and the request moves on (proxy_next_upstream), so remembering
    # failures gains nothing; and nginx forgets a failure only when a later request to that
    # node *ends*, which a WebSocket does not do for hours. With max_fails=1 a restarted node
    # got one new socket per fail_timeout, and once every node had failed (chatty-load
    # --chaos-kill-every) the balancer refused nearly every reconnect ("no live upstreams").
    servers+="        server 127.0.0.1:$(node_port "$k") max_fails=0;"$'\n'
  done
  servers=${servers%$'\n'}
  [ "$(id -u)" -ne 0 ] || user_directive="user $(id -un) $(id -gn);"
  # worker_connections counts every connection of a worker, the client's and the one to
  # the node alike: a proxied socket is two of them and two descriptors. A few descriptors
  # are nginx's own. worker_rlimit_nofile gives each worker the launcher's (raised) limit
  # even where nginx would start its workers with less.
  conns=$(( $(ulimit -n) - 32 ))
  [ "$conns" -le 65536 ] || conns=65536
  [ "$conns" -ge 256 ] || conns=256
  mkdir -p "$NGX/logs" "$NGX/tmp"
  conf=$(<"$TEMPLATE")
  conf=${conf//@USER_DIRECTIVE@/$user_directive}
  conf=${conf//@STATE@/$NGX}
  conf=${conf//@WORKER_CONNECTIONS@/$conns}
  conf=${conf//@WORKER_RLIMIT_NOFILE@/$(ulimit -n)}
  conf=${conf//@WORKER_PROCESSES@/${NGINX_WORKERS:-1}}
  # Tens of thousands of sockets to a node from one local address run out of ephemeral
  # ports (~28,000 per address pair, fewer with the TIME_WAIT of a reconnect storm): with
  # several workers nginx connects to the nodes from 4 loopback addresses in turn (Linux
  # answers on all of 127.0.0.0/8).
  local bind=''
  if [ "${NGINX_WORKERS:-1}" -gt 1 ]; then
    conf=${conf//@REUSEPORT@/ reuseport}
    bind='        proxy_bind $chatty_upstream_source;'
    conf=${conf//'    server {'/'    split_clients "$request_id" $chatty_upstream_source {
        25% 127.0.0.11;
        25% 127.0.0.12;
        25% 127.0.0.13;
        *   127.0.0.14;
    }

    server {'}
  else
    conf=${conf//@REUSEPORT@/}
  fi
  conf=${conf//@UPSTREAM_BIND@/$bind}
  conf=${conf//@LISTEN@/$LISTEN}
  conf=${conf//@PORT@/$PORT}
  conf=${conf//@SERVERS@/$servers}
  [[ $conf != *@[A-Z_]*@* ]] || die "unreplaced placeholder in $TEMPLATE"
  printf '%s\n' "$conf" >"$NGX/nginx.conf"
}

start_nginx() {
  local bin
  bin=$(nginx_binary)
  render_nginx
  if ! "$bin" -t -q -p "$NGX/" -e "$NGX/logs/error.log" -c "$NGX/nginx.conf"; then
    log "nginx rejected $NGX/nginx.conf"
    return 1
  fi
  # setsid: a Ctrl-C in the terminal that ran `start` must not reach the balancer later.
  setsid nohup "$bin" -p "$NGX/" -e "$NGX/logs/error.log" -c "$NGX/nginx.conf" \
    >>"$NGX/logs/stderr.log" 2>&1 </dev/null &
  echo $! >"$STATE/nginx.pid"
}

stop_nginx() {
  local pid
  pid=$(nginx_pid)
  if alive "$pid" nginx; then
    # QUIT: finish open requests; worker_shutdown_timeout is not set, so bound it here.
    kill -QUIT "$pid" 2>/dev/null || true
    wait_exit "$pid" 10 || { kill -TERM "$pid" 2>/dev/null || true; wait_exit "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true; }
    log "nginx stopped"
  fi
  rm -f "$STATE/nginx.pid"
}

# --- the cluster's own Redis (start --redis-port) ------------------------------------------

redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

# Every write is fsynced to the append-only file before Redis answers (few writes happen
# under chat load: cached sessions, presence leases, counters; pub/sub is not written), so
# a SIGKILL loses nothing: a crash tests the nodes' reconnection apart from data loss, which
# `restart-redis --empty` tests.
start_redis() {
  local deadline
  command -v redis-server >/dev/null || die "redis-server is not installed: run 'sudo apt-get install redis-server'"
  ! port_busy 127.0.0.1 "$REDIS_PORT" || die "port $REDIS_PORT (the cluster's Redis) is already in use"
  mkdir -p "$STATE/redis"
  setsid nohup redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly yes --appendfsync always --dir "$STATE/redis" \
    --logfile "$STATE/redis/redis.log" </dev/null >/dev/null 2>&1 &
  echo $! >"$STATE/redis.pid"
  deadline=$((SECONDS + 30))
  until redis_up; do
    redis_alive || { log "Redis exited during start; see $STATE/redis/redis.log"; tail -n 5 "$STATE/redis/redis.log" >&2 || true; return 1; }
    [ "$SECONDS" -lt "$deadline" ] || { log "Redis on port $REDIS_PORT did not answer within 30 s"; return 1; }
    sleep 0.1
  done
}

stop_redis() {
  local pid signal=${1:-TERM}
  pid=$(redis_pid)
  if alive "$pid" redis-server; then
    kill "-$signal" "$pid" 2>/dev/null || true
    wait_exit "$pid" 15 || { kill -KILL "$pid" 2>/dev/null || true; wait_exit "$pid" 5 || true; }
  fi
  rm -f "$STATE/redis.pid"
}

# --- nodes -------------------------------------------------------------------------------

start_node() {
  local k=$1 port
  port=$(node_port "$k")
  ! port_busy 127.0.0.1 "$port" || die "port $port (node $k) is already in use"
  (
    # Exactly the environment the cluster started with, so a restarted node joins the same
    # database, Redis prefix and JWT secret even from another shell. A node refuses to start
    # with both Redis settings, and the shell running this may hold the other one.
    unset REDIS_URL REDIS_CLUSTER_URLS
    # shellcheck source=/dev/null
    source "$STATE/node.env"
    export CHATTY_ADDR=127.0.0.1:$port CHATTY_NODE_ID=node-$k
    # Plain text in the log files, without terminal colour codes.
    export NO_COLOR=${NO_COLOR:-1}
    printf '\n=== %s starting node-%s on %s\n' "$(date -Is)" "$k" "$CHATTY_ADDR" >>"$STATE/node-$k.log"
    if [ "${SERVER:-chatty}" = reference ]; then
      setsid nohup node "$ROOT/loadtest/reference/server.mjs" >>"$STATE/node-$k.log" 2>&1 </dev/null &
    else
      setsid nohup "$BIN" serve >>"$STATE/node-$k.log" 2>&1 </dev/null &
    fi
    echo $! >"$STATE/node-$k.pid"
  )
}

# SIGTERM: the node fails readiness, stops accepting, tells its sockets to reconnect
# elsewhere and finishes in-flight requests within CHATTY_SHUTDOWN_GRACE_SECS.
stop_node() {
  local k=$1 signal=${2:-TERM} pid grace
  pid=$(node_pid "$k")
  if alive "$pid" "$(node_match)"; then
    kill "-$signal" "$pid" 2>/dev/null || true
    grace=$(grep -o 'CHATTY_SHUTDOWN_GRACE_SECS="[0-9]*"' "$STATE/node.env" 2>/dev/null | tr -dc 0-9 || true)
    if ! wait_exit "$pid" $((${grace:-25} + 10)); then
      log "node $k did not exit within its grace period; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      wait_exit "$pid" 5 || true
    fi
  fi
  rm -f "$STATE/node-$k.pid"
}

# Waits until node $1 answers /readyz with 200; shows its log and fails if it dies.
wait_ready() {
  local k=$1 deadline=$((SECONDS + ${CHATTY_CLUSTER_TIMEOUT:-180})) url
  url="http://127.0.0.1:$(node_port "$k")/readyz"
  until [ "$(http_code "$url")" = 200 ]; do
    if ! node_alive "$k"; then
      log "node $k exited during start; last lines of $STATE/node-$k.log:"
      tail -n 20 "$STATE/node-$k.log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "node $k is not ready after ${CHATTY_CLUSTER_TIMEOUT:-180} s ($url: $(http_code "$url")); last lines of its log:"
      tail -n 20 "$STATE/node-$k.log" >&2
      return 1
    fi
    sleep 0.3
  done
}

# --- commands ------------------------------------------------------------------------------

cmd_start() {
  local nodes=3 port=${CHATTY_CLUSTER_PORT:-8080} base=${CHATTY_CLUSTER_BASE_PORT:-3100}
  local redis_port=${CHATTY_CLUSTER_REDIS_PORT:-} server=chatty k
  local redis_cluster=false redis_cluster_port=${CHATTY_CLUSTER_REDIS_CLUSTER_PORT:-7001}
  local nginx_workers=${CHATTY_CLUSTER_NGINX_WORKERS:-1}
  while [ $# -gt 0 ]; do
    case $1 in
      --nodes) nodes=${2:-}; shift 2 ;;
      --port) port=${2:-}; shift 2 ;;
      --base-port) base=${2:-}; shift 2 ;;
      --redis-port) redis_port=${2:-}; shift 2 ;;
      --redis-cluster) redis_cluster=true; shift ;;
      --redis-cluster-port) redis_cluster=true redis_cluster_port=${2:-}; shift 2 ;;
      --server) server=${2:-}; shift 2 ;;
      --nginx-workers) nginx_workers=${2:-}; shift 2 ;;
      *) usage ;;
    esac
  done
  in_range "$nodes" 1 50 || die "--nodes must be 1 to 50, got '$nodes'"
  in_range "$nginx_workers" 1 32 || die "--nginx-workers must be 1 to 32, got '$nginx_workers'"
  in_range "$port" 1 65535 || die "--port must be a TCP port, got '$port'"
  in_range "$base" 1 $((65535 - nodes)) || die "--base-port must leave room for $nodes ports, got '$base'"
  [ -z "$redis_port" ] || in_range "$redis_port" 1 65535 || die "--redis-port must be a TCP port, got '$redis_port'"
  case $server in chatty|reference) ;; *) die "--server must be chatty or reference, got '$server'" ;; esac
  if $redis_cluster; then
    in_range "$redis_cluster_port" 1 55529 || die "--redis-cluster-port must leave room for 6 ports and their cluster bus ports (+10000), got '$redis_cluster_port'"
    [ -z "$redis_port" ] || die "--redis-port and --redis-cluster exclude each other: choose one Redis for the nodes"
    [ "$server" = chatty ] || die "--server reference runs on a single Redis only (REDIS_URL), not on --redis-cluster"
  fi

  if [ -s "$STATE/cluster.env" ]; then
    load_state
    if any_running; then
      log "already running ($NODES nodes, http://$LISTEN:$PORT); 'stop' it first to change its shape"
      cmd_status || true
      return 0
    fi
  fi

  NODES=$nodes PORT=$port BASE_PORT=$base LISTEN=${CHATTY_CLUSTER_LISTEN:-127.0.0.1}
  REDIS_PORT=$redis_port SERVER=$server REDIS_CLUSTER_PORT='' REDIS_CLUSTER_OWNED=0
  NGINX_WORKERS=$nginx_workers
  REDIS_CLUSTER_DIR=${CHATTY_REDIS_CLUSTER_DIR:-$STATE/redis-cluster}
  ! $redis_cluster || REDIS_CLUSTER_PORT=$redis_cluster_port
  ! port_busy "$LISTEN" "$PORT" || die "port $PORT is already in use (choose another with --port)"
  for k in $(seq 1 "$NODES"); do
    ! port_busy 127.0.0.1 "$(node_port "$k")" || die "port $(node_port "$k") is already in use (choose --base-port)"
  done
  command -v curl >/dev/null || die "curl is not installed: run 'sudo apt-get install curl'"

  # env.sh gives REDIS_URL a default; only one set before it is the caller's choice.
  local own_redis_url=${REDIS_URL:-}
  if [ -n "${REDIS_CLUSTER_URLS:-}" ] && ! $redis_cluster; then
    [ -z "$own_redis_url" ] || die "both REDIS_URL and REDIS_CLUSTER_URLS are set: unset one (a node refuses both)"
    [ -z "$REDIS_PORT" ] || die "--redis-port and REDIS_CLUSTER_URLS exclude each other: unset REDIS_CLUSTER_URLS"
    [ "$SERVER" = chatty ] || die "--server reference runs on a single Redis only: unset REDIS_CLUSTER_URLS"
  fi
  bash "$ROOT/deploy/local/services.sh"
  # shellcheck source=deploy/local/env.sh
  source "$ROOT/deploy/local/env.sh"
  BIN=$(chatty_binary)
  [ -x "$BIN" ] || die "no chatty binary at $BIN"
  nginx_binary >/dev/null
  if [ "$SERVER" = reference ]; then
    command -v node >/dev/null || die "the reference server needs Node.js: run 'sudo apt-get install nodejs npm'"
    [ -d "$ROOT/loadtest/reference/node_modules" ] ||
      (cd "$ROOT/loadtest/reference" && npm ci --no-audit --no-fund >&2)
  fi

  mkdir -p "$STATE"
  rm -f "$STATE"/node-*.pid "$STATE/nginx.pid" "$STATE/redis.pid"
  if [ -n "$REDIS_PORT" ]; then
    log "starting the cluster's own Redis on 127.0.0.1:$REDIS_PORT (data in $STATE/redis)"
    start_redis || exit 1
    export REDIS_URL=redis://127.0.0.1:$REDIS_PORT
  fi
  if [ -n "$REDIS_CLUSTER_PORT" ]; then
    # deploy/local/test.sh, say, may have started one on these ports in redis-cluster.sh's
    # own directory: share it rather than fail on busy ports.
    local shared=$ROOT/.chatty/redis-cluster
    if [ -z "${CHATTY_REDIS_CLUSTER_DIR:-}" ] && grep -qx "BASE=$REDIS_CLUSTER_PORT" "$shared/cluster.env" 2>/dev/null &&
      CHATTY_REDIS_CLUSTER_DIR=$shared bash "$ROOT/deploy/local/redis-cluster.sh" status >/dev/null 2>&1; then
      REDIS_CLUSTER_DIR=$shared
    fi
    # A healthy cluster already running there (a start that failed later, a stop that did
    # not finish) is reused; `stop` only stops one this start brought up.
    redis_cluster status >/dev/null 2>&1 || REDIS_CLUSTER_OWNED=1
    log "Redis Cluster for the nodes on 127.0.0.1:$REDIS_CLUSTER_PORT-$((REDIS_CLUSTER_PORT + 5)) (state in $REDIS_CLUSTER_DIR)"
    redis_cluster start || exit 1
    REDIS_CLUSTER_URLS=$(redis_cluster urls)
    export REDIS_CLUSTER_URLS
    unset REDIS_URL
  elif [ -n "${REDIS_CLUSTER_URLS:-}" ]; then
    log "the nodes use the Redis Cluster of REDIS_CLUSTER_URLS (not started nor stopped by this launcher)"
    unset REDIS_URL
  fi
  # The reference server does not migrate; both servers use chatty's schema.
  if [ "$SERVER" = reference ] && ! "$BIN" migrate >&2; then
    stop_redis
    die "migrating the database for the reference server failed"
  fi
  # Clients reach the nodes through this nginx, which sets X-Real-IP. Every test and load
  # client comes from 127.0.0.1, so the per-address login and sign-up limits are raised
  # unless given (docs/security.md).
  export CHATTY_CLIENT_IP_HEADER=${CHATTY_CLIENT_IP_HEADER:-X-Real-IP}
  export CHATTY_LIMIT_ADDRESS_SIGNUPS=${CHATTY_LIMIT_ADDRESS_SIGNUPS:-100000/1h}
  export CHATTY_LIMIT_ADDRESS_LOGIN_FAILURES=${CHATTY_LIMIT_ADDRESS_LOGIN_FAILURES:-100000/1h}
  (
    umask 077 # node.env holds the JWT secret and database password
    export -p | grep -E '^declare -x (CHATTY_[A-Z_]+|DATABASE_URL|REDIS_URL|REDIS_CLUSTER_URLS|JWT_SECRET|RUST_LOG)=' |
      grep -vE '^declare -x CHATTY_(ADDR|NODE_ID|PROFILE|BIN|CLUSTER_[A-Z_]+)=' >"$STATE/node.env"
  )
  {
    printf 'NODES=%q\nPORT=%q\nBASE_PORT=%q\nLISTEN=%q\nBIN=%q\n' "$NODES" "$PORT" "$BASE_PORT" "$LISTEN" "$BIN"
    printf 'REDIS_PORT=%q\nSERVER=%q\nNGINX_WORKERS=%q\n' "$REDIS_PORT" "$SERVER" "$NGINX_WORKERS"
    printf 'REDIS_CLUSTER_PORT=%q\nREDIS_CLUSTER_DIR=%q\nREDIS_CLUSTER_OWNED=%q\n' \
      "$REDIS_CLUSTER_PORT" "$REDIS_CLUSTER_DIR" "$REDIS_CLUSTER_OWNED"
  } >"$STATE/cluster.env"
  local nodes_urls=''
  for k in $(seq 1 "$NODES"); do nodes_urls+="http://127.0.0.1:$(node_port "$k"),"; done
  {
    printf 'CHATTY_URL=%q\nCHATTY_NODES=%q\n' "http://$LISTEN:$PORT" "${nodes_urls%,}"
    # Tools that write sessions themselves (chatty-load --seed-sql) must use the same Redis.
    [ -z "$REDIS_PORT" ] || printf 'REDIS_URL=%q\n' "$REDIS_URL"
    [ -z "${REDIS_CLUSTER_URLS:-}" ] || printf 'REDIS_CLUSTER_URLS=%q\n' "$REDIS_CLUSTER_URLS"
  } >"$STATE/urls.env"

  # Enough descriptors for load tests: nodes and nginx inherit the raised soft limit.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

  if [ "$SERVER" = reference ]; then log "starting $NODES reference nodes (node loadtest/reference/server.mjs)"; else log "starting $NODES nodes ($BIN)"; fi
  for k in $(seq 1 "$NODES"); do start_node "$k"; done
  # Nodes starting together serialise migrations on a PostgreSQL advisory lock.
  for k in $(seq 1 "$NODES"); do
    wait_ready "$k" || { log "start failed; stopping what was started"; cmd_stop; exit 1; }
  done
  start_nginx || { cmd_stop; exit 1; }
  local deadline=$((SECONDS + 15))
  until [ "$(http_code "http://$LISTEN:$PORT/readyz")" = 200 ]; do
    if [ "$SECONDS" -ge "$deadline" ] || ! nginx_alive; then
      log "nginx does not answer on $LISTEN:$PORT; see $NGX/logs/error.log and $NGX/logs/stderr.log"
      tail -n 10 "$NGX/logs/error.log" "$NGX/logs/stderr.log" >&2 2>/dev/null || true
      cmd_stop
      exit 1
    fi
    sleep 0.2
  done
  log "ready"
  print_urls
}

print_urls() {
  local k
  echo "balancer  http://$LISTEN:$PORT   (REST and Socket.IO; /metrics is not exposed here)"
  for k in $(seq 1 "$NODES"); do
    echo "node-$k    http://127.0.0.1:$(node_port "$k")   (/readyz, /metrics)"
  done
  echo "logs      $STATE/"
}

cmd_stop() {
  [ -s "$STATE/cluster.env" ] || { log "not running"; return 0; }
  load_state
  any_running || { log "not running"; return 0; }
  local k pids=()
  # Every node drains at the same time; each waits for its own grace period.
  for k in $(seq 1 "$NODES"); do
    stop_node "$k" &
    pids+=($!)
  done
  [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"
  log "nodes stopped"
  stop_nginx
  if redis_alive; then stop_redis; log "the cluster's Redis stopped"; fi
  if redis_cluster_alive; then redis_cluster stop; log "the cluster's Redis Cluster stopped"; fi
}

cmd_status() {
  load_state
  local k up=0 code pid
  for k in $(seq 1 "$NODES"); do
    pid=$(node_pid "$k")
    if node_alive "$k"; then
      code=$(http_code "http://127.0.0.1:$(node_port "$k")/readyz")
      printf 'node-%-3s pid %-8s 127.0.0.1:%-6s readyz %s\n' "$k" "$pid" "$(node_port "$k")" "$code"
      [ "$code" != 200 ] || up=$((up + 1))
    else
      printf 'node-%-3s stopped\n' "$k"
    fi
  done
  if nginx_alive; then
    code=$(http_code "http://$LISTEN:$PORT/readyz")
    printf 'nginx    pid %-8s %s:%-6s readyz %s\n' "$(nginx_pid)" "$LISTEN" "$PORT" "$code"
    [ "$code" != 200 ] || up=$((up + 1))
  else
    printf 'nginx    stopped\n'
  fi
  local want=$((NODES + 1))
  if [ -n "${REDIS_PORT:-}" ]; then
    want=$((want + 1))
    if redis_alive && redis_up; then
      printf 'redis    pid %-8s 127.0.0.1:%-6s PONG\n' "$(redis_pid)" "$REDIS_PORT"
      up=$((up + 1))
    else
      printf 'redis    stopped\n'
    fi
  fi
  if [ -n "${REDIS_CLUSTER_PORT:-}" ]; then
    want=$((want + 1))
    local rc=0
    redis_cluster status 2>/dev/null || rc=$?
    case $rc in
      0) up=$((up + 1)) ;;
      3) printf 'redis cluster stopped\n' ;;
      *) printf 'redis cluster not healthy\n' ;;
    esac
  fi
  if [ "$up" -eq "$want" ]; then return 0; fi
  if any_running; then return 1; fi
  return 3
}

cmd_logs() {
  local follow=() which=all files=()
  while [ $# -gt 0 ]; do
    case $1 in
      -f|--follow) follow=(-F) ;;
      *) which=$1 ;;
    esac
    shift
  done
  load_state
  case $which in
    all) files=("$STATE"/node-*.log "$NGX/logs/error.log" "$NGX/logs/access.log") ;;
    nginx) files=("$NGX/logs/error.log" "$NGX/logs/access.log") ;;
    *) check_node_arg "$which"; files=("$STATE/node-$which.log") ;;
  esac
  local existing=() f
  for f in "${files[@]}"; do [ ! -e "$f" ] || existing+=("$f"); done
  [ ${#existing[@]} -gt 0 ] || die "no logs yet in $STATE"
  exec tail -n 50 "${follow[@]}" "${existing[@]}"
}

cmd_restart_node() {
  load_state
  check_node_arg "${1:-}"
  local k=$1
  if node_alive "$k"; then
    log "node $k: SIGTERM, draining"
    stop_node "$k"
  fi
  log "node $k: starting"
  start_node "$k"
  wait_ready "$k" || exit 1
  # nginx routes to it at once: the balancer never benches a node (max_fails=0, above).
  log "node $k: ready"
}

# Every node in turn, as a deployment replaces them: a node is touched only once the one
# before it is back and ready, so all but one are serving throughout.
cmd_rolling_restart() {
  load_state
  local k t0=$SECONDS t
  for k in $(seq 1 "$NODES"); do
    t=$SECONDS
    (cmd_restart_node "$k") || die "rolling restart stopped at node $k"
    log "node $k restarted in $((SECONDS - t)) s"
  done
  log "rolling restart of $NODES nodes done in $((SECONDS - t0)) s"
}

cmd_kill_node() {
  load_state
  check_node_arg "${1:-}"
  node_alive "$1" || { log "node $1 is not running"; return 0; }
  stop_node "$1" KILL
  log "node $1 killed (SIGKILL); 'restart-node $1' brings it back"
}

# A crash of the cluster's Redis: every node loses its event-bus subscription and its
# command connections at once and must recover by itself; nothing acknowledged is lost
# from the append-only file, unless --empty throws it away.
cmd_restart_redis() {
  local empty=false
  case ${1:-} in
    '') ;;
    --empty) empty=true ;;
    *) usage ;;
  esac
  load_state
  [ -z "${REDIS_CLUSTER_PORT:-}" ] ||
    die "this cluster runs on a Redis Cluster: 'kill-redis-master K' fails one of its masters over"
  [ -n "${REDIS_PORT:-}" ] ||
    die "this cluster uses a Redis it does not own (REDIS_URL); start it with --redis-port R to let restart-redis crash and restart it"
  log "Redis on port $REDIS_PORT: SIGKILL"
  stop_redis KILL
  if $empty; then
    # What a Redis without persistence has after a crash: nothing. Device sessions,
    # presence leases and limiter counters are gone, and must not log anyone out.
    rm -rf "$STATE/redis"
    log "Redis: starting again with no data (as without persistence)"
  else
    log "Redis: starting again from $STATE/redis"
  fi
  start_redis || exit 1
  log "Redis: ready"
}

# A Redis Cluster master failover: the shard's writes stall until its replica takes over
# (cluster-node-timeout), and writes not yet replicated are lost.
cmd_kill_redis_master() {
  load_state
  [ -n "${REDIS_CLUSTER_PORT:-}" ] ||
    die "this cluster does not run on a Redis Cluster of its own; start it with --redis-cluster"
  redis_cluster kill-master "${1:-}"
}

case ${1:-} in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) if [ -s "$STATE/cluster.env" ]; then cmd_status; else log "not running"; exit 3; fi ;;
  logs) shift; cmd_logs "$@" ;;
  restart-node) cmd_restart_node "${2:-}" ;;
  rolling-restart) cmd_rolling_restart ;;
  kill-node) cmd_kill_node "${2:-}" ;;
  restart-redis) cmd_restart_redis "${2:-}" ;;
  kill-redis-master) cmd_kill_redis_master "${2:-}" ;;
  render-nginx)
    # For deploy/check.sh: render the template for a 3-node cluster into the given directory.
    NGX=${2:?render-nginx DIR} NODES=3 PORT=8080 BASE_PORT=3100 LISTEN=127.0.0.1
    render_nginx
    echo "$NGX/nginx.conf" ;;
  *) usage ;;
esac
