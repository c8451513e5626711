#!/usr/bin/env bash
# Starts one Chatty node on CHATTY_ADDR (default 0.0.0.0:3000) with its PostgreSQL and Redis,
# and says where to open the web client.
# Usage: deploy/local/run.sh [extra `chatty serve` flags]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/services.sh
source deploy/local/env.sh
cargo build --release --bin chatty

# The address the node will listen on: --addr wins over CHATTY_ADDR, as in `chatty serve`.
addr=${CHATTY_ADDR:-0.0.0.0:3000}
args=("$@")
for i in "${!args[@]}"; do
  case ${args[$i]} in
    --addr=*) addr=${args[$i]#--addr=} ;;
    --addr) addr=${args[$((i + 1))]:-$addr} ;;
  esac
done
host=${addr%:*} port=${addr##*:}
case $host in 0.0.0.0 | '[::]' | '') host=127.0.0.1 ;; esac
echo "Chatty: open http://$host:$port/ for the web client (REST and Socket.IO on the same address)" >&2

exec "${CARGO_TARGET_DIR:-target}/release/chatty" serve "$@"
