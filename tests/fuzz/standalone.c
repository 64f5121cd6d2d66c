/* standalone -- runs a fuzz target's LLVMFuzzerTestOneInput over files
 * and directories without libFuzzer: how the seed corpora and the kept
 * crashing inputs (tests/fuzz/regressions/) run in every ctest, plain and
 * sanitized. Exit 0 when every input went through. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
run_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long len;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		if (f != NULL)
			fclose(f);
		fprintf(stderr, "cannot read %s\n", path);
		return -1;
	}
	buf = malloc((size_t)len + 1);
	if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	free(buf);
	(*n)++;
	return 0;
}

int
main(int argc, char **argv)
{
	size_t n = 0;
	int bad = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		DIR *d;
		const struct dirent *e;
		if (stat(argv[i], &st) != 0)
			continue; /* an optional directory that is absent */
		if (!S_ISDIR(st.st_mode)) {
			bad |= run_file(argv[i], &n) != 0;
			continue;
		}
		d = opendir(argv[i]);
		while (d != NULL && (e = readdir(d)) != NULL) {
			char p[4096];
			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", argv[i], e->d_name);
			bad |= run_file(p, &n) != 0;
		}
		if (d != NULL)
			closedir(d);
	}
	fprintf(stderr, "%zu inputs\n", n);
	return bad || n == 0;
}
