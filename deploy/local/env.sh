# shellcheck shell=bash
# Shared defaults for the local scripts; sourced, not run. Any variable set beforehand wins.
export DATABASE_URL=${DATABASE_URL:-postgres://chatty:chatty@127.0.0.1:5432/chatty}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export CHATTY_TEST_PG=${CHATTY_TEST_PG:-postgres://chatty:chatty@127.0.0.1:5432}
export CHATTY_TEST_REDIS=${CHATTY_TEST_REDIS:-$REDIS_URL}
state_dir=${CHATTY_STATE_DIR:-$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)/.chatty}
mkdir -p "$state_dir"
if [ -z "${JWT_SECRET:-}" ]; then
  # One secret per checkout, so every local node accepts the others' tokens across restarts.
  [ -s "$state_dir/jwt_secret" ] || (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$state_dir/jwt_secret")
  JWT_SECRET=$(cat "$state_dir/jwt_secret")
  export JWT_SECRET
fi
