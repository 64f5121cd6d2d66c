/* trace.c -- see trace.h. */
#include "trace.h"

#include "entropy.h"

#include <stdio.h>
#include <string.h>

static int
hex_ok(const char *s, size_t n)
{
	int nonzero = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return 0;
		if (c != '0')
			nonzero = 1;
	}
	return nonzero;
}

int
trace_parse(const char *s, char *trace_id)
{
	if (s == NULL || strlen(s) != TRACE_PARENT_LEN)
		return -1;
	if (strncmp(s, "00-", 3) != 0 || s[35] != '-' || s[52] != '-')
		return -1;
	if (!hex_ok(s + 3, 32) || !hex_ok(s + 36, 16))
		return -1;
	if (!((s[53] >= '0' && s[53] <= '9') ||
	      (s[53] >= 'a' && s[53] <= 'f')) ||
	    !((s[54] >= '0' && s[54] <= '9') || (s[54] >= 'a' && s[54] <= 'f')))
		return -1;
	if (trace_id != NULL) {
		memcpy(trace_id, s + 3, 32);
		trace_id[32] = '\0';
	}
	return 0;
}

static int
random_hex(char *out, size_t nhex)
{
	unsigned char b[16];
	size_t n = nhex / 2;
	do {
		if (entropy_bytes(b, n) != 0)
			return -1;
		for (size_t i = 0; i < n; i++)
			snprintf(out + 2 * i, 3, "%02x", b[i]);
	} while (!hex_ok(out, nhex));
	return 0;
}

int
trace_new(char *buf, size_t cap)
{
	char tid[33], pid[17];
	if (cap < TRACE_PARENT_LEN + 1 || random_hex(tid, 32) != 0 ||
	    random_hex(pid, 16) != 0)
		return -1;
	snprintf(buf, cap, "00-%s-%s-01", tid, pid);
	return 0;
}

int
trace_child(const char *parent, char *buf, size_t cap)
{
	char tid[33], pid[17];
	if (cap < TRACE_PARENT_LEN + 1 || trace_parse(parent, tid) != 0 ||
	    random_hex(pid, 16) != 0)
		return -1;
	snprintf(buf, cap, "00-%s-%s-%c%c", tid, pid, parent[53], parent[54]);
	return 0;
}
