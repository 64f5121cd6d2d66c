#!/usr/bin/env bash
# tests/deploy/test_rabbitmq.sh -- deploy/rabbitmq/definitions.json on a
# real (private) broker: imported with rabbitmqctl, passwords set, every
# daemon run as its own user. Checks that each one declares its topology
# without a 406 (the definitions' arguments match the code's), connects
# and consumes; that the definitions already hold every binding the
# daemons make; that the policies land on the right queues; that one order
# goes through end to end; that a user cannot read another service's
# queues (amqp_probe: basic.get) nor write to them (amqp_probe publish:
# no service user writes the default exchange, none but the operator
# saga.control, and a forged user_id is refused); that sagactl as the
# operator user acts and hears "applied", and as another user with write
# on saga.control hears "rejected"; and that every saga_* metric the alert
# rules use is served by the running orchestrator. Stops the broker and
# every daemon on any exit (the broker's --owner watchdog covers kill -9).
set -u
# shellcheck source=tests/deploy/lib.sh
. "$(dirname "$0")/lib.sh"

for b in saga-orchestrator order-api inventory-svc payment-svc shipping-svc notification-svc; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: build first"; exit 1; }
done
[ -x "$testbin/amqp_probe" ] || { echo "missing $testbin/amqp_probe: build first"; exit 1; }
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }

broker=deploytest-$$
work=$(mktemp -d /tmp/saga-deploytest-XXXXXX)
pids=()
cleanup() {
  local p
  trap '' PIPE # a closed stdout (| head) must not stop the cleanup
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  scripts/broker stop "$broker" >/dev/null 2>&1 || true
  if [ "$failed" -gt 0 ]; then
    for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ctl() { scripts/broker ctl "$broker" "$@"; }

url=$(scripts/broker start "$broker" --owner $$) || { echo "cannot start a private broker"; exit 1; }
port=$(sed -E 's|.*@127\.0\.0\.1:([0-9]+)/.*|\1|' <<<"$url")
echo "private broker $broker on port $port"

# --- import: rabbitmqctl runs as the rabbitmq user, who must read the file
chmod 755 "$work"
if [ "${SAGA_DEPLOY_QUORUM:-0}" = 1 ]; then
  # every queue a quorum queue: the definitions through quorum.jq, the
  # daemons with SAGA_QUEUE_TYPE=quorum; the 406 check below proves the
  # two declare the same arguments
  jq -f deploy/rabbitmq/quorum.jq deploy/rabbitmq/definitions.json > "$work/definitions.json"
  export SAGA_QUEUE_TYPE=quorum
else
  cp deploy/rabbitmq/definitions.json "$work/definitions.json"
fi
chmod 644 "$work/definitions.json"
check "rabbitmqctl import_definitions deploy/rabbitmq/definitions.json" \
  ctl import_definitions "$work/definitions.json" >/dev/null
nq=$(jq '.queues | length' deploy/rabbitmq/definitions.json)
users=$(jq -r '.users[].name' deploy/rabbitmq/definitions.json)
for _ in $(seq 1 60); do # the import is asynchronous
  have=$(ctl list_queues -q --no-table-headers name 2>/dev/null | grep -c . || true)
  np=$(ctl list_permissions -q --no-table-headers 2>/dev/null | grep -c . || true)
  nb=$(ctl list_bindings -q --no-table-headers 2>/dev/null | grep -c . || true)
  # bindings come last; every queue also has its default-exchange binding
  [ "$have" -ge "$nq" ] && [ "$np" -ge "$(jq '.permissions | length' deploy/rabbitmq/definitions.json)" ] \
    && [ "$nb" -ge $(($(jq '.bindings | length' deploy/rabbitmq/definitions.json) + nq)) ] && break
  sleep 0.5
done
check "the import made all $nq queues" [ "$have" -eq "$nq" ]
if [ "${SAGA_DEPLOY_QUORUM:-0}" = 1 ]; then
  check "every queue but the stream audit is a quorum queue" \
    [ -z "$(ctl list_queues -q --no-table-headers name type | awk '$1 != "audit" && $2 != "quorum"')" ]
fi
check "audit is a stream (it replicates over a cluster by itself)" \
  [ "$(ctl list_queues -q --no-table-headers name type | awk '$1 == "audit" { print $2 }')" = stream ]
for u in $users; do
  check "user $u exists" grep -qx "$u" <<<"$(ctl list_users -q --no-table-headers | cut -f1)"
done

# --- no password ships: login is refused until the operator sets one
"$testbin/amqp_probe" "amqp://orchestrator:anything@127.0.0.1:$port/" orchestrator.orders 2>/dev/null
check "a user without a password set cannot log in (exit 4)" [ $? -eq 4 ]
declare -A pw
for u in $users; do
  pw[$u]=pw${RANDOM}x${RANDOM}
  ctl change_password "$u" "${pw[$u]}" >/dev/null || bad "change_password $u"
done
u() { echo "amqp://$1:${pw[$1]}@127.0.0.1:$port/"; }

# --- policies: work queues and DLQs limited, audit capped, retry queues free
pol=$(ctl list_queues -q --no-table-headers name policy)
polof() { awk -v q="$1" '$1 == q { print $2 }' <<<"$pol"; }
for q in orchestrator.orders orchestrator.replies orchestrator.control inventory.commands \
         payment.card payment.cod shipping.default notification.events notification.confirm notification.delay; do
  check "policy saga-work-queues on $q" [ "$(polof "$q")" = saga-work-queues ]
done
for q in orchestrator.dlq inventory.commands.dlq payment.card.dlq shipping.default.dlq notification.events.dlq; do
  check "policy saga-dead-letters on $q" [ "$(polof "$q")" = saga-dead-letters ]
done
check "policy saga-audit on audit" [ "$(polof audit)" = saga-audit ]
check "saga-audit sets the stream's retention (max-age 7D)" \
  grep -qE 'saga-audit.*max-age.*7D' <<<"$(ctl list_policies -q --no-table-headers)"

# --- no service user may write the default exchange (it reaches every
# queue), none but the operator and admin saga.control
for u in orchestrator order-api inventory payment shipping notification; do
  w=$(jq -r --arg u "$u" '.permissions[] | select(.user == $u) | .write' deploy/rabbitmq/definitions.json)
  check "definitions: $u has no write on amq.default" bash -c "! grep -qP -- '$w' <<<amq.default"
  check "definitions: $u has no write on saga.control" bash -c "! grep -qP -- '$w' <<<saga.control"
done
check "no policy on the retry queues" [ -z "$(polof inventory.commands.retry)$(polof payment.card.retry)" ]

bindings_before=$(ctl list_bindings -q --no-table-headers source_name destination_name routing_key | sort)

# --- the daemons, each with its own user
metrics_port=$(free_port)
api_port=$(free_port "$metrics_port")
start() { local log=$1; shift; "$@" 2>"$work/$log.log" & pids+=($!); }
echo "sku-1 10" > "$work/stock.txt"
start orchestrator "$bin/saga-orchestrator" --amqp "$(u orchestrator)" --db "$work/orchestrator.db" \
  --statecharts statecharts --http "127.0.0.1:$metrics_port" --operator-user operator
start inventory "$bin/inventory-svc" --amqp "$(u inventory)" --db "$work/inventory.db" --seed "$work/stock.txt"
start payment "$bin/payment-svc" --amqp "$(u payment)" --db "$work/payment.db"
payment_pid=${pids[-1]}
start shipping-default "$bin/shipping-svc" --amqp "$(u shipping)" --db "$work/shipping-default.db"
start shipping-india "$bin/shipping-svc" --amqp "$(u shipping)" --db "$work/shipping-india.db" \
  --instance india --bind 'india.*'
start notification "$bin/notification-svc" --amqp "$(u notification)" --db "$work/notification.db" --confirm-delay 1
start order-api "$bin/order-api" --amqp "$(u order-api)" --db "$work/order-api.db" \
  --listen "127.0.0.1:$api_port"
parts="inventory payment shipping-default shipping-india notification"
for _ in $(seq 1 100); do
  n=0
  for p in $parts; do grep -q "ready: consuming" "$work/$p.log" 2>/dev/null && n=$((n + 1)); done
  [ "$n" -eq 5 ] && curl -sf "127.0.0.1:$api_port/healthz" >/dev/null \
    && curl -sf "127.0.0.1:$metrics_port/healthz" >/dev/null && break
  sleep 0.2
done
for p in $parts; do
  check "$p: ready: consuming (as its own user)" grep -q "ready: consuming" "$work/$p.log"
done
check "order-api: /healthz 200 (connected as order-api)" curl -sf "127.0.0.1:$api_port/healthz" -o /dev/null
check "orchestrator: /healthz 200 (connected as orchestrator)" curl -sf "127.0.0.1:$metrics_port/healthz" -o /dev/null
# list_consumers, not list_queues' consumers column: a quorum queue
# reports that count only with its next metrics tick
cons=$(ctl list_consumers -q --no-table-headers queue_name | sort | uniq -c | awk '{print $2, $1}')
for q in orchestrator.orders orchestrator.replies orchestrator.control inventory.commands payment.card \
         payment.cod shipping.default shipping.india notification.events notification.confirm; do
  check "$q has a consumer" [ "$(awk -v q="$q" '$1 == q { print $2 }' <<<"$cons")" = 1 ]
done
check "no 406/403 in any daemon's log" \
  bash -c "! grep -E 'PRECONDITION_FAILED|ACCESS_REFUSED|NOT_ALLOWED' '$work'/*.log"

# every binding a daemon makes was already in the definitions (the only
# new ones are the regional instance's, which the definitions leave out)
new=$(comm -13 <(echo "$bindings_before") <(ctl list_bindings -q --no-table-headers source_name destination_name routing_key | sort))
check "the daemons added no binding but shipping.india's" \
  [ -z "$(grep -v 'shipping\.india' <<<"$new")" ]

# --- one order, end to end
r=$(curl -s -XPOST "127.0.0.1:$api_port/orders" -H 'Content-Type: application/json' \
  -d '{"customer_id":"c1","items":[{"sku":"sku-1","quantity":1,"unit_price_cents":1000}],"currency":"EUR","payment_method":"card","card_token":"tok_visa","ship_to":{"country":"india","city":"Pune"},"category":"books"}')
id=$(jq -r '.order_id // empty' <<<"$r")
check "POST /orders accepted ($r)" [ -n "$id" ]
status=
for _ in $(seq 1 100); do
  status=$(curl -s "127.0.0.1:$api_port/orders/$id" | jq -r .status)
  case $status in completed|failed|stuck|aborted) break ;; esac
  sleep 0.1
done
check "the order completed (status $status)" [ "$status" = completed ]
for _ in $(seq 1 30); do
  "$bin/notification-svc" --db "$work/notification.db" --print 2>/dev/null | grep -q order.confirmation && break
  sleep 0.2
done
# list_consumers does not list a stream's AMQP consumers (3.10): the
# position notification-svc stored says it read audit, as its own user
check "notification read the order's events from the audit stream" \
  bash -c "[ \"\$(sqlite3 '$work/notification.db' \"SELECT next_offset > 0 FROM part_stream WHERE queue = 'audit'\")\" = 1 ]"
check "notification's delayed confirmation was sent (its own timer)" \
  bash -c "'$bin/notification-svc' --db '$work/notification.db' --print | grep -q order.confirmation"

# --- the order's events from the stream audit: the operator may read it
# (sagactl audit), a service user may not
out=$(SAGA_AMQP_URL="$(u operator)" "$bin/sagactl" audit "$id" 2>&1)
check "the operator reads the order's events from audit ($out)" \
  bash -c "grep -q ' order.created ' <<<'$out' && grep -q ' order.completed ' <<<'$out'"
out=$(SAGA_AMQP_URL="$(u payment)" "$bin/sagactl" audit "$id" 2>&1)
rc=$?
check "payment's user may not read audit (exit $rc: $out)" \
  bash -c "[ $rc -eq 1 ] && grep -q ACCESS_REFUSED <<<'$out'"

# --- stock as an operation: the operator's request through saga.admin,
# answered on its own exclusive queue; a service user may not send one
out=$(SAGA_AMQP_URL="$(u operator)" "$bin/sagactl" stock add sku-1 5 --reason "restock" 2>&1)
check "the operator restocks a running inventory ($out)" grep -q "sku-1: on hand 9 -> 14" <<<"$out"
check "... recorded with the broker-validated user as its actor" \
  bash -c "[ \"\$(sqlite3 '$work/inventory.db' 'SELECT actor FROM movements ORDER BY rowid DESC LIMIT 1')\" = operator ]"
out=$(SAGA_AMQP_URL="$(u payment)" "$bin/sagactl" stock add sku-1 5 --reason "not mine" 2>&1)
rc=$?
check "payment's user cannot send a stock request (exit $rc: $out)" \
  bash -c "[ $rc -eq 1 ] && grep -q ACCESS_REFUSED <<<'$out'"
check "... and the stock did not move" \
  bash -c "'$bin/inventory-svc' --db '$work/inventory.db' --print-stock | grep -qE '^sku-1 +14 '"

# --- who may read what (basic.get as each user)
probe() { "$testbin/amqp_probe" "$(u "$1")" "$2" >/dev/null 2>&1; }
denied() { probe "$1" "$2"; [ $? -eq 3 ]; }
check "payment may read payment.card (the probe works)" probe payment payment.card
check "operator may read orchestrator.dlq" probe operator orchestrator.dlq
check "operator may read payment.card.dlq" probe operator payment.card.dlq
check "inventory may not read payment.card" denied inventory payment.card
check "orchestrator may not read payment.card" denied orchestrator payment.card
check "orchestrator may not read inventory.commands" denied orchestrator inventory.commands
check "payment may not read inventory.commands" denied payment inventory.commands
check "shipping may not read payment.cod" denied shipping payment.cod
check "notification may not read orchestrator.orders" denied notification orchestrator.orders
check "order-api may not read orchestrator.orders" denied order-api orchestrator.orders
check "inventory may not read audit" denied inventory audit
check "operator may not read payment.card (only DLQs and audit)" denied operator payment.card

# --- the operator finds every dead-letter queue through the management
# API (its tag monitoring includes management); a service user may not
mport=$(scripts/broker url "$broker" | tail -n 1 | sed -E 's|^http://127\.0\.0\.1:([0-9]+)/.*|\1|')
mg() { echo "http://$1:${pw[$1]}@127.0.0.1:$mport/"; }
out=$(SAGA_AMQP_URL="$(u operator)" "$bin/sagactl" dlq list --mgmt-url "$(mg operator)" 2>&1)
check "the operator's dlq list finds payment.card.dlq ($out)" grep -q '^payment.card.dlq ' <<<"$out"
check "... and orchestrator.dlq" grep -q '^orchestrator.dlq ' <<<"$out"
out=$(SAGA_AMQP_URL="$(u orchestrator)" "$bin/sagactl" dlq list --mgmt-url "$(mg orchestrator)" 2>&1)
rc=$?
check "the orchestrator's user may not use the management API (exit $rc)" [ "$rc" -eq 1 ]
check "... refused with 401 ($out)" grep -q '(401)' <<<"$out"

# --- who may write where: a confirmed publish as each user
pub() { "$testbin/amqp_probe" publish "$(u "$1")" "$2" "$3" ${4:+"$4"} >/dev/null 2>&1; echo $?; }
check "payment cannot publish an operator request to saga.control (403)" \
  [ "$(pub payment saga.control orchestrator.control)" = 3 ]
check "payment cannot publish to orchestrator.control through the default exchange (403)" \
  [ "$(pub payment "" orchestrator.control)" = 3 ]
check "payment cannot write to inventory.commands through the default exchange (403)" \
  [ "$(pub payment "" inventory.commands)" = 3 ]
check "payment cannot write to inventory's own exchange (403)" \
  [ "$(pub payment inventory.own inventory.commands.dlq)" = 3 ]
for s in orchestrator order-api inventory shipping notification; do
  check "$s cannot write through the default exchange (403)" [ "$(pub "$s" "" audit)" = 3 ]
done
check "payment may write its own exchange, which reaches its DLQ (the probe works)" \
  [ "$(pub payment payment.own payment.card.dlq)" = 0 ]
check "a forged user_id is refused by the broker (payment as operator: 406)" \
  [ "$(pub payment saga.replies nobody operator)" = 6 ]
check "the operator may publish to saga.control as itself" \
  [ "$(pub operator saga.control nobody operator)" = 5 ]

# --- operator actions: a saga waits on a payment-svc that is gone
kill -TERM "$payment_pid"; wait "$payment_pid" 2>/dev/null
order() {
  curl -s -XPOST "127.0.0.1:$api_port/orders" -H 'Content-Type: application/json' \
    -d '{"customer_id":"c2","items":[{"sku":"sku-1","quantity":1,"unit_price_cents":1000}],"currency":"EUR","payment_method":"card","card_token":"tok_visa","ship_to":{"country":"india","city":"Pune"},"category":"books"}' | jq -r '.order_id // empty'
}
in_payment() {
  for _ in $(seq 1 100); do
    "$bin/sagactl" --db "$work/orchestrator.db" --json show "$1" 2>/dev/null \
      | jq -e '.state == "payment" and .status == "running"' >/dev/null && return 0
    sleep 0.1
  done
  return 1
}
ctl_as() { local who=$1; shift; SAGA_AMQP_URL="$(u "$who")" "$bin/sagactl" --db "$work/orchestrator.db" "$@" 2>&1; }
id1=$(order); id2=$(order)
both_in_payment() { [ -n "$id1" ] && [ -n "$id2" ] && in_payment "$id1" && in_payment "$id2"; }
check "two orders wait in payment ($id1, $id2)" both_in_payment
out=$(ctl_as admin abort "$id1" --reason "not the operator"); rc=$?
check "admin (write on saga.control, not the operator user) is answered rejected, exit 1 ($rc: $out)" \
  bash -c "[ $rc -eq 1 ] && grep -q 'abort $id1: rejected: not from the operator user' <<<'$out'"
check "... and the orchestrator logged it" grep -q 'not the operator user' "$work/orchestrator.log"
check "... and the saga did not move" in_payment "$id1"
out=$(ctl_as operator retry "$id1" --reason "payment-svc is back soon"); rc=$?
check "the operator retries: applied, exit 0 ($rc: $out)" \
  bash -c "[ $rc -eq 0 ] && grep -q 'retry $id1: applied (payment, running)' <<<'$out'"
out=$(ctl_as operator abort --all --prefix "${id1%%-*}-" --status running --reason "gateway down"); rc=$?
check "the operator aborts in bulk: a line per saga and a summary, exit 0 ($rc: $out)" \
  bash -c "[ $rc -eq 0 ] && grep -q 'abort $id1: applied (payment, aborted)' <<<'$out' \
    && grep -q 'abort $id2: applied (payment, aborted)' <<<'$out' && grep -q 'abort: 2 sagas: 2 applied' <<<'$out'"
out=$(ctl_as operator show "$id1")
check "the history names the operator user as the actor" grep -q 'by operator' <<<"$out"

# --- the alert rules' saga_* metrics exist on this orchestrator
metrics=$(curl -s "127.0.0.1:$metrics_port/metrics")
for m in $(saga_metric_names deploy/monitoring/alerts.yml); do
  check "metric $m (alerts.yml) served by the orchestrator" metrics_have "$metrics" "$m"
done
check "saga_completed_total counted the order" grep -q '^saga_completed_total{chart="order"} 1$' <<<"$metrics"

finish
