/* amqp_probe -- one basic.get, or one confirmed publish, as a given user,
 * for tests/deploy: proves what a service's RabbitMQ permissions let it
 * read and write.
 *
 *   amqp_probe URL QUEUE
 *   amqp_probe publish URL EXCHANGE ROUTING_KEY [USER_ID]
 *
 * get -- exit 0: allowed (the queue was empty or a message was seen and
 * requeued); 3: refused (e.g. 403 ACCESS_REFUSED, the reason on stderr);
 * 4: no connection (login refused, broker down).
 *
 * publish -- a small mandatory message (type probe.test; with the AMQP
 * user_id USER_ID if given), in confirm mode, on a connection of its own
 * (rabbitmq-c directly: lib/bus would reconnect and publish again after a
 * refusal). Exit 0: the broker confirmed it and routed it to a queue; 5:
 * confirmed but returned (no queue bound); 3: 403 ACCESS_REFUSED (no
 * write permission); 6: 406 PRECONDITION_FAILED (e.g. a user_id that is
 * not the connection's user); 7: another refusal (a nack, 404 ...); 4: no
 * connection. The broker's reply text goes to stderr.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "bus.h"
#include "log.h"

static int
keep(void *arg, const struct bus_delivery *d)
{
	(void)arg;
	(void)d;
	return 0; /* requeue: a probe changes nothing */
}

static int
probe_get(const char *url, const char *queue)
{
	char err[512];
	struct bus_config cfg = {.name = "amqp_probe",
	                         .connect_timeout_ms = 3000,
	                         .rpc_timeout_ms = 5000};
	struct bus *b;
	bool got = false;
	int rc;

	cfg.url = url;
	b = bus_open(&cfg, err, sizeof(err));
	if (b == NULL) {
		fprintf(stderr, "amqp_probe: %s\n", err);
		return 2;
	}
	if (bus_connect(b, err, sizeof(err)) != 0) {
		fprintf(stderr, "amqp_probe: %s\n", err);
		bus_close(b);
		return 4;
	}
	rc = bus_get(b, queue, keep, NULL, &got);
	if (rc != 0)
		fprintf(stderr, "amqp_probe: basic.get %s refused\n", queue);
	else
		printf("basic.get %s allowed (%s)\n", queue,
		       got ? "a message, requeued" : "empty");
	bus_close(b);
	return rc == 0 ? 0 : 3;
}

/* Logs in and opens channel 1 in confirm mode. NULL (said) on failure. */
static amqp_connection_state_t
open_conn(const char *url)
{
	struct bus_url u;
	char err[256];
	amqp_connection_state_t c;
	amqp_socket_t *s;
	amqp_rpc_reply_t r;

	if (bus_url_parse(url, &u, err, sizeof(err)) != 0) {
		fprintf(stderr, "amqp_probe: %s\n", err);
		return NULL;
	}
	c = amqp_new_connection();
	s = c != NULL ? amqp_tcp_socket_new(c) : NULL;
	if (s == NULL || amqp_socket_open(s, u.host, u.port) != 0) {
		fprintf(stderr, "amqp_probe: cannot connect to %s:%d\n", u.host,
		        u.port);
		goto fail;
	}
	r = amqp_login(c, u.vhost, 0, 131072, 10, AMQP_SASL_METHOD_PLAIN,
	               u.user, u.password);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		fprintf(stderr, "amqp_probe: login as %s refused\n", u.user);
		goto fail;
	}
	amqp_channel_open(c, 1);
	amqp_confirm_select(c, 1);
	if (amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL) {
		fprintf(stderr, "amqp_probe: cannot open a confirm channel\n");
		goto fail;
	}
	return c;
fail:
	if (c != NULL)
		amqp_destroy_connection(c);
	return NULL;
}

/* The exit status of a channel or connection close: 3, 6 or 7. */
static int
closed(const amqp_frame_t *f)
{
	int code;
	amqp_bytes_t text;

	if (f->payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
		const amqp_channel_close_t *m = f->payload.method.decoded;
		code = m->reply_code;
		text = m->reply_text;
	} else {
		const amqp_connection_close_t *m = f->payload.method.decoded;
		code = m->reply_code;
		text = m->reply_text;
	}
	fprintf(stderr, "amqp_probe: refused: %.*s\n", (int)text.len,
	        (const char *)text.bytes);
	return code == 403 ? 3 : code == 406 ? 6 : 7;
}

/* Waits for the publish's fate: ack (after a return if unroutable), nack
 * or a close. The exit status. */
static int
wait_confirm(amqp_connection_state_t c)
{
	bool returned = false;

	for (;;) {
		amqp_frame_t f;
		struct timeval tv = {5, 0};
		int rc = amqp_simple_wait_frame_noblock(c, &f, &tv);

		if (rc != AMQP_STATUS_OK) {
			fprintf(stderr, "amqp_probe: no confirm: %s\n",
			        amqp_error_string2(rc));
			return 7;
		}
		if (f.frame_type != AMQP_FRAME_METHOD)
			continue; /* a returned message's header and body */
		switch (f.payload.method.id) {
		case AMQP_BASIC_RETURN_METHOD:
			returned = true;
			break;
		case AMQP_BASIC_ACK_METHOD:
			printf("published and confirmed (%s)\n",
			       returned ? "returned: no queue bound"
			                : "routed");
			return returned ? 5 : 0;
		case AMQP_BASIC_NACK_METHOD:
			fprintf(stderr, "amqp_probe: nacked\n");
			return 7;
		case AMQP_CHANNEL_CLOSE_METHOD:
		case AMQP_CONNECTION_CLOSE_METHOD:
			return closed(&f);
		default:
			break;
		}
	}
}

static int
probe_publish(const char *url, const char *exchange, const char *rk,
              const char *user_id)
{
	amqp_connection_state_t c = open_conn(url);
	amqp_basic_properties_t p;
	const char *body = "probe";
	int rc;

	if (c == NULL)
		return 4;
	memset(&p, 0, sizeof(p));
	p._flags = AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
	p.type = amqp_cstring_bytes("probe.test");
	p.message_id = amqp_cstring_bytes("probe-1");
	if (user_id != NULL) {
		p._flags |= AMQP_BASIC_USER_ID_FLAG;
		p.user_id = amqp_cstring_bytes(user_id);
	}
	rc = amqp_basic_publish(c, 1, amqp_cstring_bytes(exchange),
	                        amqp_cstring_bytes(rk), 1, 0, &p,
	                        amqp_cstring_bytes(body));
	rc = rc == AMQP_STATUS_OK ? wait_confirm(c) : 7;
	amqp_destroy_connection(c);
	return rc;
}

int
main(int argc, char **argv)
{
	log_init("amqp_probe", LOG_WARN); /* the refusal is a warning */
	if (argc == 3)
		return probe_get(argv[1], argv[2]);
	if ((argc == 5 || argc == 6) && strcmp(argv[1], "publish") == 0)
		return probe_publish(argv[2], argv[3], argv[4],
		                     argc == 6 ? argv[5] : NULL);
	fprintf(stderr, "usage: amqp_probe URL QUEUE\n"
	                "       amqp_probe publish URL EXCHANGE ROUTING_KEY "
	                "[USER_ID]\n");
	return 2;
}
