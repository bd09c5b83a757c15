#!/usr/bin/env bash
# A real Prometheus (Debian's `prometheus` package) scrapes a running `mop serve` every second while
# requests flow; then the median time to first token is queried through Prometheus' HTTP API:
#   histogram_quantile(0.5, rate(mop_time_to_first_token_seconds_bucket[1m]))
# Exit 0 when the query returns a number, 1 when it does not, 77 (skip) without prometheus.
#
#   scripts/prometheus-check.sh            (install first: apt-get install -y prometheus)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null; then
  echo "prometheus-check: no prometheus binary (apt-get install -y prometheus); skipped" >&2
  exit 77
fi

work=$(mktemp -d)
server_pid=''
prom_pid=''
cleanup() {
  [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "prometheus-check: FAIL: $*" >&2
  echo "--- server log" >&2; tail -20 "$work/server.log" >&2 || true
  echo "--- prometheus log" >&2; tail -20 "$work/prometheus.log" >&2 || true
  exit 1
}

# 1. The server, on a free port of its choosing.
node --import tsx src/cli/mop.ts serve --host 127.0.0.1 --port 0 --threads 1 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
  grep -q '^ready:' "$work/server.log" && break
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited"
  sleep 0.1
done
grep -q '^ready:' "$work/server.log" || fail "the server did not become ready"
server_port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$work/server.log" | grep -o '[0-9]*$')
server="http://127.0.0.1:$server_port"
echo "prometheus-check: server at $server"

# 2. Prometheus, scraping it every second, with throw-away storage.
prom_port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: mop
    static_configs:
      - targets: ['127.0.0.1:$server_port']
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
prom_pid=$!
prom="http://127.0.0.1:$prom_port"
for _ in $(seq 100); do
  curl -sf "$prom/-/ready" >/dev/null && break
  kill -0 "$prom_pid" 2>/dev/null || fail "prometheus exited"
  sleep 0.2
done
curl -sf "$prom/-/ready" >/dev/null || fail "prometheus did not become ready"
echo "prometheus-check: prometheus at $prom"

# 3. Traffic for a few scrape intervals, so rate() sees the counters move.
for i in $(seq 30); do
  curl -sf "$server/v1/completions" -H 'content-type: application/json' \
    -d "{\"prompt\": \"Once upon a time $i\", \"max_tokens\": 16}" >/dev/null || fail "request $i failed"
  sleep 0.2
done

# 4. The TTFT median, through Prometheus' query API.
query='histogram_quantile(0.5, rate(mop_time_to_first_token_seconds_bucket[1m]))'
for _ in $(seq 30); do
  answer=$(curl -sf -G "$prom/api/v1/query" --data-urlencode "query=$query" || true)
  value=$(node -e '
    const a = JSON.parse(process.argv[1] || "{}");
    const r = a.status === "success" ? a.data.result : [];
    const v = r.length ? Number(r[0].value[1]) : NaN;
    if (Number.isFinite(v)) console.log(`${v} ${JSON.stringify(r[0].metric)}`);
  ' "$answer")
  if [ -n "$value" ]; then
    echo "prometheus-check: OK: $query = $value"
    exit 0
  fi
  sleep 1
done
fail "the query returned no data: $answer"
