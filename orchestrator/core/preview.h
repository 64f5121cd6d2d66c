/* preview.h -- what an operator action would do to a saga, computed
 * before anything is sent.
 *
 *   preview_run(chart, &saga, EV_OP_RESUME, NULL, now, &p)
 *
 * Runs engine_step on a copy of the saga with the operator's event and
 * keeps what came out: the engine's result and note (a refusal says why),
 * the commands it would send and the events it would emit (each with its
 * message id: ids are deterministic, so the ids previewed are the ids
 * sent if the saga does not move in between), the status and state after,
 * and the compensation plan: for an action after which the saga
 * compensates (compensate, resume, skip or mark-compensated of an undo),
 * every undo still to run, in order; for abort, the undos it leaves
 * undone. The saga given is not changed. No I/O: tested without broker or
 * database (tests/unit/test_preview.c).
 *
 * Failure contract: preview_run returns -1 only on out of memory (the
 * preview then holds nothing); a refused action is a result
 * (ENGINE_REJECTED with the note), not an error.
 */
#ifndef SAGA_PREVIEW_H
#define SAGA_PREVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chart.h"
#include "engine.h"

/* The undos of a saga: one per completed step with a compensation, plus
 * the step in flight when compensation begins. */
#define PREVIEW_PLAN_MAX (ENGINE_STACK_MAX + 1)

/* One compensation of a plan. */
struct preview_undo {
	char state[CHART_NAME_MAX];        /* the step undone */
	char to[CHART_NAME_MAX];           /* participant */
	char command[CHART_TYPE_MAX];      /* undo command type */
	char message_id[ENGINE_MSGID_MAX]; /* of the attempt that runs */
	bool unknown; /* the step's outcome is unknown (exhausted, or in
	               * flight when compensation began): undone anyway */
	bool current; /* the undo the saga waits on now */
};

struct preview {
	enum engine_event_type op;
	struct engine_output out; /* result, note, actions (SEND, EMIT...) */
	enum saga_status status;  /* after (as before unless ENGINE_OK) */
	char state[CHART_NAME_MAX];
	struct preview_undo plan[PREVIEW_PLAN_MAX];
	size_t nplan;
	bool plan_runs; /* true: these undos run, in this order; false
	                 * (abort): they are left undone */
};

/* "retry", "resume", "skip", "abort", "compensate", "mark-compensated"
 * (also "mark_compensated") to its event: 0, or -1 if not an action. */
int preview_op_parse(const char *name, enum engine_event_type *op);
/* The action's name as above ("mark-compensated"); "?" if not one. */
const char *preview_op_name(enum engine_event_type op);
/* The operator request's message type ("operator.mark_compensated"). */
const char *preview_op_type(enum engine_event_type op);

/* What op (with `step`, for skip and mark-compensated; may be NULL) would
 * do to s at now_ms. Release p with preview_clear. -1: out of memory. */
int preview_run(const struct chart *c, const struct saga *s,
                enum engine_event_type op, const char *step, int64_t now_ms,
                struct preview *p);
void preview_clear(struct preview *p);

/* What compensating s now would run, in order, into out (at most cap):
 * for a compensating or stuck saga the rest of its undos, the current
 * first; for a running one what the engine's COMPENSATE would undo; for a
 * finished one nothing. Returns the count, or -1 on out of memory. */
int preview_compensation(const struct chart *c, const struct saga *s,
                         int64_t now_ms, struct preview_undo *out, size_t cap);

#endif
