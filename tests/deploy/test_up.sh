#!/usr/bin/env bash
# tests/deploy/test_up.sh -- scripts/up as a newcomer uses it: the stack
# comes up and stays up, an order posted with the printed curl completes,
# a second call says it is already up, status lists every daemon running,
# and stop leaves no daemon, no broker and no state behind.
# shellcheck source=tests/deploy/lib.sh
. "$(dirname "$0")/lib.sh"

export SAGA_UP_DIR
SAGA_UP_DIR=$(mktemp -d /tmp/saga-test-up-XXXXXX)
rmdir "$SAGA_UP_DIR" # scripts/up makes it
export SAGA_UP_BIN=$bin
trap 'scripts/up stop >/dev/null 2>&1; rm -rf "$SAGA_UP_DIR"' EXIT

out=$(scripts/up 2>&1) || { echo "$out"; bad "scripts/up starts the stack"; finish; }
ok "scripts/up starts the stack"
# shellcheck source=/dev/null
. "$SAGA_UP_DIR/env"
check "it prints the order API, the broker and how to stop" \
  grep -q "order API *$SAGA_UP_API" <<<"$out"
check "... and the management UI and the stop command" \
  bash -c 'grep -q "management UI *http" <<<"$1" && grep -q "scripts/up stop" <<<"$1"' _ "$out"
pids=$(cat "$SAGA_UP_DIR"/pids/*)
check "eight daemons were started" test "$(wc -w <<<"$pids")" -eq 8
# no saga waits for notification-svc: it runs at its unit's Nice=, the
# daemons sagas wait for at the default (/proc/PID/stat field 19)
want=$(sed -n 's/^Nice=//p' deploy/systemd/notification-svc.service)
niceness() { sed 's/^.*) //' "/proc/$(cat "$SAGA_UP_DIR/pids/$1")/stat" | cut -d' ' -f17; }
check "notification-svc runs at nice $want, as its unit says" test "$(niceness notification)" = "$want"
for d in orchestrator inventory payment shipping-default order-api; do
  check "$d runs at nice 0" test "$(niceness "$d")" = 0
done

# the curl the output prints, as printed
post=$(sed -n '/^  curl -s -XPOST/,/^    -d/p' <<<"$out" | sed 's/\\$//' | tr -d '\n')
r=$(bash -c "$post")
id=$(jq -r '.order_id // empty' <<<"$r")
check "the printed curl posts an order ($r)" test -n "$id"
st=""
for _ in $(seq 1 100); do
  st=$(curl -s "$SAGA_UP_API/orders/$id" | jq -r '.status // empty')
  [ "$st" = completed ] && break
  sleep 0.2
done
check "the order completes (status $st)" test "$st" = completed
check "sagactl as printed sees the saga" \
  bash -c "SAGA_AMQP_URL=$SAGA_UP_AMQP '$SAGA_UP_BINDIR/sagactl' --db '$SAGA_UP_DIR/orchestrator.db' show '$id' | grep -q completed"

again=$(scripts/up 2>&1)
check "a second call says it is already up" grep -q "already up" <<<"$again"
check "... and starts nothing" test "$(cat "$SAGA_UP_DIR"/pids/*)" = "$pids"
check "status lists eight daemons running" \
  test "$(scripts/up status | grep -c ' running (pid')" -eq 8

broker=$(scripts/up status | sed -n 's/^  broker node *//p')
check "the broker runs ($broker)" test "$broker" = running
scripts/up stop >/dev/null
left=0
for p in $pids; do kill -0 "$p" 2>/dev/null && left=$((left + 1)); done
check "stop leaves no daemon running ($left left)" test "$left" -eq 0
for _ in $(seq 1 50); do curl -s -m 1 "$SAGA_UP_MGMT" >/dev/null || break; sleep 0.2; done
check "stop leaves no broker (its management port is closed)" \
  bash -c "! curl -s -m 2 '$SAGA_UP_MGMT' >/dev/null"
check "stop removes the state" test ! -e "$SAGA_UP_DIR"
finish
