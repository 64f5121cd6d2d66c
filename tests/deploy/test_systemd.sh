#!/usr/bin/env bash
# tests/deploy/test_systemd.sh -- deploy/systemd/: `systemd-analyze verify`
# on every unit (and on shipping-svc@.service instantiated), with no
# warning allowed. verify insists that each ExecStart binary exists, and
# the units name /usr/local/bin/<binary> (where an operator installs them),
# so the test verifies copies whose /usr/local/bin/ is rewritten to the
# build's bin/ -- and checks separately that each such binary is one the
# build makes. Also: the hardening and restart keys each daemon unit must
# have, and an example env file for every EnvironmentFile=. If
# systemd-analyze is missing and cannot be installed (Debian package
# `systemd`), the verify checks are skipped, with the reason.
set -u
# shellcheck source=tests/deploy/lib.sh
. "$(dirname "$0")/lib.sh"

sd=deploy/systemd
work=$(mktemp -d /tmp/saga-deploysd-XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

units="saga-orchestrator.service order-api.service inventory-svc.service payment-svc.service
       notification-svc.service shipping-svc@.service"
for u in $units saga.target; do check "$sd/$u exists" [ -s "$sd/$u" ]; done

for u in $units; do
  f=$sd/$u
  for b in $(grep -E '^Exec(Start|StartPre)=' "$f" | grep -o '/usr/local/bin/[^ ]*' | sort -u); do
    check "$u: $b is a program the build makes" [ -x "$bin/$(basename "$b")" ]
  done
  for key in 'Restart=on-failure' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' \
             'PrivateTmp=yes' 'User=saga' 'StateDirectory=saga/' 'After=.*rabbitmq-server.service' \
             'Wants=.*rabbitmq-server.service' 'EnvironmentFile=/etc/saga/' 'CapabilityBoundingSet=$'; do
    check "$u has $key" grep -qE "^$key" "$f"
  done
  # --db lives in the unit's own state directory
  sdir=$(sed -n 's/^StateDirectory=//p' "$f")
  check "$u: --db is under its StateDirectory ($sdir)" grep -qE "^ExecStart=.* --db %S/$sdir/" "$f"
  env=$(sed -n 's|^EnvironmentFile=/etc/saga/||p' "$f")
  if [ "$u" = shipping-svc@.service ]; then
    for i in default india; do
      check "$u: example env/${env//%i/$i}" grep -q '^SAGA_AMQP_URL=amqp://shipping:' "$sd/env/${env//%i/$i}"
    done
  else
    check "$u: example env/$env" grep -q '^SAGA_AMQP_URL=amqp://' "$sd/env/$env"
  fi
done

# notification-svc, which no saga waits for, gives way for a core; the
# daemons sagas wait for keep the default priority
check "notification-svc.service has Nice= above 0" \
  bash -c "n=\$(sed -n 's/^Nice=//p' $sd/notification-svc.service); [ \"\${n:-0}\" -gt 0 ]"
for u in $units; do
  [ "$u" = notification-svc.service ] && continue
  check "$u keeps the default priority (no Nice=)" bash -c "! grep -q '^Nice=' $sd/$u"
done

# one system user per daemon (every shipping region shares one), declared
# in sysusers, its env file given to that user's group by the README
users=""
for u in $units; do
  f=$sd/$u
  user=$(sed -n 's/^User=//p' "$f")
  check "$u: Group= is its own user's ($user)" grep -qx "Group=$user" "$f"
  check "$u: saga.sysusers.conf declares $user" grep -qE "^u $user " "$sd/saga.sysusers.conf"
  env=$(sed -n 's|^EnvironmentFile=/etc/saga/||p' "$f")
  for e in $(printf '%s\n' "${env//%i/default}" "${env//%i/india}" | sort -u); do
    check "$u: deploy/README installs $e for group $user" \
      grep -q "${e%.env}:$user" deploy/README.md
  done
  users="$users $user"
done
check "no two daemons share a user" \
  test "$(tr ' ' '\n' <<<"$users" | sed '/^$/d' | sort | uniq -d)" = ""

# order-api answers GET /orders/ID from its own database (the order.*
# events): its unit reaches no file of the orchestrator's
check "order-api.service does not reach the orchestrator's state directory" \
  bash -c "! grep -v '^ *#' $sd/order-api.service | grep -q orchestrator"

if ! command -v systemd-analyze >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "systemd-analyze missing: apt-get install -y systemd"
  timeout 150 apt-get install -y -q --no-install-recommends systemd >"$work/apt.log" 2>&1 \
    || echo "(apt-get failed: $(tail -n 1 "$work/apt.log"))"
fi
if ! command -v systemd-analyze >/dev/null; then
  skip "systemd-analyze is not installed and could not be installed: units not verified"
else
  mkdir -p "$work/units"
  for u in $units saga.target; do
    sed "s|/usr/local/bin/|$bin/|g" "$sd/$u" > "$work/units/$u"
  done
  cp "$work/units/shipping-svc@.service" "$work/units/shipping-svc@india.service"
  cd "$work/units" || exit 1
  probe=$(systemd-analyze verify ./saga.target 2>&1)
  if [ $? -ne 0 ] && grep -qiE 'bus|dbus|not been booted|Failed to (connect|initialize)' <<<"$probe"; then
    skip "systemd-analyze verify cannot run in this container: $probe"
  else
    for u in $units shipping-svc@india.service saga.target; do
      out=$(systemd-analyze verify "./$u" 2>&1)
      rc=$?
      if [ $rc -eq 0 ] && [ -z "$out" ]; then ok "systemd-analyze verify $u (binaries from build/bin)"
      else bad "systemd-analyze verify $u (exit $rc): $out"; fi
    done
  fi
  cd "$root" || exit 1
fi

finish
