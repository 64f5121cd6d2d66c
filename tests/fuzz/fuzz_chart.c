/* fuzz_chart -- libFuzzer target: any bytes as a statechart file through
 * the libyaml loader and validator give a chart or errors, never a crash
 * or a leak. */
#include <stdint.h>
#include <stdlib.h>

#include "chart_load.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chart_errors errs;
	struct chart *c;

	chart_errors_init(&errs);
	c = chart_load_buffer("fuzz.yaml", (const char *)data, size, &errs);
	if (c != NULL)
		chart_free(c);
	chart_errors_clear(&errs);
	return 0;
}
