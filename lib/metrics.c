/* metrics.c -- see metrics.h. Families in a fixed table, each with a
 * growable array of series found by a linear search: a family has a few
 * dozen series at most, and the bound keeps the search short. */
#include "metrics.h"

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(METRIC_FAMILIES_MAX > 1, "room for the dropped counter");
_Static_assert(METRIC_LABELS_MAX >= 32, "room for overflow=\"true\"");

static const double default_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1,     2.5,  5,     10,   30,  60};
_Static_assert(sizeof(default_le) / sizeof(default_le[0]) <= METRIC_BUCKETS_MAX,
               "the default buckets fit");

#define OVERFLOW_LABELS "overflow=\"true\""

struct series {
	char *labels;
	double value; /* counter, gauge; a histogram's sum */
	uint64_t count, b[METRIC_BUCKETS_MAX];
};

struct family {
	char name[96];
	char *help;
	enum metric_type type;
	double le[METRIC_BUCKETS_MAX];
	size_t nle;
	struct series *s;
	size_t n, cap;
};

struct metrics {
	char prefix[32];
	struct family f[METRIC_FAMILIES_MAX];
	size_t nf;
	int dropped; /* the family counting dropped updates */
};

struct metrics *
metrics_new(const char *prefix)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	snprintf(m->prefix, sizeof(m->prefix), "%s", prefix);
	m->dropped = metrics_family(m, "metrics_dropped_total", METRIC_COUNTER,
	                            "Metric updates dropped (out of memory).");
	if (m->dropped < 0) {
		metrics_free(m);
		return NULL;
	}
	return m;
}

static void
family_clear(struct family *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->s[i].labels);
	free(f->s);
	f->s = NULL;
	f->n = f->cap = 0;
}

void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nf; i++) {
		family_clear(&m->f[i]);
		free(m->f[i].help);
	}
	free(m);
}

int
metrics_family(struct metrics *m, const char *name, enum metric_type type,
               const char *help)
{
	struct family *f;
	char full[sizeof(m->f[0].name)];

	snprintf(full, sizeof(full), "%s_%s", m->prefix, name);
	for (size_t i = 0; i < m->nf; i++)
		if (strcmp(m->f[i].name, full) == 0) {
			assert(m->f[i].type == type);
			return m->f[i].type == type ? (int)i : -1;
		}
	if (m->nf == METRIC_FAMILIES_MAX)
		return -1;
	f = &m->f[m->nf];
	memset(f, 0, sizeof(*f));
	f->help = strdup(help);
	if (f->help == NULL)
		return -1;
	memcpy(f->name, full, sizeof(full));
	f->type = type;
	if (type == METRIC_HISTOGRAM) {
		f->nle = sizeof(default_le) / sizeof(default_le[0]);
		memcpy(f->le, default_le, sizeof(default_le));
	}
	return (int)m->nf++;
}

int
metrics_buckets(struct metrics *m, int family, const double *le, size_t n)
{
	struct family *f;

	if (family < 0 || (size_t)family >= m->nf || n == 0 ||
	    n > METRIC_BUCKETS_MAX)
		return -1;
	f = &m->f[family];
	if (f->type != METRIC_HISTOGRAM || f->n > 0)
		return -1;
	for (size_t i = 1; i < n; i++)
		if (!(le[i] > le[i - 1]))
			return -1;
	memcpy(f->le, le, n * sizeof(*le));
	f->nle = n;
	return 0;
}

/* Appends s escaped to buf at *n; stops before an escape that does not
 * fit. */
static void
put_escaped(char *buf, size_t cap, size_t *n, const char *s)
{
	for (; *s != '\0'; s++) {
		const char *e = *s == '\\'   ? "\\\\"
		                : *s == '"'  ? "\\\""
		                : *s == '\n' ? "\\n"
		                             : NULL;
		size_t k = e != NULL ? strlen(e) : 1;
		if (*n + k >= cap)
			return;
		memcpy(buf + *n, e != NULL ? e : s, k);
		*n += k;
	}
}

const char *
metrics_labels(char *buf, size_t cap, ...)
{
	va_list ap;
	const char *name;
	size_t n = 0;

	assert(cap > 0);
	va_start(ap, cap);
	while ((name = va_arg(ap, const char *)) != NULL) {
		const char *value = va_arg(ap, const char *);
		int w = snprintf(buf + n, cap - n, "%s%s=\"", n > 0 ? "," : "",
		                 name);
		if (w < 0 || (size_t)w >= cap - n - 1)
			break;
		n += (size_t)w;
		put_escaped(buf, cap - 1, &n, value != NULL ? value : "");
		buf[n++] = '"';
	}
	va_end(ap);
	buf[n] = '\0';
	return buf;
}

static struct series *
series_new(struct family *f, const char *labels)
{
	struct series *s;

	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		void *p = realloc(f->s, cap * sizeof(*f->s));
		if (p == NULL)
			return NULL;
		f->s = p;
		f->cap = cap;
	}
	s = &f->s[f->n];
	memset(s, 0, sizeof(*s));
	s->labels = strdup(labels);
	if (s->labels == NULL)
		return NULL;
	f->n++;
	return s;
}

/* The series of labels in family, created if new; past the bound the
 * overflow series. NULL: bad handle or out of memory (counted). */
static struct series *
series_of(struct metrics *m, int family, const char *labels)
{
	struct family *f;
	struct series *s;

	assert(family >= 0 && (size_t)family < m->nf);
	if (family < 0 || (size_t)family >= m->nf)
		return NULL;
	f = &m->f[family];
	if (labels == NULL)
		labels = "";
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->s[i].labels, labels) == 0)
			return &f->s[i];
	if (f->n >= METRIC_SERIES_MAX - 1 && strcmp(labels, OVERFLOW_LABELS)) {
		return series_of(m, family, OVERFLOW_LABELS);
	}
	s = series_new(f, labels);
	if (s == NULL && family != m->dropped) {
		struct series *d = series_of(m, m->dropped, "");
		if (d != NULL)
			d->value += 1;
	}
	return s;
}

void
metrics_add(struct metrics *m, int family, const char *labels, double v)
{
	struct series *s;

	assert(v >= 0 || m->f[family].type == METRIC_GAUGE);
	s = series_of(m, family, labels);
	if (s != NULL)
		s->value += v;
}

void
metrics_set(struct metrics *m, int family, const char *labels, double v)
{
	struct series *s = series_of(m, family, labels);

	if (s != NULL)
		s->value = v;
}

void
metrics_observe(struct metrics *m, int family, const char *labels, double v)
{
	struct series *s = series_of(m, family, labels);
	const struct family *f = &m->f[family];

	assert(f->type == METRIC_HISTOGRAM);
	if (s == NULL)
		return;
	for (size_t i = 0; i < f->nle; i++)
		if (v <= f->le[i])
			s->b[i]++;
	s->count++;
	s->value += v;
}

void
metrics_reset(struct metrics *m, int family)
{
	assert(family >= 0 && (size_t)family < m->nf);
	if (family >= 0 && (size_t)family < m->nf)
		family_clear(&m->f[family]);
}

/* name{labels,extra} or name{extra} or name{labels} or name. */
static void
put_name(struct http_response *r, const char *name, const char *suffix,
         const char *labels, const char *extra)
{
	bool l = labels[0] != '\0', e = extra != NULL;

	http_printf(r, "%s%s%s%s%s%s%s", name, suffix, l || e ? "{" : "",
	            labels, l && e ? "," : "", e ? extra : "",
	            l || e ? "}" : "");
}

static void
render_histogram(const struct family *f, const struct series *s,
                 struct http_response *r)
{
	char le[48];

	for (size_t i = 0; i < f->nle; i++) {
		snprintf(le, sizeof(le), "le=\"%g\"", f->le[i]);
		put_name(r, f->name, "_bucket", s->labels, le);
		http_printf(r, " %llu\n", (unsigned long long)s->b[i]);
	}
	put_name(r, f->name, "_bucket", s->labels, "le=\"+Inf\"");
	http_printf(r, " %llu\n", (unsigned long long)s->count);
	put_name(r, f->name, "_sum", s->labels, NULL);
	http_printf(r, " %.6f\n", s->value);
	put_name(r, f->name, "_count", s->labels, NULL);
	http_printf(r, " %llu\n", (unsigned long long)s->count);
}

void
metrics_render(const struct metrics *m, struct http_response *r)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};

	for (size_t i = 0; i < m->nf; i++) {
		const struct family *f = &m->f[i];
		/* a family without series yet is declared all the same:
		 * a scraper (and an alert rule's check) knows its name */
		http_printf(r, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help,
		            f->name, types[f->type]);
		for (size_t k = 0; k < f->n; k++) {
			if (f->type == METRIC_HISTOGRAM) {
				render_histogram(f, &f->s[k], r);
				continue;
			}
			put_name(r, f->name, "", f->s[k].labels, NULL);
			http_printf(r, " %.15g\n", f->s[k].value);
		}
	}
}
