/* The chart registry (orchestrator/svc/registry.h) on folders of its own,
 * without a store: a folder loads its charts sorted by file; what is
 * wrong with a folder (missing, empty, a broken chart, two files with one
 * saga name) is said with the files' names and leaves the loaded set as
 * it was; a reload swaps the set and keeps the older charts reachable by
 * version. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "testutil.h"

static const char chart_a[] =
        "saga: alpha\ninitial: a\nstates:\n  a:\n    type: step\n"
        "    to: p\n    command: p.do\n    timeout: 5s\n"
        "    on: {p.ok: done, p.no: {fail: failed}}\n"
        "  done: {type: final}\n  failed: {type: final}\n";

/* chart_a with another timeout: the same saga, another version */
static const char chart_a2[] =
        "saga: alpha\ninitial: a\nstates:\n  a:\n    type: step\n"
        "    to: p\n    command: p.do\n    timeout: 6s\n"
        "    on: {p.ok: done, p.no: {fail: failed}}\n"
        "  done: {type: final}\n  failed: {type: final}\n";

static const char chart_b[] =
        "saga: beta\ninitial: a\nstates:\n  a:\n    type: step\n"
        "    to: q\n    command: q.do\n    timeout: 5s\n"
        "    on: {q.ok: done, q.no: {fail: failed}}\n"
        "  done: {type: final}\n  failed: {type: final}\n";

static void
put(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (f == NULL)
		return;
	fputs(text, f);
	fclose(f);
}

static void
drop(const char *dir, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	CHECK(remove(path) == 0);
}

static void
test_load_and_reload(void)
{
	char *dir = testutil_tmpdir("saga-reg");
	struct registry *r = registry_new(NULL);
	const struct chart *list[4], *a1, *a2;
	char err[2048];

	CHECK(dir != NULL && r != NULL);
	put(dir, "b.yaml", chart_b);
	put(dir, "a.yaml", chart_a);
	put(dir, "notes.txt", "not a chart");
	CHECK_MSG(registry_load_dir(r, dir, 1, err, sizeof(err)) == 0, "%s",
	          err);
	CHECK_EQ(registry_list(r, list, 4), 2);
	CHECK_STR(list[0]->name, "alpha"); /* sorted by file */
	CHECK_STR(list[1]->name, "beta");
	a1 = registry_current(r, "alpha");
	CHECK(a1 != NULL);

	put(dir, "a.yaml", chart_a2);
	CHECK_MSG(registry_load_dir(r, dir, 2, err, sizeof(err)) == 0, "%s",
	          err);
	a2 = registry_current(r, "alpha");
	CHECK(a2 != NULL && a1 != NULL && strcmp(a1->version, a2->version));
	/* the older version stays reachable for the sagas that run on it */
	CHECK(a1 != NULL &&
	      registry_version(r, a1->version, err, sizeof(err)) == a1);
	registry_free(r);
	testutil_rmtree(dir);
	free(dir);
}

/* A folder that does not load: its error, and the loaded set as it was. */
static void
check_refused(struct registry *r, const char *dir, const char *want)
{
	const struct chart *list[4];
	char err[2048];

	CHECK(registry_load_dir(r, dir, 3, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, want) != NULL, "error \"%s\", want \"%s\"", err,
	          want);
	CHECK_EQ(registry_list(r, list, 4), 2);
	CHECK(registry_current(r, "alpha") != NULL);
	CHECK(registry_current(r, "beta") != NULL);
}

static void
test_refusals_keep_the_set(void)
{
	char *dir = testutil_tmpdir("saga-reg");
	struct registry *r = registry_new(NULL);
	char err[2048], path[600], want[700];

	CHECK(dir != NULL && r != NULL);
	put(dir, "a.yaml", chart_a);
	put(dir, "b.yaml", chart_b);
	CHECK_MSG(registry_load_dir(r, dir, 1, err, sizeof(err)) == 0, "%s",
	          err);

	put(dir, "c.yaml", chart_a2); /* alpha again */
	snprintf(want, sizeof(want),
	         "%s/c.yaml: saga \"alpha\" is also defined in %s/a.yaml", dir,
	         dir);
	check_refused(r, dir, want);
	drop(dir, "c.yaml");

	put(dir, "c.yaml", "saga: gamma\ninitial: nowhere\nstates: {}\n");
	snprintf(want, sizeof(want), "%s/c.yaml:", dir);
	check_refused(r, dir, want);
	drop(dir, "c.yaml");

	drop(dir, "a.yaml");
	drop(dir, "b.yaml");
	snprintf(want, sizeof(want), "%s: no *.yaml statecharts", dir);
	check_refused(r, dir, want);

	snprintf(path, sizeof(path), "%s/missing", dir);
	snprintf(want, sizeof(want), "%s: cannot open statecharts folder",
	         path);
	check_refused(r, path, want);
	registry_free(r);
	testutil_rmtree(dir);
	free(dir);
}

int
main(void)
{
	RUN(test_load_and_reload);
	RUN(test_refusals_keep_the_set);
	return check_summary();
}
