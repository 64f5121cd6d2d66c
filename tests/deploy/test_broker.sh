#!/usr/bin/env bash
# tests/deploy/test_broker.sh -- scripts/broker's choice of ports, which
# every test, the demo and the benchmarks stand on:
# - ports come from below the kernel's ephemeral range, where no outgoing
#   connection can take one between the check and the node's bind;
# - a port taken all the same (bound by a socket that does not listen, so
#   no check sees it) makes the start pick again, avoiding the port the
#   boot named, instead of failing (CI once lost test_cluster this way);
# - a bad SAGA_BROKER_PORT_RANGE or one with too few free ports fails
#   clearly and leaves no half-written ports file behind;
# - a node that dies at boot keeps its logs but no longer holds its ports;
# - a node runs the Erlang VM as deploy/rabbitmq/rabbitmq-env.conf says
#   (half the CPUs' schedulers, 2 dirty I/O threads), and an empty
#   SAGA_BROKER_ERL_ARGS gives RabbitMQ's defaults (one per CPU, 10).
# Every node lives in a private SAGA_BROKER_BASE and is stopped on exit.
set -u
# shellcheck source=tests/deploy/lib.sh
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }

export SAGA_BROKER_BASE
SAGA_BROKER_BASE=$(mktemp -d /tmp/saga-brokertest-XXXXXX)
chmod 755 "$SAGA_BROKER_BASE"
holder=""
unset SAGA_BROKER_ERL_ARGS
cleanup() {
  [ -n "$holder" ] && kill "$holder" 2>/dev/null
  for n in plain taken defaults; do scripts/broker stop "$n" >/dev/null 2>&1 || true; done
  rm -rf "$SAGA_BROKER_BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# serves TCP on 127.0.0.1:PORT
serves() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- default range: below the ephemeral ports ----
read -r eph_lo eph_hi < /proc/sys/net/ipv4/ip_local_port_range
url=$(scripts/broker start plain --owner $$) || { bad "a node starts"; finish; }
ok "a node starts: $url"
# shellcheck disable=SC1091
. "$SAGA_BROKER_BASE/plain/ports"
for p in "$AMQP_PORT" "$DIST_PORT" "$MGMT_PORT"; do
  check "port $p is outside the ephemeral range $eph_lo-$eph_hi" \
    test "$p" -lt "$eph_lo" -o "$p" -gt "$eph_hi"
done
check "the URL names the AMQP port" test "$url" = "amqp://guest:guest@127.0.0.1:$AMQP_PORT/"
check "the node serves AMQP on it" serves "$AMQP_PORT"

# ---- the Erlang VM's schedulers ----
# vm NODE: "CPUs schedulers dirty_cpu dirty_io" as the node sees them
vm() {
  scripts/broker ctl "$1" eval "'io:format(\"~b ~b ~b ~b~n\", [erlang:system_info(X) || X <- [logical_processors_available, schedulers_online, dirty_cpu_schedulers_online, dirty_io_schedulers]]).'" 2>&1 | head -n 1
}
# half N S: S is half of N CPUs, rounded either way, at least 1
half() { [ "$2" -ge 1 ] && [ $(($2 * 2)) -ge $(($1 - 1)) ] && [ $(($2 * 2)) -le $(($1 + 1)) ]; }
read -r cpus sched dcpu dio <<<"$(vm plain)"
if [ -n "${dio:-}" ]; then
  ok "the node reports its VM: $cpus CPUs, $sched schedulers, $dcpu dirty CPU, $dio dirty I/O"
  check "as deployed: half the $cpus CPUs' schedulers ($sched)" half "$cpus" "$sched"
  check "as deployed: half the dirty CPU schedulers ($dcpu)" half "$cpus" "$dcpu"
  check "as deployed: 2 dirty I/O schedulers ($dio)" test "$dio" = 2
else
  bad "the node reports its VM ($(vm plain))"
fi
check "the node's rabbitmq-env.conf is the deployed one" \
  cmp -s deploy/rabbitmq/rabbitmq-env.conf "$SAGA_BROKER_BASE/plain/rabbitmq-env.conf"
scripts/broker stop plain >/dev/null 2>&1
if SAGA_BROKER_ERL_ARGS="" scripts/broker start defaults --owner $$ >/dev/null; then
  read -r cpus sched dcpu dio <<<"$(vm defaults)"
  check "SAGA_BROKER_ERL_ARGS=\"\": a scheduler per CPU ($sched of $cpus)" test "${sched:-x}" = "$cpus"
  check "SAGA_BROKER_ERL_ARGS=\"\": 10 dirty I/O schedulers (${dio:-?})" test "${dio:-x}" = 10
else
  bad "a node starts with SAGA_BROKER_ERL_ARGS=\"\""
fi
scripts/broker stop defaults >/dev/null 2>&1

# ---- a port taken between the check and the bind ----
# A range of six ports; the 1st and 3rd are bound without listening,
# which neither ss nor a connect sees. Each port is picked at random from
# the range, so a start hits one of them 4 times in 5: its boot fails to
# bind, and each retry avoids the port the boot named. Every start must
# succeed on free ports; one (of at most four, each on a fresh range) must
# have picked again.
free_run() { # free_run B: B..B+5 free (nothing listens, no socket state)
  local i
  for i in 0 1 2 3 4 5; do
    if serves $(($1 + i)) || [ -n "$(ss -Htan "sport = :$(($1 + i))" 2>/dev/null)" ]; then return 1; fi
  done
}
retried=0
for round in 1 2 3 4; do
  base=""
  for _ in $(seq 1 50); do
    b=$((10000 + RANDOM % 20000))
    if free_run "$b"; then base=$b; break; fi
  done
  [ -n "$base" ] || { bad "six free ports in a row"; break; }
  python3 - "$base" "$((base + 2))" <<'EOF' &
import socket, sys, time
held = []
for p in sys.argv[1:]:
    s = socket.socket()
    s.bind(("127.0.0.1", int(p)))  # bound, never listening
    held.append(s)
time.sleep(600)
EOF
  holder=$!
  sleep 0.5
  log=$SAGA_BROKER_BASE/taken-$round.log
  if SAGA_BROKER_PORT_RANGE=$base-$((base + 5)) scripts/broker start "taken" --owner $$ >/dev/null 2>"$log"; then
    ok "round $round: a node starts although two ports of its range are taken"
    # shellcheck disable=SC1091
    . "$SAGA_BROKER_BASE/taken/ports"
    for p in "$AMQP_PORT" "$DIST_PORT" "$MGMT_PORT"; do
      check "round $round: port $p is in the range and not a taken one" \
        test "$p" -gt "$base" -a "$p" -le $((base + 5)) -a "$p" != $((base + 2))
    done
    check "round $round: the node serves AMQP on $AMQP_PORT" serves "$AMQP_PORT"
  else
    bad "round $round: a node starts although two ports of its range are taken"
    tail -n 5 "$log"
  fi
  kill "$holder" 2>/dev/null
  holder=""
  scripts/broker stop taken >/dev/null 2>&1
  if grep -q "a port was taken before it could bind; picking new ports" "$log"; then
    retried=1
    break
  fi
done
check "a start whose port was taken said so and picked again" test "$retried" = 1

# ---- a node that dies at boot (here: a broken config line) ----
out=$(SAGA_BROKER_CONF="nonsense.key = 1" scripts/broker start broken 2>&1) && st=0 || st=$?
check "a node with a broken config fails to start" test "$st" -ne 0
check "... naming its logs" grep -q "died during start (logs in $SAGA_BROKER_BASE/broken/log)" <<<"$out"
check "... which stay" test -s "$SAGA_BROKER_BASE/broken/log/startup.log"
check "... without holding on to its ports" test ! -e "$SAGA_BROKER_BASE/broken/ports"
scripts/broker stop broken >/dev/null 2>&1
check "... and stop removes it" test ! -e "$SAGA_BROKER_BASE/broken"

# ---- bad ranges ----
for r in 5-x 100-200 3000-2000 20000; do
  out=$(SAGA_BROKER_PORT_RANGE=$r scripts/broker start badrange 2>&1) && st=0 || st=$?
  check "SAGA_BROKER_PORT_RANGE=$r is refused" test "$st" -ne 0
  check "... with a message naming it ($out)" grep -q "SAGA_BROKER_PORT_RANGE" <<<"$out"
  check "... and no ports file" test ! -e "$SAGA_BROKER_BASE/badrange/ports"
done
# two ports cannot hold a node's three
out=$(SAGA_BROKER_PORT_RANGE=$base-$((base + 1)) scripts/broker start small 2>&1) && st=0 || st=$?
check "a range of two ports is refused" test "$st" -ne 0
check "... saying so ($out)" grep -q "no free loopback port in $base-$((base + 1))" <<<"$out"
check "... leaving no ports file, whole or half" \
  test ! -e "$SAGA_BROKER_BASE/small/ports" -a ! -e "$SAGA_BROKER_BASE/small/ports.new"
check "... and no node" test "$(scripts/broker status small 2>/dev/null)" != running

finish
