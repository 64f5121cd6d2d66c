/* clock.h -- the two clocks every daemon reads, and nothing else does.
 *
 *   clock_wall_ms   CLOCK_REALTIME, ms since the epoch. Only for a time
 *                   that is stored or shown: an envelope's ts, a saga's
 *                   updated_at, a timer's due time in the database, the
 *                   time at the start of a message id, a log line.
 *   clock_mono_ms   CLOCK_MONOTONIC. For every wait, timeout, backoff and
 *                   deadline that lives only in this process: an NTP step
 *                   or an operator's `date -s` must not stretch a batch
 *                   wait or cut a drain short.
 *
 * The two are never compared with each other. A duration measured on one
 * may be added to a time of the same clock only.
 */
#ifndef SAGA_CLOCK_H
#define SAGA_CLOCK_H

#include <stdint.h>

/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t clock_wall_ms(void);
/* Milliseconds on CLOCK_MONOTONIC (an arbitrary origin, never steps). */
int64_t clock_mono_ms(void);
/* Microseconds on CLOCK_MONOTONIC. */
int64_t clock_mono_us(void);

#endif
