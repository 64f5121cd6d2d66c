/* test_shard -- orchestrator/svc/shard: parsing --shard I/N, claiming a
 * database for one shard, and the guard that keeps an order from being
 * started on two shards when the hash ring changes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "shard.h"
#include "store.h"
#include "testutil.h"

static void
test_parse(void)
{
	struct shard sh;
	char err[256];

	CHECK(shard_parse(NULL, &sh, err, sizeof(err)) == 0);
	CHECK(sh.index == 0);
	CHECK(strcmp(sh.orders_q, "orchestrator.orders") == 0);
	CHECK(strcmp(sh.reply_key, "orchestrator") == 0);
	CHECK(shard_parse("2/3", &sh, err, sizeof(err)) == 0);
	CHECK(sh.index == 2 && sh.count == 3);
	CHECK(strcmp(sh.orders_q, "orchestrator-2.orders") == 0);
	CHECK(strcmp(sh.replies_q, "orchestrator-2.replies") == 0);
	CHECK(strcmp(sh.control_q, "orchestrator-2.control") == 0);
	CHECK(strcmp(sh.reply_key, "orchestrator-2") == 0);
	static const char *bad[] = {"",     "1",    "0/2", "3/2",
	                            "1/0",  "1/65", "a/b", "1/2x",
	                            "-1/2", "1//2", "1/ 2"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(shard_parse(bad[i], &sh, err, sizeof(err)) == -1,
		          "\"%s\" accepted", bad[i]);
	CHECK(shard_parse("0/2", &sh, err, sizeof(err)) == -1);
	CHECK(strstr(err, "1 <= I <= N") != NULL);
}

static void
test_claim(void)
{
	char *dir = testutil_tmpdir("shard"), path[600], err[512];
	struct shard one, two, none;
	struct shard_times t;
	struct store *st;
	bool known = true;
	char owner[64], id[16];

	CHECK(dir != NULL);
	snprintf(path, sizeof(path), "%s/o.db", dir);
	CHECK(shard_parse("1/2", &one, err, sizeof(err)) == 0);
	CHECK(shard_parse("2/2", &two, err, sizeof(err)) == 0);
	CHECK(shard_parse(NULL, &none, err, sizeof(err)) == 0);
	st = store_open(path, err, sizeof(err));
	CHECK_MSG(st != NULL, "%s", err);
	/* first use: shard 1 claims it; it joins once its queue is bound */
	CHECK(shard_claim(st, &one, &t, err, sizeof(err)) == 0);
	CHECK(t.joined_ms == 0 && t.ring_changed_ms == 0);
	CHECK(shard_note_joined(st, &t, 1000) == 0);
	CHECK(t.joined_ms == 1000);
	/* again later (a restart): joined_at stays */
	CHECK(shard_claim(st, &one, &t, err, sizeof(err)) == 0);
	CHECK(t.joined_ms == 1000);
	CHECK(shard_note_joined(st, &t, 5000) == 0);
	CHECK(t.joined_ms == 1000);
	CHECK(shard_claim(st, &one, &t, err, sizeof(err)) == 0);
	CHECK(t.joined_ms == 1000);
	/* another shard, or unsharded, is refused with a reason */
	CHECK(shard_claim(st, &two, &t, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "belongs to shard 1, not to shard 2"), "%s", err);
	CHECK(shard_claim(st, &none, &t, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "--shard 1/N"), "%s", err);
	/* ring changes only move forward, and are kept */
	CHECK(shard_claim(st, &one, &t, err, sizeof(err)) == 0);
	CHECK(shard_note_ring_change(st, &t, 7000) == 0);
	CHECK(shard_note_ring_change(st, &t, 6000) == 0);
	CHECK(t.ring_changed_ms == 7000);
	CHECK(shard_claim(st, &one, &t, err, sizeof(err)) == 0);
	CHECK(t.ring_changed_ms == 7000);
	CHECK(store_node_get(st, "shard", id, sizeof(id), &known) == 0);
	CHECK(known);
	shard_control_queue(id, owner, sizeof(owner));
	CHECK(strcmp(owner, "orchestrator-1.control") == 0);
	shard_control_queue("none", owner, sizeof(owner));
	CHECK(strcmp(owner, "orchestrator.control") == 0);
	shard_control_queue("", owner, sizeof(owner));
	CHECK(strcmp(owner, "orchestrator.control") == 0);
	CHECK(store_saga_exists(st, "ord-x", &known) == 0);
	CHECK(!known);
	store_close(st);

	/* an unsharded database cannot become a shard */
	snprintf(path, sizeof(path), "%s/u.db", dir);
	st = store_open(path, err, sizeof(err));
	CHECK(st != NULL);
	CHECK(shard_claim(st, &none, &t, err, sizeof(err)) == 0);
	CHECK(shard_claim(st, &two, &t, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "unsharded"), "%s", err);
	store_close(st);
	testutil_rmtree(dir);
	free(dir);
}

static void
test_refuse(void)
{
	struct shard one, none;
	struct shard_times t = {.joined_ms = 10500, .ring_changed_ms = 20500};
	char err[256];

	CHECK(shard_parse("1/2", &one, err, sizeof(err)) == 0);
	CHECK(shard_parse(NULL, &none, err, sizeof(err)) == 0);
	/* no timestamp: nothing to tell by */
	CHECK(shard_refuse(&one, &t, 0, true, false) == NULL);
	/* unsharded: never */
	CHECK(shard_refuse(&none, &t, 0, true, false) == NULL);
	/* published before the shard joined. In whole seconds, 10000 may
	 * be 10.999 s, after 10.5 s, but cannot be told apart: refused */
	CHECK(shard_refuse(&one, &t, 9000, false, false) != NULL);
	CHECK(shard_refuse(&one, &t, 10000, false, false) != NULL);
	CHECK(shard_refuse(&one, &t, 11000, false, false) == NULL);
	/* to the millisecond (the bus's x-published-ms): exact */
	CHECK(shard_refuse(&one, &t, 10499, false, false) != NULL);
	CHECK(shard_refuse(&one, &t, 10500, false, false) == NULL);
	CHECK(shard_refuse(&one, &t, 10501, false, false) == NULL);
	/* ... unless the saga is already ours: a plain duplicate */
	CHECK(shard_refuse(&one, &t, 9000, false, true) == NULL);
	/* a resend: refused up to SHARD_RESEND_MARGIN_MS after the join */
	{
		struct shard_times j = {.joined_ms = 10500};
		CHECK(shard_refuse(&one, &j, 11499, true, false) != NULL);
		CHECK(shard_refuse(&one, &j, 11500, true, false) == NULL);
		CHECK(shard_refuse(&one, &j, 11499, false, false) == NULL);
	}
	/* after a ring change: only resends from before it (with the
	 * margin: the leaving shard unbinds after its notice) */
	CHECK(shard_refuse(&one, &t, 15000, false, false) == NULL);
	CHECK(shard_refuse(&one, &t, 15000, true, false) != NULL);
	CHECK(shard_refuse(&one, &t, 20000, true, false) != NULL);
	CHECK(shard_refuse(&one, &t, 21000, true, false) != NULL);
	CHECK(shard_refuse(&one, &t, 21499, true, false) != NULL);
	CHECK(shard_refuse(&one, &t, 21500, true, false) == NULL);
	CHECK(shard_refuse(&one, &t, 21500, false, false) == NULL);
	CHECK(shard_refuse(&one, &t, 15000, true, true) == NULL);
	CHECK(strstr(shard_refuse(&one, &t, 9000, false, false), "joined") !=
	      NULL);
	CHECK(strstr(shard_refuse(&one, &t, 21000, true, false), "resend") !=
	      NULL);
	/* never joined (a draining shard that never bound): the join
	 * refuses nothing */
	t.joined_ms = 0;
	t.ring_changed_ms = 0;
	CHECK(shard_refuse(&one, &t, 9000, true, false) == NULL);
}

int
main(void)
{
	RUN(test_parse);
	RUN(test_claim);
	RUN(test_refuse);
	return check_summary();
}
