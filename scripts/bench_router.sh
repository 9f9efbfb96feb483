#!/usr/bin/env bash
# Router benchmark (part of `make bench`): the tiny iris model called directly, through
# `weir route` at a 90/10 split, and through nginx doing the same weighted split
# (`split_clients`), in one run on this machine. All on loopback; every load is bounded by time.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}

command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
source scripts/bench_lib.sh router
before_cleanup() { [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; }

start_iris_replicas
write_iris_routes "$work/routes.toml"
target/release/weir route --config "$work/routes.toml" --http-port 0 --admin-port 0 --log warn > "$work/route.log" &
pids+=($!)
router=$(address "$work/route.log")

nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  upstream v1 { server ${v1#http://}; keepalive 64; }
  upstream v2 { server ${v2#http://}; keepalive 64; }
  split_clients "\$request_id" \$version { 90% v1; * v2; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://\$version;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
nginx -c "$work/nginx.conf"
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$nginx_port/v2/health/live" >/dev/null && break; sleep 0.05; done

echo "== machine: $(nproc) cores; iris [1x4] V2 JSON; routed targets split 90/10 between two weir serve processes"
for connections in 1 32; do
  for target in "direct $v1" "weir-route $router" "nginx http://127.0.0.1:$nginx_port"; do
    set -- $target
    echo "== $1, $connections connection(s), $DURATION"
    wrk -t1 -c"$connections" -d"$DURATION" --latency -s benches/load/iris.lua "$2/v2/models/iris/infer" | grep -E 'Requests/sec|Non-2xx|50%|99%'
  done
done
echo "== router's own split over the run (weir_router_requests_total, code 200)"
curl -s "$router/metrics" | grep -E '^weir_router_requests_total' || true
