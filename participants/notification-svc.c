/* notification-svc -- one customer message per domain event, and the order
 * confirmation a while after the order completes.
 *
 *   notification-svc --amqp URL --db PATH [--templates FILE]
 *                    [--confirm-delay MS] [--log-level L]
 *                    [--processed-days N]
 *   notification-svc --db PATH --print
 *
 * Consumes queue notification.events, bound to order_events by "order.*".
 * Each event is rendered from its template and written to the outbox (the
 * table `notifications`, one row per event id: a redelivered event writes
 * nothing new). order.completed also schedules the confirmation: a copy
 * goes to queue notification.delay (through notification.own, its own
 * exchange) with a per-message TTL of
 * --confirm-delay ms (default 2000); when it expires the broker
 * dead-letters it to notification.confirm, which this daemon consumes and
 * renders as order.confirmation. No broker plugin is needed.
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

static enum part_verdict
on_event(void *arg, sqlite3 *db, const struct envelope *in, int attempt,
         struct part_reply *out, char *why, size_t whylen)
{
	const struct notif *n = arg;
	char text[TEXT_MAX + 256];
	enum part_verdict v;

	(void)attempt;
	if (check_event(n, in, why, whylen) != PART_DONE)
		return PART_REFUSE;
	render(n, in->type, &in->payload, text, sizeof(text));
	v = write_out(db, in, in->type, text, why, whylen);
	if (v != PART_DONE || strcmp(in->type, "order.completed") != 0)
		return v;
	/* the confirmation, later: through the delay queue */
	snprintf(out->type, sizeof(out->type), "order.confirmation");
	snprintf(out->id, sizeof(out->id), "confirm-%.180s", in->id);
	snprintf(out->exchange, sizeof(out->exchange), "%s", OWN_EXCHANGE);
	snprintf(out->routing_key, sizeof(out->routing_key),
	         "notification.delay");
	out->expiration_ms = n->delay_ms > 0 ? n->delay_ms : 1;
	value_clear(&out->payload);
	if (value_copy(&out->payload, &in->payload) != 0) {
		value_set_map(&out->payload);
		snprintf(why, whylen, "out of memory");
		return PART_RETRY;
	}
	return PART_DONE;
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
        "                        [--processed-days N]\n"
        "       notification-svc --db PATH --print\n"
        "  --templates FILE     lines \"order.type: text\" replacing the "
        "built-in ones\n"
        "  --confirm-delay MS   how long after order.completed the "
        "confirmation comes\n"
        "                       (0 to 86400000, default 2000)\n"
        "  --print              print the notifications sent, then exit "
        "(no broker)\n" PART_USAGE_COMMON PART_USAGE_RETENTION;

static const struct part_command commands[] = {
        {"order.confirmation", on_confirmation, NULL, NULL},
        {NULL, on_event, NULL, NULL},
};

/* The topology: the events, and the confirmation's delay line (a queue
 * whose expired messages are dead-lettered to notification.confirm),
 * reached through notification's own exchange (participant.h). */
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
static const struct bus_binding bindings[] = {
        {"order_events", "notification.events", NULL, "order.*"},
        {OWN_EXCHANGE, "notification.delay", NULL, "notification.delay"},
};

static int
set_templates(void *arg, const char *path)
{
	return load_templates(arg, path) != 0 ? -1 : 0;
}

static int
set_delay(void *arg, const char *v)
{
	struct notif *n = arg;
	char *end;

	errno = 0;
	n->delay_ms = strtoll(v, &end, 10);
	if (errno != 0 || *end != '\0' || end == v || n->delay_ms < 0 ||
	    n->delay_ms > 86400000) {
		fprintf(stderr,
		        "notification-svc: --confirm-delay: \"%s\" is not "
		        "0..86400000 ms\n",
		        v);
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static struct notif n = {.delay_ms = 2000};
	static bool print;
	static const struct part_flag flags[] = {
	        {"templates", .set = set_templates},
	        {"confirm-delay", .set = set_delay},
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
	        .arg = &n,
	};
	struct part_common com;
	int rc;

	for (size_t i = 0; i < ARRAY_LEN(builtin); i++)
		set_template(&n, builtin[i][0], builtin[i][1]);
	rc = part_parse(&cli, argc, argv, &com);
	if (rc >= 0)
		return rc;
	if (print)
		return part_print("notification-svc", com.db,
		                  "SELECT saga_id, kind, text FROM "
		                  "notifications ORDER BY seq");
	return part_main("notification-svc", &com, &cfg);
}
