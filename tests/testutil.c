/* testutil.c -- see testutil.h. Also home of check.h's counters. */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

int check_passed, check_failed, check_current_failed;
const char *check_current = "";

void
check_run_(const char *name, void (*fn)(void))
{
	const char *only = getenv("CHECK_ONLY"); /* a developer's filter */

	if (only != NULL && only[0] != '\0' && strstr(name, only) == NULL)
		return;
	check_current = name;
	check_current_failed = 0;
	fn();
	if (check_current_failed > 0) {
		check_failed++;
	} else if (check_current_failed == 0) {
		check_passed++;
		fprintf(stderr, "ok   %s\n", name);
	}
	fflush(stderr);
}

int
check_summary(void)
{
	printf("%d passed, %d failed\n", check_passed, check_failed);
	fflush(stdout);
	return check_failed ? 1 : 0;
}

char *
testutil_tmpdir(const char *prefix)
{
	const char *base = getenv("TMPDIR");
	char path[4096];

	if (base == NULL || *base == '\0')
		base = "/tmp";
	snprintf(path, sizeof(path), "%s/%s-XXXXXX", base, prefix);
	if (mkdtemp(path) == NULL)
		return NULL;
	return strdup(path);
}

int
testutil_rmtree(const char *path)
{
	if (path == NULL || path[0] != '/' || strstr(path, "..") != NULL)
		return -1;
	return testutil_sh(NULL, "rm -rf -- '%s'", path);
}

char *
testutil_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (f == NULL)
		return NULL;
	do {
		if (cap - n < 4096) {
			char *nb = realloc(buf, cap * 2 + 4096);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
			cap = cap * 2 + 4096;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
	} while (r > 0);
	fclose(f);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

int
testutil_sh(char **out, const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	FILE *p;
	char *buf = NULL;
	size_t cap = 0, n = 0;
	int c, status;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	while ((c = fgetc(p)) != EOF) {
		if (out == NULL)
			continue;
		if (n + 2 > cap) {
			char *nb = realloc(buf, cap * 2 + 256);
			if (nb == NULL)
				break;
			buf = nb;
			cap = cap * 2 + 256;
		}
		buf[n++] = (char)c;
	}
	status = pclose(p);
	if (out != NULL) {
		if (buf == NULL)
			buf = calloc(1, 1);
		else
			buf[n] = '\0';
		while (n > 0 && buf != NULL && buf[n - 1] == '\n')
			buf[--n] = '\0';
		*out = buf;
	}
	if (status == -1)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

const char *
testutil_amqp_url(void)
{
	const char *u = getenv("SAGA_TEST_AMQP_URL");
	return (u != NULL && *u != '\0') ? u : NULL;
}

static const char *
source_dir(void)
{
	const char *s = getenv("SAGA_SOURCE_DIR");
	return s != NULL ? s : SAGA_SOURCE_DIR;
}

char *
testbroker_start(const char *name)
{
	return testbroker_start_args(name, "");
}

char *
testbroker_start_args(const char *name, const char *args)
{
	char *url = NULL;
	/* the node name carries the pid: two test runs on one machine (CI
	 * and a developer, plain and sanitized) never share a broker */
	int rc = testutil_sh(
	        &url, "'%s/scripts/broker' start '%s-%ld' --owner %ld %s",
	        source_dir(), name, (long)getpid(), (long)getpid(), args);
	if (rc != 0) {
		fprintf(stderr, "cannot start private broker %s (exit %d)\n",
		        name, rc);
		free(url);
		return NULL;
	}
	return url;
}

char *
testbroker_mgmt_url(const char *name)
{
	char *out = NULL, *url = NULL, *sp;
	int rc = testutil_sh(&out,
	                     "'%s/scripts/broker' url '%s-%ld' | tail -n 1",
	                     source_dir(), name, (long)getpid());

	/* "http://127.0.0.1:PORT/ (management UI, guest/guest)" */
	if (rc == 0 && out != NULL && strncmp(out, "http://", 7) == 0 &&
	    (sp = strchr(out, ' ')) != NULL) {
		*sp = '\0';
		size_t cap = strlen(out) + 32;
		url = malloc(cap);
		if (url != NULL)
			snprintf(url, cap, "http://guest:guest@%s", out + 7);
	}
	free(out);
	return url;
}

int
testbroker_ctl(const char *name, const char *verb)
{
	return testutil_sh(NULL, "'%s/scripts/broker' %s '%s-%ld' >&2",
	                   source_dir(), verb, name, (long)getpid());
}

/* Binds 127.0.0.1:port (no SO_REUSEADDR: a port in TIME_WAIT counts as
 * taken) and releases it; 1 if that worked. */
static int
port_bindable(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
	if (fd < 0)
		return 0;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

int
testutil_free_port(void)
{
	static unsigned seed;
	int lo = 32768, hi = 60999, from = 10000, span, i;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f != NULL) {
		if (fscanf(f, "%d %d", &lo, &hi) != 2)
			lo = 32768, hi = 60999;
		fclose(f);
	}
	if (lo > from + 1000) {
		span = lo - from;
	} else {
		from = hi + 1;
		span = 65000 - hi;
	}
	if (seed == 0)
		seed = (unsigned)getpid() * 2654435761u;
	for (i = 0; span > 0 && i < 500; i++) {
		int port = from + (int)(rand_r(&seed) % (unsigned)span);
		if (port_bindable(port))
			return port;
	}
	return 0;
}

char *
testutil_http(int port, const char *method, const char *path,
              const char *extra_headers, const char *body, int *status)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	size_t cap = 1 << 20, n = 0, blen = body != NULL ? strlen(body) : 0;
	size_t reqcap;
	char *req, *buf, *start, *out;
	ssize_t r;
	int fd, rc;

	*status = 0;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return NULL;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return NULL;
	}
	reqcap = blen + 1024 + strlen(method) + strlen(path) +
	         (extra_headers ? strlen(extra_headers) : 0);
	req = malloc(reqcap);
	buf = calloc(1, cap);
	if (req == NULL || buf == NULL)
		goto fail;
	rc = snprintf(req, reqcap,
	              "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: "
	              "close\r\nContent-Type: application/json\r\n"
	              "Content-Length: %zu\r\n%s\r\n",
	              method, path, blen, extra_headers ? extra_headers : "");
	if (body != NULL)
		memcpy(req + rc, body, blen);
	if (write(fd, req, (size_t)rc + blen) != (ssize_t)((size_t)rc + blen))
		goto fail;
	while (n < cap - 1 && (r = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	free(req);
	if (sscanf(buf, "HTTP/1.%*d %d", status) != 1)
		*status = 0;
	start = strstr(buf, "\r\n\r\n");
	out = strdup(start != NULL ? start + 4 : "");
	free(buf);
	return out;
fail:
	close(fd);
	free(req);
	free(buf);
	return NULL;
}

#define MAX_SPAWNED 32
static int spawned[MAX_SPAWNED];

int
testutil_spawn(const char *const argv[], const char *log)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		char exe[1024];
		const char *bin = getenv("SAGA_BIN_DIR");
		if (freopen(log, "a", stderr) == NULL)
			_exit(126);
		if (strchr(argv[0], '/') == NULL && bin != NULL)
			snprintf(exe, sizeof(exe), "%s/%s", bin, argv[0]);
		else
			snprintf(exe, sizeof(exe), "%s", argv[0]);
		execv(exe, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	for (size_t i = 0; i < MAX_SPAWNED; i++)
		if (spawned[i] == 0) {
			spawned[i] = pid;
			break;
		}
	return pid;
}

int
testutil_stop(int pid, int sig)
{
	int status = 0;

	if (pid <= 0)
		return -1;
	kill(pid, sig);
	waitpid(pid, &status, 0);
	for (size_t i = 0; i < MAX_SPAWNED; i++)
		if (spawned[i] == pid)
			spawned[i] = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void
testutil_kill_all(void)
{
	for (size_t i = 0; i < MAX_SPAWNED; i++)
		if (spawned[i] > 0)
			testutil_stop(spawned[i], SIGKILL);
}

static bool
has_all(const char *body, const char *const *want)
{
	for (size_t i = 0; body != NULL && want[i] != NULL; i++)
		if (strstr(body, want[i]) == NULL)
			return false;
	return body != NULL;
}

char *
testutil_http_until(int port, const char *path, const char *const *want,
                    int timeout_ms, int *status)
{
	char *body = NULL;

	for (int waited = 0;; waited += 50) {
		free(body);
		body = testutil_http(port, "GET", path, NULL, NULL, status);
		if (has_all(body, want) || waited >= timeout_ms)
			return body;
		usleep(50000);
	}
}

int64_t
testutil_db_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s;
	int64_t n = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return n;
}

int
testutil_db_count(const char *path, const char *sql)
{
	sqlite3 *h = NULL;
	int n = -1;

	if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		sqlite3_close(h);
		return -1;
	}
	sqlite3_busy_timeout(h, 5000);
	n = (int)testutil_db_int(h, sql);
	sqlite3_close(h);
	return n;
}
