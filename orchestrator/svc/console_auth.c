/* console_auth.c -- who may use the console (console_int.h, "Who may
 * act"; docs/console.md, "Login").
 *
 * Two ways to be someone: a session, opened by POST /login with a name and
 * password checked against the users file (crypt(3) hashes, libxcrypt's
 * crypt_r: yescrypt "$y$" or SHA-512 "$6$"), or a trusted header set by a
 * reverse proxy that authenticated the request itself. Sessions are a
 * random token (getrandom, 256 bits) in an HttpOnly, SameSite=Strict
 * cookie, kept in memory only: a restart logs everyone out, which is fine
 * for a handful of operators.
 *
 * Everything that changes something is a POST with the header
 * X-Saga-Console (the page's script sets it). A cross-site form cannot
 * set a custom header, and a cross-site script that tries needs a CORS
 * preflight this server never answers; with the SameSite cookie that is
 * the CSRF guard.
 *
 * The users file is read once, at start: a file that cannot be read or
 * has a bad line stops the daemon with the line named.
 *
 * Wrong passwords cost time (login_guard.h): after five failures from one
 * address, or for one user name, the next try waits 1 s, then 2, 4, ...
 * up to 15 minutes; meanwhile /login answers 429 with Retry-After and
 * checks no password.
 */
#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "clock.h"
#include "console.h"
#include "console_int.h"
#include "jsonout.h"
#include "log.h"
#include "login_guard.h"

#define USERS_MAX    256
#define SESSIONS_MAX 256
#define USER_MAX     64
#define HASH_MAX     CRYPT_OUTPUT_SIZE
#define TOKEN_BYTES  32
#define SESSION_MS   (8LL * 3600 * 1000)
#define COOKIE       "saga_session"
#define DISABLED_MSG                                                           \
	"actions need a login: start the orchestrator with --console-users "   \
	"FILE (or --console-trust-header NAME behind an authenticating "       \
	"proxy); see docs/console.md"

struct user {
	char name[USER_MAX];
	char hash[HASH_MAX];
};

struct session {
	char token[TOKEN_BYTES * 2 + 1]; /* "" when free */
	char user[USER_MAX];
	int64_t expires_ms; /* monotonic */
};

struct console_auth {
	struct user *users;
	size_t nusers;
	char *trust_header; /* or NULL */
	bool loopback;
	pthread_mutex_t mu; /* sessions and guard */
	struct session sessions[SESSIONS_MAX];
	struct login_guard *guard;
};

static bool
valid_name(const char *s, size_t n)
{
	if (n == 0 || n >= USER_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-' || c == '@'))
			return false;
	}
	return true;
}

static bool
supported_hash(const char *h)
{
	return strncmp(h, "$y$", 3) == 0 || strncmp(h, "$6$", 3) == 0;
}

/* One line "name:hash" (or blank, or a # comment): 0, or -1 with err. */
static int
parse_user(struct console_auth *a, char *line, char *err, size_t errlen)
{
	char *colon, *end = line + strlen(line);

	while (end > line && (end[-1] == '\n' || end[-1] == '\r' ||
	                      end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (line[0] == '\0' || line[0] == '#')
		return 0;
	colon = strchr(line, ':');
	if (colon == NULL || !valid_name(line, (size_t)(colon - line))) {
		snprintf(err, errlen,
		         "not \"name:hash\" with a name of letters, digits "
		         "and ._-@");
		return -1;
	}
	if (!supported_hash(colon + 1) || strlen(colon + 1) >= HASH_MAX) {
		snprintf(err, errlen,
		         "the hash is not yescrypt ($y$) or SHA-512 ($6$): "
		         "make one with saga-orchestrator --hash-password "
		         "NAME");
		return -1;
	}
	if (a->nusers == USERS_MAX) {
		snprintf(err, errlen, "more than %d users", USERS_MAX);
		return -1;
	}
	*colon = '\0';
	snprintf(a->users[a->nusers].name, USER_MAX, "%s", line);
	snprintf(a->users[a->nusers].hash, HASH_MAX, "%s", colon + 1);
	a->nusers++;
	return 0;
}

static int
load_users(struct console_auth *a, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[HASH_MAX + USER_MAX + 8], why[200];
	int lineno = 0, rc = 0;

	if (f == NULL) {
		snprintf(err, errlen, "console users %s: %s", path,
		         strerror(errno));
		return -1;
	}
	a->users = calloc(USERS_MAX, sizeof(*a->users));
	if (a->users == NULL) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (parse_user(a, line, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "console users %s:%d: %s", path,
			         lineno, why);
			rc = -1;
		}
	}
	fclose(f);
	if (rc == 0 && a->nusers == 0) {
		snprintf(err, errlen, "console users %s: no user", path);
		rc = -1;
	}
	return rc;
}

struct console_auth *
console_auth_new(const char *users_file, const char *trust_header,
                 bool loopback, char *err, size_t errlen)
{
	struct console_auth *a = calloc(1, sizeof(*a));

	if (a == NULL || pthread_mutex_init(&a->mu, NULL) != 0) {
		free(a);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((a->guard = login_guard_new()) == NULL) {
		console_auth_free(a);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->loopback = loopback;
	if ((trust_header != NULL && trust_header[0] != '\0' &&
	     (a->trust_header = strdup(trust_header)) == NULL) ||
	    (users_file != NULL && users_file[0] != '\0' &&
	     load_users(a, users_file, err, errlen) != 0)) {
		if (a->trust_header == NULL && trust_header != NULL &&
		    trust_header[0] != '\0')
			snprintf(err, errlen, "out of memory");
		console_auth_free(a);
		return NULL;
	}
	return a;
}

void
console_auth_free(struct console_auth *a)
{
	if (a == NULL)
		return;
	pthread_mutex_destroy(&a->mu);
	explicit_bzero(a->sessions, sizeof(a->sessions));
	free(a->users);
	free(a->trust_header);
	login_guard_free(a->guard);
	free(a);
}

bool
console_auth_enabled(const struct console_auth *a)
{
	return a->nusers > 0 || a->trust_header != NULL;
}

/* Equal in time independent of where they differ. */
static bool
same(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	unsigned char d = na != nb;

	for (size_t i = 0; i < na && i < nb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/* The password checked against name's hash. An unknown name costs a
 * hash too, so the time does not tell which names exist. */
static bool
password_ok(const struct console_auth *a, const char *name, const char *pw)
{
	static const char dummy[] =
	        "$6$saga.console$0000000000000000000000000000000000000000"
	        "000000000000000000000000000000000000000000000";
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	const char *hash = dummy, *out;
	bool known = false, ok;

	for (size_t i = 0; i < a->nusers; i++)
		if (strcmp(a->users[i].name, name) == 0) {
			hash = a->users[i].hash;
			known = true;
		}
	if (cd == NULL)
		return false;
	out = crypt_r(pw, hash, cd);
	ok = known && out != NULL && out[0] != '*' && same(out, hash);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

/* A new session for user; its token into token. -1: no randomness. */
static int
session_open(struct console_auth *a, const char *user,
             char token[TOKEN_BYTES * 2 + 1])
{
	unsigned char raw[TOKEN_BYTES];
	int64_t now = clock_mono_ms();
	size_t slot = 0;

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -1;
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(token + 2 * i, 3, "%02x", raw[i]);
	pthread_mutex_lock(&a->mu);
	/* a free or expired slot, else the one expiring first */
	for (size_t i = 0; i < SESSIONS_MAX; i++) {
		const struct session *s = &a->sessions[i];
		if (s->token[0] == '\0' || s->expires_ms <= now) {
			slot = i;
			break;
		}
		if (s->expires_ms < a->sessions[slot].expires_ms)
			slot = i;
	}
	snprintf(a->sessions[slot].token, sizeof(a->sessions[slot].token), "%s",
	         token);
	snprintf(a->sessions[slot].user, USER_MAX, "%s", user);
	a->sessions[slot].expires_ms = now + SESSION_MS;
	pthread_mutex_unlock(&a->mu);
	explicit_bzero(raw, sizeof(raw));
	return 0;
}

/* The request's session token (the cookie's value) into tok, or false. */
static bool
cookie_token(const struct http_request *req, char tok[TOKEN_BYTES * 2 + 1])
{
	const char *c = http_header(req, "Cookie"), *p;
	size_t n = 0;

	for (p = c; p != NULL && (p = strstr(p, COOKIE "=")) != NULL;
	     p += strlen(COOKIE)) {
		if (p == c || p[-1] == ' ' || p[-1] == ';')
			break;
	}
	if (p == NULL)
		return false;
	p += strlen(COOKIE "=");
	while (n < TOKEN_BYTES * 2 &&
	       ((p[n] >= '0' && p[n] <= '9') || (p[n] >= 'a' && p[n] <= 'f')))
		n++;
	if (n != TOKEN_BYTES * 2)
		return false;
	memcpy(tok, p, n);
	tok[n] = '\0';
	return true;
}

/* The session's user (and, close, ends it): true if it is live. */
static bool
session_find(struct console_auth *a, const char *tok, char *user, size_t cap,
             bool close)
{
	int64_t now = clock_mono_ms();
	bool found = false;

	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < SESSIONS_MAX; i++) {
		struct session *s = &a->sessions[i];
		if (s->token[0] == '\0' || !same(s->token, tok))
			continue;
		found = s->expires_ms > now;
		if (found && user != NULL)
			snprintf(user, cap, "%s", s->user);
		if (close || !found)
			memset(s, 0, sizeof(*s));
	}
	pthread_mutex_unlock(&a->mu);
	return found;
}

bool
console_auth_user(struct console_auth *a, const struct http_request *req,
                  char *user, size_t cap)
{
	char tok[TOKEN_BYTES * 2 + 1];

	if (a->trust_header != NULL) {
		const char *v = http_header(req, a->trust_header);
		if (v != NULL && valid_name(v, strlen(v))) {
			snprintf(user, cap, "%s", v);
			return true;
		}
	}
	return a->nusers > 0 && cookie_token(req, tok) &&
	       session_find(a, tok, user, cap, false);
}

bool
console_auth_may_read(struct console_auth *a, const struct http_request *req)
{
	char user[USER_MAX];

	if (a->loopback || !console_auth_enabled(a))
		return true;
	return console_auth_user(a, req, user, sizeof(user));
}

int
console_auth_act(struct console_auth *a, const struct http_request *req,
                 struct http_response *r, char *user, size_t cap)
{
	const char *csrf = http_header(req, CONSOLE_CSRF_HEADER);

	if (!console_auth_enabled(a)) {
		console_json_error(r, 403, DISABLED_MSG);
		return -1;
	}
	if (csrf == NULL || csrf[0] == '\0') {
		console_json_error(r, 403,
		                   "missing the " CONSOLE_CSRF_HEADER
		                   " header (every request that acts "
		                   "carries it: a guard against cross-site "
		                   "requests)");
		return -1;
	}
	if (!console_auth_user(a, req, user, cap)) {
		console_json_error(r, 401, "not logged in: POST /login first");
		return -1;
	}
	return 0;
}

static void
set_cookie(struct http_response *r, const char *token, int64_t max_age_s)
{
	char v[200];

	snprintf(v, sizeof(v),
	         COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%lld",
	         token, (long long)max_age_s);
	http_add_header(r, "Set-Cookie", v);
	http_add_header(r, "Cache-Control", "no-store");
}

/* What a login attempt counts against (login_guard.h): the client's
 * address and, when it is a valid one, the name tried. */
struct login_keys {
	char addr[LOGIN_GUARD_KEY_MAX], user[LOGIN_GUARD_KEY_MAX];
};

static void
login_keys(const struct http_request *req, const char *user,
           struct login_keys *k)
{
	char ip[64];

	http_peer(req, ip, sizeof(ip));
	snprintf(k->addr, sizeof(k->addr), "from %s", ip);
	k->user[0] = '\0';
	if (valid_name(user, strlen(user)))
		snprintf(k->user, sizeof(k->user), "for %s", user);
}

/* 0, or 429 answered: one of k's keys must still wait. */
static int
guard_check(struct console_auth *a, const struct login_keys *k,
            struct http_response *r)
{
	int64_t now = clock_mono_ms(), wa, wu;
	char msg[200], secs[24];

	pthread_mutex_lock(&a->mu);
	wa = login_guard_wait(a->guard, k->addr, now);
	wu = k->user[0] ? login_guard_wait(a->guard, k->user, now) : 0;
	pthread_mutex_unlock(&a->mu);
	if (wa == 0 && wu == 0)
		return 0;
	snprintf(secs, sizeof(secs), "%lld",
	         (long long)(((wa > wu ? wa : wu) + 999) / 1000));
	snprintf(msg, sizeof(msg),
	         "too many failed logins %s: try again in %s s",
	         wa >= wu ? k->addr : k->user, secs);
	log_warnx("console: login %s refused: %s", k->addr, msg);
	console_json_error(r, 429, msg);
	http_add_header(r, "Retry-After", secs);
	return -1;
}

/* A failure counts against both keys; a success clears both. */
static void
guard_note(struct console_auth *a, const struct login_keys *k, bool ok)
{
	int64_t now = clock_mono_ms();

	pthread_mutex_lock(&a->mu);
	if (ok) {
		login_guard_ok(a->guard, k->addr);
		login_guard_ok(a->guard, k->user);
	} else {
		login_guard_failed(a->guard, k->addr, now);
		if (k->user[0] != '\0')
			login_guard_failed(a->guard, k->user, now);
	}
	pthread_mutex_unlock(&a->mu);
}

/* 0 and the user's session cookie set, or -1 and the answer given. */
static int
login_check(struct console_auth *a, const struct http_request *req,
            const char *user, const char *pw, struct http_response *r)
{
	char token[TOKEN_BYTES * 2 + 1];
	struct login_keys k = {.addr = ""};

	login_keys(req, user, &k);
	if (guard_check(a, &k, r) != 0)
		return -1;
	if (!valid_name(user, strlen(user)) || !password_ok(a, user, pw)) {
		guard_note(a, &k, false);
		/* the name as tried, unless it is no name at all */
		log_warnx("console: failed login %s \"%.63s\"", k.addr,
		          k.user[0] ? user : "(invalid)");
		console_json_error(r, 401, "wrong user name or password");
		return -1;
	}
	guard_note(a, &k, true);
	if (session_open(a, user, token) != 0) {
		console_json_error(r, 503, "cannot read random bytes");
		return -1;
	}
	log_info("console: %s logged in %s", user, k.addr);
	set_cookie(r, token, SESSION_MS / 1000);
	explicit_bzero(token, sizeof(token));
	return 0;
}

/* POST /login {"user": NAME, "password": PW}. */
void
console_auth_login(struct console_auth *a, const struct http_request *req,
                   struct http_response *r)
{
	char body[USER_MAX + 32];
	const char *user = NULL, *pw = NULL;
	json_t *j;

	if (a->nusers == 0) {
		console_json_error(r, 403,
		                   "no console users: start the orchestrator "
		                   "with --console-users FILE; see "
		                   "docs/console.md");
		return;
	}
	if (http_header(req, CONSOLE_CSRF_HEADER) == NULL) {
		console_json_error(
		        r, 403, "missing the " CONSOLE_CSRF_HEADER " header");
		return;
	}
	j = req->body != NULL ? json_loadb(req->body, req->body_len, 0, NULL)
	                      : NULL;
	if (j == NULL ||
	    json_unpack(j, "{s:s,s:s}", "user", &user, "password", &pw) != 0) {
		json_decref(j);
		console_json_error(r, 400,
		                   "body: not {\"user\": ..., \"password\": "
		                   "...}");
		return;
	}
	if (login_check(a, req, user, pw, r) == 0) {
		r->status = 200;
		r->content_type = "application/json";
		snprintf(body, sizeof(body), "{\"user\": \"%s\"}\n", user);
		http_printf(r, "%s", body);
	}
	json_decref(j);
}

/* POST /logout: the session ends. */
void
console_auth_logout(struct console_auth *a, const struct http_request *req,
                    struct http_response *r)
{
	char tok[TOKEN_BYTES * 2 + 1];

	if (http_header(req, CONSOLE_CSRF_HEADER) == NULL) {
		console_json_error(
		        r, 403, "missing the " CONSOLE_CSRF_HEADER " header");
		return;
	}
	if (cookie_token(req, tok))
		session_find(a, tok, NULL, 0, true);
	set_cookie(r, "", 0);
	r->status = 200;
	r->content_type = "application/json";
	http_printf(r, "{\"user\": null}\n");
}

int
console_hash_line(const char *name, const char *password, char *out, size_t cap,
                  char *err, size_t errlen)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const char *h;

	if (!valid_name(name, strlen(name))) {
		snprintf(err, errlen,
		         "user name: letters, digits and ._-@, at most %d",
		         USER_MAX - 1);
		return -1;
	}
	if (password[0] == '\0') {
		snprintf(err, errlen, "empty password");
		return -1;
	}
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) == NULL) {
		snprintf(err, errlen, "cannot make a salt: %s",
		         strerror(errno));
		return -1;
	}
	cd = calloc(1, sizeof(*cd));
	h = cd != NULL ? crypt_r(password, salt, cd) : NULL;
	if (h == NULL || h[0] == '*') {
		snprintf(err, errlen, "cannot hash the password");
		free(cd);
		return -1;
	}
	snprintf(out, cap, "%s:%s", name, h);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return 0;
}
