/* console_dlq.c -- the console's dead-letter pages (console.h): /api/dlq,
 * /api/dlq/QUEUE, /dlq, /dlq/QUEUE.
 *
 * Which queues: every queue of the orchestrator's vhost whose name ends
 * in ".dlq", as the broker's management API lists them (dlq_discover), so
 * a regional instance's shipping.india.dlq shows up without anyone
 * naming it.
 *
 * How the messages are read: through the management API's get-messages
 * with ackmode ack_requeue_true, not over AMQP. The orchestrator's own
 * AMQP user may not read other services' dead-letter queues and must not
 * (the definitions keep each service to its own queues); an HTTP call
 * with the operator's or a monitoring user's credentials keeps the
 * orchestrator's broker identity what it was, and an HTTP thread opens
 * no AMQP connection. The price is that this is a peek, not a look: the
 * broker hands each message out (basic.get) and takes it back. A
 * classic queue keeps their order, but each comes back with the
 * redelivered flag set (nothing here reads it: a replay publishes a new
 * copy), a quorum queue counts one more delivery (a DLQ has no delivery
 * limit), and while a page is being built those messages are briefly not
 * in the queue: a `sagactl dlq replay --group` at that very moment sees
 * fewer than expected and refuses (safe; run it again). Each queue's
 * count is the broker's statistic (up to 5 s old); the groups count what
 * was peeked (at most `peek` messages of each queue, said in "peeked").
 *
 * Acting on a group: POST /api/dlq/QUEUE/groups/KEY/replay or /discard
 * with {"expect": N, "reason": "..."}, behind the console's guard (a
 * logged-in user, the CSRF header), is dlq_group_act (dlq_group.h) over
 * AMQP with the operator's URL (--dlq-amqp): only if the group still
 * holds N messages (else 409, nothing done), the others left in order.
 * Who did it and why goes to the log (a DLQ has no history table). On
 * the HTTP thread that asked: the saga loop never waits for it. Without
 * --dlq-amqp the pages show the `sagactl dlq replay|discard` command
 * that does the same.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "bus.h"
#include "clock.h"
#include "console.h"
#include "console_int.h"
#include "dlq_group.h"
#include "jsonout.h"
#include "log.h"
#include "mgmt.h"
#include "number.h"

#define PEEK_DEFAULT  200
#define LIMIT_DEFAULT 100
#define SAGAS_SHOWN   20 /* saga links per group on a page */

struct console_dlq {
	char mgmt[1024], vhost[256];
	char act_amqp[1024]; /* "" : the console cannot act */
	struct console *console;
};

/* ?name= as a count in [1, DLQ_PEEK_MAX], def when absent. 0, or -1
 * with e set. */
static int
count_param(const struct http_request *req, const char *name, long def,
            long *out, struct console_err *e)
{
	const char *v = http_query(req, name);
	long long n;

	*out = def;
	if (v == NULL || v[0] == '\0')
		return 0;
	if (number_parse(v, 1, DLQ_PEEK_MAX, &n) != 0) {
		console_fail(e, 400, "%s: a number from 1 to %d", name,
		             DLQ_PEEK_MAX);
		return -1;
	}
	*out = (long)n;
	return 0;
}

/* One queue's peek as {"peeked", "groups"} (and "messages" when
 * with_msgs) added to o; a failure is the queue's "error", not the
 * document's. -1 only when out of memory. */
static int
peek_into(const struct console_dlq *c, json_t *o, const char *queue, long max,
          bool with_msgs)
{
	struct dlq_msg *m;
	size_t n;
	char err[1024];
	int rc;

	if (dlq_peek(c->mgmt, c->vhost, queue, max, &m, &n, err, sizeof(err)) !=
	    0)
		return json_object_set_new(o, "error", jsonout_str(err));
	rc = json_object_set_new(o, "peeked", json_integer((json_int_t)n)) ||
	     json_object_set_new(o, "groups", dlq_groups_json(m, n));
	if (rc == 0 && with_msgs)
		rc = json_object_set_new(o, "messages",
		                         dlq_msgs_json(m, n, clock_wall_ms()));
	free(m);
	return rc != 0 ? -1 : 0;
}

/* /api/dlq: every DLQ with its count and the groups of its first `peek`
 * messages. */
static json_t *
dlq_list_json(const struct console_dlq *c, const struct http_request *req,
              struct console_err *e)
{
	char err[1024], where[300];
	json_t *d, *q;
	long peek;
	size_t i;

	if (count_param(req, "peek", PEEK_DEFAULT, &peek, e) != 0)
		return NULL;
	d = dlq_discover(c->mgmt, c->vhost, err, sizeof(err));
	if (d == NULL)
		return console_fail(e, 503, "%s", err);
	mgmt_redact(c->mgmt, where, sizeof(where));
	json_array_foreach(json_object_get(d, "queues"), i, q)
	{
		/* peeked even when the statistic says empty: it may be
		 * 5 s old */
		const char *name =
		        json_string_value(json_object_get(q, "queue"));
		int rc = peek_into(c, q, name, peek, false);
		if (rc != 0) {
			json_decref(d);
			return console_fail(e, 503, "out of memory");
		}
	}
	if (json_object_set_new(d, "vhost", jsonout_str(c->vhost)) ||
	    json_object_set_new(d, "management", jsonout_str(where)) ||
	    json_object_set_new(d, "peek", json_integer(peek))) {
		json_decref(d);
		return console_fail(e, 503, "out of memory");
	}
	return d;
}

static bool
is_dlq_name(const char *q)
{
	size_t n = strlen(q);
	return n > 4 && n < 256 && strchr(q, '/') == NULL &&
	       strcmp(q + n - 4, ".dlq") == 0;
}

/* /api/dlq/QUEUE: its groups and its first `limit` messages. */
static json_t *
dlq_queue_json(const struct console_dlq *c, const char *queue,
               const struct http_request *req, struct console_err *e)
{
	json_t *d;
	long limit;
	const char *err;

	if (!is_dlq_name(queue))
		return console_fail(e, 404,
		                    "%.200s is not a dead-letter queue (its "
		                    "name must end in .dlq)",
		                    queue);
	if (count_param(req, "limit", LIMIT_DEFAULT, &limit, e) != 0)
		return NULL;
	d = json_pack("{s:o,s:I}", "queue", jsonout_str(queue), "limit",
	              (json_int_t)limit);
	if (d == NULL || peek_into(c, d, queue, limit, true) != 0) {
		json_decref(d);
		return console_fail(e, 503, "out of memory");
	}
	err = json_string_value(json_object_get(d, "error"));
	if (err != NULL) {
		console_fail(e, strstr(err, " has no queue ") ? 404 : 503, "%s",
		             err);
		json_decref(d);
		return NULL;
	}
	return d;
}

/* ---- the pages ---- */

static const char *
jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s != NULL ? s : "";
}

static json_int_t
jint(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static void
group_sagas(struct http_response *r, const json_t *g)
{
	const json_t *s;
	size_t i;
	json_int_t more = jint(g, "sagas_more");

	json_array_foreach(json_object_get(g, "sagas"), i, s)
	{
		if (i == SAGAS_SHOWN) {
			more += (json_int_t)(json_array_size(json_object_get(
			                             g, "sagas")) -
			                     SAGAS_SHOWN);
			break;
		}
		console_html_saga(r, json_string_value(s));
		http_printf(r, " ");
	}
	if (more > 0)
		http_printf(r, "and %" JSON_INTEGER_FORMAT " more", more);
}

/* The buttons that replay or discard group g of queue (the script below
 * asks for a reason and posts). */
static void
group_buttons(struct http_response *r, const char *queue, const json_t *g)
{
	static const char *const verbs[] = {"replay", "discard"};

	for (size_t i = 0; i < ARRAY_LEN(verbs); i++) {
		http_printf(r,
		            "<button class=\"dlqact\" data-verb=\"%s\" "
		            "data-queue=\"",
		            verbs[i]);
		html_text(r, queue);
		http_printf(
		        r,
		        "\" data-key=\"%s\" data-expect=\"%" JSON_INTEGER_FORMAT
		        "\">%s %" JSON_INTEGER_FORMAT "</button> ",
		        jstr(g, "key"), jint(g, "count"), verbs[i],
		        jint(g, "count"));
	}
	http_printf(r, "<br>");
}

/* Asks for a reason, posts the group action with the count shown, says
 * the answer and reloads. Event delegation: the refresh swaps <main>. */
static const char act_script[] =
        "<script>document.addEventListener('click',function(ev){"
        "var b=ev.target;if(!b.classList||!b.classList.contains('dlqact'))"
        "return;var why=prompt(b.dataset.verb+' '+b.dataset.expect+"
        "' message(s) of this group: reason?');if(!why)return;"
        "fetch('/api/dlq/'+encodeURIComponent(b.dataset.queue)+'/groups/'+"
        "b.dataset.key+'/'+b.dataset.verb,{method:'POST',headers:{"
        "'Content-Type':'application/json','X-Saga-Console':'1'},body:"
        "JSON.stringify({expect:+b.dataset.expect,reason:why})}).then("
        "function(r){return r.json();}).then(function(d){alert(d.error?"
        "d.error:d.action+': '+d.done+' of '+d.expect+' done');"
        "location.reload();});});</script>";

/* The groups of one queue as a table, each with its sagactl commands. */
static void
groups_table(const struct console_dlq *c, struct http_response *r,
             const char *queue, const json_t *gs)
{
	const json_t *g;
	size_t i;

	http_printf(r, "<table class=\"groups\"><tr><th class=\"num\">"
	               "messages</th><th>reason</th><th>example</th><th>"
	               "sagas</th><th>replay or discard</th></tr>");
	json_array_foreach(gs, i, g)
	{
		http_printf(r,
		            "<tr data-key=\"%s\"><td class=\"num\">"
		            "%" JSON_INTEGER_FORMAT "</td><td><code>",
		            jstr(g, "key"), jint(g, "count"));
		html_text(r, jstr(g, "reason"));
		http_printf(r, "</code></td><td>");
		html_text(r, jstr(g, "example"));
		http_printf(r, "</td><td>");
		group_sagas(r, g);
		http_printf(r, "</td><td>");
		if (c->act_amqp[0] != '\0')
			group_buttons(r, queue, g);
		http_printf(r, "<code>sagactl dlq replay ");
		html_text(r, queue);
		http_printf(r,
		            " --group %s --expect %" JSON_INTEGER_FORMAT
		            "</code> (or <code>discard</code>)</td></tr>",
		            jstr(g, "key"), jint(g, "count"));
	}
	http_printf(r, "</table>");
}

static void
page_list(const struct console_dlq *c, const struct http_request *req,
          struct http_response *r)
{
	struct console_err e = {0};
	json_t *d = dlq_list_json(c, req, &e), *q;
	size_t i;

	if (d == NULL) {
		console_html_error(r, &e);
		return;
	}
	console_html_head(r, "dead letters");
	http_printf(r, "<h1>Dead letters</h1><p>Every queue named *.dlq the "
	               "broker has, its messages grouped by reason (ids and "
	               "numbers taken out): one fix serves a group.</p>"
	               "<table><tr><th>queue</th><th class=\"num\">messages"
	               "</th><th class=\"num\">consumers</th></tr>");
	json_array_foreach(json_object_get(d, "queues"), i, q)
	{
		http_printf(r, "<tr><td><a href=\"/dlq/");
		html_url(r, jstr(q, "queue"));
		http_printf(r, "\">");
		html_text(r, jstr(q, "queue"));
		http_printf(r,
		            "</a></td><td class=\"num\">%" JSON_INTEGER_FORMAT
		            "</td><td class=\"num\">%" JSON_INTEGER_FORMAT
		            "</td></tr>",
		            jint(q, "messages"), jint(q, "consumers"));
	}
	http_printf(r, "</table>");
	json_array_foreach(json_object_get(d, "queues"), i, q)
	{
		if (json_array_size(json_object_get(q, "groups")) == 0 &&
		    json_object_get(q, "error") == NULL)
			continue;
		http_printf(r, "<h2>");
		html_text(r, jstr(q, "queue"));
		http_printf(r, "</h2>");
		if (json_object_get(q, "error") != NULL) {
			http_printf(r, "<p class=\"error\">");
			html_text(r, jstr(q, "error"));
			http_printf(r, "</p>");
			continue;
		}
		groups_table(c, r, jstr(q, "queue"),
		             json_object_get(q, "groups"));
	}
	if (c->act_amqp[0] != '\0')
		http_printf(r, "%s", act_script);
	console_html_foot(r);
	json_decref(d);
}

static void
messages_table(struct http_response *r, const json_t *ms)
{
	const json_t *m;
	size_t i;

	http_printf(r, "<table class=\"messages\"><tr><th>message</th><th>"
	               "saga</th><th>type</th><th>reason</th><th class=\"num\">"
	               "attempts</th><th class=\"num\">age</th></tr>");
	json_array_foreach(ms, i, m)
	{
		http_printf(r, "<tr><td><code>");
		html_text(r, jstr(m, "message_id"));
		http_printf(r, "</code></td><td>");
		console_html_saga(r, jstr(m, "saga"));
		http_printf(r, "</td><td>");
		html_text(r, jstr(m, "type"));
		http_printf(r, "</td><td>");
		html_text(r, jstr(m, "reason"));
		http_printf(r,
		            "</td><td class=\"num\">%" JSON_INTEGER_FORMAT
		            "</td><td class=\"num\">",
		            jint(m, "attempts"));
		if (jint(m, "age_ms") >= 0)
			console_html_dur(r, (int64_t)jint(m, "age_ms"));
		else
			http_printf(r, "-");
		http_printf(r, "</td></tr>");
	}
	http_printf(r, "</table>");
}

static void
page_queue(const struct console_dlq *c, const char *queue,
           const struct http_request *req, struct http_response *r)
{
	struct console_err e = {0};
	json_t *d = dlq_queue_json(c, queue, req, &e);

	if (d == NULL) {
		console_html_error(r, &e);
		return;
	}
	console_html_head(r, queue);
	http_printf(r, "<h1>");
	html_text(r, queue);
	http_printf(r,
	            "</h1><p>The first %" JSON_INTEGER_FORMAT
	            " messages (at most %" JSON_INTEGER_FORMAT
	            "), oldest first.</p><h2>By reason</h2>",
	            jint(d, "peeked"), jint(d, "limit"));
	groups_table(c, r, queue, json_object_get(d, "groups"));
	http_printf(r, "<h2>Messages</h2>");
	messages_table(r, json_object_get(d, "messages"));
	if (c->act_amqp[0] != '\0')
		http_printf(r, "%s", act_script);
	console_html_foot(r);
	json_decref(d);
}

/* ---- routes ---- */

static void
answer(struct http_response *r, int status, json_t *doc)
{
	char *text = doc != NULL ? jsonout_text(doc) : NULL;

	json_decref(doc);
	r->status = text != NULL ? status : 503;
	r->content_type = "application/json";
	http_add_header(r, "Cache-Control", "no-store");
	http_printf(r, "%s\n",
	            text != NULL ? text
	                         : "{\"error\":\"out of "
	                           "memory\"}");
	free(text);
}

/* "QUEUE/groups/KEY/VERB" into its parts; false if it is not that. */
static bool
act_path(const char *p, char *queue, size_t qcap, char *key, size_t kcap,
         enum dlq_action *what)
{
	const char *g = strstr(p, "/groups/"), *k, *v;

	if (g == NULL || g == p || (size_t)(g - p) >= qcap)
		return false;
	k = g + strlen("/groups/");
	v = strchr(k, '/');
	if (v == NULL || v == k || (size_t)(v - k) >= kcap)
		return false;
	if (strcmp(v + 1, "replay") == 0)
		*what = DLQ_REPLAY;
	else if (strcmp(v + 1, "discard") == 0)
		*what = DLQ_DISCARD;
	else
		return false;
	snprintf(queue, qcap, "%.*s", (int)(g - p), p);
	snprintf(key, kcap, "%.*s", (int)(v - k), k);
	return is_dlq_name(queue) && strchr(queue, '/') == NULL;
}

/* {"expect": N, "reason": "..."}: 0, or -1 with the answer given. */
static int
act_body(const struct http_request *req, struct http_response *r, long *expect,
         char *reason, size_t cap)
{
	json_error_t je;
	json_t *b = req->body != NULL
	                    ? json_loadb(req->body, req->body_len, 0, &je)
	                    : NULL;
	json_t *n = json_object_get(b, "expect");
	const char *why = json_string_value(json_object_get(b, "reason"));
	int rc = -1;

	if (!json_is_integer(n) || json_integer_value(n) < 1)
		console_json_error(r, 400,
		                   "expect: the group's count, a whole "
		                   "number from 1 (what the page "
		                   "showed)");
	else if (why == NULL || why[0] == '\0')
		console_json_error(r, 400,
		                   "reason: say why (it goes in the "
		                   "log)");
	else {
		*expect = (long)json_integer_value(n);
		snprintf(reason, cap, "%s", why);
		rc = 0;
	}
	json_decref(b);
	return rc;
}

/* POST /api/dlq/QUEUE/groups/KEY/replay|discard. */
static void
act(struct console_dlq *c, const char *p, const struct http_request *req,
    struct http_response *r)
{
	char queue[256], key[DLQ_KEY_LEN + 1], actor[64], why[300], err[1024];
	struct dlq_act a = {.amqp = c->act_amqp,
	                    .ca_file = getenv("SAGA_AMQP_CA"),
	                    .cert_file = getenv("SAGA_AMQP_CERT"),
	                    .key_file = getenv("SAGA_AMQP_KEY")};
	struct dlq_act_result res;
	int rc;

	if (!act_path(p, queue, sizeof(queue), key, sizeof(key), &a.action)) {
		console_json_error(r, 404,
		                   "no such action: POST /api/dlq/"
		                   "QUEUE.dlq/groups/KEY/replay or "
		                   "discard");
		return;
	}
	if (console_guard(c->console, req, r, actor, sizeof(actor)) != 0 ||
	    act_body(req, r, &a.expect, why, sizeof(why)) != 0)
		return;
	if (c->act_amqp[0] == '\0') {
		console_json_error(r, 403,
		                   "this console has no --dlq-amqp "
		                   "(the operator's broker URL): use "
		                   "sagactl dlq replay|discard");
		return;
	}
	a.queue = queue;
	a.key = key;
	rc = dlq_group_act(&a, &res, err, sizeof(err));
	if (rc == 0)
		log_info("console: %s %s %ld of group %s in %s: %s", actor,
		         a.action == DLQ_REPLAY ? "replayed" : "discarded",
		         res.done, key, queue, why);
	if (rc == 0)
		console_json_answer(
		        r, 200,
		        json_pack("{s:s,s:s,s:s,s:I,s:I,s:s}", "queue", queue,
		                  "group", key, "action",
		                  a.action == DLQ_REPLAY ? "replay" : "discard",
		                  "expect", (json_int_t)a.expect, "done",
		                  (json_int_t)res.done, "actor", actor));
	else
		console_json_error(r, rc == 1 ? 409 : 502, err);
	dlq_act_result_clear(&res);
}

static void
api(void *arg, const struct http_request *req, struct http_response *r)
{
	const char *p = req->path + strlen("/api/dlq");
	struct console_err e = {404, ""};
	json_t *doc = NULL;

	if (strcmp(req->method, "POST") == 0) {
		act(arg, p[0] == '/' ? p + 1 : p, req, r);
		return;
	}
	if (!console_may_read(((struct console_dlq *)arg)->console, req)) {
		console_json_error(r, 401, "not logged in: POST /login first");
		return;
	}
	if (strcmp(p, "") == 0)
		doc = dlq_list_json(arg, req, &e);
	else if (p[0] == '/' && p[1] != '\0')
		doc = dlq_queue_json(arg, p + 1, req, &e);
	else
		console_fail(&e, 404, "no such API: %.200s", req->path);
	if (doc != NULL)
		answer(r, 200, doc);
	else
		answer(r, e.status,
		       json_pack("{s:o}", "error", jsonout_str(e.msg)));
}

static void
page(void *arg, const struct http_request *req, struct http_response *r)
{
	const char *p = req->path + strlen("/dlq");
	struct console_err e = {404, ""};

	if (!console_may_read(((struct console_dlq *)arg)->console, req)) {
		http_add_header(r, "Location", "/login");
		r->status = 303;
		return;
	}
	if (strcmp(p, "") == 0) {
		page_list(arg, req, r);
	} else if (p[0] == '/' && p[1] != '\0') {
		page_queue(arg, p + 1, req, r);
	} else {
		snprintf(e.msg, sizeof(e.msg), "no page %.200s", req->path);
		console_html_error(r, &e);
	}
}

struct console_dlq *
console_dlq_start(struct http *h, struct console *console, const char *amqp,
                  const char *mgmt_url, const char *act_amqp, char *err,
                  size_t errlen)
{
	struct console_dlq *c = calloc(1, sizeof(*c));
	char first[1024], where[300];
	const char *comma = amqp != NULL ? strchr(amqp, ',') : NULL;
	struct bus_url u;

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(first, sizeof(first), "%.*s",
	         (int)(comma != NULL ? (size_t)(comma - amqp)
	                             : strlen(amqp != NULL ? amqp : "")),
	         amqp != NULL ? amqp : "");
	if (bus_url_parse(first, &u, err, errlen) != 0 ||
	    (mgmt_url != NULL && mgmt_url[0] != '\0'
	             ? snprintf(c->mgmt, sizeof(c->mgmt), "%s", mgmt_url) < 0
	             : mgmt_default_url(first, c->mgmt, sizeof(c->mgmt), err,
	                                errlen) != 0)) {
		free(c);
		return NULL;
	}
	snprintf(c->vhost, sizeof(c->vhost), "%s", u.vhost);
	snprintf(c->act_amqp, sizeof(c->act_amqp), "%s",
	         act_amqp != NULL ? act_amqp : "");
	c->console = console;
	if (http_route(h, "/api/dlq", HTTP_GET | HTTP_POST, api, c) != 0 ||
	    http_route(h, "/dlq", HTTP_GET, page, c) != 0) {
		snprintf(err, errlen, "console: the HTTP route table is full");
		return NULL; /* a route may hold c: it stays (the daemon stops)
		              */
	}
	mgmt_redact(c->mgmt, where, sizeof(where));
	log_info("console: /dlq reads the dead-letter queues through the "
	         "management API at %s",
	         where);
	return c;
}

void
console_dlq_free(struct console_dlq *c)
{
	free(c);
}
