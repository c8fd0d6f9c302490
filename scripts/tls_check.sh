#!/usr/bin/env bash
# TLS in front of `fracture serve`, as docs/serving.md describes it: nginx
# terminates TLS and passes requests to the server on loopback. Checks that
# a prediction through the proxy (certificate verified by curl) is the one the
# server gives directly, that the page and the API key pass through, and that
# plain HTTP on the TLS port is refused.
#
#   scripts/tls_check.sh [FRACTURE_BINARY]
#
# Needs nginx (`apt-get install nginx-light`; not installed by setup.sh: a
# deployment tool, not a dependency) and openssl. Everything it makes (a
# self-signed certificate, nginx's configuration, a generated radiograph-like
# picture) lives in a temporary folder. Exit 0 when every check passes.
set -euo pipefail
cd "$(dirname "$0")/.."
fracture=$(readlink -f "${1:-build/src/fracture}")
for tool in nginx openssl curl jq; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
    { echo "error: $tool is not installed (apt-get install ${tool/nginx/nginx-light})" >&2; exit 1; }
done
nginx=$(command -v nginx || echo /usr/sbin/nginx)

work=$(mktemp -d)
# nginx's workers drop to an unprivileged user when started as root: they
# must be able to reach the folder and write request bodies into it.
mkdir -p "$work/body" "$work/proxy" && chmod 755 "$work" && chmod 777 "$work/body" "$work/proxy"
server_pid=""
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fail() { echo "FAILED: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

port=$(free_port) tls_port=$(free_port) key=$(openssl rand -hex 16)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
  -keyout "$work/fracture.key" -out "$work/fracture.crt" 2>/dev/null
# The configuration of docs/serving.md#tls, on unprivileged ports.
cat >"$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
events {}
http {
  access_log $work/access.log;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  server {
    listen 127.0.0.1:$tls_port ssl;
    server_name localhost;
    ssl_certificate     $work/fracture.crt;
    ssl_certificate_key $work/fracture.key;
    client_max_body_size 64m;
    location / {
      proxy_pass http://127.0.0.1:$port;
      proxy_read_timeout 60s;
    }
  }
}
EOF
# A JPEG, and a 12-bit DICOM of it at 2,000 x 1,500 (5.7 MB: past nginx's default 1 MB body limit).
/usr/bin/python3 - "$work" <<'PY'
import sys
import numpy as np
from PIL import Image
sys.path.insert(0, "tests/browser")
import page_test
pixels = page_test.radiograph_like(sys.argv[1] + "/forearm.jpg")
page_test.write_dicom(sys.argv[1] + "/forearm.dcm", np.asarray(Image.fromarray(pixels).resize((1500, 2000))))
PY

# The server as a proxy on another machine would reach it: with a key.
"$fracture" -q serve --port "$port" --api-key "$key" 2>"$work/serve.log" &
server_pid=$!
"$nginx" -c "$work/nginx.conf" || fail "nginx did not start ($(cat "$work/error.log" 2>/dev/null))"
https=(curl -sS --cacert "$work/fracture.crt" -H "Authorization: Bearer $key")
ready=""
for _ in $(seq 300); do
  ready=$("${https[@]}" "https://localhost:$tls_port/readyz" 2>/dev/null || true)
  [ "$(jq -r .status <<<"$ready" 2>/dev/null)" = ready ] && break
  sleep 0.2
done
[ "$(jq -r .status <<<"$ready" 2>/dev/null)" = ready ] || fail "readyz through the proxy: ${ready:-no answer}"
ok "readyz through TLS (certificate verified): $ready"

predict() { "${@:3}" --data-binary "@$work/$2" -H "Content-Type: application/octet-stream" "$1/v1/predict?name=$2"; }
for file in forearm.jpg forearm.dcm; do
  direct=$(predict "http://127.0.0.1:$port" $file curl -sS -H "Authorization: Bearer $key")
  proxied=$(predict "https://localhost:$tls_port" $file "${https[@]}")
  echo "through TLS: $proxied"
  [ "$(jq -c 'del(.milliseconds)' <<<"$direct" 2>&1)" = "$(jq -c 'del(.milliseconds)' <<<"$proxied" 2>&1)" ] ||
    fail "$file: the prediction through the proxy differs from the direct one: $direct"
  ok "$file ($(stat -c %s "$work/$file") bytes): the prediction through TLS is the server's own (all fields but milliseconds)"
done

status=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$work/fracture.crt" "https://localhost:$tls_port/v1/model")
[ "$status" = 401 ] || fail "without the key through the proxy: HTTP $status, expected 401"
ok "without the API key: 401 through the proxy"
page=$("${https[@]}" "https://localhost:$tls_port/")
grep -q "Research use only" <<<"$page" || fail "the page did not come through the proxy"
ok "the page through TLS"
plain=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$tls_port/healthz" || true)
[ "$plain" != 200 ] || fail "plain HTTP on the TLS port was answered"
ok "plain HTTP on the TLS port is not served (HTTP $plain from nginx)"
