# shellcheck shell=bash disable=SC2034
# tests/deploy/lib.sh -- what the deploy tests share (sourced, not run).
# Each test counts its checks, prints "N passed, N failed" at the end and
# exits 1 on a failure, 77 (ctest: skipped) when it could check nothing.

root=${SAGA_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
bin=${SAGA_BIN_DIR:-$root/build/bin}
testbin=${SAGA_TEST_DIR:-$root/build/tests}
cd "$root" || exit 1

passed=0 failed=0 skipped=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $*"; }
# check DESCRIPTION COMMAND...: one check, passed when the command succeeds
check() {
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
finish() {
  echo "$passed passed, $failed failed, $skipped skipped"
  if [ "$failed" -gt 0 ]; then exit 1; fi
  if [ "$passed" -eq 0 ]; then exit 77; fi
  exit 0
}

# The metric names an alerts/recording rules file uses that come from the
# orchestrator (saga_*), one per line.
saga_metric_names() {
  grep -v '^ *#' "$@" | grep -o 'saga_[a-z][a-z_]*' | sort -u
}

# metrics_have TEXT NAME: the exposition text declares NAME (a TYPE line for
# it or, for a histogram's _bucket/_sum/_count, for its base name).
metrics_have() {
  local text=$1 name=$2 base
  base=$(sed -E 's/_(bucket|sum|count)$//' <<<"$name")
  grep -qE "^# TYPE ($name|$base) " <<<"$text"
}

# free_port [NOT...]: a loopback port a daemon can listen on, from below the
# kernel's ephemeral range (as scripts/broker and testutil_free_port pick
# theirs), so no outgoing connection takes it first; never one of NOT.
free_port() {
  python3 - "$@" <<'EOF'
import random, socket, sys
lo, hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
first, last = (10000, lo - 1) if lo > 11000 else (hi + 1, 65000)
for _ in range(500):
    p = random.randint(first, last)
    if str(p) in sys.argv[1:]:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
else:
    sys.exit("no free port")
EOF
}
