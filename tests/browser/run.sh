#!/usr/bin/env bash
# Browser tests of the web client: headless Chromium from Debian's `chromium` package,
# driven by playwright-core (which downloads no browser), against a running cluster.
# tests/e2e/run.sh starts a local cluster and calls this; by hand, against a cluster that
# is running already:
#   source .chatty/cluster/urls.env && CHATTY_NODES=$CHATTY_NODES \
#     CHATTY_CLUSTER_CTL=deploy/local/cluster.sh tests/browser/run.sh
# Environment: CHATTY_NODES (direct node URLs, comma-separated; the two users are put on
# the first two), CHATTY_CLUSTER_CTL (restarts a node; without it that step is skipped),
# CHATTY_CHROMIUM (default /usr/bin/chromium). Screenshots go to .chatty/browser/.
set -euo pipefail
cd "$(dirname "$0")"

chromium=${CHATTY_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "browser: installing the Debian package chromium" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "browser: Chromium is not installed: run 'sudo apt-get install chromium' (or set CHATTY_CHROMIUM)" >&2
    exit 1
  fi
fi
[ -x "$chromium" ] || { echo "browser: no Chromium at $chromium" >&2; exit 1; }
export CHATTY_CHROMIUM=$chromium
# playwright-core never downloads a browser; this keeps any install step from trying.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "browser: Node.js >= 20 and npm are needed (Debian 12's nodejs package is 18: use a newer one)" >&2
  exit 1
fi
npm ci --no-audit --no-fund
node --test "$@"
