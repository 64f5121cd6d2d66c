#!/usr/bin/env bash
# tests/deploy/test_docker.sh -- deploy/docker/: the compose file's
# structure (python3 + PyYAML if available, else grep): the broker with
# the definitions, rabbitmq.conf, enabled_plugins and rabbitmq-env.conf
# (the Erlang VM's schedulers) mounted, and rabbitmq.conf loading them;
# every daemon a service whose `command:` names a program the build makes
# (in build/bin); a named volume, declared, for every SQLite file; health
# checks; the Dockerfile's two stages and runtime libraries. Building the
# image needs network access and a Docker daemon, so it is not done here.
set -u
# shellcheck source=tests/deploy/lib.sh
. "$(dirname "$0")/lib.sh"

dk=deploy/docker
compose=$dk/docker-compose.yml
check "$compose exists" [ -s "$compose" ]
check "rabbitmq.conf loads /etc/rabbitmq/definitions.json" \
  grep -q '^load_definitions = /etc/rabbitmq/definitions.json$' deploy/rabbitmq/rabbitmq.conf

if python3 -c 'import yaml' 2>/dev/null; then
  out=$(SAGA_BIN_DIR=$bin python3 - "$compose" <<'PY'
import os, sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
bindir = os.environ["SAGA_BIN_DIR"]
res = []
def chk(what, cond): res.append(("ok  " if cond else "FAIL") + " " + what)
sv = d.get("services", {})
vols = d.get("volumes", {}) or {}
for name in ["rabbitmq", "orchestrator", "order-api", "inventory", "payment",
             "shipping-default", "shipping-india", "notification"]:
    chk("service %s present" % name, name in sv)
rq = sv.get("rabbitmq", {})
chk("rabbitmq image is rabbitmq:3-management", rq.get("image") == "rabbitmq:3-management")
mounts = rq.get("volumes", [])
for f in ["rabbitmq.conf", "definitions.json", "enabled_plugins", "rabbitmq-env.conf"]:
    chk("rabbitmq mounts ../rabbitmq/%s at /etc/rabbitmq/%s" % (f, f),
        any(m.startswith("../rabbitmq/%s:/etc/rabbitmq/%s" % (f, f)) for m in mounts))
for f in ["rabbitmq.conf", "definitions.json", "enabled_plugins", "rabbitmq-env.conf"]:
    chk("deploy/rabbitmq/%s exists" % f, os.path.exists(os.path.join(os.path.dirname(sys.argv[1]), "..", "rabbitmq", f)))
for name, s in sv.items():
    chk("%s has a healthcheck" % name, "test" in (s.get("healthcheck") or {}))
    chk("%s restarts" % name, s.get("restart") in ("always", "unless-stopped", "on-failure"))
    for m in s.get("volumes", []):
        src = m.split(":")[0]
        if not src.startswith(("/", ".")):
            chk("%s: volume %s is declared" % (name, src), src in vols)
    if name == "rabbitmq":
        continue
    cmd = s.get("command")
    chk("%s: command is a list" % name, isinstance(cmd, list) and len(cmd) > 0)
    if not isinstance(cmd, list) or not cmd:
        continue
    chk("%s: command %s is a program the build makes" % (name, cmd[0]),
        os.access(os.path.join(bindir, cmd[0]), os.X_OK))
    chk("%s: has its own SAGA_AMQP_URL user" % name,
        "SAGA_AMQP_URL" in (s.get("environment") or {}) and "guest" not in s["environment"]["SAGA_AMQP_URL"])
    if "--db" in cmd:
        db = cmd[cmd.index("--db") + 1]
        owner = [m for m in s.get("volumes", []) if db.startswith(m.split(":")[1] + "/")]
        chk("%s: --db %s is on a named volume" % (name, db),
            len(owner) == 1 and owner[0].split(":")[0] in vols)
    else:
        chk("%s: has --db" % name, False)
    if "--seed" in cmd:  # the file it seeds from is mounted, and valid
        seed = cmd[cmd.index("--seed") + 1]
        src = [m.split(":")[0] for m in s.get("volumes", []) if m.split(":")[1] == seed]
        path = os.path.join(os.path.dirname(sys.argv[1]), src[0]) if src else ""
        rows = [l.split() for l in open(path) if l.strip() and not l.startswith("#")] if path and os.path.exists(path) else []
        chk("%s: --seed %s is mounted from a file in the repo" % (name, seed), bool(rows))
        chk("%s: the seed file has SKU QUANTITY lines" % name,
            all(len(r) == 2 and r[1].isdigit() and int(r[1]) > 0 for r in rows))
    chk("%s: builds or uses the saga image" % name, s.get("image") == "saga:latest")
    chk("%s: no container_name (scalable)" % name, "container_name" not in s)
# no saga waits for notification-svc: fewer CPU shares than the others
shares = {n: s.get("cpu_shares", 1024) for n, s in sv.items()}
chk("notification has fewer cpu_shares than every other service",
    all(shares.get("notification", 1024) < v for n, v in shares.items() if n != "notification"))
sd = sv.get("inventory", {}).get("command") or []
chk("inventory seeds demo stock (the quick start's orders need it)", "--seed" in sd)
print("\n".join(res))
PY
)
  echo "$out"
  passed=$((passed + $(grep -c '^ok' <<<"$out")))
  failed=$((failed + $(grep -c '^FAIL' <<<"$out")))
  [ -n "$out" ] || bad "the compose check printed nothing"
else
  echo "(no PyYAML: grep checks)"
  for s in rabbitmq orchestrator order-api inventory payment shipping-default notification; do
    check "service $s present" grep -qE "^  $s:" "$compose"
  done
  for c in $(grep -oE 'command: \["[a-z-]+"' "$compose" | sed -E 's/.*"([a-z-]+)"/\1/' | sort -u); do
    check "command $c is a program the build makes" [ -x "$bin/$c" ]
  done
  check "a top-level volumes: section" grep -q '^volumes:' "$compose"
  check "health checks" grep -q 'healthcheck:' "$compose"
fi

df=$dk/Dockerfile
check "Dockerfile builds on debian:12" grep -q '^FROM debian:12 AS build' "$df"
check "Dockerfile runs on debian:12-slim" grep -q '^FROM debian:12-slim' "$df"
# every library a program links directly (NEEDED), by its Debian package:
# the runtime stage must install it (libc6 is in the base image)
runtime=$(sed -n '/^FROM debian:12-slim/,$p' "$df")
needed=$(for b in saga-orchestrator sagactl order-api inventory-svc payment-svc \
                  shipping-svc notification-svc; do
           objdump -p "$bin/$b" 2>/dev/null | awk '/NEEDED/ {print $2}'
         done | sort -u)
for so in $needed; do
  f=$(ldconfig -p | awk -v so="$so" '$1 == so {print $NF; exit}')
  pkg=$([ -n "$f" ] && dpkg -S "$(readlink -f "$f")" 2>/dev/null | head -1 | cut -d: -f1)
  # the sanitizers' runtimes come with a -DSAGA_SANITIZE build, not the image
  case $pkg in ''|libc6|libasan*|libubsan*|liblsan*|libtsan*) continue ;; esac
  check "runtime stage installs $pkg (for $so)" grep -qw "$pkg" <<<"$runtime"
done
check "the programs' libraries were found" test -n "$needed"
for b in $(grep -o '/build/bin/[a-z-]*' "$df" | sed 's|/build/bin/||' | sort -u); do
  check "Dockerfile copies $b, a program the build makes" [ -x "$bin/$b" ]
done
if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  check "docker compose config" env SAGA_PW_ADMIN=a SAGA_PW_OPERATOR=a SAGA_PW_ORCHESTRATOR=a \
    SAGA_PW_ORDER_API=a SAGA_PW_INVENTORY=a SAGA_PW_PAYMENT=a SAGA_PW_SHIPPING=a SAGA_PW_NOTIFICATION=a \
    docker compose -f "$compose" config -q
else
  skip "docker compose is not installed: compose file not validated by docker itself"
fi

finish
