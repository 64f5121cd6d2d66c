/* registry.c -- see registry.h.
 *
 * The set is small (a handful of charts, a few versions each), so plain
 * arrays with linear search serve; every chart ever loaded stays in `all`
 * until registry_free, which keeps pointers handed to sagas valid across
 * reloads at the cost of a few KB per reload.
 */
#include "registry.h"

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

int
registry_load_dir(struct registry *r, const char *dir, int64_t now_ms,
                  char *err, size_t errlen)
{
	char *names[REGISTRY_MAX_FILES];
	struct chart *fresh[REGISTRY_MAX_FILES];
	char *sources[REGISTRY_MAX_FILES];
	size_t nnames = 0, nfresh = 0;
	const struct chart **cur = NULL;
	struct dirent *de;
	DIR *d;
	int bad = 0;

	err[0] = '\0';
	d = opendir(dir);
	if (d == NULL) {
		snprintf(err, errlen, "%s: cannot open statecharts folder: %s",
		         dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || !has_suffix(de->d_name, ".yaml"))
			continue;
		if (nnames == REGISTRY_MAX_FILES) {
			snprintf(err, errlen, "%s: more than %d charts", dir,
			         REGISTRY_MAX_FILES);
			bad = 1;
			break;
		}
		if (asprintf(&names[nnames], "%s/%s", dir, de->d_name) < 0) {
			bad = 1;
			break;
		}
		nnames++;
	}
	closedir(d);
	if (!bad && nnames == 0) {
		snprintf(err, errlen, "%s: no *.yaml statecharts", dir);
		bad = 1;
	}
	qsort(names, nnames, sizeof(names[0]), cmp_str);

	for (size_t i = 0; i < nnames && !bad; i++) {
		struct chart_errors errs;
		size_t len = 0;
		char *src = slurp(names[i], &len);
		struct chart *c;

		if (src == NULL) {
			char line[600];
			snprintf(line, sizeof(line), "%s: cannot read: %s",
			         names[i], strerror(errno));
			append(err, errlen, line);
			bad = 1;
			continue;
		}
		chart_errors_init(&errs);
		c = chart_load_buffer(names[i], src, len, &errs);
		if (c == NULL) {
			for (size_t k = 0; k < errs.count; k++)
				append(err, errlen, errs.items[k].text);
			bad = 1;
			free(src);
		} else {
			for (size_t k = 0; k < nfresh; k++) {
				if (strcmp(fresh[k]->name, c->name) == 0) {
					char line[600];
					snprintf(line, sizeof(line),
					         "%s: saga \"%s\" is also "
					         "defined in %s",
					         names[i], c->name,
					         fresh[k]->file);
					append(err, errlen, line);
					bad = 1;
				}
			}
			sources[nfresh] = src;
			fresh[nfresh++] = c;
		}
		chart_errors_clear(&errs);
	}
	if (!bad)
		cur = calloc(nfresh, sizeof(*cur));
	if (!bad && cur == NULL) {
		snprintf(err, errlen, "out of memory");
		bad = 1;
	}
	/* record sources first, so a failure leaves everything as it was */
	for (size_t i = 0; i < nfresh && !bad && r->st != NULL; i++) {
		if (store_chart_put(r->st, fresh[i], sources[i], now_ms) != 0) {
			snprintf(err, errlen, "%s: %s", fresh[i]->file,
			         store_error(r->st));
			bad = 1;
		}
	}
	for (size_t i = 0; i < nfresh; i++) {
		free(sources[i]);
		if (bad) {
			chart_free(fresh[i]);
			continue;
		}
		cur[i] = keep(r, fresh[i]);
		if (cur[i] == NULL) {
			snprintf(err, errlen, "out of memory");
			bad = 1;
		}
	}
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	if (bad) {
		free(cur);
		return -1;
	}
	free(r->cur);
	r->cur = cur;
	r->ncur = nfresh;
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
