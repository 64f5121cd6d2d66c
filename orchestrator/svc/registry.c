/* registry.c -- see registry.h.
 *
 * The set is small (a handful of charts, a few versions each), so plain
 * arrays with linear search serve; every chart ever loaded stays in `all`
 * until registry_free, which keeps pointers handed to sagas valid across
 * reloads at the cost of a few KB per reload.
 */
#include "registry.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chart_load.h"

#define REGISTRY_MAX_FILES 64

struct registry {
	struct store *st;
	struct chart **all; /* every version ever loaded, owned */
	size_t nall, capall;
	const struct chart **cur; /* current set, pointers into all */
	size_t ncur;
};

struct registry *
registry_new(struct store *st)
{
	struct registry *r = calloc(1, sizeof(*r));
	if (r != NULL)
		r->st = st;
	return r;
}

void
registry_free(struct registry *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nall; i++)
		chart_free(r->all[i]);
	free(r->all);
	free(r->cur);
	free(r);
}

static const struct chart *
find_version(const struct registry *r, const char *version)
{
	for (size_t i = 0; i < r->nall; i++)
		if (strcmp(r->all[i]->version, version) == 0)
			return r->all[i];
	return NULL;
}

/* Takes ownership of c; returns the kept chart (an identical version
 * already held wins and c is freed), or NULL on out of memory. */
static const struct chart *
keep(struct registry *r, struct chart *c)
{
	const struct chart *have = find_version(r, c->version);
	if (have != NULL) {
		chart_free(c);
		return have;
	}
	if (r->nall == r->capall) {
		size_t cap = r->capall ? r->capall * 2 : 8;
		struct chart **n = realloc(r->all, cap * sizeof(*n));
		if (n == NULL) {
			chart_free(c);
			return NULL;
		}
		r->all = n;
		r->capall = cap;
	}
	r->all[r->nall++] = c;
	return c;
}

static int
has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
append(char *err, size_t errlen, const char *line)
{
	size_t n = strlen(err);
	if (n < errlen)
		snprintf(err + n, errlen - n, "%s%s", n ? "\n" : "", line);
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    n < 4L * 1024 * 1024 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		if (buf != NULL) {
			buf[n] = '\0';
			*len = (size_t)n;
		}
	}
	fclose(f);
	return buf;
}

/* The *.yaml files of dir, sorted, into names (malloc'd each; *n of
 * them, kept on failure too so the caller frees them). */
static int
list_charts(const char *dir, char **names, size_t *n, char *err, size_t errlen)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int rc = 0;

	*n = 0;
	if (d == NULL) {
		snprintf(err, errlen, "%s: cannot open statecharts folder: %s",
		         dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || !has_suffix(de->d_name, ".yaml"))
			continue;
		if (*n == REGISTRY_MAX_FILES) {
			snprintf(err, errlen, "%s: more than %d charts", dir,
			         REGISTRY_MAX_FILES);
			rc = -1;
			break;
		}
		if (asprintf(&names[*n], "%s/%s", dir, de->d_name) < 0) {
			rc = -1;
			break;
		}
		(*n)++;
	}
	closedir(d);
	if (rc == 0 && *n == 0) {
		snprintf(err, errlen, "%s: no *.yaml statecharts", dir);
		rc = -1;
	}
	qsort(names, *n, sizeof(names[0]), cmp_str);
	return rc;
}

/* The charts loaded so far, with their sources. */
struct loaded {
	struct chart *chart[REGISTRY_MAX_FILES];
	char *source[REGISTRY_MAX_FILES];
	size_t n;
};

/* One file loaded and added to l (even with a duplicate saga name, so
 * that it is freed with the rest); its errors appended to err. */
static int
load_chart(struct loaded *l, const char *name, char *err, size_t errlen)
{
	struct chart_errors errs;
	size_t len = 0;
	char *src = slurp(name, &len);
	struct chart *c;
	int rc = 0;

	if (src == NULL) {
		char line[600];
		snprintf(line, sizeof(line), "%s: cannot read: %s", name,
		         strerror(errno));
		append(err, errlen, line);
		return -1;
	}
	chart_errors_init(&errs);
	c = chart_load_buffer(name, src, len, &errs);
	if (c == NULL) {
		for (size_t k = 0; k < errs.count; k++)
			append(err, errlen, errs.items[k].text);
		chart_errors_clear(&errs);
		free(src);
		return -1;
	}
	chart_errors_clear(&errs);
	for (size_t k = 0; k < l->n; k++) {
		if (strcmp(l->chart[k]->name, c->name) == 0) {
			char line[600];
			snprintf(line, sizeof(line),
			         "%s: saga \"%s\" is also defined in %s", name,
			         c->name, l->chart[k]->file);
			append(err, errlen, line);
			rc = -1;
		}
	}
	assert(l->n < REGISTRY_MAX_FILES);
	l->source[l->n] = src;
	l->chart[l->n++] = c;
	return rc;
}

/* The loaded charts recorded in the store (sources first, so a failure
 * leaves everything as it was) and kept: the new current list, or NULL.
 * Takes every chart and source of l, kept or freed. */
static const struct chart **
adopt(struct registry *r, struct loaded *l, bool bad, int64_t now_ms, char *err,
      size_t errlen)
{
	const struct chart **cur = NULL;

	if (!bad)
		cur = calloc(l->n, sizeof(*cur));
	if (!bad && cur == NULL) {
		snprintf(err, errlen, "out of memory");
		bad = true;
	}
	for (size_t i = 0; i < l->n && !bad && r->st != NULL; i++) {
		if (store_chart_put(r->st, l->chart[i], l->source[i], now_ms) !=
		    0) {
			snprintf(err, errlen, "%s: %s", l->chart[i]->file,
			         store_error(r->st));
			bad = true;
		}
	}
	for (size_t i = 0; i < l->n; i++) {
		free(l->source[i]);
		if (bad) {
			chart_free(l->chart[i]);
			continue;
		}
		cur[i] = keep(r, l->chart[i]);
		if (cur[i] == NULL) {
			snprintf(err, errlen, "out of memory");
			bad = true;
		}
	}
	if (bad) {
		free(cur);
		return NULL;
	}
	return cur;
}

int
registry_load_dir(struct registry *r, const char *dir, int64_t now_ms,
                  char *err, size_t errlen)
{
	char *names[REGISTRY_MAX_FILES];
	struct loaded l = {.n = 0};
	const struct chart **cur;
	size_t nnames = 0;
	bool bad;

	err[0] = '\0';
	bad = list_charts(dir, names, &nnames, err, errlen) != 0;
	/* the first file that fails stops the load: its errors are the
	 * answer */
	for (size_t i = 0; i < nnames && !bad; i++)
		if (load_chart(&l, names[i], err, errlen) != 0)
			bad = true;
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	cur = adopt(r, &l, bad, now_ms, err, errlen);
	if (cur == NULL)
		return -1;
	free(r->cur);
	r->cur = cur;
	r->ncur = l.n;
	return 0;
}

const struct chart *
registry_current(struct registry *r, const char *name)
{
	for (size_t i = 0; i < r->ncur; i++)
		if (strcmp(r->cur[i]->name, name) == 0)
			return r->cur[i];
	return NULL;
}

const struct chart *
registry_version(struct registry *r, const char *version, char *err,
                 size_t errlen)
{
	const struct chart *c = find_version(r, version);
	struct chart_errors errs;
	char *source = NULL, *file = NULL;
	bool found = false;
	struct chart *fresh;

	if (c != NULL)
		return c;
	if (r->st == NULL) {
		snprintf(err, errlen, "unknown chart version %s", version);
		return NULL;
	}
	if (store_chart_get(r->st, version, &source, &file, &found) != 0) {
		snprintf(err, errlen, "%s", store_error(r->st));
		return NULL;
	}
	if (!found) {
		snprintf(err, errlen, "unknown chart version %s", version);
		return NULL;
	}
	chart_errors_init(&errs);
	fresh = chart_load_buffer(file, source, strlen(source), &errs);
	if (fresh == NULL) {
		snprintf(err, errlen,
		         "stored chart version %s no longer loads: %s", version,
		         errs.count ? errs.items[0].text : "?");
	} else if (strcmp(fresh->version, version) != 0) {
		/* the hash changed meaning (a new loader): refuse to guess */
		snprintf(err, errlen,
		         "stored chart version %s now hashes to %s", version,
		         fresh->version);
		chart_free(fresh);
		fresh = NULL;
	}
	chart_errors_clear(&errs);
	free(source);
	free(file);
	if (fresh == NULL)
		return NULL;
	c = keep(r, fresh);
	if (c == NULL)
		snprintf(err, errlen, "out of memory");
	return c;
}

size_t
registry_list(struct registry *r, const struct chart **out, size_t cap)
{
	for (size_t i = 0; i < r->ncur && i < cap; i++)
		out[i] = r->cur[i];
	return r->ncur;
}
