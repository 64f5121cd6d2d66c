/* console_act.c -- operator actions from the console: POST
 * /api/sagas/ID/actions and POST /api/actions (docs/console.md).
 *
 * The HTTP thread checks the request, gives each saga's request a fresh
 * message id ("console-<16 random hex>", the inbox's key) and hands them
 * to the saga loop through cfg->operate (loop_operate: the loop's
 * mailbox), which applies them as operator inputs with the logged-in
 * user as actor, inside its next transaction, and answers after COMMIT.
 * The HTTP thread only waits (CONSOLE_ACT_TIMEOUT_MS at most for the loop
 * to take them); the loop never waits for a client.
 *
 * A bulk action names the set by the same filter as /api/sagas and the
 * size the operator saw in the preview (`expect`): a set that changed
 * since is refused (409), so nobody confirms 412 and acts on 5000.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "console.h"
#include "console_int.h"
#include "jsonout.h"
#include "loop.h"
#include "preview.h"

#define REASON_MAX 500
#define MSGID_LEN  (8 + 16 + 1)

/* The request body as a JSON object: NULL with e set. */
static json_t *
body_object(const struct http_request *req, struct console_err *e)
{
	json_t *j = req->body != NULL
	                    ? json_loadb(req->body, req->body_len, 0, NULL)
	                    : NULL;

	if (j == NULL || !json_is_object(j)) {
		json_decref(j);
		console_fail(e, 400, "body: not a JSON object");
	}
	return j;
}

/* A string member (NULL when absent or empty). */
static const char *
member(const void *obj, const char *name)
{
	const char *s = json_string_value(json_object_get(obj, name));
	return s != NULL && s[0] != '\0' ? s : NULL;
}

/* action, step and reason of a body: 0, or -1 with e set. */
static int
action_fields(const json_t *b, enum engine_event_type *op, const char **step,
              const char **reason, struct console_err *e)
{
	json_t *r = json_object_get(b, "reason"),
	       *st = json_object_get(b, "step");

	if ((st != NULL && !json_is_null(st) && !json_is_string(st))) {
		console_fail(e, 400, "step: not a string");
		return -1;
	}
	*step = member(b, "step");
	if (console_action_param(member(b, "action"), *step, op, e) != 0)
		return -1;
	*reason = member(b, "reason");
	if (r != NULL && !json_is_string(r)) {
		console_fail(e, 400, "reason: not a string");
		return -1;
	}
	if (*reason == NULL) {
		console_fail(e, 400,
		             "reason: required (why the saga is "
		             "acted on, for the history)");
		return -1;
	}
	if (strlen(*reason) > REASON_MAX) {
		console_fail(e, 400, "reason: longer than %d bytes",
		             REASON_MAX);
		return -1;
	}
	return 0;
}

static int
new_msgid(char out[MSGID_LEN])
{
	unsigned char raw[8];

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -1;
	memcpy(out, "console-", 8);
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(out + 8 + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

/* Hands ops to the loop: 0, or -1 with e set (503). */
static int
operate(const struct console_config *cfg, struct loop_op *ops, size_t n,
        struct console_err *e)
{
	char why[300];
	int rc;

	if (cfg->operate == NULL) {
		console_fail(e, 503, "this orchestrator takes no actions");
		return -1;
	}
	rc = cfg->operate(cfg->operate_arg, ops, n, CONSOLE_ACT_TIMEOUT_MS, why,
	                  sizeof(why));
	if (rc == -2)
		console_fail(e, 503,
		             "the orchestrator's loop did not answer: %s", why);
	else if (rc != 0)
		console_fail(e, 503, "not applied: %s", why);
	return rc == 0 ? 0 : -1;
}

static json_t *
answer_json(const struct loop_op *op)
{
	return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "saga",
	                 jsonout_str(op->saga_id), "outcome",
	                 jsonout_str(orch_outcome_name(op->answer.outcome)),
	                 "note", jsonout_str(op->answer.note), "state",
	                 jsonout_str(op->answer.state), "status",
	                 jsonout_str(op->answer.status), "message_id",
	                 jsonout_str(op->message_id));
}

void
console_act_one(const struct console_config *cfg, struct store *st,
                const char *id, const char *actor,
                const struct http_request *req, struct http_response *r)
{
	struct console_err e = {0};
	struct store_saga_summary sum;
	enum engine_event_type op;
	struct loop_op lo = {0};
	char mid[MSGID_LEN];
	bool found = false;
	json_t *b = body_object(req, &e);

	if (b == NULL || action_fields(b, &op, &lo.step, &lo.reason, &e) != 0)
		goto fail;
	if (store_saga_find(st, id, &sum, &found) != 0 || !found) {
		console_fail(&e, found ? 503 : 404, "%s",
		             found ? store_error(st) : "no such saga");
		goto fail;
	}
	if (new_msgid(mid) != 0) {
		console_fail(&e, 503, "cannot read random bytes");
		goto fail;
	}
	lo.message_id = mid;
	lo.saga_id = id;
	lo.type = preview_op_type(op);
	lo.actor = actor;
	if (operate(cfg, &lo, 1, &e) != 0)
		goto fail;
	console_json_answer(r, lo.answer.outcome == ORCH_APPLIED ? 200 : 409,
	                    answer_json(&lo));
	json_decref(b);
	return;
fail:
	json_decref(b);
	console_json_error(r, e.status, e.msg);
}

/* The results of a bulk action: per saga, and counted by outcome. */
static json_t *
bulk_json(const struct loop_op *ops, size_t n, enum engine_event_type op)
{
	json_t *res = json_array(), *counts = json_object();

	for (size_t i = 0; res != NULL && counts != NULL && i < n; i++) {
		const char *o = orch_outcome_name(ops[i].answer.outcome);
		json_t *c = json_object_get(counts, o);
		json_object_set_new(
		        counts, o,
		        json_integer(c != NULL ? json_integer_value(c) + 1
		                               : 1));
		json_array_append_new(res, answer_json(&ops[i]));
	}
	return json_pack("{s:o,s:I,s:o,s:o}", "action",
	                 jsonout_str(preview_op_name(op)), "sagas",
	                 (json_int_t)n, "outcomes", counts, "results", res);
}

/* The ops for ids, each with its own message id in mids. */
static int
bulk_ops(char (*ids)[SAGA_ID_MAX], size_t n, enum engine_event_type op,
         const char *step, const char *reason, const char *actor,
         struct loop_op *ops, char (*mids)[MSGID_LEN])
{
	for (size_t i = 0; i < n; i++) {
		if (new_msgid(mids[i]) != 0)
			return -1;
		ops[i] = (struct loop_op){.message_id = mids[i],
		                          .saga_id = ids[i],
		                          .type = preview_op_type(op),
		                          .step = step,
		                          .reason = reason,
		                          .actor = actor};
	}
	return 0;
}

/* expect: the set's size the operator confirmed: 0, or -1 with e set. */
static int
expect_field(const json_t *b, json_int_t *expect, struct console_err *e)
{
	json_t *x = json_object_get(b, "expect");

	if (!json_is_integer(x) || json_integer_value(x) < 0) {
		console_fail(e, 400,
		             "expect: required, the number of sagas the "
		             "preview showed");
		return -1;
	}
	*expect = json_integer_value(x);
	return 0;
}

void
console_act_bulk(const struct console_config *cfg, struct store *st,
                 const char *actor, const struct http_request *req,
                 struct http_response *r)
{
	struct console_err e = {0};
	struct store_saga_filter f;
	enum engine_event_type op;
	const char *step, *reason;
	char(*ids)[SAGA_ID_MAX] = NULL;
	char(*mids)[MSGID_LEN] = NULL;
	struct loop_op *ops = NULL;
	json_int_t expect;
	size_t n = 0;
	json_t *b = body_object(req, &e);

	if (b == NULL || action_fields(b, &op, &step, &reason, &e) != 0 ||
	    expect_field(b, &expect, &e) != 0 ||
	    console_filter(member, b, &f, &e) != 0 ||
	    console_select(st, &f, &ids, &n, &e) != 0)
		goto fail;
	if ((json_int_t)n != expect) {
		console_json_answer(
		        r, 409,
		        json_pack("{s:s,s:I,s:I}", "error",
		                  "the set changed since the preview: "
		                  "preview again",
		                  "sagas", (json_int_t)n, "expect", expect));
		goto out;
	}
	ops = calloc(n + 1, sizeof(*ops));
	mids = calloc(n + 1, sizeof(*mids));
	if (ops == NULL || mids == NULL ||
	    bulk_ops(ids, n, op, step, reason, actor, ops, mids) != 0) {
		console_fail(&e, 503, "out of memory");
		goto fail;
	}
	if (n > 0 && operate(cfg, ops, n, &e) != 0)
		goto fail;
	console_json_answer(r, 200, bulk_json(ops, n, op));
	goto out;
fail:
	console_json_error(r, e.status, e.msg);
out:
	free(ops);
	free(mids);
	free(ids);
	json_decref(b);
}
