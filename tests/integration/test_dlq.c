/* The dead-letter queues end to end (orchestrator/svc/dlq_group.h,
 * `sagactl dlq`, the console's /dlq pages) on a private broker with its
 * management plugin: the real inventory-svc and a regional shipping-svc
 * (--instance india, queue shipping.india) dead-letter bad commands into
 * inventory.commands.dlq and shipping.india.dlq with their reasons; then
 * `dlq list` finds both without being told their names, `dlq show
 * --by-reason` groups them (ids taken out of the reasons), a replay with
 * a wrong --expect refuses and changes nothing, a replay with the right
 * one moves exactly that group back to inventory.commands and leaves the
 * others in order, discard drops a group, and the console's /api/dlq and
 * /dlq show the groups and link their sagas. Also: a wrong management
 * password is a clear error, and usage errors exit 2. */
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bus.h"
#include "envelope.h"
#include "log.h"
#include "testutil.h"

static const char *bindir, *srcdir;
static char *dir, *url, *mgmt;
static struct bus *B;

static char *
path(const char *name)
{
	static char buf[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
	return buf[k];
}

static long
depth(const char *queue)
{
	uint32_t m = 0, c = 0;
	return bus_queue_info(B, queue, &m, &c) == 0 ? (long)m : -1;
}

static bool
wait_depth(const char *queue, long want, int ms)
{
	const struct bus_handlers none = {NULL, NULL, NULL};
	for (int t = 0; t < ms / 100; t++) {
		if (depth(queue) == want)
			return true;
		bus_poll(B, 100, &none);
	}
	return depth(queue) == want;
}

/* A command to queue (default exchange) with envelope id env_id and
 * message id prop_id (they differ: the participant refuses it), or a
 * body that is not an envelope at all when garbage. */
static void
send_cmd(const char *queue, const char *prop_id, const char *env_id,
         const char *saga, const char *type, bool garbage)
{
	const struct bus_handlers none = {NULL, NULL, NULL};
	struct envelope e;
	struct bus_message m = {.exchange = "",
	                        .routing_key = queue,
	                        .message_id = prop_id,
	                        .correlation_id = saga,
	                        .type = type};
	char *body = NULL;
	size_t len = 0;

	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), "%s", env_id);
	snprintf(e.saga, sizeof(e.saga), "%s", saga);
	snprintf(e.type, sizeof(e.type), "%s", type);
	snprintf(e.step, sizeof(e.step), "step");
	e.attempt = 1;
	e.ts = (int64_t)time(NULL) * 1000;
	if (garbage) {
		m.body = "\xc1\xc1";
		m.len = 2;
	} else if (envelope_encode(&e, &body, &len) == 0) {
		m.body = body;
		m.len = len;
	}
	CHECK(bus_publish(B, &m, 0) == 0);
	CHECK(bus_flush(B, 5000, &none) == 0);
	free(body);
	envelope_clear(&e);
}

/* Runs sagactl with args (printf-style) and the broker's URLs; its
 * stdout and stderr in *out. */
static int sagactl(char **out, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static int
sagactl(char **out, const char *fmt, ...)
{
	char args[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	return testutil_sh(
	        out, "SAGA_MGMT_URL='%s' '%s/sagactl' --amqp '%s' %s 2>&1",
	        mgmt, bindir, url, args);
}

/* The message ids of a DLQ in queue order (sagactl dlq show --json). */
static char *
ids_of(const char *queue)
{
	char *out = NULL, *ids = calloc(1, 1024);
	json_t *a, *m;
	size_t i, n = 0;

	if (ids != NULL &&
	    sagactl(&out, "--json dlq show %s --limit 100", queue) == 0 &&
	    (a = json_loads(out, 0, NULL)) != NULL) {
		json_array_foreach(a, i, m)
		{
			const char *id = json_string_value(
			        json_object_get(m, "message_id"));
			if (n < 1000)
				n += (size_t)snprintf(ids + n, 1024 - n, "%s ",
				                      id);
		}
		json_decref(a);
	}
	free(out);
	return ids;
}

/* The group of queue whose example holds `what`: its key in key, its
 * count returned (-1: no such group). */
static long
group_of(const char *queue, const char *what, char *key, json_t **sagas)
{
	char *out = NULL;
	json_t *a, *g;
	size_t i;
	long n = -1;

	if (sagactl(&out, "--json dlq show %s --by-reason", queue) != 0 ||
	    (a = json_loads(out, 0, NULL)) == NULL) {
		fprintf(stderr, "dlq show --by-reason: %s\n", out ? out : "");
		free(out);
		return -1;
	}
	json_array_foreach(a, i, g)
	{
		const char *ex =
		        json_string_value(json_object_get(g, "example"));
		if (ex != NULL && strstr(ex, what) != NULL) {
			snprintf(key, 32, "%s",
			         json_string_value(json_object_get(g, "key")));
			n = (long)json_integer_value(
			        json_object_get(g, "count"));
			if (sagas != NULL)
				*sagas = json_incref(
				        json_object_get(g, "sagas"));
		}
	}
	json_decref(a);
	free(out);
	return n;
}

static int
start_participants(void)
{
	const char *inv[] = {"inventory-svc", "--amqp",       url,
	                     "--db",          path("inv.db"), NULL};
	const char *ship[] = {"shipping-svc",  "--amqp",     url,     "--db",
	                      path("ship.db"), "--instance", "india", "--bind",
	                      "india.*",       NULL};
	int a = testutil_spawn(inv, path("inv.log"));
	int b = testutil_spawn(ship, path("ship.log"));

	if (a < 0 || b < 0 || !wait_depth("inventory.commands.dlq", 0, 15000) ||
	    !wait_depth("shipping.india.dlq", 0, 15000))
		return -1;
	/* the bad commands: three of an unknown type, two whose message id
	 * disagrees with their envelope's, one that is not an envelope */
	send_cmd("inventory.commands", "u-1", "u-1", "ord-101",
	         "inventory.frob", 0);
	send_cmd("inventory.commands", "m-17", "e-17", "ord-102",
	         "inventory.reserve", 0);
	send_cmd("inventory.commands", "u-2", "u-2", "ord-103",
	         "inventory.frob", 0);
	send_cmd("inventory.commands", "g-1", "g-1", "ord-104",
	         "inventory.reserve", 1);
	send_cmd("inventory.commands", "m-942", "e-5", "ord-105",
	         "inventory.reserve", 0);
	send_cmd("inventory.commands", "u-3", "u-3", "ord-106",
	         "inventory.frob", 0);
	send_cmd("shipping.india", "s-1", "s-1", "ord-201", "shipping.teleport",
	         0);
	send_cmd("shipping.india", "s-2", "s-2", "ord-202", "shipping.teleport",
	         0);
	if (!wait_depth("inventory.commands.dlq", 6, 20000) ||
	    !wait_depth("shipping.india.dlq", 2, 20000))
		return -1;
	/* stopped: what is replayed stays in inventory.commands */
	return testutil_stop(a, SIGTERM) == 0 && testutil_stop(b, SIGTERM) == 0
	               ? 0
	               : -1;
}

/* dlq list: both DLQs, found on the broker, with their counts. */
static void
test_list(void)
{
	char *out = NULL;
	json_t *a, *q;
	size_t i;
	int found = 0, rc = sagactl(&out, "dlq list");

	CHECK_MSG(rc == 0 && out != NULL &&
	                  strstr(out, "inventory.commands.dlq") != NULL &&
	                  strstr(out, "shipping.india.dlq") != NULL,
	          "rc %d: %s", rc, out ? out : "");
	free(out);
	rc = sagactl(&out, "--json dlq list");
	CHECK(rc == 0 && out != NULL && (a = json_loads(out, 0, NULL)) != NULL);
	json_array_foreach(a, i, q)
	{
		const char *n = json_string_value(json_object_get(q, "queue"));
		json_int_t m =
		        json_integer_value(json_object_get(q, "messages"));
		if (strcmp(n, "inventory.commands.dlq") == 0 && m == 6)
			found++;
		if (strcmp(n, "shipping.india.dlq") == 0 && m == 2)
			found++;
		CHECK(strlen(n) > 4 && strcmp(n + strlen(n) - 4, ".dlq") == 0);
	}
	CHECK_MSG(found == 2, "%s", out);
	json_decref(a);
	free(out);
	/* a wrong password for the management API: said, exit 1 */
	rc = testutil_sh(&out,
	                 "'%s/sagactl' --amqp '%s' dlq list --mgmt-url "
	                 "http://guest:s3cr3tpw@%s 2>&1",
	                 bindir, url, strchr(mgmt, '@') + 1);
	CHECK_MSG(rc == 1 && out != NULL && strstr(out, "401") != NULL &&
	                  strstr(out, "s3cr3tpw") == NULL,
	          "rc %d: %s", rc, out ? out : "");
	free(out);
	/* nothing listens there */
	rc = testutil_sh(&out,
	                 "'%s/sagactl' --amqp '%s' dlq list --mgmt-url "
	                 "http://guest:guest@127.0.0.1:1/ 2>&1",
	                 bindir, url);
	CHECK_MSG(rc == 1 && out != NULL &&
	                  strstr(out, "cannot reach the broker's management "
	                              "API at http://127.0.0.1:1/"),
	          "rc %d: %s", rc, out ? out : "");
	free(out);
}

/* show --by-reason: three groups in inventory.commands.dlq, one in
 * shipping.india.dlq; the two id mismatches are one group. */
static void
test_groups(void)
{
	char key[32], *out = NULL;
	json_t *sagas = NULL;
	int rc;

	CHECK_EQ(group_of("inventory.commands.dlq", "unknown message type", key,
	                  NULL),
	         3);
	CHECK_EQ(group_of("inventory.commands.dlq", "differs from envelope id",
	                  key, &sagas),
	         2);
	CHECK_EQ(json_array_size(sagas), 2);
	CHECK_STR(json_string_value(json_array_get(sagas, 0)), "ord-102");
	CHECK_STR(json_string_value(json_array_get(sagas, 1)), "ord-105");
	json_decref(sagas);
	CHECK_EQ(group_of("inventory.commands.dlq", "cannot decode", key, NULL),
	         1);
	CHECK_EQ(group_of("shipping.india.dlq", "unknown message type", key,
	                  NULL),
	         2);
	rc = sagactl(&out, "dlq show inventory.commands.dlq --by-reason");
	CHECK_MSG(rc == 0 && out != NULL && strstr(out, "3 groups") &&
	                  strstr(out, "message_id property \"#\" differs from "
	                              "envelope id \"#\""),
	          "rc %d: %s", rc, out ? out : "");
	free(out);
	/* nothing was taken */
	CHECK_EQ(depth("inventory.commands.dlq"), 6);
}

/* POST path with body as alice (through the trusted header) or, when
 * !user, as nobody; the status, the body in *out. */
static int
post(int port, const char *path, const char *body, bool user, char **out)
{
	int status = 0;

	*out = testutil_http(port, "POST", path,
	                     user ? "X-Forwarded-User: alice\r\n"
	                            "X-Saga-Console: 1\r\n"
	                          : "X-Saga-Console: 1\r\n",
	                     body, &status);
	return status;
}

/* The console's group actions: refused without a user, a bad body or a
 * wrong count (nothing changes); the right count discards the regional
 * queue's group (the buttons are on the page). */
static void
console_act(int port)
{
	char key[32], pth[160], *out;
	int status;

	CHECK_EQ(group_of("shipping.india.dlq", "unknown message type", key,
	                  NULL),
	         2);
	snprintf(pth, sizeof(pth),
	         "/api/dlq/shipping.india.dlq/groups/%s/discard", key);
	CHECK_EQ(
	        post(port, pth, "{\"expect\":2,\"reason\":\"x\"}", false, &out),
	        401);
	free(out);
	CHECK_EQ(post(port, pth, "{\"expect\":2}", true, &out), 400);
	CHECK_MSG(out != NULL && strstr(out, "reason"), "%s", out ? out : "");
	free(out);
	status = post(port, pth, "{\"expect\":3,\"reason\":\"bad sku\"}", true,
	              &out);
	CHECK_MSG(status == 409 && out != NULL && strstr(out, "count changed"),
	          "%d %s", status, out ? out : "");
	free(out);
	CHECK_EQ(depth("shipping.india.dlq"), 2);
	status = post(port, "/api/dlq/shipping.india/groups/x/discard",
	              "{\"expect\":2,\"reason\":\"x\"}", true, &out);
	CHECK_EQ(status, 404); /* not a DLQ */
	free(out);
	status = post(port, pth,
	              "{\"expect\":2,\"reason\":\"teleport is retired\"}", true,
	              &out);
	CHECK_MSG(status == 200 && out != NULL && strstr(out, "\"done\":2") &&
	                  strstr(out, "\"actor\":\"alice\""),
	          "%d %s", status, out ? out : "");
	free(out);
	CHECK_EQ(depth("shipping.india.dlq"), 0);
	CHECK(testutil_sh(NULL,
	                  "grep -q 'alice discarded 2 of group %s in "
	                  "shipping.india.dlq: teleport is retired' '%s'",
	                  key, path("orch.log")) == 0);
}

/* The console: /api/dlq and /dlq list both queues, their groups, and link
 * the sagas; /api/dlq/QUEUE has the messages. Its peeks keep the order. */
static void
test_console(void)
{
	char haddr[64], *body, *ids;
	int port = testutil_free_port(), status = 0, pid;
	const char *const want_api[] = {"\"queue\":\"shipping.india.dlq\"",
	                                "\"sagas\":[\"ord-102\",\"ord-105\"]",
	                                "\"count\":3", NULL};
	const char *const want_page[] = {"href=\"/sagas/ord-102\"",
	                                 "href=\"/sagas/ord-201\"",
	                                 "<a href=\"/dlq\">", NULL};
	const char *const want_q[] = {"\"message_id\":\"m-942\"",
	                              "\"saga\":\"ord-105\"", NULL};

	snprintf(haddr, sizeof(haddr), "127.0.0.1:%d", port);
	{
		const char *const a[] = {"saga-orchestrator",
		                         "--amqp",
		                         url,
		                         "--db",
		                         path("orch.db"),
		                         "--statecharts",
		                         path("charts"),
		                         "--http",
		                         haddr,
		                         "--mgmt-url",
		                         mgmt,
		                         "--dlq-amqp",
		                         url,
		                         "--console-trust-header",
		                         "X-Forwarded-User",
		                         NULL};
		CHECK(testutil_sh(NULL,
		                  "mkdir -p '%s' && cp '%s/statecharts/"
		                  "order.yaml' '%s'",
		                  path("charts"), srcdir, path("charts")) == 0);
		pid = testutil_spawn(a, path("orch.log"));
	}
	CHECK(pid > 0);
	body = testutil_http_until(port, "/api/dlq", want_api, 15000, &status);
	CHECK_MSG(status == 200 && body != NULL && strstr(body, want_api[1]) &&
	                  strstr(body, "\"queue\":\"inventory.commands.dlq\""),
	          "%d %s", status, body ? body : "");
	free(body);
	body = testutil_http_until(port, "/dlq", want_page, 5000, &status);
	CHECK_MSG(status == 200 && body != NULL && strstr(body, want_page[0]) &&
	                  strstr(body, want_page[1]) &&
	                  strstr(body, "--expect 2") &&
	                  strstr(body, "class=\"dlqact\" data-verb=\"replay\""),
	          "%d %s", status, body ? body : "");
	free(body);
	body = testutil_http_until(port, "/api/dlq/inventory.commands.dlq",
	                           want_q, 5000, &status);
	CHECK_MSG(status == 200 && body != NULL && strstr(body, want_q[0]),
	          "%d %s", status, body ? body : "");
	free(body);
	body = testutil_http_until(port, "/dlq/shipping.india.dlq",
	                           want_page + 1, 5000, &status);
	CHECK(status == 200 && body != NULL &&
	      strstr(body, "shipping.teleport"));
	free(body);
	body = testutil_http(port, "GET", "/api/dlq/inventory.commands", NULL,
	                     NULL, &status);
	CHECK_EQ(status, 404); /* not a DLQ: never peeked */
	free(body);
	body = testutil_http(port, "GET", "/api/dlq/no.such.dlq", NULL, NULL,
	                     &status);
	CHECK_EQ(status, 404);
	free(body);
	body = testutil_http(port, "GET", "/api/dlq?peek=0", NULL, NULL,
	                     &status);
	CHECK_EQ(status, 400);
	free(body);
	console_act(port);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	/* the peeks gave every message back, in order */
	CHECK_EQ(depth("inventory.commands.dlq"), 6);
	ids = ids_of("inventory.commands.dlq");
	CHECK_STR(ids, "u-1 m-17 u-2 g-1 m-942 u-3 ");
	free(ids);
}

/* replay of a group: a wrong count refuses; the right one moves exactly
 * that group back; discard drops one. */
static void
test_replay_discard(void)
{
	char key[32], *out = NULL, *ids;
	int rc;

	CHECK_EQ(group_of("inventory.commands.dlq", "differs from envelope id",
	                  key, NULL),
	         2);
	rc = sagactl(&out,
	             "dlq replay inventory.commands.dlq --group %s "
	             "--expect 3",
	             key);
	CHECK_MSG(rc == 1 && out != NULL && strstr(out, "count changed"),
	          "rc %d: %s", rc, out ? out : "");
	free(out);
	CHECK_EQ(depth("inventory.commands.dlq"), 6);
	CHECK_EQ(depth("inventory.commands"), 0);

	rc = sagactl(&out,
	             "dlq replay inventory.commands.dlq --group %s "
	             "--expect 2",
	             key);
	CHECK_MSG(rc == 0 && out != NULL && strstr(out, "replayed 2 of 2"),
	          "rc %d: %s", rc, out ? out : "");
	free(out);
	CHECK_EQ(depth("inventory.commands"), 2);
	ids = ids_of("inventory.commands.dlq");
	CHECK_STR(ids, "u-1 u-2 g-1 u-3 ");
	free(ids);

	CHECK_EQ(group_of("inventory.commands.dlq", "unknown message type", key,
	                  NULL),
	         3);
	rc = sagactl(&out, "dlq discard inventory.commands.dlq --group %s",
	             key);
	CHECK_MSG(rc == 2 && out != NULL && strstr(out, "--expect"),
	          "rc %d: %s", rc, out ? out : "");
	free(out);
	rc = sagactl(&out,
	             "dlq discard inventory.commands.dlq --group %s "
	             "--expect 3",
	             key);
	CHECK_MSG(rc == 0 && out != NULL && strstr(out, "discarded 3 of 3"),
	          "rc %d: %s", rc, out ? out : "");
	free(out);
	ids = ids_of("inventory.commands.dlq");
	CHECK_STR(ids, "g-1 ");
	free(ids);
	CHECK_EQ(depth("inventory.commands"), 2); /* discard sent nothing */
	/* the console discarded the regional queue's group (test_console) */
	CHECK_EQ(depth("shipping.india.dlq"), 0);
}

int
main(void)
{
	struct bus_config c = {.name = "test"};
	char err[256];

	log_init("test_dlq", LOG_WARN);
	srcdir = getenv("SAGA_SOURCE_DIR");
	bindir = getenv("SAGA_BIN_DIR");
	if (srcdir == NULL || bindir == NULL) {
		fprintf(stderr, "SAGA_SOURCE_DIR and SAGA_BIN_DIR must be set "
		                "(ctest sets them)\n");
		return 1;
	}
	atexit(testutil_kill_all);
	dir = testutil_tmpdir("dlq");
	url = testbroker_start("dlq");
	mgmt = testbroker_mgmt_url("dlq");
	if (dir == NULL || url == NULL || mgmt == NULL) {
		fprintf(stderr, "no broker\n");
		return 1;
	}
	c.url = url;
	B = bus_open(&c, err, sizeof(err));
	if (B == NULL || bus_connect(B, err, sizeof(err)) != 0 ||
	    start_participants() != 0) {
		fprintf(stderr, "cannot set up: %s (logs in %s)\n", err, dir);
		return 1;
	}
	RUN(test_list);
	RUN(test_groups);
	RUN(test_console);
	RUN(test_replay_discard);
	bus_close(B);
	testbroker_ctl("dlq", "stop");
	if (check_failed == 0)
		testutil_rmtree(dir);
	else
		fprintf(stderr, "kept %s\n", dir);
	free(dir);
	free(url);
	free(mgmt);
	return check_summary();
}
