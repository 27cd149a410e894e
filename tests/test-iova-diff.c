/* SPDX-License-Identifier: MIT */
/*
 * test-iova-diff: the IOVA allocator against the reference model
 * (iova-model.h), >= 10^6 random operations in all:
 *  - single-threaded, caches off: every result must equal the model's
 *    exactly (its placement policy: the lowest gap that fits any alignment,
 *    else first fit), and the free space must match after each step;
 *  - single-threaded, caches on: every IOVA valid and disjoint from the
 *    model's busy ranges, -ENOSPC only when the model has no fit, free space
 *    (free + cached) matching after each step;
 *  - multi-threaded, caches on: threads share a page bitmap claimed with
 *    atomic exchange, so two live ranges overlapping is caught at once. Under
 *    pressure (sizes up to 32M, -ENOSPC, flushes that reclaim the other
 *    threads' magazines), then without it (small cached sizes, a few live
 *    ranges: no flush can happen, which is checked), where every free is
 *    followed at times by a double free that must be refused - with flushes
 *    running, another thread may legitimately get the range in between.
 * Usage: test-iova-diff [ops-per-phase]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "logcap.h"
#include "tap.h"
#include "iova-diff.h"


/* ---- multi-threaded ---- */

#define MT_PAGES ((0x41000000ull) / PG)
static _Atomic uint8_t *owner;	/* one byte per page of the space */
static struct dme_iova_space *mt_space;
static _Atomic long mt_bad, mt_ops;

static bool claim(uint64_t iova, uint64_t size, uint8_t who)
{
	bool okk = true;
	for (uint64_t p = iova / PG; p < (iova + size) / PG; p++)
		if (atomic_exchange(&owner[p], who))
			okk = false;
	return okk;
}

static void unclaim(uint64_t iova, uint64_t size)
{
	for (uint64_t p = iova / PG; p < (iova + size) / PG; p++)
		atomic_store(&owner[p], 0);
}

struct mt_arg {
	int id;
	long ops;
	bool pressure;
};

static void *mt_fn(void *arg)
{
	struct mt_arg *a = arg;
	struct rsrc rs = {0x1234567ull * (a->id + 1), NULL, 0, 0}, *r = &rs;
	struct hist live[256];
	int nlive = 0, max_live = a->pressure ? 256 : 64;
	long bad = 0;
	for (long op = 0; op < a->ops; op++) {
		if (nlive < max_live && (nlive == 0 || rnd(r) % 2)) {
			uint64_t size = !a->pressure ? PG << (rnd(r) % 4)
					: rnd(r) % 4 ? PG << (rnd(r) % 6)
						     : pick_size(r, false);
			uint64_t iova;
			int ret = dme_iova_alloc(mt_space, size, PG, &iova);
			if (ret == -ENOSPC)
				continue;
			if (ret || !claim(iova, size, (uint8_t)(a->id + 1)) ||
			    !model_range_of(&(struct model){.ranges = geo, .nr_ranges = NGEO}, iova,
					    iova + size - 1)) {
				fprintf(stderr, "thread %d: alloc(0x%llx) = %d at 0x%llx overlaps or is outside\n",
					a->id, (unsigned long long)size, ret, (unsigned long long)iova);
				bad++;
				continue;
			}
			live[nlive++] = (struct hist){iova, size};
		} else {
			int i = (int)(rnd(r) % (uint64_t)nlive);
			struct hist x = live[i];
			live[i] = live[--nlive];
			unclaim(x.iova, x.size);
			int ret = dme_iova_free(mt_space, x.iova, x.size);
			if (ret) {
				fprintf(stderr, "thread %d: free(0x%llx, 0x%llx) = %d\n", a->id,
					(unsigned long long)x.iova, (unsigned long long)x.size, ret);
				bad++;
			}
			/* a double free must be refused, even on the fast path; only
			 * cached sizes stay in this thread's magazine, where no other
			 * thread can take them before the second free unless a flush
			 * reclaims them (none without pressure) */
			if (!a->pressure && rnd(r) % 16 == 0 &&
			    (ret = dme_iova_free(mt_space, x.iova, x.size)) != -EINVAL) {
				fprintf(stderr, "thread %d: double free(0x%llx, 0x%llx) = %d\n", a->id,
					(unsigned long long)x.iova, (unsigned long long)x.size, ret);
				bad++;
			}
		}
	}
	while (nlive) {
		struct hist x = live[--nlive];
		unclaim(x.iova, x.size);
		if (dme_iova_free(mt_space, x.iova, x.size))
			bad++;
	}
	atomic_fetch_add(&mt_bad, bad);
	atomic_fetch_add(&mt_ops, a->ops);
	return NULL;
}

static long run_mt(int nthreads, long ops, bool pressure)
{
	struct dme_iova_geometry g = {geo, NGEO, PG};
	struct dme_iova_params p = {.mag_size = 16, .depot_max = 8};
	if (dme_iova_space_create(&g, &p, &mt_space))
		return 1;
	owner = calloc(MT_PAGES, 1);
	pthread_t th[16];
	struct mt_arg args[16];
	for (int i = 0; i < nthreads; i++) {
		args[i] = (struct mt_arg){i, ops, pressure};
		pthread_create(&th[i], NULL, mt_fn, &args[i]);
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	long bad = atomic_load(&mt_bad);
	atomic_store(&mt_bad, 0);
	struct dme_iova_stats st;
	dme_iova_stats(mt_space, &st);
	if (!pressure && st.cache_flushes) {
		diag("%llu flushes without pressure: the double frees proved nothing",
		     (unsigned long long)st.cache_flushes);
		bad++;
	}
	dme_iova_flush_caches(mt_space);
	dme_iova_stats(mt_space, &st);
	if (st.live_ranges != 0 || st.cached_ranges != 0) {
		diag("after the threads: %llu live, %llu cached", (unsigned long long)st.live_ranges,
		     (unsigned long long)st.cached_ranges);
		bad++;
	}
	if (dme_iova_check(mt_space))
		bad++;
	dme_iova_space_destroy(mt_space);
	free(owner);
	return bad;
}

int main(int argc, char **argv)
{
	long ops = argc > 1 ? atol(argv[1]) : 600000;
	long n1 = 0, n2 = 0;
	/* bad frees are expected by the thousands; keep their messages quiet */
	dme_log_set_hook(NULL, NULL, DME_LOG_NONE);

	struct rsrc r1 = {0x9e3779b97f4a7c15ull, NULL, 0, 0}, r2 = {0xdeadbeefcafef00dull, NULL, 0, 0};
	long b1 = run_single(false, ops, &r1, &n1);
	ok(b1 == 0, "single thread, caches off: %ld ops match the model exactly (%ld mismatches)",
	   n1, b1);
	long b2 = run_single(true, ops, &r2, &n2);
	ok(b2 == 0, "single thread, caches on: %ld ops valid against the model (%ld mismatches)",
	   n2, b2);
	long b3 = run_mt(4, ops / 8, true);
	ok(b3 == 0,
	   "4 threads, caches on, under pressure: %ld ops, no overlap, no lost range (%ld errors)",
	   atomic_load(&mt_ops), b3);
	long before = atomic_load(&mt_ops);
	long b4 = run_mt(4, ops / 8, false);
	ok(b4 == 0,
	   "4 threads, caches on, no pressure: %ld ops, no overlap, every double free refused (%ld "
	   "errors)",
	   atomic_load(&mt_ops) - before, b4);
	ok(n1 + n2 + atomic_load(&mt_ops) >= (ops >= 600000 ? 1000000 : 0),
	   "at least 10^6 operations in all (%ld)", n1 + n2 + atomic_load(&mt_ops));
	return tap_done();
}
