/* fuzz_envelope -- libFuzzer target: any bytes through envelope_decode
 * and envelope_bundle_decode (and so value_unpack), and what decodes through
 * presence_decode (a participant's announcement, and its topic patterns
 * matched against the saga id), must give 0 or -1, never a
 * crash, a leak or an unbounded allocation; what decodes must encode and decode
 * back equal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "presence.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct envelope e, back;
	char err[256], *buf = NULL;
	size_t len = 0;

	envelope_init(&e);
	if (envelope_decode(data, size, &e, err, sizeof(err)) == 0) {
		struct presence_announce pa, pb;
		struct envelope pe;
		/* a participant's announcement: what decodes encodes back */
		if (presence_decode(&e, &pa, err, sizeof(err)) == 0) {
			if (presence_encode(&pa, e.ts, &pe) != 0 ||
			    presence_decode(&pe, &pb, err, sizeof(err)) != 0 ||
			    pb.nkeys != pa.nkeys ||
			    pb.fallback != pa.fallback ||
			    strcmp(pb.name, pa.name) != 0 ||
			    strcmp(pb.instance, pa.instance) != 0)
				abort();
			for (size_t i = 0; i < pa.nkeys; i++) {
				if (strcmp(pb.keys[i], pa.keys[i]) != 0)
					abort();
				(void)presence_topic_match(pa.keys[i], e.saga);
			}
			envelope_clear(&pe);
		}
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
	/* the same bytes as a bundle: what decodes re-encodes to the same
	 * items, and each item goes through the envelope decoder */
	struct envelope_bundle b, b2;
	if (envelope_bundle_decode(data, size, &b, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < b.n; i++) {
			envelope_init(&e);
			(void)envelope_decode(b.items[i].body, b.items[i].len,
			                      &e, err, sizeof(err));
			envelope_clear(&e);
		}
		if (envelope_bundle_encode(b.items, b.n, &buf, &len) != 0 ||
		    envelope_bundle_decode(buf, len, &b2, err, sizeof(err)) !=
		            0 ||
		    b2.n != b.n)
			abort();
		for (size_t i = 0; i < b.n; i++)
			if (b2.items[i].len != b.items[i].len ||
			    memcmp(b2.items[i].body, b.items[i].body,
			           b.items[i].len) != 0 ||
			    strcmp(b2.items[i].traceparent,
			           b.items[i].traceparent) != 0)
				abort();
		envelope_bundle_clear(&b2);
		free(buf);
	}
	envelope_bundle_clear(&b);
	return 0;
}
