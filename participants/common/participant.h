/* participant.h -- the participant framework (participants/common): a
 * participant's handler on the durable loop every daemon runs
 * (lib/durable.h), so that a daemon is only its command handlers and its
 * tables.
 *
 * For each delivery from one of the daemon's work queues:
 *
 *   1. The body is decoded (lib/envelope.h). A message that cannot be
 *      decoded, or whose content type is set and not application/msgpack,
 *      goes to `<queue>.dlq` with the reason in the x-saga-error header.
 *   2. In one SQLite transaction (BEGIN IMMEDIATE) shared by the
 *      deliveries of a batch (up to the prefetch window), each in its own
 *      savepoint: if its message id is in `part_processed`, the stored
 *      reply is written to the outbox again and nothing else happens (a
 *      command seen twice gets the same reply and changes nothing).
 *      Otherwise the handler for its type runs on the same connection, and
 *      its changes, the message id with its reply, and the reply's row in
 *      `part_outbox` are committed together.
 *   3. After the batch's commit (one fsync for the batch) each delivery
 *      is acked, and the outbox is published with publisher confirms; a
 *      row is deleted once the broker confirms it, and published again
 *      after a crash until then. A crash before the commit leaves the
 *      deliveries unacked: they come back, and step 2 replays. A commit
 *      that fails (disk full) keeps the batch, acks nothing, and is
 *      retried with backoff.
 *
 * Bundles (lib/envelope.h, schema/envelope.md section 3a): a delivery of
 * type saga.bundle carries several commands. Each item is handled as if it
 * had come alone, in the same batch: its own savepoint, dedup, reply,
 * retries (alone, to Q.retry with x-saga-attempts) and dead letter (alone,
 * to Q.dlq). Replies to bundled commands that go to the same place leave
 * as one bundle (lib/bundler.h); the bundle's delivery is acked once
 * every item is settled. A bundle that cannot be decoded goes to Q.dlq
 * whole.
 *
 * Compensations: a command declared with `undoes` records (saga, undone
 * command) in `part_compensated` when it succeeds, whether or not the
 * original ever ran (the handler answers success for something it never
 * did). An original command (one with `refusal`) that arrives for a saga
 * already compensated is refused with that reply type and changes
 * nothing, so a late command never leaves stock reserved or money taken.
 *
 * Retries: every work queue Q is declared with a dead-letter route to
 * `Q.retry`, a queue with a message TTL (`retry_ms`) that dead-letters back
 * to Q. A handler that answers PART_RETRY (a transient failure) rolls
 * back its savepoint and the delivery goes to `Q.retry` after the commit; past
 * `max_attempts` deliveries it goes to `Q.dlq` with the reason. PART_REFUSE (a
 * command that can never succeed: unknown type, fields of the wrong type) goes
 * to `Q.dlq` at once.
 *
 * Bounded storage: `part_processed` keeps a message id (and its stored
 * reply) for `retention_ms` (default PART_RETENTION_MS, 7 days, as the
 * orchestrator's --inbox-days), then forgets it. The rule is the
 * orchestrator's: an id only has to outlive every way a copy of its
 * message can still arrive -- the broker redelivering what was unacked
 * when a daemon stopped, a publisher's resend after a lost connection,
 * the orchestrator publishing its unconfirmed outbox again at start (a
 * command's id is deterministic, so the resend has the same id), and the
 * retry queue, which can hand a copy back up to max_attempts x retry_ms
 * after it first came. part_run refuses a retention shorter than that
 * last one (the only bound the framework knows); the others last as long
 * as a daemon or the broker is down, hence days. A copy arriving after
 * its id is forgotten is handled again; the handlers' own tables keep
 * that harmless (one reservation, one payment, one shipment per saga).
 * `part_compensated` is what refuses a late original, and it has no
 * such second line of defence, so it is kept PART_COMPENSATED_FACTOR
 * times longer (28 days by default; a late original cannot come later
 * after its compensation than after it was sent, so this is a margin,
 * and its rows are few: one per compensated step). Both are deleted by
 * time through their `at` indexes, at most PART_PRUNE_BATCH rows per
 * transaction (a batch's, or one of its own when idle, never a long
 * DELETE): again at the next turn while a share finds a full batch, else
 * after PART_PRUNE_EVERY_MS; the first share that long after start, so
 * what the broker redelivers at start meets its rows first. The log
 * line at exit counts the rows pruned. A message replayed from a DLQ
 * after the retention is a new message.
 *
 * Observability (--http, part_metrics.h): /metrics counts each delivery's
 * outcome once its batch commits, and /healthz fails while commits fail,
 * the disk is nearly full or the broker is away. While a delivery is
 * handled (and settled) every log line ends with its trace id (log.h).
 *
 * Single-threaded: handlers run inside part_run's loop. Their sqlite3
 * handle is the framework's, inside its transaction and savepoint: a
 * handler must not BEGIN, COMMIT or ROLLBACK, and any SQLite error it
 * meets should make it return PART_RETRY (its savepoint is rolled back).
 */
#ifndef SAGA_PARTICIPANT_H
#define SAGA_PARTICIPANT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "bus.h"
#include "db.h"
#include "durable.h"
#include "envelope.h"

/* What a handler produces. By default a reply to the orchestrator
 * (exchange saga.replies, routing key = the command's reply_to); a handler
 * may send it elsewhere (exchange/routing_key) or with a TTL. type ""
 * means no message at all (an event consumer). */
struct part_reply {
	char type[ENVELOPE_TYPE_MAX];
	struct value payload;     /* a map, starts empty */
	char id[ENVELOPE_ID_MAX]; /* "" : a fresh id */
	char exchange[128];       /* "" : saga.replies, or the default exchange
	                           * when routing_key is set */
	char routing_key[256];    /* "" : the command's reply_to */
	int64_t expiration_ms;    /* per-message TTL, 0 for none */
};

enum part_verdict {
	PART_DONE,   /* commit the changes with the reply */
	PART_RETRY,  /* transient: roll back, try again later (retry queue) */
	PART_REFUSE, /* never succeeds: roll back, dead-letter (why) */
};

/* The broker-validated sender (the AMQP user_id RabbitMQ checked against
 * the connection's user) of the message a handler is handling, "" if it
 * carried none. Valid during the handler's call only: what an admin
 * command records as its actor, instead of what the payload claims. */
const char *part_sender(void);

/* A handler. in: the decoded message; attempt: 1 for the first delivery,
 * 2 after one retry, ...; out: starts with an empty type and payload;
 * why: the reason for RETRY/REFUSE (logged, and put in the DLQ copy). */
typedef enum part_verdict (*part_fn)(void *arg, sqlite3 *db,
                                     const struct envelope *in, int attempt,
                                     struct part_reply *out, char *why,
                                     size_t whylen);

struct part_command {
	const char *type; /* e.g. "inventory.reserve"; NULL: any type (an
	                   * event consumer's catch-all, checked last) */
	part_fn fn;
	const char *undoes;  /* a compensation: the command it undoes */
	const char *refusal; /* an original: the reply when its saga was
	                      * already compensated (e.g. inventory.rejected) */
};

struct part_config {
	const char *name; /* daemon name: logs, message id prefix */
	const char *url;  /* AMQP URL(s) */
	const char *db_path;
	const struct db_migration *migrations; /* the daemon's own tables */
	size_t nmigrations;
	const struct part_command *commands;
	size_t ncommands;
	/* The work queues consumed; each gets Q.retry and Q.dlq. */
	const char *const *queues;
	size_t nqueues;
	/* The rest of the daemon's topology: its exchanges, any other
	 * queues (declared, not consumed), and the bindings of everything
	 * (work queues included). saga.replies is always declared. */
	const struct bus_exchange *exchanges;
	size_t nexchanges;
	const struct bus_queue *extra_queues;
	size_t nextra_queues;
	const struct bus_binding *bindings;
	size_t nbindings;
	/* Bindings an earlier version declared that this one must not have:
	 * removed once, as soon as the daemon is connected (no such binding
	 * is fine; one the broker user may not remove is logged and left). */
	const struct bus_binding *unbindings;
	size_t nunbindings;
	/* The chart's name for this participant (a step's `to`, e.g.
	 * "inventory"): while consuming, the daemon announces every
	 * PRESENCE_INTERVAL_MS which command routing keys it takes
	 * (lib/presence.h), so the orchestrator does not count a step's
	 * timeout while nobody could take its command. The keys are the
	 * binding keys of the work queues; a work queue bound without a key
	 * (fed by an alternate exchange) makes the instance a fallback for
	 * the keys saga.commands routes to the daemon's exchanges. NULL:
	 * no announcements (a daemon that takes no commands). */
	const char *participant;
	const char *instance; /* this instance's name, "" or NULL if one */
	int max_attempts;  /* deliveries before Q.dlq; 0: PART_MAX_ATTEMPTS */
	int64_t retry_ms;  /* Q.retry's TTL; 0: PART_RETRY_MS */
	uint16_t prefetch; /* 0: PART_PREFETCH */
	/* A daemon off the saga's path (it answers no command): a batch
	 * waits up to linger_ms for more deliveries before its commit,
	 * instead of committing as soon as the input is drained: fewer
	 * commits and wake-ups, more room on the cores for the daemons
	 * sagas wait for. 0: group commit at once. */
	int linger_ms;
	/* How long part_processed keeps a message id (part_compensated
	 * PART_COMPENSATED_FACTOR times longer); 0: PART_RETENTION_MS,
	 * PART_KEEP_FOREVER: never pruned. At least max_attempts x
	 * retry_ms and at most PART_RETENTION_MAX_MS, or part_run fails. */
	int64_t retention_ms;
	void *arg; /* handed to every handler */
	/* Called once after the database is open and migrated, before the
	 * broker (seed tables, prepare statements). NULL for none. */
	int (*on_open)(void *arg, sqlite3 *db, char *err, size_t errlen);
	/* A RabbitMQ stream the daemon reads besides its work queues (NULL:
	 * none), another daemon's (declared passively: it must exist): the
	 * audit stream, read by every consumer of the domain events instead
	 * of a copy of each event per consumer. The daemon reads it from the
	 * offset after its last committed delivery, stored in `part_stream`
	 * in the same transaction as the batch (durable.h,
	 * handler.position): a restart or a reconnect resumes where its work
	 * was committed, a fresh database at the oldest message retained.
	 * Nothing is removed from it. A retry or a dead letter is a copy to
	 * the work queue stream_home's .retry (which dead-letters into
	 * stream_home, not back into the shared stream) or .dlq; the
	 * position does not pass a delivery until its copy is confirmed. */
	const char *stream;
	const char *stream_home; /* one of `queues` */
	/* A fresh database (no offset stored) reads the stream from its end
	 * instead of its oldest event: for a daemon whose database was lost,
	 * which would otherwise handle everything retained again. */
	bool stream_from_end;
	/* Optional timers of the daemon's own, kept in its tables (e.g. a
	 * message due later): the earliest due time (wall ms) if any, and
	 * firing up to max of those due at now_ms, inside the loop's
	 * transaction (0, or -1 on an SQLite error: the batch is rolled
	 * back and retried). */
	int (*timer_next)(void *arg, sqlite3 *db, int64_t *at_ms, bool *found);
	int (*fire)(void *arg, sqlite3 *db, int64_t now_ms, size_t max);
	/* "HOST:PORT" (port 0: any free one) to serve /healthz and /metrics
	 * on (part_metrics.h), published by the loop every
	 * PART_HTTP_PUBLISH_MS; NULL: no HTTP. */
	const char *http;
};

/* The --http pages: how often the loop renders them, and how old they
 * may be before they answer 503 (a loop that stopped turning). The
 * retry and dead-letter queues' depths are asked of the broker at most
 * every PART_QUEUES_EVERY_MS. */
#define PART_HTTP_PUBLISH_MS 250
#define PART_HTTP_STALE_MS   10000
#define PART_QUEUES_EVERY_MS 5000

/* The default prefetch: deliveries in flight per work queue. */
#define PART_PREFETCH     200
#define PART_MAX_ATTEMPTS 5
/* A daemon's own exchange: "<first work queue's name up to its first
 * dot>.own" (inventory.own, payment.own, shipping.own, notification.own),
 * direct, which only the daemon's broker user may write and which is
 * bound only to its own queues (each Q, Q.retry and Q.dlq under its
 * name; notification's delay line too). Copies to those queues go
 * through it, and it is their dead-letter exchange (Q -> Q.retry -> Q),
 * never the default exchange, which no service user may write (RabbitMQ
 * asks for write on a queue's dead-letter exchange to declare it:
 * deploy/rabbitmq/definitions.json). */
#define PART_OWN_SUFFIX ".own"
void part_own_exchange(const struct part_config *cfg, char *buf, size_t cap);

#define PART_RETRY_MS 1000

/* Retention of processed message ids (see "Bounded storage"). */
#define PART_DAY_MS             (24 * 3600 * 1000LL)
#define PART_RETENTION_MS       (7 * PART_DAY_MS)
#define PART_RETENTION_MAX_MS   (36500 * PART_DAY_MS)
#define PART_KEEP_FOREVER       (-1)
#define PART_COMPENSATED_FACTOR 4
#define PART_PRUNE_BATCH        500
#define PART_PRUNE_EVERY_MS     10000

/* Counters, for logs and tests. */
struct part_stats {
	uint64_t handled, replayed, refused_late, retried, dead_lettered;
	uint64_t pruned; /* rows of part_processed and part_compensated */
};

/* How long part_run drains at most. */
#define PART_DRAIN_MS 10000

/* Runs the daemon until *stop becomes non-zero (set it from a SIGTERM
 * handler), then drains: stops consuming, commits what is in flight,
 * waits up to PART_DRAIN_MS for the replies to be confirmed, closes.
 * Returns 0 after a clean stop, -1 with the reason in err if the
 * configuration (a retention out of bounds: checked first) or the
 * database is unusable (before touching the broker). An
 * unreachable broker is not an error: the bus keeps retrying. */
int part_run(const struct part_config *cfg, const volatile sig_atomic_t *stop,
             char *err, size_t errlen);

/* The participant without its broker, for part_run and the unit tests:
 * opens and migrates the database (cfg->on_open included) and puts the
 * participant's handler on a durable loop fed by transport t (its
 * `source` is not used). Borrows cfg's pointers. NULL with the reason in
 * err if the configuration or the database is unusable. */
struct part;
struct part *part_open(const struct part_config *cfg,
                       const struct durable_transport *t, char *err,
                       size_t errlen);
/* The offset its stream is read from next (participant.h, `stream`):
 * the one stored with the last commit, -1 before any. */
int64_t part_stream_next(const struct part *p);
/* The loop, to run, turn or flush (durable.h). */
struct durable *part_durable(struct part *p);
/* The counters (dead_lettered, retried and pruned are the loop's). */
const struct part_stats *part_stats(struct part *p);
/* Frees everything (NULL is fine); the transport is the caller's. */
void part_close(struct part *p);

/* ---- the command line (cli.c) ----
 *
 * Every participant takes --amqp URL (default $SAGA_AMQP_URL), --db PATH,
 * --http ADDR:PORT (default $SAGA_HTTP) and --log-level LEVEL; those that run
 * part_main also --processed-days N (0: forever), which sets retention_ms. A
 * daemon lists its own flags in a table of part_flag and hands it to part_parse
 * with its usage text, which reads as its man page (PART_USAGE_COMMON describes
 * the common flags). --help prints the usage on stdout. */
#define PART_USAGE_COMMON                                                      \
	"  --amqp URL           broker URL(s), comma-separated (env "          \
	"SAGA_AMQP_URL)\n"                                                     \
	"  --db PATH            this daemon's SQLite database\n"               \
	"  --http ADDR:PORT     serve /healthz and /metrics (env SAGA_HTTP;\n" \
	"                       port 0: any free port)\n"                      \
	"  --log-level L        debug, info, warn or error (default info)\n"
#define PART_USAGE_RETENTION                                                   \
	"  --processed-days N   keep processed message ids N days for dedup\n" \
	"                       (default 7; 0: forever)\n"

/* One of a daemon's own flags: --name, and where its value goes. Exactly
 * one of str, on, words and set is given. */
struct part_flag {
	const char *name; /* without the -- */
	const char **str; /* --name VALUE: VALUE (argv's) is stored here */
	bool *on;         /* --name (no value): set to true */
	/* --name WORD: one of words (NULL-ended); its index goes to *choice.
	 * Any other value: "--name: "x" is not a, b or c", exit 2. */
	const char *const *words;
	int *choice;
	/* --name VALUE: parsed by set(arg, VALUE); 0, or -1 after saying
	 * why on stderr (the daemon exits 2) */
	int (*set)(void *arg, const char *value);
};

#define PART_MAX_FLAGS 8

struct part_cli {
	const char *prog;  /* e.g. "inventory-svc": messages begin with it */
	const char *usage; /* printed for --help and after a bad flag */
	bool retention;    /* takes --processed-days */
	const struct part_flag *flags; /* at most PART_MAX_FLAGS */
	size_t nflags;
	void *arg; /* handed to each flag's set */
};

struct part_common {
	const char *amqp, *db;
	const char *http;   /* NULL: no HTTP */
	int log_level;      /* enum log_level */
	int processed_days; /* -1: not given (cfg->retention_ms stays) */
};

/* Parses argv into *c and the daemon's flags. -1 when the daemon goes on;
 * otherwise its exit status: 0 after --help, 2 after a bad flag or an
 * argument that is no flag (with a message on stderr). It does not say
 * what is missing: part_common_check (and part_main) do. */
int part_parse(const struct part_cli *cli, int argc, char **argv,
               struct part_common *c);
/* 0 if --amqp (or SAGA_AMQP_URL) and --db were given; -1 after saying
 * which is missing on stderr. */
int part_common_check(const struct part_common *c, const char *prog);

/* A daemon's main after its flags: checks the common ones (exit 2 with a
 * message), sets up logging and signals, fills cfg->url, db_path, http (and
 * retention_ms, if --processed-days was given), runs
 * part_run, and returns the exit status (0 clean stop, 1 unusable
 * database or configuration, 2 usage). */
int part_main(const char *prog, const struct part_common *c,
              struct part_config *cfg);

/* Prints the rows of a read-only query on a participant's database
 * (--print-stock, --print-ledger, --print): a header of column names, one
 * line per row, columns padded to 20 but the last. Exit status 0/1. */
int part_print(const char *prog, const char *db_path, const char *sql);

/* Installs SIGTERM/SIGINT handlers that set *stop, and ignores SIGPIPE. */
void part_signals(volatile sig_atomic_t *stop);

/* Payload helpers for handlers: a string field ("" if absent or not a
 * string) and an integer field (false if absent or not an integer). */
const char *part_str(const struct value *map, const char *path);
bool part_int(const struct value *map, const char *path, int64_t *out);

/* Runs one statement with parameters described by sig, one letter each:
 * 't' a const char *, 'i' an int64_t. Returns 1 if it produced a row (its
 * first column, as int64, in *out when out is not NULL), 0 if not, -1 on
 * an SQLite error (logged). For the handlers' one-liners. */
int part_sql(sqlite3 *db, const char *sql, const char *sig, int64_t *out, ...);

/* The statement for sql on db, prepared on first use and kept (reset, its
 * bindings cleared) for the life of the daemon: for handlers that read
 * columns. sql must outlive the daemon (a literal). The caller steps it
 * and calls sqlite3_reset when done. NULL on an SQLite error (logged).
 * part_sql uses the same cache. */
sqlite3_stmt *part_prepared(sqlite3 *db, const char *sql);
/* Finalizes every kept statement of db (before closing it). */
void part_prepared_release(sqlite3 *db);

#endif
