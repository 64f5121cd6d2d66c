/* test_bus_url -- lib/bus's URL parsing (bus_url_parse, bus_url_redact):
 * what a good URL gives (defaults, %-escapes, IPv6, the vhost), and that a
 * bad one is refused with an error that names what is wrong. Needs no
 * broker: the URL is parsed before any connection. */
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "check.h"

static void
test_good(void)
{
	static const struct {
		const char *url, *user, *password, *host, *vhost;
		int port;
		bool tls;
	} t[] = {
	        {"amqp://h", "guest", "guest", "h", "/", 5672, false},
	        {"amqp://h/", "guest", "guest", "h", "/", 5672, false},
	        {"amqp://h/%2f", "guest", "guest", "h", "/", 5672, false},
	        {"amqps://h", "guest", "guest", "h", "/", 5671, true},
	        {"amqp://u:p@127.0.0.1:5673/", "u", "p", "127.0.0.1", "/", 5673,
	         false},
	        {"amqp://u@h/v", "u", "guest", "h", "v", 5672, false},
	        {"amqp://:p@h", "", "p", "h", "/", 5672, false},
	        {"amqp://u%40x:p%3Aq%2f@h:1/a%2fb", "u@x", "p:q/", "h", "a/b",
	         1, false},
	        {"amqp://[::1]:5674/x", "guest", "guest", "::1", "x", 5674,
	         false},
	        {"amqps://u:p@[::1]", "u", "p", "::1", "/", 5671, true},
	        {"amqp://h:65535", "guest", "guest", "h", "/", 65535, false},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct bus_url u;
		char err[256] = "";
		CHECK_MSG(bus_url_parse(t[i].url, &u, err, sizeof(err)) == 0,
		          "%s: %s", t[i].url, err);
		CHECK_STR(u.user, t[i].user);
		CHECK_STR(u.password, t[i].password);
		CHECK_STR(u.host, t[i].host);
		CHECK_STR(u.vhost, t[i].vhost);
		CHECK_EQ(u.port, t[i].port);
		CHECK_MSG(u.tls == t[i].tls, "%s: tls", t[i].url);
	}
}

/* Each bad URL and a piece of the error it must give. */
static void
test_bad(void)
{
	static const struct {
		const char *url, *want;
	} t[] = {
	        {"http://h", "must start with amqp:// or amqps://"},
	        {"h:5672", "must start with amqp:// or amqps://"},
	        {"amqp://", "no host"},
	        {"amqp://u:p@", "no host"},
	        {"amqp://:5672", "no host"},
	        {"amqp://h:0", "port \"0\" is not 1..65535"},
	        {"amqp://h:99999/", "port \"99999\" is not 1..65535"},
	        {"amqp://h:12ab", "port \"12ab\" is not 1..65535"},
	        {"amqp://h:", "bad port"},
	        {"amqp://h/a/b", "bad vhost (use %2f for /)"},
	        {"amqp://h/v%zz", "bad %-escape"},
	        {"amqp://u:p%4@h", "bad %-escape"},
	        {"amqp://[::1", "unclosed [ in host"},
	        {"amqp://h?heartbeat=5", "query"},
	        {"amqp://h/v#x", "query"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct bus_url u;
		char err[256] = "";
		CHECK_MSG(bus_url_parse(t[i].url, &u, err, sizeof(err)) != 0,
		          "%s parsed", t[i].url);
		CHECK_MSG(strncmp(err, "bad AMQP URL", 12) == 0 &&
		                  strstr(err, t[i].want) != NULL,
		          "%s: \"%s\" does not say \"%s\"", t[i].url, err,
		          t[i].want);
	}
}

static void
test_too_long(void)
{
	char url[1400], err[256];
	struct bus_url u;

	snprintf(url, sizeof(url), "amqp://%0300d@h", 0);
	CHECK(bus_url_parse(url, &u, err, sizeof(err)) != 0);
	CHECK_MSG(strstr(err, "too long") != NULL, "%s", err);
	snprintf(url, sizeof(url), "amqp://%0300d/", 0);
	CHECK(bus_url_parse(url, &u, err, sizeof(err)) != 0);
	CHECK_MSG(strstr(err, "host too long") != NULL, "%s", err);
	snprintf(url, sizeof(url), "amqp://h/%0200d", 0);
	CHECK(bus_url_parse(url, &u, err, sizeof(err)) != 0);
	CHECK_MSG(strstr(err, "vhost") != NULL, "%s", err);
	memset(url, 'a', sizeof(url) - 1);
	memcpy(url, "amqp://", 7);
	url[sizeof(url) - 1] = '\0';
	CHECK(bus_url_parse(url, &u, err, sizeof(err)) != 0);
	CHECK_MSG(strstr(err, "too long") != NULL, "%s", err);
}

static void
test_redact(void)
{
	char buf[256];

	bus_url_redact("amqp://u:secret@h:1/v", buf, sizeof(buf));
	CHECK_STR(buf, "amqp://u:***@h:1/v");
	bus_url_redact("amqp://u@h", buf, sizeof(buf));
	CHECK_STR(buf, "amqp://u@h");
	bus_url_redact("amqp://h/v", buf, sizeof(buf));
	CHECK_STR(buf, "amqp://h/v");
	bus_url_redact("nonsense", buf, sizeof(buf));
	CHECK_STR(buf, "(bad URL)");
}

int
main(void)
{
	RUN(test_good);
	RUN(test_bad);
	RUN(test_too_long);
	RUN(test_redact);
	return check_summary();
}
