/* chart_tools.h -- pure tools over a loaded statechart, for `sagactl
 * statechart dot|diff|plan` and `sagactl simulate`. No broker, no database,
 * no clock: each tool reads a struct chart (chart.h) and writes text to a
 * FILE. None of them exits or prints anywhere else.
 *
 *   chart_tools_load   load a chart, its errors to a FILE
 *   chart_dot          Graphviz dot of the chart
 *   chart_diff         what changed between two charts, in operator terms
 *   chart_plan         every way the flow can fail: path, undo order, final
 *   chart_simulate     run the real engine on a virtual clock from a script
 *
 * Failure contract: every function returns a status as documented on it;
 * -1 always means "nothing useful was produced" (a write error on `out`, out
 * of memory, or bad input described in err), and partial output may have
 * been written already.
 */
#ifndef SAGA_CHART_TOOLS_H
#define SAGA_CHART_TOOLS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "chart.h"
#include "engine.h"
#include "value.h"

/* Loads a chart file; on failure writes each error ("file:line:col:
 * message") to err and returns NULL. The caller frees with chart_free(). */
struct chart *chart_tools_load(const char *path, FILE *err);

/* Writes the chart as a Graphviz digraph. Nodes by type: step box, choice
 * diamond, wait ellipse (dashed, with its duration), final doublecircle;
 * finals that end a failure (the target of a fail reply or branch, an
 * exhausted target, or the chart's `failure`) are red. Edges: one per
 * reply target (reply types that lead to the same target share an edge),
 * `{fail: X}` dashed red, `retry` replies a dotted self-loop, timeouts and
 * exhausted attempts a dashed red edge to the exhausted target, choice
 * branches labelled with their guards (`default` for the default), wait ->
 * next labelled with the duration. A step's compensation is a note node
 * ("undo: command") joined to the step by a dotted edge pointing back to
 * it. Returns 0, or -1 on a write error. */
int chart_dot(FILE *out, const struct chart *c);

/* What chart_dot_marked highlights (for `sagactl show ID --dot`: the path
 * one saga took). Each array may be NULL. states and undone are indexed by
 * state (nstates entries): visited / its compensation was sent; edges is
 * an nstates x nstates matrix, edges[from * nstates + to]: every edge drawn
 * from `from` to `to` (reply, fail, exhausted, branch, default, wait; a
 * retry self-loop when from == to) is taken. */
struct chart_dot_marks {
	const bool *states;
	const bool *edges;
	const bool *undone;
};

/* chart_dot, with the marked nodes and edges drawn thick and blue (the
 * start arrow too when the initial state is marked). m NULL: chart_dot. */
int chart_dot_marked(FILE *out, const struct chart *c,
                     const struct chart_dot_marks *m);

/* The states state `a` may lead to, into succ (at most cap; duplicates
 * and -1 for an unset target possible): reply and fail targets (not
 * retries) and the exhausted target of a step, a choice's branches and
 * default, a wait's next, a parallel state's forks and its next. Returns
 * the count. Can't fail. */
size_t chart_successors(const struct chart *c, int a, int *succ, size_t cap);

/* A saga's path on its chart, read from its history (`sagactl show ID
 * --dot` and the console's SVG): the states it visited, the edges it took
 * (through choice states, which the history never shows: they chain within
 * one step) and the steps whose compensation was sent. The arrays are as
 * in chart_dot_marks and owned by the walk. */
struct chart_walk {
	const struct chart *c;
	bool *states, *edges, *undone;
	int prev; /* the last state moved to, -1 before the first */
};
/* Allocates the marks (all false). -1 on out of memory (nothing held:
 * chart_walk_release is still fine). */
int chart_walk_init(struct chart_walk *w, const struct chart *c);
/* Feeds one history entry, oldest first (kind, state after, status after);
 * entries naming a state the chart lacks, ignored and rejected ones are
 * skipped. Can't fail. */
void chart_walk_entry(struct chart_walk *w, const char *kind, const char *state,
                      const char *status);
void chart_walk_release(struct chart_walk *w);

/* Writes the differences from chart a to chart b: versions of both, top
 * keys (saga, initial, failure), fields, states added and removed, states
 * reordered, and per state every changed key (type, to, command, route,
 * pass, on targets, save, emit, timeout, retry, exhausted target,
 * compensate and its keys, branches and their guards, default, duration,
 * next, max_visits, too_many), as "state: key: old -> new" lines. Then,
 * under "running sagas:", what a reload means for sagas of a: they
 * finish on a's version (the orchestrator keeps every version's source),
 * new sagas start on b's, and the states of a that b no longer has are
 * named. Returns 0 when both have the same version (nothing is listed
 * but the version), 1 when they differ, -1 on a write error. */
int chart_diff(FILE *out, const struct chart *a, const struct chart *b);

/* Writes the paths from the initial state to every final reached by
 * success, then every failure point -- each failure reply, each step whose
 * attempts run out (timeout or retry replies), each choice branch that
 * fails -- with the path to it, the compensations that would run in order
 * (newest completed step first; a step whose attempts ran out is undone
 * too, as "outcome unknown") and the final state. Choices are walked
 * through every branch. Loops are unrolled up to their bounds: a state
 * with max_visits is entered that many times on one path, then its
 * too_many is taken ("pause (past max_visits 2) -[too_many]-> ...", a
 * failure point when it fails); a loop that no max_visits bounds (through
 * choices and waits only) is reported and not followed. At most
 * CHART_PLAN_MAX_POINTS points are listed per pass, and paths of at most
 * 1024 states. Returns 0, or -1 on a write error or out of memory. */
#define CHART_PLAN_MAX_POINTS 1000
int chart_plan(FILE *out, const struct chart *c);

/* How chart_simulate runs.
 *
 * script: comma-separated KEY=OUTCOME items, consumed in order per key.
 * KEY is a step's state name (its command's reply) or STATE.undo (its
 * compensation). OUTCOME is
 *   ok          a step: its first success reply; an undo: its first ok reply
 *   fail        a step: its first {fail: X} reply; an undo: every attempt
 *               times out (the saga ends STUCK)
 *   timeout     the attempt gets no reply: its timer fires
 *   TYPE        a reply type the step maps (or an undo's ok reply), given
 *               in full ("payment.declined") or by its unambiguous last
 *               part ("declined"); any other type is a script error
 * optionally followed by " xN" (N >= 1): that many times in a row. A
 * command with no item left for its key gets `ok`.
 *
 * order: the START payload (a map). NULL: chart_sim_default_order().
 * latency_ms: virtual time between a command and its scripted reply.
 * max_events: bound on events fed to the engine (0: 1000). */
struct chart_sim_options {
	const char *script;
	const struct value *order;
	int64_t latency_ms;
	int max_events;
};

struct chart_sim_result {
	enum saga_status status;    /* the saga's status at the end */
	char state[CHART_NAME_MAX]; /* its state at the end */
	int events;                 /* events fed to the engine */
	int64_t end_ms;             /* virtual time at the end */
	int unused_items;           /* script items never consumed */
};

/* Runs the engine (engine_step) on a virtual clock starting at 0: START
 * with the order, then while the saga waits, the scripted reply or timeout
 * of the outstanding command, or the firing of its backoff/wait timer.
 * Writes a timeline, one block per event: time, event, the engine's
 * result and note, the state/status after, and the actions (commands sent,
 * events emitted, timers set or cancelled, finish); then the final status.
 * Returns 0 when the saga reached a final status (COMPLETED, FAILED,
 * ABORTED), 1 when it did not (STUCK, or max_events reached); -2 with a
 * message in err for a bad script or an order that is not a map (nothing
 * was run), -1 with a message in err for an engine error (e.g. an order
 * field of the wrong type), out of memory or a write error. res may be
 * NULL. A reply comes latency_ms after its command; one that would come
 * at or after the command's timer is replaced by the timeout. */
int chart_simulate(FILE *out, const struct chart *c,
                   const struct chart_sim_options *o,
                   struct chart_sim_result *res, char *err, size_t errlen);

/* Fills *order (a fresh map) with a plausible value for every declared
 * field: strings from the field's name ("card" for payment_method, a
 * country for *country, a currency for *currency, else "<name>-1"),
 * integers 1999, numbers 19.99, booleans true, lists one item, maps
 * empty (their declared sub-fields filled as above). -1 on out of memory
 * (*order NIL). */
int chart_sim_default_order(const struct chart *c, struct value *order);

/* Parses an order given as YAML or JSON flow text ("{total_cents: 60000,
 * payment_method: cod}") into *order, typed as chart files are (a quoted
 * scalar is a string; plain ones integer, float, true/false, null, else
 * string). Returns 0, or -1 with a message in err (*order NIL) when the
 * text is not one map. */
int chart_sim_parse_order(const char *text, struct value *order, char *err,
                          size_t errlen);

#endif
