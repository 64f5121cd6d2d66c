#!/bin/sh
# tests/console/browser.sh PORT -- the console's pages in a real headless
# browser (Debian's chromium), against an orchestrator serving --http on
# 127.0.0.1:PORT whose database holds completed, failed (fl-*) and stuck
# (stk-*) sagas: test_console --browser sets that up and runs this.
#
# Loads the sagas page, opens a stuck saga from its link, checks its path
# and current state are marked in the SVG, and the other pages' content.
# Then tests/console/drive.js (node, the DevTools protocol on a pipe) acts
# as an operator: an action without login is refused, it logs in as
# SAGA_CONSOLE_USER / SAGA_CONSOLE_PASSWORD, resumes stk-1 with a reason
# and sees it finish, and resumes the rest in bulk (test_console --browser
# keeps the fake participants answering meanwhile).
# With SAGA_CONSOLE_SHOTS=DIR, saves screenshots of the main pages there
# (docs/console-*.png). Exit 77 (skipped) when chromium is missing.
set -eu
port=$1
base=http://127.0.0.1:$port
command -v chromium >/dev/null 2>&1 || { echo "SKIP: no chromium"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

browse() { # browse OUT ARGS...: chromium, headless, a throwaway profile
  out=$1; shift
  timeout 60 chromium --headless --disable-gpu --no-sandbox \
    --no-first-run --user-data-dir="$tmp/profile" \
    --virtual-time-budget=3000 "$@" >"$out" 2>"$tmp/chromium.log"
}
dom() { browse "$tmp/$1.html" --dump-dom "$base$2"; }
has() { # has PAGE TEXT WHAT
  if grep -qF -- "$2" "$tmp/$1.html"; then echo "ok   $3"
  else echo "FAIL $3: no '$2' in $1"; fails=$((fails + 1)); fi
}
hasnt() {
  if grep -qF -- "$2" "$tmp/$1.html"; then
    echo "FAIL $3: '$2' in $1"; fails=$((fails + 1))
  else echo "ok   $3"; fi
}

# the sagas page of a run with stuck and failed sagas
dom sagas /sagas
# a page caught while chromium's virtual time ran out is empty: once more
if ! grep -qF '<a href="/sagas/stk-1">' "$tmp/sagas.html"; then
  echo "note: /sagas came without stk-1; loading it again"; sleep 1
  dom sagas /sagas
fi
has sagas '<table id="sagas">' "sagas page has its table"
has sagas '<a href="/sagas/stk-1">stk-1</a>' "a stuck saga is listed"
has sagas '<span class="s-stuck">stuck</span>' "its status is shown"
has sagas '<span class="s-failed">failed</span>' "a failed saga is listed"
dom stuckonly '/sagas?status=stuck'
has stuckonly '<option selected="">stuck</option>' "the filter is kept"
hasnt stuckonly '/sagas/ok-1' "the filter filters"

# open one, from its link
link=$(grep -o 'href="/sagas/stk-1"' "$tmp/sagas.html" | head -n 1 |
       sed 's/href="\(.*\)"/\1/')
[ -n "$link" ] || { echo "FAIL no link to stk-1"; exit 1; }
dom saga "$link"
has saga '<h1>Saga stk-1</h1>' "the saga page opens from the list"
for s in reserve_stock cod_limit; do
  has saga "<g class=\"state visited\" data-state=\"$s\">" "$s is on the path"
done
has saga '<g class="state visited current undone" data-state="payment">' \
  "the current state is marked (and its undo sent)"
has saga '<path class="edge taken" data-from="reserve_stock" data-to="cod_limit"' \
  "the edges taken are marked"
has saga '<g class="state" data-state="completed">' "states not visited are plain"
has saga 'payment.refund' "what compensating would run"
has saga '<section id="actions" data-saga="stk-1">' "the actions"
has saga '<button data-action="resume">resume</button>' \
  "a stuck saga can be resumed"
has saga 'c-dave' "the order data"

dom stuck /stuck
has stuck '<a href="/sagas/stk-2">stk-2</a>' "the stuck page lists stuck sagas"
dom charts /charts
has charts 'href="/sagas?chart=order&amp;state=payment"' \
  "the heat map links a state to the filtered list"
dom summary /
has summary 'href="/sagas?status=stuck"' "the summary links the counts"
has summary 'create_shipment' "the summary shows step latency"

# the script refreshes <main> without a reload: after its period the page
# is still whole (a broken fetch or swap would leave no table)
browse "$tmp/live.html" --virtual-time-budget=12000 --dump-dom "$base/sagas"
has live '<table id="sagas">' "the page survives its own refresh"

# screenshots
browse "$tmp/shot.log" --screenshot="$tmp/shot.png" --window-size=1280,900 \
  "$base$link"
if [ -s "$tmp/shot.png" ]; then echo "ok   a screenshot"
else echo "FAIL no screenshot"; fails=$((fails + 1)); fi
if [ -n "${SAGA_CONSOLE_SHOTS:-}" ]; then
  for p in summary:/ sagas:/sagas saga:$link stuck:/stuck charts:/charts; do
    browse "$tmp/shot.log" --screenshot="$SAGA_CONSOLE_SHOTS/console-${p%%:*}.png" \
      --window-size=1280,900 "$base${p#*:}"
  done
  echo "screenshots in $SAGA_CONSOLE_SHOTS"
fi

# acting: needs node (Debian's nodejs) to drive the browser
if [ -n "${SAGA_CONSOLE_USER:-}" ]; then
  if command -v node >/dev/null 2>&1; then
    if node "$(dirname "$0")/drive.js" "$base" "$SAGA_CONSOLE_USER" \
         "$SAGA_CONSOLE_PASSWORD" ${SAGA_CONSOLE_SHOTS:+"$SAGA_CONSOLE_SHOTS"}
    then echo "ok   an operator acts in the browser"
    else echo "FAIL acting in the browser"; fails=$((fails + 1)); fi
  else
    echo "FAIL no node (apt-get install nodejs): cannot drive the browser"
    fails=$((fails + 1))
  fi
fi
echo "browser: $fails failed"
[ "$fails" -eq 0 ]
