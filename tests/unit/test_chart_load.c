/* The statechart loader/validator: every file in tests/statecharts/broken
 * produces exactly the error its first line announces ("# expect:
 * LINE:COL: message"); statecharts/order.yaml and every file in
 * tests/statecharts/valid load; the version ignores comments, layout and
 * key order but follows the content; durations parse as documented. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "chart_load.h"
#include "testutil.h"

static int
cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted *.yaml names of a folder (NULL-terminated, malloc'd). */
static char **
list(const char *dir, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **v = calloc(256, sizeof(char *));
	*n = 0;
	while (d != NULL && (e = readdir(d)) != NULL && *n < 255) {
		size_t l = strlen(e->d_name);
		if (l > 5 && strcmp(e->d_name + l - 5, ".yaml") == 0)
			asprintf(&v[(*n)++], "%s/%s", dir, e->d_name);
	}
	if (d != NULL)
		closedir(d);
	qsort(v, *n, sizeof(char *), cmp);
	return v;
}

static void
free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void
test_broken_files(void)
{
	size_t n;
	char **files = list("tests/statecharts/broken", &n);
	CHECK_MSG(n >= 25, "only %zu broken statecharts", n);
	for (size_t i = 0; i < n; i++) {
		char *text = testutil_slurp(files[i], NULL);
		char want[700], *nl;
		const char *exp;
		struct chart_errors errs;
		struct chart *c;
		bool found = false;

		CHECK(text != NULL);
		CHECK_MSG(strncmp(text, "# expect: ", 10) == 0,
		          "%s: no # expect: line", files[i]);
		exp = text + 10;
		nl = strchr(text, '\n');
		if (nl != NULL)
			*nl = '\0';
		snprintf(want, sizeof(want), "%s:%s%s", files[i],
		         exp[0] >= '0' && exp[0] <= '9' ? "" : " ", exp);
		free(text);
		chart_errors_init(&errs);
		c = chart_load_file(files[i], &errs);
		CHECK_MSG(c == NULL, "%s loaded", files[i]);
		CHECK_MSG(errs.count > 0, "%s: no error", files[i]);
		for (size_t k = 0; k < errs.count; k++)
			found |= strcmp(errs.items[k].text, want) == 0;
		CHECK_MSG(found, "%s:\n  want %s\n  got  %s", files[i], want,
		          errs.items[0].text);
		chart_errors_clear(&errs);
	}
	free_list(files, n);
}

static void
test_valid_files(void)
{
	size_t n;
	char **files = list("tests/statecharts/valid", &n);
	for (size_t i = 0; i < n; i++) {
		struct chart_errors errs;
		struct chart *c;
		chart_errors_init(&errs);
		c = chart_load_file(files[i], &errs);
		CHECK_MSG(c != NULL, "%s: %s", files[i],
		          errs.count ? errs.items[0].text : "?");
		chart_free(c);
		chart_errors_clear(&errs);
	}
	free_list(files, n);
}

static void
test_order_yaml(void)
{
	struct chart_errors errs;
	struct chart *c;
	const struct chart_state *pay, *res;
	int i;

	chart_errors_init(&errs);
	c = chart_load_file("statecharts/order.yaml", &errs);
	CHECK_MSG(c != NULL, "%s", errs.count ? errs.items[0].text : "?");
	CHECK_STR(c->name, "order");
	CHECK_EQ(c->nstates, 6);
	CHECK_STR(c->states[c->initial].name, "reserve_stock");
	CHECK_STR(c->states[c->failure].name, "failed");
	i = chart_state_index(c, "payment");
	CHECK(i >= 0);
	pay = &c->states[i];
	CHECK_EQ(pay->type, STATE_STEP);
	CHECK_STR(pay->route, "{payment_method}");
	CHECK_EQ(pay->retry.attempts, 4);
	CHECK_EQ(pay->timeout_ms, 5000); /* from defaults */
	CHECK(pay->compensate != NULL);
	CHECK_STR(pay->compensate->command, "payment.refund");
	CHECK_STR(pay->compensate->route, "{payment_method}"); /* inherited */
	CHECK_EQ(pay->compensate->retry.attempts, 5);          /* default */
	CHECK_EQ(chart_step_reply(pay, "payment.unavailable")->kind,
	         REPLY_RETRY);
	CHECK_EQ(chart_step_reply(pay, "payment.declined")->kind, REPLY_FAIL);
	CHECK_EQ(pay->exhausted_target, c->failure);
	res = &c->states[c->initial];
	CHECK_STR(res->emit, "order.inventory_checked");
	CHECK_STR(c->states[chart_state_index(c, "completed")].emit,
	          "order.completed");
	CHECK_EQ(strlen(c->version), 16);
	chart_free(c);
	chart_errors_clear(&errs);
}

static struct chart *
load_text(const char *text)
{
	struct chart_errors errs;
	struct chart *c;
	chart_errors_init(&errs);
	c = chart_load_buffer("mem.yaml", text, strlen(text), &errs);
	if (c == NULL && errs.count > 0)
		fprintf(stderr, "%s\n", errs.items[0].text);
	chart_errors_clear(&errs);
	return c;
}

static void
test_version(void)
{
	static const char a[] =
	        "saga: t\ninitial: a\nstates:\n  a:\n    type: step\n"
	        "    to: p\n    command: p.do\n    timeout: 5s\n"
	        "    on: {p.ok: done, p.no: {fail: failed}}\n"
	        "  done: {type: final}\n  failed: {type: final}\n";
	/* comments, flow/block style, quoting and key order differ */
	static const char b[] =
	        "# a comment\nstates:\n  a:\n    on:\n      \"p.no\": {fail: "
	        "failed}\n      p.ok: \"done\"\n    command: p.do\n"
	        "    type: step\n    timeout: \"5s\"\n    to: p\n"
	        "  done:\n    type: final\n  failed: {type: final}\n"
	        "initial: a\nsaga: t   # name\n";
	static const char changed[] =
	        "saga: t\ninitial: a\nstates:\n  a:\n    type: step\n"
	        "    to: p\n    command: p.do\n    timeout: 6s\n"
	        "    on: {p.ok: done, p.no: {fail: failed}}\n"
	        "  done: {type: final}\n  failed: {type: final}\n";
	struct chart *ca = load_text(a), *cb = load_text(b),
	             *cc = load_text(changed);
	CHECK(ca != NULL && cb != NULL && cc != NULL);
	CHECK_STR(ca->version, cb->version);
	CHECK(strcmp(ca->version, cc->version) != 0);
	chart_free(ca);
	chart_free(cb);
	chart_free(cc);
}

/* The fields count by path and type, not by their order in the file. */
static void
test_version_fields(void)
{
	static const char base[] =
	        "saga: t\ninitial: a\nfailure: done\nfields: {%s}\n"
	        "states:\n  a:\n"
	        "    type: step\n    to: p\n    command: p.do\n"
	        "    on: {p.ok: done}\n  done: {type: final}\n";
	static const char *const variants[] = {
	        "order_id: string, items: list, total.cents: integer",
	        "total.cents: integer, order_id: string, items: list",
	        "items: list, total.cents: integer, order_id: string",
	        "order_id: string, items: list, total.cents: number",
	        "order_id: string, items: list, total.euros: integer",
	        "order_id: string, items: list",
	};
	char v[6][17], t[512];

	for (size_t i = 0; i < 6; i++) {
		struct chart *c;
		snprintf(t, sizeof(t), base, variants[i]);
		c = load_text(t);
		CHECK(c != NULL);
		if (c == NULL)
			return;
		CHECK_EQ((int)c->nfields, i == 5 ? 2 : 3);
		memcpy(v[i], c->version, sizeof(v[i]));
		chart_free(c);
	}
	CHECK_STR(v[0], v[1]);
	CHECK_STR(v[0], v[2]);
	for (size_t i = 3; i < 6; i++)
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(v[i], v[j]) != 0);
}

/* stuck_after: a state's own, else the chart's default for steps and
 * parallel states (not waits, not states in a branch); the version
 * changes with it, and a chart without it keeps its version. */
static void
test_stuck_after(void)
{
	static const char base[] =
	        "saga: t\ninitial: a\n%s"
	        "states:\n  a:\n    type: step\n    to: p\n    command: p.do\n"
	        "%s    on: {p.ok: w, p.no: {fail: failed}}\n"
	        "  w: {type: wait, duration: 1s, next: b%s}\n"
	        "  b:\n    type: step\n    to: p\n    command: p.do2\n"
	        "    on: {p.ok2: done}\n"
	        "  done: {type: final}\n  failed: {type: final}\n";
	char t[1024];
	struct chart *plain, *own, *def, *other;

	snprintf(t, sizeof(t), base, "", "", "");
	plain = load_text(t);
	snprintf(t, sizeof(t), base, "", "    stuck_after: 30m\n",
	         ", stuck_after: 2h");
	own = load_text(t);
	snprintf(t, sizeof(t), base, "defaults: {stuck_after: 1h}\n",
	         "    stuck_after: 30m\n", "");
	def = load_text(t);
	snprintf(t, sizeof(t), base, "", "    stuck_after: 31m\n",
	         ", stuck_after: 2h");
	other = load_text(t);
	CHECK(plain != NULL && own != NULL && def != NULL && other != NULL);
	for (size_t i = 0; i < plain->nstates; i++)
		CHECK_EQ(plain->states[i].stuck_after_ms, 0);
	CHECK_EQ(own->states[chart_state_index(own, "a")].stuck_after_ms,
	         30 * 60000);
	CHECK_EQ(own->states[chart_state_index(own, "w")].stuck_after_ms,
	         120 * 60000);
	CHECK_EQ(own->states[chart_state_index(own, "b")].stuck_after_ms, 0);
	/* the default: steps without their own; not the wait */
	CHECK_EQ(def->states[chart_state_index(def, "a")].stuck_after_ms,
	         30 * 60000);
	CHECK_EQ(def->states[chart_state_index(def, "b")].stuck_after_ms,
	         60 * 60000);
	CHECK_EQ(def->states[chart_state_index(def, "w")].stuck_after_ms, 0);
	CHECK_EQ(def->states[chart_state_index(def, "done")].stuck_after_ms, 0);
	CHECK(strcmp(plain->version, own->version) != 0);
	CHECK(strcmp(own->version, other->version) != 0);
	CHECK(strcmp(own->version, def->version) != 0);
	chart_free(plain);
	chart_free(own);
	chart_free(def);
	chart_free(other);
}

/* Every chart in statecharts/examples loads; dunning.yaml bounds its
 * loop on `pause`. */
static void
test_examples(void)
{
	size_t n;
	char **files = list("statecharts/examples", &n);
	CHECK_MSG(n >= 1, "no examples");
	for (size_t i = 0; i < n; i++) {
		struct chart_errors errs;
		struct chart *c;
		chart_errors_init(&errs);
		c = chart_load_file(files[i], &errs);
		CHECK_MSG(c != NULL, "%s: %s", files[i],
		          errs.count ? errs.items[0].text : "?");
		if (c != NULL && strcmp(c->name, "dunning") == 0) {
			int p = chart_state_index(c, "pause");
			CHECK(p >= 0 && c->states[p].max_visits == 2);
			CHECK_EQ(c->states[p].too_many_kind, REPLY_FAIL);
			CHECK_EQ(c->states[p].too_many_target, c->failure);
		}
		chart_free(c);
		chart_errors_clear(&errs);
	}
	free_list(files, n);
}

/* A chart's version names it in every saga that runs on it: the same
 * file must keep its version across releases, or a reload would take an
 * unchanged chart for a new one. These are the shipped charts' and the
 * test charts' versions (between them: compensation, choices, waits,
 * deadlines, stuck_after, max_visits, parallel states, cancel). */
static void
test_version_pinned(void)
{
	static const struct {
		const char *file, *version;
	} pin[] = {
	        {"statecharts/order.yaml", "0cca27dff0067fe4"},
	        {"statecharts/examples/cancellable.yaml", "e8102eab5ef70b4c"},
	        {"statecharts/examples/dunning.yaml", "e0bdc427868c3b43"},
	        {"statecharts/examples/parallel.yaml", "c158c3c676ec929e"},
	        {"tests/statecharts/valid/engine_long.yaml",
	         "1d3baa2aad6a9b9f"},
	        {"tests/statecharts/valid/engine_loop.yaml",
	         "ff4d370ab03901fe"},
	        {"tests/statecharts/valid/engine_parallel.yaml",
	         "076723055c28c588"},
	        {"tests/statecharts/valid/engine_wait.yaml",
	         "34f4e6d079821c15"},
	};

	for (size_t i = 0; i < sizeof(pin) / sizeof(pin[0]); i++) {
		struct chart_errors errs;
		struct chart *c;
		chart_errors_init(&errs);
		c = chart_load_file(pin[i].file, &errs);
		CHECK_MSG(c != NULL, "%s", pin[i].file);
		if (c != NULL)
			CHECK_MSG(strcmp(c->version, pin[i].version) == 0,
			          "%s: version %s, pinned %s", pin[i].file,
			          c->version, pin[i].version);
		chart_free(c);
		chart_errors_clear(&errs);
	}
}

/* The first error of loading `text`, without the file name. */
static const char *
first_error(const char *text)
{
	static char buf[600];
	struct chart_errors errs;
	struct chart *c;

	chart_errors_init(&errs);
	c = chart_load_buffer("m.yaml", text, strlen(text), &errs);
	snprintf(buf, sizeof(buf), "%s",
	         errs.count > 0 ? errs.items[0].text + 7 : "(loaded)");
	chart_free(c);
	chart_errors_clear(&errs);
	return buf;
}

/* Misspelt targets, fields and reply types get the closest name; names
 * that are nowhere near get none. */
static void
test_did_you_mean(void)
{
	static const char head[] =
	        "saga: t\nfailure: done\nfields: {order_id: string}\nstates:\n"
	        "  a:\n    type: step\n    to: p\n    command: p.do\n";
	char t[1024];

	snprintf(t, sizeof(t),
	         "initial: aa\n%s    on: {p.done: done}\n"
	         "  done: {type: final}\n",
	         head);
	CHECK_STR(first_error(t),
	          "1:10: \"initial\" \"aa\" is not a state (did you mean "
	          "\"a\"?)");
	snprintf(t, sizeof(t),
	         "initial: a\n%s    on: {p.done: w}\n    save: [charge_id]\n"
	         "  w: {type: wait, duration: 1s, next: dnoe}\n"
	         "  done: {type: final}\n",
	         head);
	CHECK_STR(first_error(t), "12:39: \"next\" \"dnoe\" is not a state "
	                          "(did you mean \"done\"?)");
	snprintf(t, sizeof(t),
	         "initial: a\n%s    on: {p.done: b}\n    save: [charge_id]\n"
	         "  b:\n    type: step\n    to: q\n    command: q.do\n"
	         "    pass: [charge_ide]\n    on: {q.done: done}\n"
	         "  done: {type: final}\n",
	         head);
	CHECK_STR(first_error(t),
	          "12:3: state \"b\" passes field \"charge_ide\", which is "
	          "neither declared under fields: nor saved from a reply (did "
	          "you mean \"charge_id\"?)");
	snprintf(t, sizeof(t),
	         "initial: a\n%s    on: {p.done: zzzzzz}\n"
	         "  done: {type: final}\n",
	         head);
	CHECK_STR(first_error(t), "10:18: reply target \"zzzzzz\" is not a "
	                          "state");
	snprintf(t, sizeof(t),
	         "initial: a\n%s    on: {p.done: done}\n"
	         "    compensate: {command: p.undo, ok: [pp.undone]}\n"
	         "  done: {type: final}\n",
	         head);
	CHECK_STR(first_error(t),
	          "11:40: ok reply \"pp.undone\" does not start with \"p.\" "
	          "as its command \"p.undo\" does (did you mean "
	          "\"p.undone\"?)");
}

static void
test_durations(void)
{
	int64_t ms = 0;
	CHECK(chart_parse_duration("250ms", &ms) == 0 && ms == 250);
	CHECK(chart_parse_duration("10s", &ms) == 0 && ms == 10000);
	CHECK(chart_parse_duration("5m", &ms) == 0 && ms == 300000);
	CHECK(chart_parse_duration("1h", &ms) == 0 && ms == 3600000);
	CHECK(chart_parse_duration("0s", &ms) == 0 && ms == 0);
	CHECK(chart_parse_duration("-1s", &ms) == -1);
	CHECK(chart_parse_duration("1.5s", &ms) == -1);
	CHECK(chart_parse_duration("10", &ms) == -1);
	CHECK(chart_parse_duration("31d", &ms) == -1);
	CHECK(chart_parse_duration("1000h", &ms) == -1); /* > 30 days */
	CHECK(chart_parse_duration("", &ms) == -1);
}

int
main(void)
{
	RUN(test_broken_files);
	RUN(test_valid_files);
	RUN(test_order_yaml);
	RUN(test_version);
	RUN(test_version_fields);
	RUN(test_stuck_after);
	RUN(test_durations);
	RUN(test_examples);
	RUN(test_did_you_mean);
	RUN(test_version_pinned);
	return check_summary();
}
