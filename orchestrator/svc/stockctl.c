/* stockctl.c -- see stockctl.h. */
#include "stockctl.h"

#include <jansson.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envelope.h"
#include "number.h"
#include "request.h"

static int
usage(void)
{
	fprintf(stderr, "usage: sagactl stock set SKU QUANTITY --reason TEXT\n"
	                "       sagactl stock add SKU DELTA --reason TEXT\n");
	return 2;
}

/* An integer argument, whole, within +-1e9. */
static int
parse_n(const char *s, long long *out)
{
	return number_parse(s, -1000000000LL, 1000000000LL, out);
}

static void
print_answer(const struct envelope *a, bool json)
{
	const struct value *p = &a->payload;
	const struct value *sku = value_map_get(p, "sku"),
	                   *before = value_map_get(p, "before"),
	                   *on_hand = value_map_get(p, "on_hand"),
	                   *held = value_map_get(p, "held"),
	                   *reason = value_map_get(p, "reason");
	bool ok = strcmp(a->type, "inventory.stock_changed") == 0;

	if (json) {
		json_t *j = json_pack("{s:b}", "applied", ok);
		if (ok)
			json_object_update_new(
			        j,
			        json_pack(
			                "{s:s, s:I, s:I, s:I}", "sku",
			                sku ? sku->u.s.ptr : "", "before",
			                (json_int_t)(before ? before->u.i : 0),
			                "on_hand",
			                (json_int_t)(on_hand ? on_hand->u.i
			                                     : 0),
			                "held",
			                (json_int_t)(held ? held->u.i : 0)));
		else
			json_object_set_new(
			        j, "reason",
			        json_string(reason && reason->type == VALUE_STR
			                            ? reason->u.s.ptr
			                            : a->type));
		json_dumpf(j, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(j);
		return;
	}
	if (ok)
		printf("%s: on hand %lld -> %lld (held by orders in flight: "
		       "%lld)\n",
		       sku ? sku->u.s.ptr : "?",
		       (long long)(before ? before->u.i : 0),
		       (long long)(on_hand ? on_hand->u.i : 0),
		       (long long)(held ? held->u.i : 0));
	else
		fprintf(stderr, "sagactl: stock: refused: %s\n",
		        reason && reason->type == VALUE_STR ? reason->u.s.ptr
		                                            : a->type);
}

/* The request for `set|add SKU N`. */
static int
build(struct envelope *e, const char *verb, const char *sku, long long n,
      const char *reason)
{
	struct passwd *pw = getpwuid(getuid());
	bool set = strcmp(verb, "set") == 0;

	envelope_init(e);
	if (envelope_new_id(e->id, sizeof(e->id), "stock") != 0)
		return -1;
	snprintf(e->saga, sizeof(e->saga), "%s", e->id);
	snprintf(e->type, sizeof(e->type), "inventory.stock_%s", verb);
	if (value_map_put_str(&e->payload, "sku", sku) != 0 ||
	    value_map_put_int(&e->payload, set ? "quantity" : "delta", n) !=
	            0 ||
	    value_map_put_str(&e->payload, "reason", reason) != 0 ||
	    value_map_put_str(&e->payload, "actor",
	                      pw != NULL ? pw->pw_name : "unknown") != 0)
		return -1;
	return 0;
}

/* Splits argv into --reason and three words; negative numbers are words
 * (getopt would take "-3" for an option). -1 on anything else. */
static int
parse_args(int argc, char **argv, const char **reason, const char *w[3])
{
	int nw = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--reason") == 0 ||
		    strcmp(argv[i], "-r") == 0) {
			if (++i == argc)
				return -1;
			*reason = argv[i];
		} else if (strncmp(argv[i], "--reason=", 9) == 0) {
			*reason = argv[i] + 9;
		} else if (nw < 3 &&
		           (argv[i][0] != '-' ||
		            (argv[i][1] >= '0' && argv[i][1] <= '9'))) {
			w[nw++] = argv[i];
		} else {
			return -1;
		}
	}
	return nw == 3 ? 0 : -1;
}

int
stockctl_main(const struct bus_config *bc, bool json, int argc, char **argv)
{
	const struct request r = {"saga.admin", "inventory.stock",
	                          "inventory-svc", 0};
	const char *reason = NULL, *w[3];
	struct envelope req, answer;
	char err[512];
	long long n;
	int rc;

	if (parse_args(argc, argv, &reason, w) != 0 ||
	    (strcmp(w[0], "set") != 0 && strcmp(w[0], "add") != 0))
		return usage();
	if (parse_n(w[2], &n) != 0) {
		fprintf(stderr, "sagactl: stock: %s is not a whole number\n",
		        w[2]);
		return 2;
	}
	if (reason == NULL || reason[0] == '\0') {
		fprintf(stderr, "sagactl: stock needs --reason TEXT (it is "
		                "recorded with the movement)\n");
		return 2;
	}
	if (bc->url == NULL) {
		fprintf(stderr, "sagactl: stock needs --amqp URL (or "
		                "SAGA_AMQP_URL)\n");
		return 2;
	}
	if (build(&req, w[0], w[1], n, reason) != 0) {
		envelope_clear(&req);
		fprintf(stderr, "sagactl: stock: out of memory\n");
		return 1;
	}
	rc = request_call(bc, &r, &req, &answer, err, sizeof(err));
	envelope_clear(&req);
	if (rc != 0) {
		fprintf(stderr, "sagactl: stock: %s\n", err);
		return 1;
	}
	print_answer(&answer, json);
	rc = strcmp(answer.type, "inventory.stock_changed") == 0 ? 0 : 1;
	envelope_clear(&answer);
	return rc;
}
