/* SPDX-License-Identifier: MIT */
/*
 * test-engine-race: the engine's lock-free translation under concurrent
 * registration. Two reader threads translate buffers that stay registered
 * (every answer must be exactly right) and buffers a writer thread keeps
 * registering, unregistering and flushing (every answer must be -ENOENT or
 * an IOVA at the right page offset inside the geometry: which IOVA the
 * buffer has at that instant is the writer's secret). Another thread registers and unregisters its own buffers at the
 * same time, so the engine lock is contended. Runs in the TSan build too.
 * No sleeping: threads run until the writer has done its rounds.
 */
#include <errno.h>
#include <pthread.h>
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

static struct dme_engine *e;
static uint8_t *stable, *churn, *other;
static uint64_t stable_iova[STABLE];
static atomic_bool stop;
static atomic_ulong wrong, good, misses, writer_errors;

static void *reader(void *arg)
{
	uint64_t x = (uintptr_t)arg | 1, iova;
	unsigned long g = 0, m = 0, w = 0;
	do {	/* at least once, however late this thread gets the CPU */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		unsigned i = (unsigned)(x % STABLE), off = (unsigned)((x >> 8) % PG);
		if (dme_vtoiova(e, stable + i * 2 * PG + off, &iova) || iova != stable_iova[i] + off)
			w++;
		else
			g++;
		uint8_t *p = churn + (x >> 20) % CHURN * 2 * PG + off;
		int ret = dme_vtoiova(e, p, &iova);
		if (ret == -ENOENT) {
			m++;
		} else if (ret) {
			w++;
		} else if ((iova & (PG - 1)) != off || iova < PG ||
			   (iova >= 0xfee00000 && iova <= 0xfeefffff) || iova > 0x7fffffffff) {
			w++;	/* not a page offset of an IOVA dme can hand out */
		} else {
			g++;
		}
	} while (!atomic_load_explicit(&stop, memory_order_relaxed));
	atomic_fetch_add(&good, g);
	atomic_fetch_add(&misses, m);
	atomic_fetch_add(&wrong, w);
	return NULL;
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
		if (dme_register(e, p, PG, DME_MAP_RW, &iova) || dme_unregister(e, p, PG))
			errs++;
		if (r % 16 == 0 && dme_engine_flush(e))
			errs++;
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

	diag("%lu good translations, %lu misses, %lu wrong", atomic_load(&good),
	     atomic_load(&misses), atomic_load(&wrong));
	ok_eq(atomic_load(&writer_errors), 0, "two writers: %d register/unregister rounds each, no error", ROUNDS);
	ok_eq(atomic_load(&wrong), 0, "every concurrent translation was exact or -ENOENT");
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
