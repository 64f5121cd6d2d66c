/* console_svg.c -- a statechart drawn as inline SVG for the saga page,
 * with the saga's path marked (console_int.h, console_svg).
 *
 * Layout, simply: a state's column is its distance from the initial state
 * (breadth first over chart_successors), states of one column stacked in
 * chart order; states no path reaches go in a last column. Edges are
 * curves from a state's right side to its target's left side. This is no
 * Graphviz (`sagactl statechart dot` is, for the full picture): edges may
 * cross, but a chart of a dozen states reads well, and it needs nothing at
 * run time and no script in the browser.
 */
#include <stdlib.h>
#include <string.h>

#include "console_int.h"

#define BOX_W 150
#define BOX_H 34
#define COL_W 200
#define ROW_H 56
#define PAD   20

/* Each state's column (depth) and row; -1 when out of memory. */
static int
layout(const struct chart *c, int *col, int *row, int *ncols, int *nrows)
{
	int *queue = malloc(c->nstates * sizeof(int)), *fill;
	size_t head = 0, tail = 0;
	int succ[64], maxc = 0;

	fill = calloc(c->nstates + 1, sizeof(int));
	if (queue == NULL || fill == NULL) {
		free(queue);
		free(fill);
		return -1;
	}
	for (size_t i = 0; i < c->nstates; i++)
		col[i] = -1;
	col[c->initial] = 0;
	queue[tail++] = c->initial;
	while (head < tail) {
		int a = queue[head++];
		size_t n = chart_successors(c, a, succ, 64);
		for (size_t k = 0; k < n; k++) {
			int b = succ[k];
			if (b < 0 || (size_t)b >= c->nstates || col[b] >= 0)
				continue;
			col[b] = col[a] + 1;
			maxc = col[b] > maxc ? col[b] : maxc;
			queue[tail++] = b;
		}
	}
	*nrows = 0;
	for (size_t i = 0; i < c->nstates; i++) {
		if (col[i] < 0)
			col[i] = maxc + 1; /* unreached */
		row[i] = fill[col[i]]++;
		*nrows = row[i] + 1 > *nrows ? row[i] + 1 : *nrows;
		*ncols = col[i] + 1 > *ncols ? col[i] + 1 : *ncols;
	}
	free(queue);
	free(fill);
	return 0;
}

static void
svg_edges(struct http_response *r, const struct chart *c,
          const struct chart_walk *w, const int *col, const int *row)
{
	int succ[64];

	for (size_t a = 0; a < c->nstates; a++) {
		size_t n = chart_successors(c, (int)a, succ, 64);
		for (size_t k = 0; k < n; k++) {
			int b = succ[k];
			bool dup = false, taken;
			for (size_t j = 0; j < k; j++)
				dup = dup || succ[j] == b;
			if (b < 0 || (size_t)b >= c->nstates || dup ||
			    (size_t)b == a)
				continue;
			taken = w != NULL &&
			        w->edges[a * c->nstates + (size_t)b];
			int x1 = PAD + col[a] * COL_W + BOX_W;
			int y1 = PAD + row[a] * ROW_H + BOX_H / 2;
			int x2 = PAD + col[b] * COL_W;
			int y2 = PAD + row[b] * ROW_H + BOX_H / 2;
			http_printf(r, "<path class=\"edge%s\" data-from=\"",
			            taken ? " taken" : "");
			html_text(r, c->states[a].name);
			http_printf(r, "\" data-to=\"");
			html_text(r, c->states[b].name);
			http_printf(r,
			            "\" marker-end=\"url(#arrow)\" d=\"M%d %d "
			            "C%d %d,%d %d,%d %d\"/>",
			            x1, y1, x1 + 50, y1, x2 - 50, y2, x2, y2);
		}
	}
}

static void
svg_state(struct http_response *r, const struct chart *c, size_t i,
          const struct chart_walk *w, const char *current, int x, int y)
{
	static const char *const types[] = {"step", "choice", "wait", "final",
	                                    "parallel"};
	const struct chart_state *s = &c->states[i];
	bool cur = current != NULL && strcmp(current, s->name) == 0;

	http_printf(r, "<g class=\"state%s%s%s\" data-state=\"",
	            w != NULL && w->states[i] ? " visited" : "",
	            cur ? " current" : "",
	            w != NULL && w->undone[i] ? " undone" : "");
	html_text(r, s->name);
	http_printf(r, "\"><title>");
	html_text(r, s->name);
	http_printf(r,
	            " (%s)</title><rect x=\"%d\" y=\"%d\" width=\"%d\" "
	            "height=\"%d\" rx=\"%d\"/><text x=\"%d\" y=\"%d\">",
	            types[s->type], x, y, BOX_W, BOX_H,
	            s->type == STATE_FINAL ? BOX_H / 2 : 4, x + 8,
	            y + BOX_H / 2 + 4);
	html_text(r, s->name);
	http_printf(r, "</text></g>");
}

void
console_svg(struct http_response *r, const struct chart *c,
            const struct chart_walk *w, const char *current)
{
	int *col = malloc(c->nstates * sizeof(int));
	int *row = malloc(c->nstates * sizeof(int));
	int ncols = 0, nrows = 0;

	if (w != NULL && w->states == NULL)
		w = NULL;
	if (col == NULL || row == NULL ||
	    layout(c, col, row, &ncols, &nrows) != 0) {
		http_printf(r, "<p>out of memory</p>");
		goto out;
	}
	http_printf(r,
	            "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" "
	            "width=\"%d\" height=\"%d\"><defs><marker id=\"arrow\" "
	            "viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" "
	            "markerUnits=\"userSpaceOnUse\" markerWidth=\"9\" "
	            "markerHeight=\"9\" orient=\"auto\">"
	            "<path d=\"M0 0L10 5L0 10z\" fill=\"#666\"/></marker>"
	            "</defs>",
	            2 * PAD + ncols * COL_W, 2 * PAD + nrows * ROW_H);
	svg_edges(r, c, w, col, row);
	for (size_t i = 0; i < c->nstates; i++)
		svg_state(r, c, i, w, current, PAD + col[i] * COL_W,
		          PAD + row[i] * ROW_H);
	http_printf(r, "</svg><p class=\"legend\">blue: the saga's path; "
	               "orange: where it is; red dashes: undo sent</p>");
out:
	free(col);
	free(row);
}
