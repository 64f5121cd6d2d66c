/* demo-participants -- inventory, payment and shipping played by one
 * process with simple rules, for the demo and for trying a statechart
 * against a live orchestrator. (The real participants are separate
 * daemons with their own databases; this one keeps its state in memory.)
 *
 *   demo-participants --amqp URL [--stock N] [--decline-token T]
 *                     [--unserved COUNTRY] [--fail-rate PERCENT]
 *
 * Rules: every sku starts with --stock units (default 1000; skus named
 * sku-rare* start with none) and a reservation takes them all or none; card
 * token --decline-token is declined;
 * --fail-rate percent of charges answer payment.unavailable (a transient
 * failure the orchestrator retries); shipping to --unserved fails.
 * Compensations always succeed. SIGTERM/SIGINT stop it.
 */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "envelope.h"
#include "log.h"
#include "number.h"

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

struct sku {
	char name[64];
	long stock;
};

struct sim {
	struct bus *bus;
	struct sku skus[256];
	size_t nskus;
	long initial;
	const char *decline, *unserved;
	int fail_rate;
	unsigned rng;
	long charged, refunded;
};

static struct sku *
sku(struct sim *s, const char *name)
{
	for (size_t i = 0; i < s->nskus; i++)
		if (strcmp(s->skus[i].name, name) == 0)
			return &s->skus[i];
	if (s->nskus == 256)
		return NULL;
	snprintf(s->skus[s->nskus].name, sizeof(s->skus[0].name), "%s", name);
	/* "sku-rare..." is never in stock: the demo's stock-out */
	s->skus[s->nskus].stock =
	        strncmp(name, "sku-rare", 8) == 0 ? 0 : s->initial;
	return &s->skus[s->nskus++];
}

static const char *
str(const struct value *payload, const char *path)
{
	const struct value *v = value_path_get(payload, path);
	return v != NULL && v->type == VALUE_STR ? v->u.s.ptr : "";
}

static int64_t
num(const struct value *v, const char *key)
{
	const struct value *x = value_map_get(v, key);
	return x != NULL && x->type == VALUE_INT ? x->u.i : 0;
}

/* Reserves every line or none. */
static const char *
reserve(struct sim *s, const struct value *payload)
{
	const struct value *items = value_map_get(payload, "items");
	if (items == NULL || items->type != VALUE_ARRAY)
		return "inventory.rejected";
	for (size_t i = 0; i < items->u.a.len; i++) {
		struct sku *k = sku(s, str(&items->u.a.items[i], "sku"));
		if (k == NULL ||
		    k->stock < num(&items->u.a.items[i], "quantity"))
			return "inventory.rejected";
	}
	for (size_t i = 0; i < items->u.a.len; i++)
		sku(s, str(&items->u.a.items[i], "sku"))->stock -=
		        num(&items->u.a.items[i], "quantity");
	return "inventory.reserved";
}

static void
release(struct sim *s, const struct value *payload)
{
	const struct value *items = value_map_get(payload, "items");
	for (size_t i = 0;
	     items != NULL && items->type == VALUE_ARRAY && i < items->u.a.len;
	     i++) {
		struct sku *k = sku(s, str(&items->u.a.items[i], "sku"));
		if (k != NULL)
			k->stock += num(&items->u.a.items[i], "quantity");
	}
}

static const char *
decide(struct sim *s, const struct envelope *c)
{
	const struct value *p = &c->payload;
	if (strcmp(c->type, "inventory.reserve") == 0)
		return reserve(s, p);
	if (strcmp(c->type, "inventory.release") == 0) {
		release(s, p);
		return "inventory.released";
	}
	if (strcmp(c->type, "payment.charge") == 0) {
		s->rng = s->rng * 1103515245u + 12345u;
		if ((int)((s->rng >> 8) % 100) < s->fail_rate)
			return "payment.unavailable";
		if (strcmp(str(p, "payment_method"), "cod") == 0)
			return "payment.collection_registered";
		if (s->decline != NULL &&
		    strcmp(str(p, "card_token"), s->decline) == 0)
			return "payment.declined";
		s->charged += num(p, "total_cents");
		return "payment.charged";
	}
	if (strcmp(c->type, "payment.refund") == 0) {
		if (strcmp(str(p, "payment_method"), "cod") == 0)
			return "payment.collection_cancelled";
		s->refunded += num(p, "total_cents");
		return "payment.refunded";
	}
	if (strcmp(c->type, "shipping.create") == 0)
		return s->unserved != NULL && strcmp(str(p, "ship_to.country"),
		                                     s->unserved) == 0
		               ? "shipping.failed"
		               : "shipping.created";
	if (strcmp(c->type, "shipping.cancel") == 0)
		return "shipping.cancelled";
	return NULL;
}

struct one_ctx {
	struct sim *s;
	const struct bus_delivery *d;
	int bad; /* commands that could not be handled */
};

/* One command (a delivery may carry several: a bundle, lib/envelope.h). */
static void
on_one(void *arg, const void *cbody, size_t clen, const char *tp)
{
	struct one_ctx *x = arg;
	struct sim *s = x->s;
	const struct bus_delivery *d = x->d;
	struct envelope c, r;
	char err[256], *body = NULL;
	size_t len;
	const char *type;

	envelope_init(&c);
	if (envelope_decode(cbody, clen, &c, err, sizeof(err)) != 0) {
		log_warnx("a bad command: %s", err);
		x->bad++;
		return;
	}
	type = decide(s, &c);
	if (type == NULL) {
		log_warnx("unknown command %s", c.type);
		x->bad++;
		envelope_clear(&c);
		return;
	}
	envelope_init(&r);
	envelope_new_id(r.id, sizeof(r.id), "rep");
	snprintf(r.saga, sizeof(r.saga), "%s", c.saga);
	snprintf(r.type, sizeof(r.type), "%s", type);
	snprintf(r.step, sizeof(r.step), "%s", c.step);
	snprintf(r.re, sizeof(r.re), "%s", c.id);
	r.attempt = c.attempt;
	r.ts = c.ts;
	if (strcmp(type, "payment.charged") == 0)
		value_map_put_str(&r.payload, "charge_id", c.id);
	if (strcmp(type, "shipping.created") == 0)
		value_map_put_str(&r.payload, "tracking_number", c.saga);
	if (envelope_encode(&r, &body, &len) == 0) {
		struct bus_message m = {
		        .exchange = "saga.replies",
		        .routing_key =
		                d->reply_to[0] ? d->reply_to : "orchestrator",
		        .message_id = r.id,
		        .correlation_id = r.saga,
		        .type = r.type,
		        .traceparent = tp[0] ? tp : NULL,
		        .body = body,
		        .len = len,
		};
		bus_publish(s->bus, &m, 0);
	}
	log_info("saga=%s %s -> %s", c.saga, c.type, type);
	free(body);
	envelope_clear(&r);
	envelope_clear(&c);
}

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct one_ctx x = {arg, d, 0};
	char err[256];
	bool bundle = strcmp(d->type, ENVELOPE_BUNDLE_TYPE) == 0;

	if (envelope_each(d->type, d->body, d->len, d->traceparent, on_one, &x,
	                  err, sizeof(err)) != 0) {
		log_warnx("dead-lettering a bad bundle: %s", err);
		x.bad = 1, bundle = false;
	}
	/* a lone bad command is dead-lettered; a bad one in a bundle is
	 * dropped with the warning above (the others are answered). Acked
	 * before the replies are confirmed: this simulator keeps no durable
	 * state, so a lost reply is a timeout and a retry */
	if (x.bad > 0 && !bundle)
		bus_reject(x.s->bus, d->ref, false);
	else
		bus_ack(x.s->bus, d->ref, false);
}

/* A flag's value that is not a number from 0 to max: exit status 2. */
static int
bad_number(const char *flag, const char *arg, long max)
{
	fprintf(stderr,
	        "demo-participants: %s wants a number from 0 to %ld, not "
	        "\"%s\"\n",
	        flag, max, arg);
	return 2;
}

/* The flags into *s, *url and *level: -1 to go on, else the exit
 * status. */
static int
parse_flags(int argc, char **argv, struct sim *s, const char **url,
            enum log_level *level)
{
	static const struct option opts[] = {
	        {"amqp", required_argument, NULL, 'a'},
	        {"stock", required_argument, NULL, 's'},
	        {"decline-token", required_argument, NULL, 'd'},
	        {"unserved", required_argument, NULL, 'u'},
	        {"fail-rate", required_argument, NULL, 'f'},
	        {"log-level", required_argument, NULL, 'l'},
	        {NULL, 0, NULL, 0},
	};
	long long n;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			*url = optarg;
			break;
		case 's':
			if (number_parse(optarg, 0, 1000000000, &n) != 0)
				return bad_number("--stock", optarg,
				                  1000000000);
			s->initial = (long)n;
			break;
		case 'd':
			s->decline = optarg;
			break;
		case 'u':
			s->unserved = optarg;
			break;
		case 'f':
			if (number_parse(optarg, 0, 100, &n) != 0)
				return bad_number("--fail-rate", optarg, 100);
			s->fail_rate = (int)n;
			break;
		case 'l':
			if (log_level_parse(optarg, level) != 0) {
				fprintf(stderr,
				        "demo-participants: bad log "
				        "level %s\n",
				        optarg);
				return 2;
			}
			break;
		default:
			fprintf(stderr,
			        "usage: demo-participants --amqp URL [--stock "
			        "N] [--decline-token T] [--unserved C] "
			        "[--fail-rate PCT]\n");
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr,
		        "demo-participants: unexpected argument \"%s\"\n",
		        argv[optind]);
		return 2;
	}
	return -1;
}

int
main(int argc, char **argv)
{
	static const struct bus_exchange ex[] = {
	        {"saga.commands", "topic", NULL, NULL},
	        {"saga.replies", "direct", NULL, NULL},
	        {"saga.dlx", "direct", NULL, NULL},
	};
	static const struct bus_queue q[] = {
	        {.name = "demo.commands",
	         .dlx = "saga.dlx",
	         .dlrk = "demo.commands.dlq"},
	        {.name = "demo.commands.dlq"},
	};
	static const struct bus_binding bd[] = {
	        {"saga.commands", "demo.commands", NULL, "inventory"},
	        {"saga.commands", "demo.commands", NULL, "payment.#"},
	        {"saga.commands", "demo.commands", NULL, "shipping.#"},
	        {"saga.dlx", "demo.commands.dlq", NULL, "demo.commands.dlq"},
	};
	static const struct bus_topology t = {ex, 3, q, 2, bd, 4};
	static const char *consume[] = {"demo.commands"};
	static struct sim s;
	struct bus_config cfg = {.url = getenv("SAGA_AMQP_URL"),
	                         .name = "demo-participants",
	                         .topology = &t,
	                         .consume = consume,
	                         .nconsume = 1};
	struct bus_handlers h = {on_delivery, NULL, &s};
	enum log_level level = LOG_WARN;
	char err[512];
	int rc;

	s.initial = 1000;
	s.rng = 42;
	rc = parse_flags(argc, argv, &s, &cfg.url, &level);
	if (rc >= 0)
		return rc;
	log_init("demo-participants", level);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	s.bus = bus_open(&cfg, err, sizeof(err));
	if (s.bus == NULL) {
		fprintf(stderr, "demo-participants: %s\n", err);
		return 2;
	}
	if (bus_connect(s.bus, err, sizeof(err)) != 0)
		log_warnx("%s; retrying", err);
	while (!stop)
		bus_poll(s.bus, 200, &h);
	bus_cancel(s.bus);
	bus_flush(s.bus, 5000, &h);
	bus_close(s.bus);
	return 0;
}
