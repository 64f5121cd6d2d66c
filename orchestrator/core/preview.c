/* preview.c -- what an operator action would do (preview.h).
 *
 * The preview is the engine itself run on a copy, not a second model of
 * it: whatever the engine would refuse, send or undo is what the operator
 * is shown. Only the compensation plan is read from the saga record, the
 * way the engine walks it (engine.h, Compensation): the completed stack,
 * newest first, the top being the undo a compensating saga waits on.
 */
#include "preview.h"

#include <stdio.h>
#include <string.h>

static const struct {
	const char *name, *type;
	enum engine_event_type op;
} ops[] = {
        {"retry", "operator.retry", EV_OP_RETRY},
        {"resume", "operator.resume", EV_OP_RESUME},
        {"skip", "operator.skip", EV_OP_SKIP},
        {"abort", "operator.abort", EV_OP_ABORT},
        {"compensate", "operator.compensate", EV_OP_COMPENSATE},
        {"mark-compensated", "operator.mark_compensated",
         EV_OP_MARK_COMPENSATED},
};

int
preview_op_parse(const char *name, enum engine_event_type *op)
{
	if (name != NULL && strcmp(name, "mark_compensated") == 0)
		name = "mark-compensated";
	for (size_t i = 0; name != NULL && i < sizeof(ops) / sizeof(ops[0]);
	     i++)
		if (strcmp(name, ops[i].name) == 0) {
			*op = ops[i].op;
			return 0;
		}
	return -1;
}

const char *
preview_op_name(enum engine_event_type op)
{
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (ops[i].op == op)
			return ops[i].name;
	return "?";
}

const char *
preview_op_type(enum engine_event_type op)
{
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (ops[i].op == op)
			return ops[i].type;
	return "?";
}

static void
undo_fill(struct preview_undo *u, const struct chart *c, const struct saga *s,
          int idx, int visit, bool unknown, int attempt)
{
	const struct chart_state *cs = &c->states[idx];

	memset(u, 0, sizeof(*u));
	snprintf(u->state, sizeof(u->state), "%s", cs->name);
	snprintf(u->to, sizeof(u->to), "%s",
	         cs->compensate->to != NULL ? cs->compensate->to : cs->to);
	snprintf(u->command, sizeof(u->command), "%s", cs->compensate->command);
	engine_message_id(u->message_id, sizeof(u->message_id), s->id, cs->name,
	                  visit, true, attempt);
	u->unknown = unknown;
}

/* The undos of a compensating (or stuck) saga: its stack, newest first;
 * the top is the undo it waits on, with the attempt it is at. */
static size_t
stack_plan(const struct chart *c, const struct saga *s,
           struct preview_undo *out, size_t cap)
{
	size_t n = 0;

	for (size_t k = s->ndone; k-- > 0 && n < cap;) {
		const struct saga_done *d = &s->done[k];
		bool top = k + 1 == s->ndone && d->state == s->state;
		int attempt = top && s->attempt > 0 ? s->attempt : 1;

		if (c->states[d->state].compensate == NULL)
			continue;
		undo_fill(&out[n], c, s, d->state, d->visit, d->unknown,
		          attempt);
		out[n++].current = top;
	}
	return n;
}

static bool
compensating(const struct saga *s)
{
	return s->status == SAGA_COMPENSATING || s->status == SAGA_STUCK;
}

int
preview_compensation(const struct chart *c, const struct saga *s,
                     int64_t now_ms, struct preview_undo *out, size_t cap)
{
	struct engine_event ev = {.type = EV_OP_COMPENSATE, .now_ms = now_ms};
	struct engine_output o;
	struct saga copy;
	size_t n = 0;

	if (compensating(s))
		return (int)stack_plan(c, s, out, cap);
	if (saga_status_final(s->status))
		return 0;
	if (saga_copy(&copy, s) != 0)
		return -1;
	if (engine_step(c, &copy, &ev, &o) == ENGINE_OK && compensating(&copy))
		n = stack_plan(c, &copy, out, cap);
	engine_output_clear(&o);
	saga_clear(&copy);
	return (int)n;
}

int
preview_run(const struct chart *c, const struct saga *s,
            enum engine_event_type op, const char *step, int64_t now_ms,
            struct preview *p)
{
	struct engine_event ev = {.type = op, .now_ms = now_ms, .step = step};
	struct saga copy;
	int n = 0;

	memset(p, 0, sizeof(*p));
	p->op = op;
	if (saga_copy(&copy, s) != 0)
		return -1;
	engine_step(c, &copy, &ev, &p->out);
	p->status = copy.status;
	snprintf(p->state, sizeof(p->state), "%s", c->states[copy.state].name);
	if (p->out.result == ENGINE_OK && compensating(&copy)) {
		p->plan_runs = true;
		n = (int)stack_plan(c, &copy, p->plan, PREVIEW_PLAN_MAX);
	} else if (p->out.result == ENGINE_OK && op == EV_OP_ABORT) {
		n = preview_compensation(c, s, now_ms, p->plan,
		                         PREVIEW_PLAN_MAX);
	}
	saga_clear(&copy);
	if (n < 0) {
		preview_clear(p);
		return -1;
	}
	p->nplan = (size_t)n;
	return 0;
}

void
preview_clear(struct preview *p)
{
	engine_output_clear(&p->out);
	p->nplan = 0;
}
