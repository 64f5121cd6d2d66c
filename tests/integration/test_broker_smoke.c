/* Proves the pipeline with plain rabbitmq-c (no project code): connect to
 * the private broker, declare a durable queue, publish a persistent
 * message with publisher confirms on, receive the broker's basic.ack,
 * consume the message back and ack it, and see the queue empty after. */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "testutil.h"

static char *own_url;

static const char *
broker_url(void)
{
	if (testutil_amqp_url() != NULL)
		return testutil_amqp_url();
	if (own_url == NULL)
		own_url = testbroker_start("smoke");
	return own_url;
}

static int
rpc_ok(amqp_connection_state_t c)
{
	return amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL;
}

static void
test_publish_confirm_consume_ack(void)
{
	struct amqp_connection_info ci;
	char *url;
	amqp_connection_state_t c;
	amqp_socket_t *sock;
	amqp_basic_properties_t props;
	amqp_frame_t f;
	amqp_envelope_t env;
	amqp_rpc_reply_t r;
	struct timeval tv = {10, 0};
	amqp_bytes_t q = amqp_cstring_bytes("smoke.test");
	amqp_queue_declare_ok_t *ok;
	const char *u = broker_url();

	CHECK_MSG(u != NULL, "no broker");
	url = strdup(u);
	CHECK(amqp_parse_url(url, &ci) == AMQP_STATUS_OK);
	c = amqp_new_connection();
	sock = amqp_tcp_socket_new(c);
	CHECK(sock != NULL);
	CHECK_EQ(amqp_socket_open_noblock(sock, ci.host, ci.port, &tv), 0);
	r = amqp_login(c, ci.vhost[0] ? ci.vhost : "/", 0, 131072, 10,
	               AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
	CHECK_EQ(r.reply_type, AMQP_RESPONSE_NORMAL);
	amqp_channel_open(c, 1);
	CHECK(rpc_ok(c));
	amqp_confirm_select(c, 1);
	CHECK(rpc_ok(c));
	amqp_queue_delete(c, 1, q, 0, 0);
	CHECK(rpc_ok(c));
	amqp_queue_declare(c, 1, q, 0, 1, 0, 0, amqp_empty_table);
	CHECK(rpc_ok(c));

	memset(&props, 0, sizeof(props));
	props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG |
	               AMQP_BASIC_CONTENT_TYPE_FLAG |
	               AMQP_BASIC_MESSAGE_ID_FLAG;
	props.delivery_mode = 2;
	props.content_type = amqp_cstring_bytes("application/msgpack");
	props.message_id = amqp_cstring_bytes("smoke-1");
	CHECK_EQ(amqp_basic_publish(c, 1, amqp_empty_bytes, q, 1, 0, &props,
	                            amqp_cstring_bytes("hello")),
	         AMQP_STATUS_OK);
	/* the broker's confirm: basic.ack for delivery tag 1 */
	CHECK_EQ(amqp_simple_wait_frame_noblock(c, &f, &tv), AMQP_STATUS_OK);
	CHECK_EQ(f.frame_type, AMQP_FRAME_METHOD);
	CHECK_EQ(f.payload.method.id, AMQP_BASIC_ACK_METHOD);
	CHECK_EQ(((amqp_basic_ack_t *)f.payload.method.decoded)->delivery_tag,
	         1);

	amqp_basic_qos(c, 1, 0, 10, 0);
	CHECK(rpc_ok(c));
	amqp_basic_consume(c, 1, q, amqp_empty_bytes, 0, 0, 0,
	                   amqp_empty_table);
	CHECK(rpc_ok(c));
	amqp_maybe_release_buffers(c);
	r = amqp_consume_message(c, &env, &tv, 0);
	CHECK_EQ(r.reply_type, AMQP_RESPONSE_NORMAL);
	CHECK_EQ(env.message.body.len, 5);
	CHECK(memcmp(env.message.body.bytes, "hello", 5) == 0);
	CHECK_EQ(env.message.properties.delivery_mode, 2);
	CHECK(env.message.properties.message_id.len == 7 &&
	      memcmp(env.message.properties.message_id.bytes, "smoke-1", 7) ==
	              0);
	CHECK_EQ(amqp_basic_ack(c, 1, env.delivery_tag, 0), 0);
	amqp_destroy_envelope(&env);

	/* acked: a passive declare sees an empty queue */
	ok = amqp_queue_declare(c, 1, q, 1, 1, 0, 0, amqp_empty_table);
	CHECK(ok != NULL);
	CHECK_EQ(ok->message_count, 0);
	amqp_queue_delete(c, 1, q, 0, 0);
	amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
	free(url);
}

int
main(void)
{
	RUN(test_publish_confirm_consume_ack);
	if (own_url != NULL) {
		testbroker_ctl("smoke", "stop");
		free(own_url);
	}
	return check_summary();
}
