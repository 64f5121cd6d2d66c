/* order-api -- the shop's front door: takes orders over HTTP and publishes
 * order.created; answers an order's status from the orchestrator.
 *
 *   order-api --amqp URL --db PATH [--listen ADDR:PORT]
 *             [--orchestrator-db PATH] [--log-level L]
 *
 * POST /orders (application/json, at most 64 KiB):
 *   {"customer_id": "c-1",
 *    "items": [{"sku": "sku-1", "quantity": 2, "unit_price_cents": 1999}],
 *    "currency": "EUR", "payment_method": "card" | "cod",
 *    "card_token": "tok_..."            (card only, required),
 *    "ship_to": {"country": "india", ...other string fields},
 *    "category": "electronics"}         (optional, default "general")
 *   -> 202 {"order_id": "...", "status": "accepted"} once the broker has
 *      confirmed order.created; 400 {"error", "field"} naming the first
 *      field that is wrong; 409 when an Idempotency-Key is reused with a
 *      different body; 503 when the broker did not confirm in 5 s (the
 *      order may still go through: retry with the same Idempotency-Key).
 *   Idempotency-Key header (1..200 bytes): the same key and body give the
 *   same order id; order.created is published again (same message id,
 *   dropped by the orchestrator as a duplicate) only if the broker never
 *   confirmed it, so a retry cannot reach another shard.
 * GET /orders/{id}: the saga's status from the orchestrator's database
 *   (each shard's, with --orchestrator-db given once per shard), opened
 *   read-only; "pending" if the order was accepted but its saga has
 *   not started yet; 404 if unknown.
 * GET /healthz: 200 when connected to the broker, 503 otherwise.
 *
 * Country and category become routing keys (shipping.<country>.<category>),
 * so they must be 1-64 of [a-z0-9_-].
 *
 * One thread: libmicrohttpd runs in external-polling mode in the same loop
 * as the bus (rabbitmq-c is not thread-safe), and a POST waits for its
 * confirm inside the handler.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "order.h"
#include "participant.h"

extern const struct db_migration orderapi_migrations[];
extern const size_t orderapi_migrations_count;

#define BODY_MAX   (64 * 1024)
#define CONFIRM_MS 5000

struct api {
	struct bus *bus;
	sqlite3 *db;
	const char *orch_db_path[16]; /* one per orchestrator shard */
	sqlite3 *orch[16]; /* opened on first use: it may not exist yet */
	size_t norch;
	bool returned; /* the last publish came back unroutable */
};

struct upload {
	char *buf;
	size_t len;
	bool too_big;
};

static enum MHD_Result
respond(struct MHD_Connection *c, unsigned code, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	struct MHD_Response *r;
	enum MHD_Result ret;

	json_decref(body);
	if (text == NULL)
		return MHD_NO;
	r = MHD_create_response_from_buffer(strlen(text), text,
	                                    MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "application/json");
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
fail(struct MHD_Connection *c, unsigned code, const char *field,
     const char *msg)
{
	json_t *j = json_pack("{s:s}", "error", msg);
	if (j != NULL && field != NULL)
		json_object_set_new(j, "field", json_string(field));
	return respond(c, code, j);
}

/* ---- publishing ---- */

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm c)
{
	struct api *a = arg;
	(void)tag;
	if (c == BUS_RETURNED)
		a->returned = true;
}

/* Publishes an order.created body and waits for the broker's confirm.
 * 0 confirmed; -1 not confirmed in time; -2 unroutable. */
static int
publish_order(struct api *a, const char *order_id, const void *body, size_t len,
              const char *traceparent)
{
	char id[ENVELOPE_ID_MAX];
	struct bus_handlers h = {NULL, on_confirm, a};
	struct bus_message m = {0};

	snprintf(id, sizeof(id), "created-%.180s", order_id);
	m.exchange = "order_events";
	m.routing_key = "order.created";
	m.message_id = id;
	m.correlation_id = order_id;
	m.type = "order.created";
	m.traceparent = traceparent;
	m.timestamp_ms = envelope_now_ms();
	m.mandatory = true;
	m.body = body;
	m.len = len;
	a->returned = false;
	if (bus_publish(a->bus, &m, 1) != 0)
		return -1;
	if (bus_flush(a->bus, CONFIRM_MS, &h) != 0)
		return -1;
	return a->returned ? -2 : 0;
}

static void
body_hash(const char *s, size_t n, char out[17])
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
	snprintf(out, 17, "%016" PRIx64, h);
}

/* The order a key already made: 1 (order_id and the stored body filled;
 * *same false if the body differs), 0 none, -1 error. */
static int
find_key(struct api *a, const char *key, const char *hash, char *order_id,
         size_t cap, bool *same, bool *confirmed, void **body, size_t *len)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(a->db,
	                       "SELECT i.order_id, i.body_hash, o.body, "
	                       "o.confirmed_at IS NOT NULL "
	                       "FROM idempotency i JOIN orders o "
	                       "USING (order_id) WHERE i.key = ?1",
	                       -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		int n = sqlite3_column_bytes(st, 2);
		snprintf(order_id, cap, "%s",
		         (const char *)sqlite3_column_text(st, 0));
		*same = strcmp((const char *)sqlite3_column_text(st, 1),
		               hash) == 0;
		*confirmed = sqlite3_column_int(st, 3) != 0;
		*body = malloc((size_t)n + 1);
		if (*body == NULL)
			rc = SQLITE_NOMEM;
		else
			memcpy(*body, sqlite3_column_blob(st, 2), (size_t)n);
		*len = (size_t)n;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Remembers that the broker has the order (a failure only means a retry
 * publishes it again, which the orchestrator drops). */
static void
mark_confirmed(struct api *a, const char *order_id)
{
	if (part_sql(a->db,
	             "UPDATE orders SET confirmed_at = ?2 WHERE order_id = ?1",
	             "ti", NULL, order_id, envelope_now_ms()) < 0)
		log_warnx("order %s: cannot record its confirm: %s", order_id,
		          sqlite3_errmsg(a->db));
}

static enum MHD_Result
answer_published(struct MHD_Connection *c, int rc, const char *order_id,
                 bool replayed)
{
	if (rc == -2)
		return fail(c, 503, NULL,
		            "no queue takes order.created: is the "
		            "orchestrator deployed?");
	if (rc != 0)
		return fail(c, 503, NULL,
		            "the broker did not confirm the order in time; "
		            "retry with the same Idempotency-Key");
	return respond(c, 202,
	               json_pack("{s:s,s:s,s:b}", "order_id", order_id,
	                         "status", "accepted", "replayed", replayed));
}

static enum MHD_Result
post_order(struct api *a, struct MHD_Connection *c, const struct upload *u)
{
	const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	                                              "Idempotency-Key");
	const char *tp =
	        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "traceparent");
	char hash[17], order_id[64], field[160] = "", err[512];
	struct envelope e;
	char *body = NULL;
	size_t len = 0;
	int rc;

	if (u->too_big)
		return fail(c, 413, NULL, "the body is over 64 KiB");
	if (key != NULL && (strlen(key) == 0 || strlen(key) > 200))
		return fail(c, 400, "Idempotency-Key", "must be 1-200 bytes");
	body_hash(u->buf != NULL ? u->buf : "", u->len, hash);
	if (key != NULL) {
		void *old = NULL;
		bool same = false, confirmed = false;
		rc = find_key(a, key, hash, order_id, sizeof(order_id), &same,
		              &confirmed, &old, &len);
		if (rc < 0)
			return fail(c, 500, NULL, "database error");
		if (rc == 1 && !same) {
			free(old);
			return fail(c, 409, "Idempotency-Key",
			            "already used with a different body");
		}
		if (rc == 1) {
			rc = confirmed
			             ? 0
			             : publish_order(a, order_id, old, len, tp);
			free(old);
			if (rc == 0 && !confirmed)
				mark_confirmed(a, order_id);
			return answer_published(c, rc, order_id, true);
		}
	}
	envelope_init(&e);
	envelope_new_id(order_id, sizeof(order_id), "ord");
	if (order_parse(u->buf, u->len, order_id, &e.payload, field,
	                sizeof(field), err, sizeof(err)) != 0) {
		envelope_clear(&e);
		return fail(c, 400, field, err);
	}
	snprintf(e.id, sizeof(e.id), "created-%s", order_id);
	snprintf(e.saga, sizeof(e.saga), "%s", order_id);
	snprintf(e.type, sizeof(e.type), "order.created");
	e.ts = envelope_now_ms();
	rc = envelope_encode(&e, &body, &len);
	envelope_clear(&e);
	if (rc != 0)
		return fail(c, 500, NULL, "cannot encode the order");
	if (db_begin(a->db, err, sizeof(err)) != 0)
		goto dberr;
	{
		sqlite3_stmt *st;
		rc = sqlite3_prepare_v2(a->db,
		                        "INSERT INTO orders(order_id, body, "
		                        "created_at) VALUES (?1, ?2, ?3)",
		                        -1, &st, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
			sqlite3_bind_blob(st, 2, body, (int)len, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, envelope_now_ms());
			rc = sqlite3_step(st);
			sqlite3_finalize(st);
		}
		if (rc != SQLITE_DONE)
			goto dberr;
	}
	if (key != NULL &&
	    part_sql(a->db,
	             "INSERT INTO idempotency(key, body_hash, order_id, "
	             "created_at) VALUES (?1, ?2, ?3, ?4)",
	             "ttti", NULL, key, hash, order_id, envelope_now_ms()) < 0)
		goto dberr;
	if (db_commit(a->db, err, sizeof(err)) != 0)
		goto dberr;
	rc = publish_order(a, order_id, body, len, tp);
	free(body);
	if (rc == 0)
		mark_confirmed(a, order_id);
	log_info("saga=%s order accepted (%s)", order_id,
	         rc == 0 ? "confirmed" : "not confirmed");
	return answer_published(c, rc, order_id, false);
dberr:
	log_error("cannot store order %s: %s", order_id, sqlite3_errmsg(a->db));
	db_rollback(a->db);
	free(body);
	return fail(c, 503, NULL, "cannot store the order (database)");
}

static enum MHD_Result
get_order(struct api *a, struct MHD_Connection *c, const char *id)
{
	sqlite3_stmt *st;
	char err[512];
	int rc;

	for (size_t i = 0; i < a->norch; i++) {
		if (a->orch[i] == NULL &&
		    db_open(a->orch_db_path[i], DB_READONLY, &a->orch[i], err,
		            sizeof(err)) != 0)
			log_warnx("%s", err);
		if (a->orch[i] != NULL &&
		    sqlite3_prepare_v2(
		            a->orch[i],
		            "SELECT status, state, chart, started_at, "
		            "updated_at FROM sagas WHERE id = ?1",
		            -1, &st, NULL) == SQLITE_OK) {
			sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
			rc = sqlite3_step(st);
			if (rc == SQLITE_ROW) {
				json_t *j = json_pack(
				        "{s:s,s:s,s:s,s:s,s:I,s:I}", "order_id",
				        id, "status",
				        sqlite3_column_text(st, 0), "state",
				        sqlite3_column_text(st, 1), "chart",
				        sqlite3_column_text(st, 2),
				        "started_at_ms",
				        (json_int_t)sqlite3_column_int64(st, 3),
				        "updated_at_ms",
				        (json_int_t)sqlite3_column_int64(st,
				                                         4));
				sqlite3_finalize(st);
				return respond(c, 200, j);
			}
			sqlite3_finalize(st);
		}
	}
	rc = part_sql(a->db, "SELECT 1 FROM orders WHERE order_id = ?1", "t",
	              NULL, id);
	if (rc == 1)
		return respond(c, 200,
		               json_pack("{s:s,s:s}", "order_id", id, "status",
		                         "pending"));
	return fail(c, 404, NULL, "no such order");
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
       const char *version, const char *data, size_t *data_size, void **con_cls)
{
	struct api *a = cls;
	struct upload *u = *con_cls;

	(void)version;
	if (strcmp(method, "POST") == 0 && strcmp(url, "/orders") == 0) {
		if (u == NULL) {
			u = calloc(1, sizeof(*u));
			*con_cls = u;
			return u != NULL ? MHD_YES : MHD_NO;
		}
		if (*data_size > 0) {
			if (!u->too_big && u->len + *data_size <= BODY_MAX) {
				char *n = realloc(u->buf, u->len + *data_size);
				if (n == NULL)
					return MHD_NO;
				memcpy(n + u->len, data, *data_size);
				u->buf = n;
				u->len += *data_size;
			} else {
				u->too_big = true;
			}
			*data_size = 0;
			return MHD_YES;
		}
		return post_order(a, c, u);
	}
	if (strcmp(method, "GET") == 0 && strncmp(url, "/orders/", 8) == 0 &&
	    url[8] != '\0' && strlen(url + 8) < ENVELOPE_ID_MAX)
		return get_order(a, c, url + 8);
	if (strcmp(method, "GET") == 0 && strcmp(url, "/healthz") == 0)
		return bus_connected(a->bus)
		               ? respond(c, 200,
		                         json_pack("{s:s}", "status", "ok"))
		               : fail(c, 503, NULL, "broker not connected");
	if (strcmp(url, "/orders") == 0 || strncmp(url, "/orders/", 8) == 0)
		return fail(c, 405, NULL, "method not allowed");
	return fail(c, 404, NULL, "no such resource");
}

static void
on_done(void *cls, struct MHD_Connection *c, void **con_cls,
        enum MHD_RequestTerminationCode code)
{
	struct upload *u = *con_cls;
	(void)cls;
	(void)c;
	(void)code;
	if (u != NULL) {
		free(u->buf);
		free(u);
		*con_cls = NULL;
	}
}

static int
parse_listen(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || port < 0 || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sa->sin_addr) ==
	                       1
	               ? 0
	               : -1;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        PART_COMMON_OPTIONS,
	        {"listen", required_argument, NULL, 'l'},
	        {"orchestrator-db", required_argument, NULL, 'o'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	static const struct bus_exchange ex[] = {
	        {"order_events", "topic", NULL, NULL}};
	static const struct bus_topology topo = {ex, 1, NULL, 0, NULL, 0};
	static volatile sig_atomic_t stop;
	static struct api a;
	struct part_common com;
	struct sockaddr_in sa;
	struct bus_config bc = {0};
	struct bus_handlers h = {NULL, on_confirm, &a};
	struct MHD_Daemon *d;
	const char *listen = "127.0.0.1:8080";
	char err[512];
	int c, r;

	part_common_init(&com);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		r = part_common_flag(&com, "order-api", c, optarg);
		if (r < 0)
			return 2;
		if (r > 0)
			continue;
		switch (c) {
		case 'l':
			listen = optarg;
			break;
		case 'o':
			if (a.norch == 16) {
				fprintf(stderr, "order-api: at most 16 "
				                "--orchestrator-db\n");
				return 2;
			}
			a.orch_db_path[a.norch++] = optarg;
			break;
		default:
			fprintf(stderr,
			        "usage: order-api --amqp URL --db PATH "
			        "[--listen ADDR:PORT] [--orchestrator-db PATH] "
			        "[--log-level L]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "order-api: unexpected argument \"%s\"\n",
		        argv[optind]);
		return 2;
	}
	if (part_common_check(&com, "order-api") != 0)
		return 2;
	if (parse_listen(listen, &sa) != 0) {
		fprintf(stderr,
		        "order-api: --listen: \"%s\" is not IPv4ADDR:PORT\n",
		        listen);
		return 2;
	}
	log_init("order-api", (enum log_level)com.log_level);
	if (db_open(com.db, DB_READWRITE, &a.db, err, sizeof(err)) != 0 ||
	    db_migrate(a.db, orderapi_migrations, orderapi_migrations_count,
	               err, sizeof(err)) != 0) {
		fprintf(stderr, "order-api: %s\n", err);
		db_close(a.db);
		return 1;
	}
	bc.url = com.amqp;
	bc.name = "order-api";
	bc.ca_file = getenv("SAGA_AMQP_CA");
	bc.cert_file = getenv("SAGA_AMQP_CERT");
	bc.key_file = getenv("SAGA_AMQP_KEY");
	bc.queue_type = getenv("SAGA_QUEUE_TYPE");
	bc.topology = &topo;
	a.bus = bus_open(&bc, err, sizeof(err));
	if (a.bus == NULL) {
		fprintf(stderr, "order-api: %s\n", err);
		db_close(a.db);
		return 2;
	}
	d = MHD_start_daemon(MHD_USE_ERROR_LOG, 0, NULL, NULL, handle, &a,
	                     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
	                     MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
	                     MHD_OPTION_CONNECTION_TIMEOUT, 30u,
	                     MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "order-api: cannot listen on %s: %s\n", listen,
		        strerror(errno));
		bus_close(a.bus);
		db_close(a.db);
		return 1;
	}
	part_signals(&stop);
	if (bus_connect(a.bus, err, sizeof(err)) != 0)
		log_warnx("%s; retrying", err);
	log_info("listening on %s", listen);
	while (!stop) {
		MHD_run_wait(d, 50);
		bus_poll(a.bus, 0, &h);
	}
	log_info("stopping");
	MHD_stop_daemon(d);
	bus_flush(a.bus, 5000, &h);
	bus_close(a.bus);
	for (size_t i = 0; i < a.norch; i++)
		db_close(a.orch[i]);
	db_close(a.db);
	return 0;
}
