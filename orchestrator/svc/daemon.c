/* daemon.c -- saga-orchestrator's wiring (see daemon.h): the store, the
 * chart registry, the processor, the durable loop and, behind the loop's
 * transport interface, the AMQP bus.
 *
 * The transport adapter is small on purpose: deliveries are mapped to a
 * source by the queue they came from, outbox rows become bus messages
 * (commands are mandatory, so a command nobody is bound to receive is
 * reported instead of vanishing), and settling is one `ack` per accepted
 * delivery plus one `reject` (to the queue's dead-letter exchange) per
 * refused one. Acks are sent one by one, not with `multiple`, so a reject
 * in the middle of a batch can never turn an ack into a 406 (NOTES
 * pitfall 7); the broker's cost is per message, not per frame (§6).
 */
#include "daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"
#include "loop.h"
#include "orch.h"
#include "registry.h"
#include "store.h"

#define DLX "saga.dlx"

int
daemon_parse_count(const char *s, int min, int max, int *out)
{
	char *end;
	long v;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

struct adapter {
	struct bus *bus;
	struct loop *l;
	char orders_q[128], replies_q[128], control_q[128];
};

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct adapter *a = arg;
	struct loop_delivery ld = {
		.ref = d->ref,
		.body = d->body,
		.len = d->len,
		.message_id = d->message_id,
		.content_type = d->content_type,
		.traceparent = d->traceparent,
	};
	if (strcmp(d->queue, a->orders_q) == 0)
		ld.source = SRC_ORDERS;
	else if (strcmp(d->queue, a->control_q) == 0)
		ld.source = SRC_CONTROL;
	else
		ld.source = SRC_REPLIES;
	loop_deliver(a->l, &ld);
}

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm c)
{
	struct adapter *a = arg;
	loop_confirmed(a->l, tag, c == BUS_ACK ? CONFIRM_ACK : CONFIRM_RETURNED);
}

static int
t_publish(void *ctx, const struct store_outbox *m, uint64_t tag)
{
	struct adapter *a = ctx;
	struct bus_message bm = {
		.exchange = m->exchange,
		.routing_key = m->routing_key,
		.message_id = m->message_id,
		.correlation_id = m->saga_id,
		.type = m->type,
		.reply_to = m->reply_to,
		.traceparent = m->traceparent,
		.timestamp_ms = m->created_ms,
		.mandatory = strcmp(m->exchange, ORCH_EXCHANGE_COMMANDS) == 0,
		.body = m->body,
		.len = m->body_len,
	};
	return bus_publish(a->bus, &bm, tag);
}

static int
t_settle(void *ctx, const uint64_t *acks, size_t nacks,
	 const uint64_t *rejects, const char *const *reasons, size_t nrej)
{
	struct adapter *a = ctx;
	(void)reasons; /* logged by the loop */
	for (size_t i = 0; i < nrej; i++)
		bus_reject(a->bus, rejects[i], false);
	for (size_t i = 0; i < nacks; i++)
		bus_ack(a->bus, acks[i], false);
	return 0;
}

static int
t_poll(void *ctx, struct loop *l, int timeout_ms)
{
	struct adapter *a = ctx;
	struct bus_handlers h = {on_delivery, on_confirm, a};
	a->l = l;
	bus_poll(a->bus, timeout_ms, &h);
	return 0;
}

static int
t_stop(void *ctx)
{
	struct adapter *a = ctx;
	return bus_cancel(a->bus);
}

static size_t
t_unconfirmed(void *ctx)
{
	struct adapter *a = ctx;
	return bus_unconfirmed(a->bus);
}

struct reload_ctx {
	struct registry *reg;
	const char *dir;
};

static void
on_reload(void *arg)
{
	struct reload_ctx *r = arg;
	char err[8192];
	if (registry_load_dir(r->reg, r->dir, loop_now_ms(), err,
			      sizeof(err)) != 0) {
		log_error("reload of %s failed; the charts in use stay:\n%s",
			  r->dir, err);
		return;
	}
	log_info("reloaded statecharts from %s", r->dir);
}

int
orch_daemon_run(const struct orch_daemon_config *cfg, int check_only,
		volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
	char err[8192];
	struct store *st = NULL;
	struct registry *reg = NULL;
	struct orch *o = NULL;
	struct loop *l = NULL;
	struct bus *bus = NULL;
	struct adapter a;
	int rc = 1;

	memset(&a, 0, sizeof(a));
	st = store_open(cfg->db, err, sizeof(err));
	if (st == NULL) {
		log_error("%s", err);
		return 1;
	}
	reg = registry_new(st);
	if (reg == NULL ||
	    registry_load_dir(reg, cfg->statecharts, loop_now_ms(), err,
			      sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", reg == NULL ? "out of memory" : err);
		goto out;
	}
	if (check_only) {
		const struct chart *cs[16];
		size_t n = registry_list(reg, cs, 16);
		for (size_t i = 0; i < n && i < 16; i++)
			printf("chart %s version %s (%s)\n", cs[i]->name,
			       cs[i]->version, cs[i]->file);
		printf("configuration ok\n");
		rc = 0;
		goto out;
	}

	snprintf(a.orders_q, sizeof(a.orders_q), "orchestrator.orders");
	if (strcmp(cfg->reply_key, "orchestrator") == 0)
		snprintf(a.replies_q, sizeof(a.replies_q),
			 "orchestrator.replies");
	else
		snprintf(a.replies_q, sizeof(a.replies_q), "%s.replies",
			 cfg->reply_key);
	snprintf(a.control_q, sizeof(a.control_q), "orchestrator.control");
	{
		const struct bus_exchange ex[] = {
			{ORCH_EXCHANGE_EVENTS, "topic", NULL},
			{ORCH_EXCHANGE_COMMANDS, "topic", NULL},
			{ORCH_EXCHANGE_REPLIES, "direct", NULL},
			{DLX, "direct", NULL},
		};
		const struct bus_queue qs[] = {
			{.name = a.orders_q, .dlx = DLX,
			 .dlrk = "orchestrator.dlq"},
			{.name = a.replies_q, .dlx = DLX,
			 .dlrk = "orchestrator.dlq"},
			{.name = a.control_q, .dlx = DLX,
			 .dlrk = "orchestrator.dlq"},
			{.name = "orchestrator.dlq"},
		};
		const struct bus_binding bd[] = {
			{ORCH_EXCHANGE_EVENTS, a.orders_q, NULL,
			 "order.created"},
			{ORCH_EXCHANGE_REPLIES, a.replies_q, NULL,
			 cfg->reply_key},
			{DLX, "orchestrator.dlq", NULL, "orchestrator.dlq"},
		};
		const struct bus_topology topo = {ex, 4, qs, 4, bd, 3};
		const char *consume[] = {a.orders_q, a.replies_q, a.control_q};
		struct bus_config bc = {
			.url = cfg->amqp,
			.name = "saga-orchestrator",
			.ca_file = getenv("SAGA_AMQP_CA"),
			.cert_file = getenv("SAGA_AMQP_CERT"),
			.key_file = getenv("SAGA_AMQP_KEY"),
			.prefetch = (uint16_t)cfg->prefetch,
			.topology = &topo,
			.consume = consume,
			.nconsume = 3,
		};
		struct loop_transport t = {
			.ctx = &a,
			.publish = t_publish,
			.settle = t_settle,
			.poll = t_poll,
			.stop_consuming = t_stop,
			.unconfirmed = t_unconfirmed,
		};
		struct loop_config lc = {
			.batch_max = (size_t)cfg->batch,
			.batch_wait_ms = cfg->batch_wait_ms,
			/* every queue's window can arrive at once */
			.publish_window = 2000,
		};
		struct orch_config oc = {.reply_to = cfg->reply_key};
		struct reload_ctx rctx = {reg, cfg->statecharts};

		if ((size_t)cfg->prefetch * 3 > lc.batch_max)
			lc.batch_max = (size_t)cfg->prefetch * 3;
		bus = bus_open(&bc, err, sizeof(err));
		if (bus == NULL) {
			log_error("%s", err);
			goto out;
		}
		a.bus = bus;
		if (bus_connect(bus, err, sizeof(err)) != 0)
			log_warnx("cannot connect yet (%s); retrying", err);
		o = orch_new(st, reg, &oc);
		l = o != NULL ? loop_new(st, o, &t, &lc) : NULL;
		if (l == NULL) {
			log_error("out of memory");
			goto out;
		}
		log_info("running: db=%s statecharts=%s batch=%zu "
			 "prefetch=%d",
			 cfg->db, cfg->statecharts, lc.batch_max,
			 cfg->prefetch);
		rc = loop_run(l, stop, reload, on_reload, &rctx, 10000) == 0
			     ? 0
			     : 1;
		log_info("stopped (%s)", rc == 0 ? "drained" : "not drained");
	}
out:
	loop_free(l);
	orch_free(o);
	bus_close(bus);
	registry_free(reg);
	store_close(st);
	return rc;
}
