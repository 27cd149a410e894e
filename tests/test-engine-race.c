/* SPDX-License-Identifier: MIT */
/*
 * test-engine-race: the engine's lock-free translation under concurrent
 * registration. Two reader threads translate buffers that stay registered
 * (every answer must be exactly right, both ways) and buffers two writer
 * threads keep registering, unregistering and flushing, so the engine lock
 * is contended and IOVAs are evicted and reused all the time.
 *
 * A churn buffer's IOVA is the writers' secret while a writer call is in
 * flight: then an answer must be -ENOENT or a plausible IOVA (right page
 * offset, inside the geometry). When no writer call overlapped the lookup
 * (the writers count their calls in flight and completed; see op_begin), the
 * answer must round-trip: dme_iovatov() of the IOVA gives back the same
 * address, so a stale translation to an IOVA that was evicted or reused
 * fails. The writers pause together every SYNC_EVERY rounds while the readers
 * round-trip churn buffers in such a quiet moment, so every run has them.
 * Runs in the TSan build too. No sleeping.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include <dme/engine.h>

#include "logcap.h"
#include "tap.h"

#define PG 4096ull
#define STABLE 64
#define CHURN 64
#define ROUNDS 3000

#define SYNC_EVERY 256
#define QUIET_PER_PAUSE 16
#define IDLE_AT_PAUSE 8 /* the idle budget below holds 8 pages */

static struct dme_engine *e;
static uint8_t *stable, *churn, *other;
static uint64_t stable_iova[STABLE];
static atomic_bool stop;
static atomic_ulong wrong, stale, good, misses, writer_errors;
/* writer calls in flight, writer calls completed, lookups made while quiet */
static atomic_ulong busy, done_calls, quiet_lookups, quiet_round_trips;
static pthread_barrier_t writers;

/* Around every engine call of a writer. Readers read done_calls, then busy,
 * before a lookup and busy, then done_calls, after it: both busy reads 0 and
 * done_calls unchanged means no writer call overlapped the lookup. */
static void op_begin(void)
{
	atomic_fetch_add(&busy, 1);
}

static void op_end(void)
{
	atomic_fetch_add(&done_calls, 1);
	atomic_fetch_sub(&busy, 1);
}

static bool plausible(uint64_t iova, unsigned off)
{
	return (iova & (PG - 1)) == off && iova >= PG &&
	       !(iova >= 0xfee00000 && iova <= 0xfeefffff) && iova <= 0x7fffffffff;
}

static void *reader(void *arg)
{
	uint64_t x = (uintptr_t)arg | 1, iova;
	unsigned long g = 0, m = 0, w = 0, st = 0;
	do {	/* at least once, however late this thread gets the CPU */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		unsigned i = (unsigned)(x % STABLE), off = (unsigned)((x >> 8) % PG);
		void *back = NULL;
		if (dme_vtoiova(e, stable + i * 2 * PG + off, &iova) ||
		    iova != stable_iova[i] + off || dme_iovatov(e, iova, &back) ||
		    back != stable + i * 2 * PG + off)
			w++;
		else
			g++;

		uint8_t *p = churn + (x >> 20) % CHURN * 2 * PG + off;
		unsigned long calls = atomic_load(&done_calls), b0 = atomic_load(&busy);
		int ret = dme_vtoiova(e, p, &iova);
		int ret_back = ret ? 0 : dme_iovatov(e, iova, &back);
		atomic_thread_fence(memory_order_seq_cst);
		bool quiet = !b0 && !atomic_load(&busy) && atomic_load(&done_calls) == calls;
		if (ret == -ENOENT) {
			m++;
		} else if (ret) {
			w++;
		} else if (quiet && (ret_back || back != p)) {
			st++; /* translated to an IOVA that no longer maps p */
		} else if (!plausible(iova, off)) {
			w++;	/* not a page offset of an IOVA dme can hand out */
		} else {
			g++;
		}
		if (quiet) {
			atomic_fetch_add(&quiet_lookups, 1);
			if (!ret)
				atomic_fetch_add(&quiet_round_trips, 1);
		}
	} while (!atomic_load_explicit(&stop, memory_order_relaxed));
	atomic_fetch_add(&good, g);
	atomic_fetch_add(&misses, m);
	atomic_fetch_add(&wrong, w);
	atomic_fetch_add(&stale, st);
	return NULL;
}

/*
 * Both writers stop between calls. The lead first registers and unregisters
 * IDLE_AT_PAUSE churn buffers, so idle mappings of churn buffers exist (the
 * LRU may otherwise hold only the other writer's), then waits until the
 * readers have round-tripped QUIET_PER_PAUSE of them with nothing in flight
 * (or made 64 times as many quiet lookups, should they keep missing).
 */
static unsigned long pause_for_readers(bool lead, uint64_t *x)
{
	unsigned long errs = 0;
	pthread_barrier_wait(&writers);
	if (lead) {
		for (unsigned k = 0; k < IDLE_AT_PAUSE; k++) {
			uint64_t iova;
			uint8_t *p = churn + (*x + k) % CHURN * 2 * PG;
			op_begin();
			if (dme_register(e, p, PG, DME_MAP_RW, &iova) || dme_unregister(e, p, PG))
				errs++;
			op_end();
		}
		unsigned long rt = atomic_load(&quiet_round_trips), q = atomic_load(&quiet_lookups);
		while (atomic_load(&quiet_round_trips) < rt + QUIET_PER_PAUSE &&
		       atomic_load(&quiet_lookups) < q + 64 * QUIET_PER_PAUSE)
			sched_yield();
	}
	pthread_barrier_wait(&writers);
	return errs;
}

static void *writer(void *arg)
{
	uint8_t *base = arg;
	uint64_t x = (uintptr_t)arg | 1, iova;
	unsigned long errs = 0;
	for (unsigned r = 0; r < ROUNDS; r++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		unsigned i = (unsigned)(x % CHURN);
		uint8_t *p = base + i * 2 * PG;
		op_begin();
		if (dme_register(e, p, PG, DME_MAP_RW, &iova) || dme_unregister(e, p, PG))
			errs++;
		if (r % 16 == 0 && dme_engine_flush(e))
			errs++;
		op_end();
		if (r % SYNC_EVERY == SYNC_EVERY - 1)
			errs += pause_for_readers(base == churn, &x);
	}
	atomic_fetch_add(&writer_errors, errs);
	return NULL;
}

int main(void)
{
	logcap_install();
	struct dme_config c;
	dme_config_init(&c);
	c.backend = DME_BACKEND_SIM;
	c.cache_budget_bytes = 8 * PG;	/* evictions happen all the time */
	if (!ok(dme_engine_open(&c, &e) == 0, "open a sim engine"))
		return tap_done();
	stable = mmap(NULL, 2 * STABLE * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	churn = mmap(NULL, 2 * CHURN * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	other = mmap(NULL, 2 * CHURN * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int reg = 1;
	for (unsigned i = 0; i < STABLE; i++)
		reg &= dme_register(e, stable + i * 2 * PG, PG, DME_MAP_RW, &stable_iova[i]) == 0;
	ok(reg, "register %d stable buffers", STABLE);

	pthread_barrier_init(&writers, NULL, 2);
	pthread_t rd[2], wr[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&rd[i], NULL, reader, (void *)(uintptr_t)(0x9e37 * (i + 1)));
	pthread_create(&wr[0], NULL, writer, churn);
	pthread_create(&wr[1], NULL, writer, other);
	pthread_join(wr[0], NULL);
	pthread_join(wr[1], NULL);
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(rd[i], NULL);

	pthread_barrier_destroy(&writers);

	diag("%lu good translations, %lu misses, %lu wrong, %lu stale; %lu quiet lookups, %lu of "
	     "them round trips",
	     atomic_load(&good), atomic_load(&misses), atomic_load(&wrong), atomic_load(&stale),
	     atomic_load(&quiet_lookups), atomic_load(&quiet_round_trips));
	ok_eq(atomic_load(&writer_errors), 0, "two writers: %d register/unregister rounds each, no error", ROUNDS);
	ok_eq(atomic_load(&wrong), 0,
	      "every concurrent translation was exact (stable, both ways), plausible or -ENOENT");
	ok_eq(
	    atomic_load(&stale), 0,
	    "every translation made with no writer call in flight round-trips through dme_iovatov");
	ok(atomic_load(&quiet_round_trips) > 0,
	   "readers round-tripped churn buffers in quiet moments");
	ok(atomic_load(&good) > 0, "readers translated while the writers ran");
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	ok(st.evictions > 0 && st.unmap_calls > 0, "evictions and unmaps happened during the race (%llu, %llu)",
	   (unsigned long long)st.evictions, (unsigned long long)st.unmap_calls);
	ok_eq(dme_engine_check(e), 0, "engine invariants hold afterwards");
	ok_eq(dme_engine_flush(e), 0, "flush");
	for (unsigned i = 0; i < STABLE; i++)
		dme_unregister(e, stable + i * 2 * PG, PG);
	ok_eq(dme_engine_flush(e), 0, "teardown flush");
	dme_engine_stats(e, &st);
	ok(st.live_mappings == 0 && st.pinned_bytes == 0, "nothing left mapped");
	dme_engine_close(e);
	return tap_done();
}
