/* console_html.c -- the console's pages (console.h): server-rendered HTML
 * from the same JSON documents /api/ answers, with the style and the few
 * lines of script inline, so everything the console serves is in the
 * binary (no build step, no CDN, one request per page).
 *
 * Every text from the database or the request goes through html_text (and
 * into a URL through html_url): saga ids, order data and reasons come from
 * the network. Each page's URL holds its whole state (filters in the
 * query string), so an alert can link to it; the script only re-fetches
 * the same URL every few seconds and swaps <main> (no reload, no state of
 * its own).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "console_int.h"
#include "jsonout.h"

/* Who is looking at the page being rendered (console_page sets it for
 * the request, on the request's thread): the header's login link and
 * the actions read it, without threading it through every page. */
static _Thread_local const struct console_viewer *viewer;

static const char style[] =
        "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}"
        "header{background:#23395d;color:#fff;padding:8px 16px;display:flex;"
        "gap:18px;align-items:center}header a{color:#fff;text-decoration:"
        "none}header b{margin-right:12px}main{padding:12px 16px}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border-bottom:"
        "1px solid #ddd;padding:3px 10px;text-align:left;vertical-align:top}"
        "th{background:#f3f5f8}.num{text-align:right}code,pre{font:12px "
        "ui-monospace,monospace}pre{background:#f6f8fa;padding:8px;"
        "overflow:auto;max-width:100%}.s-completed{color:#1a7f37}"
        ".s-failed,.s-aborted,.s-cancelled{color:#cf222e}.s-stuck{color:"
        "#fff;background:#cf222e;padding:0 4px;border-radius:3px}"
        ".s-running,.s-compensating{color:#9a6700}form{margin:8px 0}"
        "input,select{margin-right:6px}.cards{display:flex;gap:12px;"
        "flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;"
        "padding:8px 14px;min-width:90px}.card b{font-size:22px;display:"
        "block}.heat a{display:inline-block;margin:2px;padding:6px 10px;"
        "border-radius:4px;color:#000;text-decoration:none}"

        "svg .state rect{fill:#fff;stroke:#888}svg .visited rect{fill:"
        "#dbeafe;stroke:#1d4ed8;stroke-width:2}svg .current rect{stroke:"
        "#ea580c;stroke-width:4}svg .undone rect{stroke:#cf222e;"
        "stroke-dasharray:5 3;stroke-width:2}svg .edge{fill:none;stroke:"
        "#bbb}svg .taken{stroke:#1d4ed8;stroke-width:3}svg text{font:12px "
        "system-ui,sans-serif}footer{color:#888;padding:8px 16px}"
        "#actions,#bulk{border:1px solid #bbb;border-radius:6px;padding:"
        "6px 12px;margin:10px 0}#act-panel,#bulk-panel{background:#f6f8fa;"
        "padding:6px 12px;margin:6px 0}.refused,.error,.rejected{color:"
        "#cf222e}.applied,.ok{color:#1a7f37}.muted{color:#666}"
        "header #user{font-weight:bold}";

/* Refreshes <main> from the same URL every 5 s while the box is ticked
 * (and no action preview is open: data-busy). */
static const char script[] =
        "<script>(function(){var box=document.getElementById('live');"
        "setInterval(function(){if(!box||!box.checked||document."
        "querySelector('[data-busy]'))return;"
        "fetch(location.href,{cache:'no-store'}).then(function(r){"
        "return r.text()}).then(function(t){var d=new DOMParser()"
        ".parseFromString(t,'text/html');var m=d.querySelector('main');"
        "if(m)document.querySelector('main').replaceWith(m)}).catch("
        "function(){})},5000)})();</script>";

void
html_text(struct http_response *r, const char *s)
{
	for (; s != NULL && *s != '\0'; s++) {
		switch (*s) {
		case '&':
			http_printf(r, "&amp;");
			break;
		case '<':
			http_printf(r, "&lt;");
			break;
		case '>':
			http_printf(r, "&gt;");
			break;
		case '"':
			http_printf(r, "&quot;");
			break;
		case '\'':
			http_printf(r, "&#39;");
			break;
		default:
			http_append(r, s, 1);
		}
	}
}

void
html_url(struct http_response *r, const char *s)
{
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-._~", c) != NULL)
			http_append(r, s, 1);
		else
			http_printf(r, "%%%02X", c);
	}
}

/* ---- small pieces ---- */

static const char *
jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s != NULL ? s : "";
}

static int64_t
jint(const json_t *o, const char *key)
{
	return (int64_t)json_integer_value(json_object_get(o, key));
}

static void
html_time(struct http_response *r, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char buf[40];

	if (ms <= 0 || gmtime_r(&t, &tm) == NULL) {
		http_printf(r, "-");
		return;
	}
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
	http_printf(r, "%s.%03d", buf, (int)(ms % 1000));
}

static void
html_dur(struct http_response *r, int64_t ms)
{
	if (ms < 1000)
		http_printf(r, "%" PRId64 " ms", ms);
	else if (ms < 120000)
		http_printf(r, "%.1f s", (double)ms / 1000.0);
	else if (ms < 7200000)
		http_printf(r, "%" PRId64 " min", ms / 60000);
	else if (ms < 172800000)
		http_printf(r, "%" PRId64 " h", ms / 3600000);
	else
		http_printf(r, "%" PRId64 " d", ms / 86400000);
}

static void
html_status(struct http_response *r, const char *status)
{
	http_printf(r, "<span class=\"s-");
	html_text(r, status);
	http_printf(r, "\">");
	html_text(r, status);
	http_printf(r, "</span>");
}

static void
saga_link(struct http_response *r, const char *id)
{
	http_printf(r, "<a href=\"/sagas/");
	html_url(r, id);
	http_printf(r, "\">");
	html_text(r, id);
	http_printf(r, "</a>");
}

static void
head(struct http_response *r, const char *title)
{
	r->content_type = "text/html; charset=utf-8";
	http_add_header(r, "Cache-Control", "no-store");
	http_add_header(r, "Content-Security-Policy",
	                "default-src 'self'; style-src 'unsafe-inline'; "
	                "script-src 'unsafe-inline'");
	http_printf(r, "<!DOCTYPE html><html lang=\"en\"><head><meta "
	               "charset=\"utf-8\"><title>");
	html_text(r, title);
	http_printf(r,
	            " - saga console</title><style>%s</style></head><body>"
	            "<header><b>saga console</b><a href=\"/\">summary</a>"
	            "<a href=\"/sagas\">sagas</a><a href=\"/stuck\">stuck"
	            "</a><a href=\"/charts\">charts</a><a href=\"/dlq\">"
	            "dead letters</a><span style=\""
	            "margin-left:auto;display:flex;gap:12px\">",
	            style);
	console_login_link(r, viewer);
	http_printf(r, "<label><input type=\"checkbox\" id=\"live\" "
	               "checked> live</label></span></header><main>");
}

static void
foot(struct http_response *r)
{
	http_printf(r,
	            "</main><footer>the JSON behind this page: "
	            "<a href=\"/api/summary\">/api/</a></footer>%s",
	            script);
	console_act_script(r);
	http_printf(r, "</body></html>\n");
}

static void
error_page(struct http_response *r, const struct console_err *e)
{
	r->status = e->status;
	head(r, "error");
	http_printf(r, "<h1>%d</h1><p class=\"error\">", e->status);
	html_text(r, e->msg);
	http_printf(r, "</p>");
	foot(r);
}

/* ---- / : the summary ---- */

static void
page_summary(struct store *st, struct http_response *r)
{
	struct console_err e = {0};
	json_t *d = console_summary_json(st, &e), *v, *tp;
	const char *k;
	size_t i;

	if (d == NULL) {
		error_page(r, &e);
		return;
	}
	head(r, "summary");
	http_printf(r,
	            "<h1>Summary</h1><div class=\"cards\">"
	            "<div class=\"card\"><b>%" PRId64 "</b>sagas</div>",
	            jint(d, "total"));
	json_object_foreach(json_object_get(d, "counts"), k, v)
	{
		http_printf(r,
		            "<div class=\"card\"><b>%" JSON_INTEGER_FORMAT
		            "</b><a href=\"/sagas?status=",
		            json_integer_value(v));
		html_url(r, k);
		http_printf(r, "\">");
		html_status(r, k);
		http_printf(r, "</a></div>");
	}
	tp = json_object_get(d, "throughput");
	http_printf(r,
	            "</div><h2>Throughput</h2><p>%" PRId64 " completed in "
	            "the last minute (%.2f/s), %" PRId64 " in the last "
	            "hour; %" PRId64 " failed in the last hour.</p>",
	            jint(tp, "completed_last_minute"),
	            json_real_value(json_object_get(
	                    tp, "completed_per_second_last_minute")),
	            jint(tp, "completed_last_hour"),
	            jint(tp, "failed_last_hour"));
	http_printf(r, "<h2>Step latency</h2><table><tr><th>state</th><th "
	               "class=\"num\">stays</th><th class=\"num\">p50</th><th "
	               "class=\"num\">p99</th></tr>");
	json_array_foreach(json_object_get(d, "steps"), i, v)
	{
		http_printf(r, "<tr><td>");
		html_text(r, jstr(v, "state"));
		http_printf(r,
		            "</td><td class=\"num\">%" PRId64 "</td><td "
		            "class=\"num\">",
		            jint(v, "n"));
		html_dur(r, jint(v, "p50_ms"));
		http_printf(r, "</td><td class=\"num\">");
		html_dur(r, jint(v, "p99_ms"));
		http_printf(r, "</td></tr>");
	}
	http_printf(r, "</table>");
	foot(r);
	json_decref(d);
}

/* ---- /sagas: filter form and table ---- */

static void
form_field(struct http_response *r, const struct http_request *req,
           const char *name, const char *label)
{
	const char *v = http_query(req, name);

	http_printf(r, "<label>%s <input name=\"%s\" size=\"12\" value=\"",
	            label, name);
	html_text(r, v);
	http_printf(r, "\"></label>");
}

static void
status_select(struct http_response *r, const char *cur)
{
	static const char *const names[] = {
	        "running", "compensating", "completed", "failed",
	        "stuck",   "aborted",      "cancelled"};

	http_printf(r, "<label>status <select name=\"status\"><option "
	               "value=\"\">any</option>");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		http_printf(r, "<option%s>%s</option>",
		            cur != NULL && strcmp(cur, names[i]) == 0
		                    ? " selected"
		                    : "",
		            names[i]);
	http_printf(r, "</select></label>");
}

/* The link to the next page: this URL's filter with after=NEXT. */
static void
next_link(struct http_response *r, const struct http_request *req,
          const char *next)
{
	static const char *const keys[] = {"status",    "chart",      "state",
	                                   "id_prefix", "older_than", "q",
	                                   "limit"};

	http_printf(r, "<p><a id=\"next\" href=\"/sagas?");
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *v = http_query(req, keys[i]);
		if (v == NULL || v[0] == '\0')
			continue;
		http_printf(r, "%s=", keys[i]);
		html_url(r, v);
		http_printf(r, "&amp;");
	}
	http_printf(r, "after=");
	html_url(r, next);
	http_printf(r, "\">next page &rarr;</a></p>");
}

static void
sagas_table(struct http_response *r, const json_t *rows, int64_t now)
{
	const json_t *s;
	size_t i;

	http_printf(r, "<table id=\"sagas\"><tr><th>id</th><th>chart</th>"
	               "<th>status</th><th>state</th><th class=\"num\">"
	               "attempt</th><th>started (UTC)</th><th>in state</th>"
	               "</tr>");
	json_array_foreach(rows, i, s)
	{
		http_printf(r, "<tr><td>");
		saga_link(r, jstr(s, "id"));
		http_printf(r, "</td><td>");
		html_text(r, jstr(s, "chart"));
		http_printf(r, "</td><td>");
		html_status(r, jstr(s, "status"));
		http_printf(r, "</td><td>");
		html_text(r, jstr(s, "state"));
		http_printf(r, "</td><td class=\"num\">%" PRId64 "</td><td>",
		            jint(s, "attempt"));
		html_time(r, jint(s, "started_at"));
		http_printf(r, "</td><td>");
		html_dur(r, now - jint(s, "state_entered_at"));
		http_printf(r, "</td></tr>");
	}
	http_printf(r, "</table>");
}

static void
page_sagas(struct store *st, const struct http_request *req,
           struct http_response *r)
{
	struct console_err e = {0};
	json_t *d = console_sagas_json(st, req, &e);

	head(r, "sagas");
	http_printf(r, "<h1>Sagas</h1><form method=\"get\" action=\"/sagas\">");
	status_select(r, http_query(req, "status"));
	form_field(r, req, "chart", "chart");
	form_field(r, req, "state", "state");
	form_field(r, req, "id_prefix", "id starts");
	form_field(r, req, "older_than", "older than");
	form_field(r, req, "q", "order data");
	http_printf(r, "<button>filter</button> <a href=\"/sagas\">clear</a>"
	               "</form>");
	if (d == NULL) {
		r->status = e.status;
		http_printf(r, "<p class=\"error\">");
		html_text(r, e.msg);
		http_printf(r, "</p>");
	} else {
		console_bulk_form(r,
		                  json_array_size(json_object_get(d, "sagas")));
		sagas_table(r, json_object_get(d, "sagas"), clock_wall_ms());
		const char *next =
		        json_string_value(json_object_get(d, "next"));
		if (next != NULL)
			next_link(r, req, next);
	}
	foot(r);
	json_decref(d);
}

/* ---- /sagas/ID ---- */

static void
saga_facts(struct http_response *r, const json_t *d, int64_t now)
{
	const json_t *t = json_object_get(d, "timer");

	http_printf(r, "<table class=\"facts\"><tr><th>status</th><td>");
	html_status(r, jstr(d, "status"));
	http_printf(r, "</td></tr><tr><th>state</th><td>");
	html_text(r, jstr(d, "state"));
	http_printf(r, " (");
	html_text(r, jstr(d, "phase"));
	http_printf(r, ", attempt %" PRId64 ") for ", jint(d, "attempt"));
	html_dur(r, now - jint(d, "state_entered_at"));
	http_printf(r, "</td></tr><tr><th>chart</th><td>");
	html_text(r, jstr(d, "chart"));
	http_printf(r, " <code>");
	html_text(r, jstr(d, "chart_version"));
	http_printf(r, "</code></td></tr><tr><th>started</th><td>");
	html_time(r, jint(d, "started_at"));
	http_printf(r, " UTC</td></tr><tr><th>timer</th><td id=\"timer\">");
	if (json_is_object(t)) {
		http_printf(r, "fires ");
		html_time(r, jint(t, "fire_at"));
		http_printf(r, " UTC (in ");
		html_dur(r, jint(t, "fire_at") - now);
		http_printf(r, ")");
	} else {
		http_printf(r, "none");
	}
	http_printf(r, "</td></tr><tr><th>trace</th><td><code>");
	html_text(r, jstr(d, "trace"));
	http_printf(r, "</code></td></tr></table>");
}

static void
saga_undo(struct http_response *r, const json_t *d)
{
	const json_t *plan = json_object_get(d, "compensation"), *u;
	size_t i;

	http_printf(r, "<h2>What compensating now would run</h2>");
	if (!json_is_array(plan) || json_array_size(plan) == 0) {
		http_printf(r, "<p id=\"undo\">nothing</p>");
		return;
	}
	http_printf(r, "<ol id=\"undo\">");
	json_array_foreach(plan, i, u)
	{
		http_printf(r, "<li><code>");
		html_text(r, jstr(u, "command"));
		http_printf(r, "</code> to ");
		html_text(r, jstr(u, "to"));
		http_printf(r, " (undoes ");
		html_text(r, jstr(u, "state"));
		http_printf(r, "%s), id <code>",
		            json_is_true(json_object_get(u, "outcome_unknown"))
		                    ? ", outcome unknown"
		                    : "");
		html_text(r, jstr(u, "message_id"));
		http_printf(r, "</code></li>");
	}
	http_printf(r, "</ol>");
}

static void
saga_timeline(struct http_response *r, const json_t *d)
{
	const json_t *h;
	size_t i;

	http_printf(r, "<h2>Timeline</h2><table id=\"timeline\"><tr><th>at "
	               "(UTC)</th><th>kind</th><th>state</th><th>status</th>"
	               "<th>detail</th></tr>");
	json_array_foreach(json_object_get(d, "history"), i, h)
	{
		http_printf(r, "<tr><td>");
		html_time(r, jint(h, "at"));
		http_printf(r, "</td><td>");
		html_text(r, jstr(h, "kind"));
		http_printf(r, "</td><td>");
		html_text(r, jstr(h, "state"));
		http_printf(r, "</td><td>");
		html_status(r, jstr(h, "status"));
		http_printf(r, "</td><td>");
		html_text(r, jstr(h, "detail"));
		if (json_object_get(h, "actor") != NULL) {
			http_printf(r, " by ");
			html_text(r, jstr(h, "actor"));
		}
		if (json_object_get(h, "reason") != NULL) {
			http_printf(r, ": ");
			html_text(r, jstr(h, "reason"));
		}
		http_printf(r, "</td></tr>");
	}
	http_printf(r, "</table>");
}

/* The saga's events from the stream audit (console_saga_audit). */
static void
saga_events(struct http_response *r, const json_t *d)
{
	const json_t *a = json_object_get(d, "audit"), *ev;
	const char *err = jstr(a, "error"), *note = jstr(a, "note");
	size_t i;

	http_printf(r, "<h2>Events (stream audit)</h2><div id=\"events\">");
	if (err[0] != '\0') {
		http_printf(r, "<p class=\"error\" id=\"events-error\">");
		html_text(r, err);
		http_printf(r, "</p></div>");
		return;
	}
	http_printf(r, "<table><tr><th>at (UTC)</th><th>type</th><th>"
	               "message id</th><th>status</th></tr>");
	json_array_foreach(json_object_get(a, "events"), i, ev)
	{
		const json_t *p = json_object_get(ev, "payload");
		http_printf(r, "<tr class=\"event\"><td>");
		html_time(r, jint(ev, "at"));
		http_printf(r, "</td><td>");
		html_text(r, jstr(ev, "type"));
		http_printf(r, "</td><td><code>");
		html_text(r, jstr(ev, "message_id"));
		http_printf(r, "</code></td><td>");
		html_text(r, jstr(p, "saga_status"));
		http_printf(r, "</td></tr>");
	}
	http_printf(r, "</table><p class=\"%s\">",
	            json_is_true(json_object_get(a, "complete")) ? "muted"
	                                                         : "error");
	html_text(r, note);
	http_printf(r, "</p></div>");
}

static void
page_saga(struct store *st, const char *id, struct http_response *r)
{
	struct console_err e = {0};
	struct chart *c = NULL;
	struct chart_walk w = {0};
	json_t *d = console_saga_json(st, id, &e, &c, &w);
	char *data;

	if (d == NULL) {
		error_page(r, &e);
		return;
	}
	console_saga_audit(viewer != NULL ? viewer->audit_amqp : NULL, d);
	head(r, id);
	http_printf(r, "<h1>Saga ");
	html_text(r, id);
	http_printf(r, "</h1>");
	saga_facts(r, d, clock_wall_ms());
	console_actions_section(r, id, jstr(d, "status"), jstr(d, "state"),
	                        viewer);
	http_printf(r, "<h2>Statechart</h2>");
	if (c != NULL)
		console_svg(r, c, &w, jstr(d, "state"));
	else
		html_text(r, jstr(d, "chart_error"));
	saga_undo(r, d);
	/* indented for reading (the API's JSON is compact) */
	data = json_dumps(json_object_get(d, "data"),
	                  JSON_INDENT(2) | JSON_PRESERVE_ORDER |
	                          JSON_ENCODE_ANY);
	http_printf(r, "<h2>Data</h2><pre id=\"data\">");
	html_text(r, data);
	http_printf(r, "</pre>");
	free(data);
	saga_timeline(r, d);
	saga_events(r, d);
	foot(r);
	chart_walk_release(&w);
	chart_free(c);
	json_decref(d);
}

/* ---- /stuck ---- */

/* "stuck_after 30 min", "for 10 min", or "status" (limit is null). */
static void
stuck_limit(struct http_response *r, const json_t *limit)
{
	if (!json_is_object(limit)) {
		http_printf(r, "status");
		return;
	}
	html_text(r, jstr(limit, "from"));
	http_printf(r, " ");
	html_dur(r, jint(limit, "ms"));
}

static void
page_stuck(struct store *st, const struct http_request *req,
           struct http_response *r)
{
	struct console_err e = {0};
	json_t *d = console_stuck_json(st, req, &e), *s;
	size_t i;

	if (d == NULL) {
		error_page(r, &e);
		return;
	}
	head(r, "stuck");
	http_printf(r, "<h1>Stuck sagas</h1><p>Status <em>stuck</em> (a "
	               "compensation failed all its attempts), then any "
	               "running or compensating saga in one state for longer "
	               "than the state's <code>stuck_after</code> (its "
	               "chart says), or where the state has none, for over ");
	html_dur(r, jint(d, "waiting_over_ms"));
	http_printf(r, " (<code>?for=30m</code> to change).</p><table "
	               "id=\"stuck\"><tr><th>id</th><th>status</th><th>state"
	               "</th><th>for</th><th>limit</th><th>why</th></tr>");
	json_array_foreach(json_object_get(d, "stuck"), i, s)
	{
		const json_t *why = json_object_get(s, "why");
		http_printf(r, "<tr><td>");
		saga_link(r, jstr(s, "id"));
		http_printf(r, "</td><td>");
		html_status(r, jstr(s, "status"));
		http_printf(r, "</td><td>");
		html_text(r, jstr(s, "state"));
		http_printf(r, "</td><td>");
		html_dur(r, jint(s, "for_ms"));
		http_printf(r, "</td><td class=\"limit\" title=\"");
		html_text(r, jstr(s, "text"));
		http_printf(r, "\">");
		stuck_limit(r, json_object_get(s, "limit"));
		http_printf(r, "</td><td>");
		html_text(r, jstr(why, "kind"));
		http_printf(r, ": ");
		html_text(r, jstr(why, "detail"));
		http_printf(r, "</td></tr>");
	}
	http_printf(r, "</table>");
	foot(r);
	json_decref(d);
}

/* ---- /charts: versions and the heat map ---- */

/* A heat colour for n of max: white to red. */
static void
heat(struct http_response *r, const char *chart, const json_t *state,
     int64_t max)
{
	int64_t n = jint(state, "sagas");
	int a = max > 0 ? (int)(n * 200 / max) : 0;

	http_printf(r,
	            "<a class=\"heat-state\" style=\"background:rgb(255,"
	            "%d,%d)\" href=\"/sagas?chart=",
	            255 - a, 255 - a);
	html_url(r, chart);
	http_printf(r, "&amp;state=");
	html_url(r, jstr(state, "state"));
	http_printf(r, "\" title=\"");
	html_text(r, jstr(state, "type"));
	http_printf(r, "\">");
	html_text(r, jstr(state, "state"));
	http_printf(r, " <b>%" PRId64 "</b></a>", n);
}

static void
chart_versions(struct http_response *r, const json_t *ch)
{
	const json_t *v;
	const char *k;
	json_t *n;
	size_t i;

	http_printf(r, "<table><tr><th>version</th><th>loaded (UTC)</th><th>"
	               "file</th><th class=\"num\">sagas</th><th>by status"
	               "</th></tr>");
	json_array_foreach(json_object_get(ch, "versions"), i, v)
	{
		http_printf(r, "<tr><td><code>");
		html_text(r, jstr(v, "version"));
		http_printf(r, "</code></td><td>");
		html_time(r, jint(v, "loaded_at"));
		http_printf(r, "</td><td>");
		html_text(r, jstr(v, "file"));
		http_printf(r, "</td><td class=\"num\">%" PRId64 "</td><td>",
		            jint(v, "sagas"));
		json_object_foreach(json_object_get(v, "by_status"), k, n)
		{
			html_status(r, k);
			http_printf(r, " %" JSON_INTEGER_FORMAT " ",
			            json_integer_value(n));
		}
		http_printf(r, "</td></tr>");
	}
	http_printf(r, "</table>");
}

static void
page_charts(struct store *st, struct http_response *r)
{
	struct console_err e = {0};
	json_t *d = console_charts_json(st, &e), *ch, *s;
	size_t i, j;

	if (d == NULL) {
		error_page(r, &e);
		return;
	}
	head(r, "charts");
	http_printf(r, "<h1>Charts</h1>");
	json_array_foreach(json_object_get(d, "charts"), i, ch)
	{
		int64_t max = 0;
		http_printf(r, "<h2>");
		html_text(r, jstr(ch, "name"));
		http_printf(r, "</h2>");
		chart_versions(r, ch);
		json_array_foreach(json_object_get(ch, "states"), j,
		                   s) if (jint(s, "sagas") > max) max =
		        jint(s, "sagas");
		http_printf(r, "<h3>Sagas per state</h3><div class=\"heat\">");
		json_array_foreach(json_object_get(ch, "states"), j, s)
		        heat(r, jstr(ch, "name"), s, max);
		http_printf(r, "</div>");
	}
	foot(r);
	json_decref(d);
}

void
console_login_page(const struct http_request *req, struct http_response *r,
                   const struct console_viewer *v)
{
	(void)req;
	viewer = v;
	head(r, "log in");
	http_printf(r, "<h1>Log in</h1>");
	if (!v->can_login)
		http_printf(r, "<p class=\"error\">no console users: start "
		               "the orchestrator with --console-users FILE "
		               "(docs/console.md)</p>");
	else if (v->user != NULL) {
		http_printf(r, "<p>logged in as <b>");
		html_text(r, v->user);
		http_printf(r, "</b></p>");
	}
	http_printf(r, "<form id=\"login\"><label>user <input "
	               "id=\"login-user\" autocomplete=\"username\"></label> "
	               "<label>password <input id=\"login-password\" "
	               "type=\"password\" autocomplete=\"current-password\">"
	               "</label> <button id=\"login-submit\">log in</button>"
	               "</form><div id=\"login-result\"></div>");
	foot(r);
	viewer = NULL;
}

void
console_page(struct store *st, const struct http_request *req,
             struct http_response *r, const struct console_viewer *v)
{
	const char *p = req->path;
	struct console_err e = {404, ""};

	viewer = v;
	if (strcmp(p, "/") == 0) {
		page_summary(st, r);
	} else if (strcmp(p, "/sagas") == 0) {
		page_sagas(st, req, r);
	} else if (strncmp(p, "/sagas/", 7) == 0 && p[7] != '\0') {
		page_saga(st, p + 7, r);
	} else if (strcmp(p, "/stuck") == 0) {
		page_stuck(st, req, r);
	} else if (strcmp(p, "/charts") == 0) {
		page_charts(st, r);
	} else {
		snprintf(e.msg, sizeof(e.msg), "no page %.200s", p);
		error_page(r, &e);
	}
	viewer = NULL;
}

/* ---- for the other pages' files (console_int.h) ---- */

void
console_html_head(struct http_response *r, const char *title)
{
	head(r, title);
}

void
console_html_foot(struct http_response *r)
{
	foot(r);
}

void
console_html_saga(struct http_response *r, const char *id)
{
	saga_link(r, id);
}

void
console_html_dur(struct http_response *r, int64_t ms)
{
	html_dur(r, ms);
}

void
console_html_error(struct http_response *r, const struct console_err *e)
{
	error_page(r, e);
}
