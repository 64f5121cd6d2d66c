/* test_audit_parse -- orchestrator/svc/audit.h without a broker: the
 * retention check RabbitMQ's x-max-age needs (what the broker refused on
 * 3.10.8: "", "7x", "0D"; what it took: 36h, 1Y, 1M, 10m), the RFC 3339
 * times --since takes, and an event's line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "check.h"

static void
test_max_age(void)
{
	static const char *const good[] = {"7D", "36h", "1Y",
	                                   "1M", "10m", "999999999s"};
	static const char *const bad[] = {"",   "7",   "D",           "7x",
	                                  "0D", "7DD", "-1D",         "7 D",
	                                  "7d", "1H",  "1234567890s", " 7D"};
	char err[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK_MSG(audit_max_age_check(good[i], err, sizeof(err)) == 0,
		          "%s: %s", good[i], err);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK_MSG(audit_max_age_check(bad[i], err, sizeof(err)) == -1,
		          "\"%s\" taken", bad[i]);
		CHECK_MSG(strstr(err, "e.g. 7D") != NULL, "%s", err);
	}
	CHECK_EQ(audit_max_age_check(NULL, err, sizeof(err)), -1);
}

static void
test_time(void)
{
	static const struct {
		const char *s;
		long long ms;
	} good[] = {
	        {"1970-01-01T00:00:00Z", 0},
	        {"2026-12-05T16:13:58Z", 1796487238000LL},
	        {"2026-12-05t16:13:58z", 1796487238000LL},
	        {"2026-12-05 16:13:58.25Z", 1796487238250LL},
	        {"2026-12-05T17:13:58.123456+01:00", 1796487238123LL},
	        {"2026-12-05T10:43:58-05:30", 1796487238000LL},
	        {"2024-02-29T00:00:00Z", 1709164800000LL},
	};
	static const char *const bad[] = {
	        "",
	        "2026-12-05",
	        "2026-12-05T16:13Z",
	        "2026-12-05T16:13:58",
	        "2026-12-05T16:13:58+0100",
	        "2026-13-05T16:13:58Z",
	        "2026-02-30T00:00:00Z",
	        "2025-02-29T00:00:00Z",
	        "2026-12-05T24:00:00Z",
	        "2026-12-05T16:13:58.Z",
	        "2026-12-05T16:13:58Zjunk",
	        "1969-12-31T23:59:59Z",
	        "2h",
	};
	int64_t ms;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ms = -1;
		CHECK_MSG(audit_parse_time(good[i].s, &ms) == 0 &&
		                  ms == good[i].ms,
		          "%s: %lld, want %lld", good[i].s, (long long)ms,
		          good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(audit_parse_time(bad[i], &ms) == -1, "\"%s\" taken",
		          bad[i]);
}

static void
test_line(void)
{
	struct envelope env;
	struct audit_event e = {7, 0, "order.completed", &env};
	char line[512];

	envelope_init(&env);
	snprintf(env.id, sizeof(env.id), "ord-1:order.completed:1");
	snprintf(env.saga, sizeof(env.saga), "ord-1");
	snprintf(env.type, sizeof(env.type), "order.completed");
	env.ts = 1796487238250LL;
	value_map_put_str(&env.payload, "saga_status", "completed");
	value_map_put_int(&env.payload, "total_cents", 1800);
	value_map_put_str(&env.payload, "secret", "not shown");
	audit_event_line(&e, line, sizeof(line));
	CHECK_STR(line, "2026-12-05T16:13:58.250Z order.completed "
	                "ord-1:order.completed:1 saga_status=completed "
	                "total_cents=1800");
	audit_event_line(&e, line, 20); /* cut, never overrun */
	CHECK_EQ(strlen(line), 19);
	envelope_clear(&env);
}

int
main(void)
{
	RUN(test_max_age);
	RUN(test_time);
	RUN(test_line);
	return check_summary();
}
