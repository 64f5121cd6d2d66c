/* test_console_auth.c -- the console's users file (console_auth.c):
 * a line made by console_hash_line (saga-orchestrator --hash-password)
 * loads, and every bad file is refused with the line named. Logins
 * themselves go through the real listener in test_console. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "console.h"
#include "console_int.h"
#include "testutil.h"

static char *dir;
static char path[600], err[512];

static int
write_users(const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* console_auth_new on text: NULL (err set) or the auth, freed here;
 * returns whether it loaded. */
static int
loads(const char *text, bool *enabled)
{
	struct console_auth *a;

	err[0] = '\0';
	if (write_users(text) != 0)
		return -1;
	a = console_auth_new(path, NULL, true, err, sizeof(err));
	if (a == NULL)
		return 0;
	if (enabled != NULL)
		*enabled = console_auth_enabled(a);
	console_auth_free(a);
	return 1;
}

static void
test_hash_line_loads(void)
{
	char line[512], text[600];
	bool on = false;

	CHECK_EQ(console_hash_line("alice", "s3cret", line, sizeof(line), err,
	                           sizeof(err)),
	         0);
	CHECK(strncmp(line, "alice:$y$", 9) == 0);
	snprintf(text, sizeof(text), "# operators\n\n%s\n", line);
	CHECK_EQ(loads(text, &on), 1);
	CHECK(on);
	CHECK_EQ(console_hash_line("bad name", "x", line, sizeof(line), err,
	                           sizeof(err)),
	         -1);
	CHECK_EQ(console_hash_line("bob", "", line, sizeof(line), err,
	                           sizeof(err)),
	         -1);
}

static void
test_bad_files(void)
{
	struct console_auth *a;

	CHECK_EQ(loads("alice:$y$j9T$abc$def\nbob:$1$old$md5\n", NULL), 0);
	CHECK_MSG(strstr(err, "users:2: the hash is not yescrypt") != NULL,
	          "%s", err);
	CHECK_EQ(loads("no colon here\n", NULL), 0);
	CHECK_MSG(strstr(err, "users:1: not \"name:hash\"") != NULL, "%s", err);
	CHECK_EQ(loads("# nobody\n", NULL), 0);
	CHECK_MSG(strstr(err, "no user") != NULL, "%s", err);
	a = console_auth_new("/nonexistent/users", NULL, true, err,
	                     sizeof(err));
	CHECK(a == NULL);
	CHECK(strstr(err, "No such file") != NULL);
	/* nothing configured: nobody can act; a trusted header alone can */
	a = console_auth_new(NULL, NULL, false, err, sizeof(err));
	CHECK(a != NULL);
	CHECK(!console_auth_enabled(a));
	console_auth_free(a);
	a = console_auth_new(NULL, "X-Forwarded-User", false, err, sizeof(err));
	CHECK(a != NULL);
	CHECK(console_auth_enabled(a));
	console_auth_free(a);
}

int
main(void)
{
	int rc;

	dir = testutil_tmpdir("console-auth");
	if (dir == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/users", dir);
	RUN(test_hash_line_loads);
	RUN(test_bad_files);
	rc = check_summary();
	testutil_rmtree(dir);
	free(dir);
	return rc;
}
