/* notification-svc -- one customer message per domain event, and the order
 * confirmation a while after the order completes.
 *
 *   notification-svc --amqp URL --db PATH [--templates FILE]
 *                    [--confirm-delay MS] [--events audit|queue]
 *                    [--log-level L] [--processed-days N]
 *   notification-svc --db PATH --print
 *
 * Reads the domain events from the audit stream (--events audit, the
 * default; the orchestrator declares it and binds it to order_events by
 * "order.#"), from the offset stored in this daemon's database in the
 * same transaction as the notifications it wrote (participant.h,
 * `stream`): a restart resumes exactly where it committed, and the
 * broker stores each event once for every reader instead of once more
 * per consumer. A retry or a dead letter is a copy to
 * notification.events.retry (back to notification.events, a classic
 * queue this daemon also consumes) or notification.events.dlq. With
 * --events queue it consumes notification.events bound to order_events
 * by "order.*" instead, each event a copy of its own, acked.
 * Each event is rendered from its template and written to the outbox
 * (the table `notifications`, one row per event id: a redelivered event
 * writes nothing new). order.completed also schedules the confirmation:
 * a row of `confirmations`, due --confirm-delay ms later (default 2000),
 * written in the same transaction; the daemon's timer renders it as
 * order.confirmation when due. No broker message is involved, so the
 * delay costs the broker nothing and survives a SIGKILL. (Older
 * versions delayed it through the broker: a copy to notification.delay
 * with a per-message TTL, dead-lettered to notification.confirm. This
 * daemon still consumes notification.confirm, so what an older version
 * scheduled before an upgrade is still sent.)
 *
 * What it takes: an order.* event it has a template for, whose payload
 * names its order (order_id, equal to the envelope's saga: the
 * orchestrator and order-api always send it so). Anything else -- another
 * type (an inventory.reserved put on notification.events by mistake once
 * became "Order : inventory.reserved."), an order.* type without a
 * template, an event that names no order -- is refused (PART_REFUSE):
 * nothing is written and the message goes to its queue's .dlq with the
 * reason in x-saga-error. An order this daemon has not heard of is not a
 * reason to refuse: it keeps no list of orders (the orchestrator is the
 * authority, and who may publish to order_events is the broker's
 * permissions' business), and an order.created it missed must not cost
 * the customer the later messages.
 *
 * Templates (--templates FILE): lines "order.type: text", '#' comments;
 * {field} or {a.b} is replaced by that field of the event's payload (the
 * order); a field the event lacks stays as written. Built-in templates
 * cover every event of order.yaml; a file replaces those it names and
 * may add order.* types (a template for another type is an error).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "clock.h"
#include "log.h"
#include "number.h"
#include "participant.h"

extern const struct db_migration notification_migrations[];
extern const size_t notification_migrations_count;

#define MAX_TEMPLATES 32
#define TEXT_MAX      1024

struct template
{
	char type[ENVELOPE_TYPE_MAX];
	char text[TEXT_MAX];
};

struct notif {
	struct template t[MAX_TEMPLATES];
	int n;
	int64_t delay_ms;
	int own_queue;     /* --events: 0 audit, 1 queue (events_words) */
	int from_end;      /* --from: 0 first, 1 end (from_words) */
	int batch_wait_ms; /* --batch-wait */
};

static const char *const builtin[][2] = {
        {"order.created", "Thank you, {customer_id}: we received your "
                          "order {order_id}."},
        {"order.inventory_checked", "Order {order_id}: your items are "
                                    "reserved."},
        {"order.payment_success", "Order {order_id}: payment of "
                                  "{total_cents} {currency} accepted."},
        {"order.shipped", "Order {order_id} is on its way: tracking "
                          "{tracking_number}."},
        {"order.completed", "Order {order_id} is complete."},
        {"order.failed", "We are sorry: order {order_id} could not be "
                         "completed; anything charged is refunded."},
        {"order.confirmation", "Order {order_id} is confirmed. Thank you "
                               "for shopping with us!"},
        {"order.cancel_requested", "Order {order_id}: we received your "
                                   "cancellation."},
        {"order.cancelled", "Order {order_id} is cancelled; anything "
                            "charged is refunded."},
        {"order.cancel_refused", "Order {order_id} could not be cancelled: "
                                 "{reason}."},
};

static int
set_template(struct notif *n, const char *type, const char *text)
{
	int i;
	for (i = 0; i < n->n && strcmp(n->t[i].type, type) != 0; i++)
		;
	if (i == MAX_TEMPLATES || strlen(text) >= TEXT_MAX ||
	    !envelope_type_valid(type) || strncmp(type, "order.", 6) != 0)
		return -1;
	snprintf(n->t[i].type, sizeof(n->t[i].type), "%s", type);
	snprintf(n->t[i].text, sizeof(n->t[i].text), "%s", text);
	if (i == n->n)
		n->n++;
	return 0;
}

static int
load_templates(struct notif *n, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[TEXT_MAX + 200];
	int no = 0;

	if (f == NULL) {
		fprintf(stderr, "notification-svc: --templates %s: %s\n", path,
		        strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *colon, *text;
		no++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[strspn(line, " \t")] == '\0')
			continue;
		colon = strchr(line, ':');
		if (colon == NULL)
			goto bad;
		*colon = '\0';
		text = colon + 1 + strspn(colon + 1, " \t");
		if (set_template(n, line, text) != 0)
			goto bad;
	}
	fclose(f);
	return 0;
bad:
	fclose(f);
	fprintf(stderr,
	        "notification-svc: %s:%d: expected \"order.type: text\" (a "
	        "valid order.* type, text under %d bytes, at most %d "
	        "templates)\n",
	        path, no, TEXT_MAX, MAX_TEMPLATES);
	return -1;
}

/* The template for type; NULL if there is none. */
static const char *
template_of(const struct notif *n, const char *type)
{
	for (int i = 0; i < n->n; i++)
		if (strcmp(n->t[i].type, type) == 0)
			return n->t[i].text;
	return NULL;
}

/* PART_DONE if the event is one to notify (the file's header says
 * which), else PART_REFUSE with the reason in why. */
/* notification's own exchange (participant.h, part_own_exchange) */
#define OWN_EXCHANGE "notification" PART_OWN_SUFFIX

static enum part_verdict
check_event(const struct notif *n, const struct envelope *in, char *why,
            size_t whylen)
{
	const char *order = part_str(&in->payload, "order_id");

	if (strncmp(in->type, "order.", 6) != 0 ||
	    template_of(n, in->type) == NULL) {
		snprintf(why, whylen,
		         "no template for event type %s: notification-svc "
		         "takes only the order.* events it has templates for",
		         in->type);
		return PART_REFUSE;
	}
	if (order[0] == '\0' || strcmp(order, in->saga) != 0) {
		snprintf(why, whylen,
		         "%s names no order: payload order_id \"%.100s\" is "
		         "not its saga \"%.100s\"",
		         in->type, order, in->saga);
		return PART_REFUSE;
	}
	return PART_DONE;
}

/* Fills the template's {field} placeholders from the payload (the caller
 * checked that the template exists). */
static void
render(const struct notif *n, const char *type, const struct value *p,
       char *out, size_t cap)
{
	const char *s = template_of(n, type);
	size_t o = 0;

	if (s == NULL)
		s = "";
	while (*s != '\0' && o + 1 < cap) {
		const char *end = *s == '{' ? strchr(s, '}') : NULL;
		char name[128], val[256];
		const struct value *v;
		if (end != NULL && (size_t)(end - s) < sizeof(name)) {
			snprintf(name, sizeof(name), "%.*s", (int)(end - s - 1),
			         s + 1);
			v = value_path_get(p, name);
			if (v != NULL &&
			    value_scalar_text(v, val, sizeof(val)) >= 0) {
				o += (size_t)snprintf(out + o, cap - o, "%s",
				                      val);
				if (o >= cap)
					o = cap - 1;
				s = end + 1;
				continue;
			}
		}
		out[o++] = *s++;
	}
	out[o] = '\0';
}

static enum part_verdict
write_out(sqlite3 *db, const struct envelope *in, const char *kind,
          const char *text, char *why, size_t whylen)
{
	if (part_sql(db,
	             "INSERT OR IGNORE INTO notifications(event_id, saga_id, "
	             "kind, text, at) VALUES (?1, ?2, ?3, ?4, ?5)",
	             "tttti", NULL, in->id, in->saga, kind, text,
	             clock_wall_ms()) < 0) {
		snprintf(why, whylen, "database: %s", sqlite3_errmsg(db));
		return PART_RETRY;
	}
	log_info("saga=%s notified (%s): %s", in->saga, kind, text);
	return PART_DONE;
}

/* The confirmation, later: a row of `confirmations`, in the event's
 * transaction (its savepoint), rendered now. */
static enum part_verdict
schedule_confirmation(const struct notif *n, sqlite3 *db,
                      const struct envelope *in, char *why, size_t whylen)
{
	char text[TEXT_MAX + 256], id[ENVELOPE_ID_MAX];

	render(n, "order.confirmation", &in->payload, text, sizeof(text));
	snprintf(id, sizeof(id), "confirm-%.180s", in->id);
	if (part_sql(db,
	             "INSERT OR IGNORE INTO confirmations(event_id, saga_id, "
	             "text, due_at) VALUES (?1, ?2, ?3, ?4)",
	             "ttti", NULL, id, in->saga, text,
	             clock_wall_ms() + n->delay_ms) < 0) {
		snprintf(why, whylen, "database: %s", sqlite3_errmsg(db));
		return PART_RETRY;
	}
	return PART_DONE;
}

/* part_config.timer_next: the next confirmation due. */
static int
next_due(void *arg, sqlite3 *db, int64_t *at_ms, bool *found)
{
	int rc = part_sql(db,
	                  "SELECT due_at FROM confirmations "
	                  "ORDER BY due_at LIMIT 1",
	                  "", at_ms);

	(void)arg;
	*found = rc == 1;
	return rc < 0 ? -1 : 0;
}

/* part_config.fire: the confirmations due, sent (written) and deleted. */
static int
send_due(void *arg, sqlite3 *db, int64_t now_ms, size_t max)
{
	sqlite3_stmt *st = part_prepared(
	        db, "SELECT event_id, saga_id, text FROM confirmations "
	            "WHERE due_at <= ?1 ORDER BY due_at LIMIT ?2");
	int rc = SQLITE_ROW;

	(void)arg;
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, now_ms);
	sqlite3_bind_int64(st, 2, (int64_t)max);
	while (rc == SQLITE_ROW && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		const char *saga = (const char *)sqlite3_column_text(st, 1);
		const char *text = (const char *)sqlite3_column_text(st, 2);
		if (part_sql(db,
		             "INSERT OR IGNORE INTO notifications(event_id, "
		             "saga_id, kind, text, at) VALUES (?1, ?2, "
		             "'order.confirmation', ?3, ?4)",
		             "ttti", NULL, id, saga, text, now_ms) < 0 ||
		    part_sql(db,
		             "DELETE FROM confirmations WHERE event_id = ?1",
		             "t", NULL, id) < 0)
			rc = SQLITE_ERROR;
		else
			log_info("saga=%s notified (order.confirmation): %s",
			         saga, text);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static enum part_verdict
on_event(void *arg, sqlite3 *db, const struct envelope *in, int attempt,
         struct part_reply *out, char *why, size_t whylen)
{
	const struct notif *n = arg;
	char text[TEXT_MAX + 256];
	enum part_verdict v;

	(void)attempt;
	(void)out; /* an event consumer sends nothing */
	if (check_event(n, in, why, whylen) != PART_DONE)
		return PART_REFUSE;
	render(n, in->type, &in->payload, text, sizeof(text));
	v = write_out(db, in, in->type, text, why, whylen);
	if (v != PART_DONE || strcmp(in->type, "order.completed") != 0)
		return v;
	return schedule_confirmation(n, db, in, why, whylen);
}

static enum part_verdict
on_confirmation(void *arg, sqlite3 *db, const struct envelope *in, int attempt,
                struct part_reply *out, char *why, size_t whylen)
{
	const struct notif *n = arg;
	char text[TEXT_MAX + 256];

	(void)attempt;
	(void)out;
	if (check_event(n, in, why, whylen) != PART_DONE)
		return PART_REFUSE;
	render(n, "order.confirmation", &in->payload, text, sizeof(text));
	return write_out(db, in, "order.confirmation", text, why, whylen);
}

/* ---- the daemon ---- */

static const char usage[] =
        "usage: notification-svc --amqp URL --db PATH [--templates FILE]\n"
        "                        [--confirm-delay MS] [--log-level L]\n"
        "                        [--events audit|queue] "
        "[--batch-wait MS]\n"
        "                        [--from first|end]\n"
        "                        [--processed-days N]\n"
        "       notification-svc --db PATH --print\n"
        "  --templates FILE     lines \"order.type: text\" replacing the "
        "built-in ones\n"
        "  --confirm-delay MS   how long after order.completed the "
        "confirmation comes\n"
        "                       (0 to 86400000, default 2000)\n"
        "  --from WHERE         a database with no offset stored reads audit "
        "from its\n"
        "                       first event retained (default) or its end "
        "(only\n"
        "                       new events: after losing the database, "
        "so 7 days\n"
        "                       of customers are not notified again)\n"
        "  --batch-wait MS      how long a batch of events waits for more "
        "before its\n"
        "                       commit (0 to 10000, default 100): fewer "
        "commits; no\n"
        "                       saga waits for notifications\n"
        "  --events FROM        audit: read the audit stream, where "
        "the offset\n"
        "                       stored with each commit says (default; "
        "it removes\n"
        "                       the binding --events queue makes); queue: "
        "consume\n"
        "                       notification.events bound to order.*\n"
        "  --print              print the notifications sent, then exit "
        "(no broker)\n" PART_USAGE_COMMON PART_USAGE_RETENTION;

static const struct part_command commands[] = {
        {"order.confirmation", on_confirmation, NULL, NULL},
        {NULL, on_event, NULL, NULL},
};

/* The topology: the events, and the delay line older versions sent the
 * confirmation through (a queue whose expired messages are dead-lettered
 * to notification.confirm, through notification's own exchange,
 * participant.h), still declared and drained so an upgrade loses
 * nothing scheduled before it. */
static const char *const queues[] = {"notification.events",
                                     "notification.confirm"};
static const struct bus_exchange exchanges[] = {
        {"order_events", "topic", NULL, NULL},
};
static const struct bus_queue extra_queues[] = {
        {.name = "notification.delay",
         .dlx = OWN_EXCHANGE,
         .dlrk = "notification.confirm"},
};
/* The stream the orchestrator keeps every domain event in (--events
 * audit); with --events queue, the first binding brings them instead,
 * and reading the stream it is removed: left from an earlier version,
 * it would have the broker store a second copy of every event in
 * notification.events (deduplicated here, but stored, delivered and
 * acked for nothing). */
#define AUDIT_STREAM "audit"
static const struct bus_binding bindings[] = {
        {"order_events", "notification.events", NULL, "order.*"},
        {OWN_EXCHANGE, "notification.delay", NULL, "notification.delay"},
};

static int
set_batch_wait(void *arg, const char *v)
{
	struct notif *n = arg;
	long long ms;

	if (number_parse(v, 0, 10000, &ms) != 0) {
		fprintf(stderr,
		        "notification-svc: --batch-wait: \"%s\" is not "
		        "0..10000 ms\n",
		        v);
		return -1;
	}
	n->batch_wait_ms = (int)ms;
	return 0;
}

static int
set_templates(void *arg, const char *path)
{
	return load_templates(arg, path) != 0 ? -1 : 0;
}

static int
set_delay(void *arg, const char *v)
{
	struct notif *n = arg;
	long long ms;

	if (number_parse(v, 0, 86400000, &ms) != 0) {
		fprintf(stderr,
		        "notification-svc: --confirm-delay: \"%s\" is not "
		        "0..86400000 ms\n",
		        v);
		return -1;
	}
	n->delay_ms = ms;
	return 0;
}

int
main(int argc, char **argv)
{
	static struct notif n = {.delay_ms = 2000, .batch_wait_ms = 100};
	static bool print;
	static const char *const events_words[] = {"audit", "queue", NULL};
	static const char *const from_words[] = {"first", "end", NULL};
	static const struct part_flag flags[] = {
	        {"templates", .set = set_templates},
	        {"confirm-delay", .set = set_delay},
	        {"events", .words = events_words, .choice = &n.own_queue},
	        {"batch-wait", .set = set_batch_wait},
	        {"from", .words = from_words, .choice = &n.from_end},
	        {"print", .on = &print},
	};
	static const struct part_cli cli = {
	        "notification-svc", usage, true, flags, ARRAY_LEN(flags), &n};
	struct part_config cfg = {
	        .name = "notification",
	        .migrations = notification_migrations,
	        .nmigrations = notification_migrations_count,
	        .commands = commands,
	        .ncommands = ARRAY_LEN(commands),
	        .queues = queues,
	        .nqueues = ARRAY_LEN(queues),
	        .exchanges = exchanges,
	        .nexchanges = ARRAY_LEN(exchanges),
	        .extra_queues = extra_queues,
	        .nextra_queues = ARRAY_LEN(extra_queues),
	        .bindings = bindings,
	        .nbindings = ARRAY_LEN(bindings),
	        .timer_next = next_due,
	        .fire = send_due,
	        .arg = &n,
	};
	struct part_common com;
	int rc;

	for (size_t i = 0; i < ARRAY_LEN(builtin); i++)
		set_template(&n, builtin[i][0], builtin[i][1]);
	rc = part_parse(&cli, argc, argv, &com);
	if (rc >= 0)
		return rc;
	cfg.linger_ms = n.batch_wait_ms; /* off the sagas' path */
	if (!n.own_queue) { /* the audit stream, not a copy of our own */
		cfg.stream = AUDIT_STREAM;
		cfg.stream_home = queues[0];
		cfg.stream_from_end = n.from_end;
		cfg.bindings = bindings + 1;
		cfg.nbindings = ARRAY_LEN(bindings) - 1;
		cfg.unbindings = bindings;
		cfg.nunbindings = 1;
	}
	if (print)
		return part_print("notification-svc", com.db,
		                  "SELECT saga_id, kind, text FROM "
		                  "notifications ORDER BY seq");
	return part_main("notification-svc", &com, &cfg);
}
