#!/usr/bin/env bash
# tests/deploy/test_monitoring.sh -- deploy/monitoring/: `promtool check
# rules` on alerts.yml, `promtool check config` on prometheus.yml, every
# PromQL expression of the Grafana dashboard parsed by promtool (as
# recording rules in a scratch file), and every saga_* (orderapi_*, part_*)
# metric named by the rules and the dashboard present in a real
# orchestrator's (order-api's, inventory-svc's) /metrics (one
# started with --http on a loopback port and no broker: /metrics is served
# while it retries; test_rabbitmq.sh repeats the rules' check against an
# orchestrator on a real broker). promtool comes from Debian's
# `prometheus` package; if it is missing and cannot be installed, its
# checks are skipped, with the reason.
set -u
# shellcheck source=tests/deploy/lib.sh
. "$(dirname "$0")/lib.sh"

mon=deploy/monitoring
work=$(mktemp -d /tmp/saga-deploymon-XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for f in prometheus.yml alerts.yml grafana-dashboard.json; do
  check "$mon/$f exists" [ -s "$mon/$f" ]
done
check "the dashboard is valid JSON with panels" jq -e '.panels | length > 0' "$mon/grafana-dashboard.json" >/dev/null

if ! command -v promtool >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "promtool missing: apt-get install -y prometheus (Debian's package ships promtool)"
  timeout 150 apt-get install -y -q --no-install-recommends prometheus >"$work/apt.log" 2>&1 \
    || echo "(apt-get failed: $(tail -n 1 "$work/apt.log"))"
fi
if command -v promtool >/dev/null; then
  check "promtool check rules alerts.yml" promtool check rules "$mon/alerts.yml"
  # check config resolves rule_files relative to the config's folder
  check "promtool check config prometheus.yml" promtool check config "$mon/prometheus.yml"
  {
    echo "groups:"; echo "  - name: dashboard"; echo "    rules:"
    i=0
    jq -r '.. | .expr? // empty | @json' "$mon/grafana-dashboard.json" | while read -r e; do
      i=$((i + 1)); echo "      - record: dashboard:expr_$i"; echo "        expr: $e"
    done
  } > "$work/dashboard-rules.yml"
  check "every dashboard expression parses (promtool)" promtool check rules "$work/dashboard-rules.yml"
else
  skip "promtool is not installed and could not be installed: rules and config not validated"
fi

# the saga_* names against a running orchestrator
if [ -x "$bin/saga-orchestrator" ]; then
  "$bin/saga-orchestrator" --amqp "amqp://nobody:x@127.0.0.1:1/" --db "$work/o.db" \
    --statecharts statecharts --http 127.0.0.1:0 2>"$work/orch.log" &
  pid=$!
  port=
  for i in $(seq 1 50); do
    port=$(sed -n 's/.*http listening on port \([0-9]*\).*/\1/p' "$work/orch.log")
    [ -n "$port" ] && break
    sleep 0.1
  done
  # the loop publishes its first snapshot a moment after the listener
  # opens (slower under the sanitizers): ask until it is there
  metrics=
  for i in $(seq 1 100); do
    metrics=$(curl -s "127.0.0.1:${port:-1}/metrics")
    grep -q '^# TYPE saga_' <<<"$metrics" && break
    sleep 0.1
  done
  check "the orchestrator serves /metrics" grep -q '^# TYPE saga_' <<<"$metrics"
  for m in $(saga_metric_names "$mon/alerts.yml" "$mon/grafana-dashboard.json"); do
    check "metric $m is one the orchestrator serves" metrics_have "$metrics" "$m"
  done
else
  bad "no $bin/saga-orchestrator: build first"
fi
# the orderapi_* names against a running order-api (no broker: it takes
# orders all the same, and serves /metrics)
if [ -x "$bin/order-api" ]; then
  aport=$(free_port)
  SAGA_AMQP_URL="amqp://nobody:x@127.0.0.1:1/" "$bin/order-api" --db "$work/api.db" \
    --listen "127.0.0.1:$aport" 2>"$work/api.log" &
  apid=$!
  api=""
  for i in $(seq 1 50); do
    api=$(curl -s "127.0.0.1:$aport/metrics") && grep -q '^# TYPE orderapi_' <<<"$api" && break
    sleep 0.1
  done
  kill -TERM "$apid" 2>/dev/null; wait "$apid" 2>/dev/null
  check "order-api serves /metrics" grep -q '^# TYPE orderapi_' <<<"$api"
  for m in $(grep -v '^ *#' "$mon/alerts.yml" "$mon/grafana-dashboard.json" \
               | grep -o 'orderapi_[a-z][a-z_]*' | sort -u); do
    check "metric $m is one order-api serves" metrics_have "$api" "$m"
  done
else
  bad "no $bin/order-api: build first"
fi
# the part_* names against a running participant (an unreachable broker:
# it serves /metrics while it retries; lib/metrics declares every family
# before its first sample, so all names show here)
if [ -x "$bin/inventory-svc" ]; then
  pport=$(free_port)
  "$bin/inventory-svc" --amqp "amqp://nobody:x@127.0.0.1:1/" --db "$work/inv.db" \
    --http "127.0.0.1:$pport" 2>"$work/inv.log" &
  ppid=$!
  part=""
  for i in $(seq 1 50); do
    part=$(curl -s "127.0.0.1:$pport/metrics") && grep -q '^# TYPE part_' <<<"$part" && break
    sleep 0.1
  done
  phealth=$(curl -s "127.0.0.1:$pport/healthz")
  kill -TERM "$ppid" 2>/dev/null; wait "$ppid" 2>/dev/null
  check "inventory-svc serves /metrics without a broker" grep -q '^# TYPE part_bus_connected gauge' <<<"$part"
  check "its /healthz says it has no broker" grep -q 'not connected to the broker' <<<"$phealth"
  check "its log says where it listens" grep -q "http listening on port $pport" "$work/inv.log"
  for m in $(grep -v '^ *#' "$mon/alerts.yml" "$mon/grafana-dashboard.json" \
               | grep -o 'part_[a-z][a-z_]*' | sort -u); do
    check "metric $m is one a participant serves" metrics_have "$part" "$m"
  done
else
  bad "no $bin/inventory-svc: build first"
fi
check "prometheus.yml scrapes the participants (9465-9469)" grep -q '127.0.0.1:9465' "$mon/prometheus.yml"
check "prometheus.yml scrapes order-api's /metrics" grep -q 'job_name: order-api' "$mon/prometheus.yml"
check "prometheus.yml scrapes the port the unit and compose give --http (9464)" \
  grep -q '127.0.0.1:9464' "$mon/prometheus.yml"

finish
