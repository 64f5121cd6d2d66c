/* fuzz_envelope -- libFuzzer target: any bytes through envelope_decode
 * (and so value_unpack) must give 0 or -1, never a crash, a leak or an
 * unbounded allocation; what decodes must encode and decode back equal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct envelope e, back;
	char err[256], *buf = NULL;
	size_t len = 0;

	envelope_init(&e);
	if (envelope_decode(data, size, &e, err, sizeof(err)) == 0) {
		if (envelope_encode(&e, &buf, &len) == 0) {
			envelope_init(&back);
			if (envelope_decode(buf, len, &back, err,
			                    sizeof(err)) != 0 ||
			    strcmp(back.id, e.id) != 0 ||
			    !value_equal(&back.payload, &e.payload))
				abort(); /* a round trip must hold */
			envelope_clear(&back);
			free(buf);
		}
	}
	envelope_clear(&e);
	return 0;
}
