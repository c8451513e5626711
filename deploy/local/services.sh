#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432) and Redis >= 7 (127.0.0.1:6379) answer, and that
# the `chatty` database role exists. Starts them when installed but stopped; installs the
# Debian packages when missing and run as root; otherwise says exactly what to install.
set -euo pipefail

PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}

log() { printf 'services: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

install_packages() {
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_up() { pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_up; then return; fi
  if ! command -v pg_ctlcluster >/dev/null; then
    install_packages postgresql postgresql-contrib || {
      log "PostgreSQL is not installed: run 'sudo apt-get install postgresql postgresql-contrib'"; exit 1; }
  fi
  local version
  version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$version" ]; then
    as_root pg_createcluster --start "$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)" main
  else
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  fi
  for _ in $(seq 1 30); do pg_up && return; sleep 1; done
  log "PostgreSQL did not come up on $PGHOST:$PGPORT"; exit 1
}

ensure_role() {
  # Trust-auth machines need no role; elsewhere the role gives the scripts a password login.
  if PGPASSWORD=chatty psql -h "$PGHOST" -p "$PGPORT" -U chatty -d postgres -Atc 'select 1' >/dev/null 2>&1; then return; fi
  log "creating database role 'chatty' (password 'chatty', may create databases)"
  local sql="do \$\$ begin if not exists (select from pg_roles where rolname = 'chatty') then create role chatty login createdb password 'chatty'; else alter role chatty login createdb password 'chatty'; end if; end \$\$;"
  if [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1; then
    su postgres -c "psql -q -v ON_ERROR_STOP=1" <<<"$sql" >/dev/null
  elif command -v sudo >/dev/null; then
    sudo -u postgres psql -q -v ON_ERROR_STOP=1 <<<"$sql" >/dev/null
  else
    psql -h "$PGHOST" -p "$PGPORT" -U postgres -q -v ON_ERROR_STOP=1 <<<"$sql" >/dev/null
  fi
}

ensure_redis() {
  if command -v redis-cli >/dev/null && redis_up; then return; fi
  if ! command -v redis-server >/dev/null; then
    install_packages redis-server || { log "Redis is not installed: run 'sudo apt-get install redis-server'"; exit 1; }
  fi
  mkdir -p /tmp/chatty-redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp/chatty-redis --logfile /tmp/chatty-redis/redis.log
  for _ in $(seq 1 30); do redis_up && break; sleep 0.5; done
  redis_up || { log "Redis did not come up on 127.0.0.1:$REDIS_PORT"; exit 1; }
}

check_redis_version() {
  local v
  v=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server | awk -F: '/^redis_version/ {print $2}' | tr -d '\r')
  if [ "${v%%.*}" -lt 7 ]; then log "Redis $v is too old: Chatty needs Redis 7 or newer"; exit 1; fi
}

ensure_postgres
ensure_role
ensure_redis
check_redis_version
log "PostgreSQL on $PGHOST:$PGPORT and Redis on 127.0.0.1:$REDIS_PORT are up"
