/* SPDX-License-Identifier: MIT */
/*
 * test-iova-diff: the IOVA allocator against the reference model
 * (iova-model.h), >= 10^6 random operations in all:
 *  - single-threaded, caches off: every result must equal the model's
 *    exactly (first fit), and the free space must match after each step;
 *  - single-threaded, caches on: every IOVA valid and disjoint from the
 *    model's busy ranges, -ENOSPC only when the model has no fit, free space
 *    (free + cached) matching after each step;
 *  - multi-threaded, caches on: threads share a page bitmap claimed with
 *    atomic exchange, so two live ranges overlapping is caught at once.
 * Usage: test-iova-diff [ops-per-phase]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "iova-model.h"
#include "logcap.h"
#include "tap.h"

#define PG 0x1000ull

static const struct dme_iova_range geo[] = {
	{0x1000, 0x3fffff},
	{0x500000, 0x5fffff},
	{0x800000, 0xffffff},
	{0x2000000, 0x3ffffff},
	{0x40000000, 0x40ffffff},
};
#define NGEO (sizeof(geo) / sizeof(geo[0]))

static inline uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static uint64_t pick_size(uint64_t *r, bool pow2)
{
	unsigned k = rnd(r) % 100;
	if (pow2)
		return PG << (rnd(r) % 10);
	if (k < 70)
		return PG * (1 + rnd(r) % 16);
	if (k < 95)
		return PG * (1 + rnd(r) % 512);
	return PG * (1 + rnd(r) % 8192);	/* up to 32M: exercises -ENOSPC */
}

static uint64_t pick_align(uint64_t *r, uint64_t size)
{
	unsigned k = rnd(r) % 100;
	if (k < 50)
		return PG;
	if (k < 80 && (size & (size - 1)) == 0)
		return size;
	if (k < 99)
		return PG << (rnd(r) % 10);
	return 1ull << 30;
}

struct hist {
	uint64_t iova, size;
};

/* One single-threaded phase; returns the number of mismatches. */
static long run_single(bool cache, long ops, uint64_t seed, long *nops)
{
	struct dme_iova_geometry g = {geo, NGEO, PG};
	struct dme_iova_params p = {.no_cache = !cache, .mag_size = 8, .depot_max = 4};
	struct dme_iova_space *s;
	struct model m;
	long bad = 0;
	uint64_t r = seed;
	struct hist h[64] = {0};
	uint64_t sealed = UINT64_MAX;

	if (dme_iova_space_create(&g, &p, &s))
		return 1;
	model_init(&m, geo, NGEO, PG);

#define FAIL(...)                                  \
	do {                                       \
		if (bad++ < 10)                    \
			diag(__VA_ARGS__);         \
	} while (0)

	for (long op = 0; op < ops; op++) {
		unsigned k = rnd(&r) % 100;
		uint64_t iova, size, align, e;
		int ret, want;
		if (k < 40) {			/* alloc */
			bool pow2 = cache && (rnd(&r) & 1);
			size = pick_size(&r, pow2);
			align = pick_align(&r, size);
			uint64_t mv = 0;
			want = model_first_fit(&m, size, align, 0, &mv);
			ret = dme_iova_alloc(s, size, align, &iova);
			if (ret != want) {
				FAIL("op %ld alloc(0x%llx, 0x%llx) = %d, model %d", op,
				     (unsigned long long)size, (unsigned long long)align, ret, want);
				continue;
			}
			if (ret)
				continue;
			if (!cache && iova != mv)
				FAIL("op %ld alloc: 0x%llx, first fit is 0x%llx", op,
				     (unsigned long long)iova, (unsigned long long)mv);
			if ((iova & (align - 1)) || !model_range_of(&m, iova, iova + size - 1) ||
			    model_overlaps(&m, iova, iova + size - 1))
				FAIL("op %ld alloc: 0x%llx+0x%llx is misaligned, outside or busy", op,
				     (unsigned long long)iova, (unsigned long long)size);
			model_insert(&m, iova, iova + size - 1, M_LIVE);
			h[rnd(&r) % 64] = (struct hist){iova, size};
		} else if (k < 45) {		/* congruent */
			size = pick_size(&r, false);
			uint64_t pg = PG << (rnd(&r) % 10);
			uint64_t va = (rnd(&r) & ~(PG - 1)) & 0xffffffffffffull;
			uint64_t mv = 0;
			want = model_first_fit(&m, size, pg, va & (pg - 1), &mv);
			ret = dme_iova_alloc_congruent(s, size, pg, va, &iova);
			if (ret != want || (!ret && !cache && iova != mv)) {
				FAIL("op %ld congruent = %d (0x%llx), model %d (0x%llx)", op, ret,
				     (unsigned long long)iova, want, (unsigned long long)mv);
				continue;
			}
			if (!ret) {
				if ((iova & (pg - 1)) != (va & (pg - 1)))
					FAIL("op %ld congruent: IOVA not congruent to VA", op);
				model_insert(&m, iova, iova + size - 1, M_LIVE);
			}
		} else if (k < 50) {		/* fixed */
			size = pick_size(&r, false);
			iova = (rnd(&r) % 0x41000000ull) & ~(PG - 1);
			uint64_t z = iova + size - 1;
			want = !model_range_of(&m, iova, z) ? -EINVAL
			       : model_overlaps(&m, iova, z) ? -EEXIST : 0;
			ret = dme_iova_alloc_fixed(s, iova, size);
			if (ret != want)
				FAIL("op %ld fixed(0x%llx, 0x%llx) = %d, model %d", op,
				     (unsigned long long)iova, (unsigned long long)size, ret, want);
			else if (!ret)
				model_insert(&m, iova, z, M_LIVE);
		} else if (k < 80 && m.n) {	/* free a live range */
			size_t i = rnd(&r) % m.n;
			if (m.b[i].kind != M_LIVE)
				continue;
			iova = m.b[i].start;
			size = m.b[i].last - iova + 1;
			bool def = rnd(&r) % 4 == 0;
			ret = def ? dme_iova_free_deferred(s, iova, size) : dme_iova_free(s, iova, size);
			if (ret) {
				FAIL("op %ld free(0x%llx, 0x%llx) = %d", op, (unsigned long long)iova,
				     (unsigned long long)size, ret);
				continue;
			}
			if (def) {
				m.b[i].kind = M_QUAR;
				m.b[i].epoch = m.epoch;
			} else {
				model_remove_at(&m, i);
			}
		} else if (k < 86) {		/* a free from history: right or wrong */
			struct hist x = h[rnd(&r) % 64];
			if (!x.size)
				continue;
			if (rnd(&r) % 3 == 0)
				x.size *= 2;	/* size mismatch */
			int64_t i = model_find(&m, x.iova);
			want = i >= 0 && m.b[i].kind == M_LIVE &&
					       m.b[i].last - m.b[i].start + 1 == x.size
				       ? 0 : -EINVAL;
			ret = dme_iova_free(s, x.iova, x.size);
			if (ret != want)
				FAIL("op %ld history free(0x%llx, 0x%llx) = %d, model %d", op,
				     (unsigned long long)x.iova, (unsigned long long)x.size, ret, want);
			else if (!ret)
				model_remove_at(&m, (size_t)i);
		} else if (k < 90) {		/* seal / release */
			if (rnd(&r) & 1) {
				sealed = dme_iova_seal(s);
				if (sealed != m.epoch)
					FAIL("op %ld seal = %llu, model %llu", op,
					     (unsigned long long)sealed, (unsigned long long)m.epoch);
				m.epoch++;
			} else if (sealed != UINT64_MAX) {
				int64_t cnt = 0;
				for (size_t i = 0; i < m.n;) {
					if (m.b[i].kind == M_QUAR && m.b[i].epoch <= sealed) {
						model_remove_at(&m, i);
						cnt++;
					} else {
						i++;
					}
				}
				int64_t got = dme_iova_release(s, sealed);
				if (got != cnt)
					FAIL("op %ld release = %lld, model %lld", op, (long long)got,
					     (long long)cnt);
			}
		} else if (k < 94) {		/* reserve */
			e = PG * (1 + rnd(&r) % 64);
			iova = (rnd(&r) % 0x41000000ull) & ~(PG - 1);
			uint64_t z = iova + e - 1;
			want = model_overlaps(&m, iova, z) ? -EBUSY : 0;
			ret = dme_iova_reserve(s, iova, z);
			if (ret != want) {
				FAIL("op %ld reserve(0x%llx, 0x%llx) = %d, model %d", op,
				     (unsigned long long)iova, (unsigned long long)z, ret, want);
				continue;
			}
			if (ret)
				continue;
			for (size_t j = 0; j < NGEO; j++) {
				uint64_t a = geo[j].start > iova ? geo[j].start : iova;
				uint64_t b = geo[j].last < z ? geo[j].last : z;
				if (a <= b) {
					model_insert(&m, a, b, M_RSV);
					int64_t at = model_find(&m, a);
					m.b[at].rsv_start = iova;
					m.b[at].rsv_last = z;
				}
			}
		} else {			/* unreserve */
			size_t i;
			for (i = 0; i < m.n && m.b[i].kind != M_RSV; i++)
				;
			if (i == m.n || rnd(&r) % 8 == 0) {
				ret = dme_iova_unreserve(s, 0x7000, 0x7fff);
				if (ret != -ENOENT)
					FAIL("op %ld unreserve of nothing = %d", op, ret);
				continue;
			}
			uint64_t a = m.b[i].rsv_start, z = m.b[i].rsv_last;
			ret = dme_iova_unreserve(s, a, z);
			if (ret)
				FAIL("op %ld unreserve = %d", op, ret);
			for (size_t j = 0; j < m.n;) {
				if (m.b[j].kind == M_RSV && m.b[j].rsv_start == a && m.b[j].rsv_last == z)
					model_remove_at(&m, j);
				else
					j++;
			}
		}
		(*nops)++;
		struct dme_iova_stats st;
		dme_iova_stats(s, &st);
		if ((unsigned __int128)st.free_bytes + st.cached_bytes != m.free_bytes)
			FAIL("op %ld free bytes 0x%llx + cached 0x%llx, model 0x%llx", op,
			     (unsigned long long)st.free_bytes, (unsigned long long)st.cached_bytes,
			     (unsigned long long)m.free_bytes);
		if (op % 4096 == 0 && dme_iova_check(s))
			FAIL("op %ld tree invariants broken", op);
	}
	if (dme_iova_check(s))
		FAIL("final tree invariants broken");
	model_destroy(&m);
	dme_iova_space_destroy(s);
	return bad;
}

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
};

static void *mt_fn(void *arg)
{
	struct mt_arg *a = arg;
	uint64_t r = 0x1234567ull * (a->id + 1);
	struct hist live[256];
	int nlive = 0;
	long bad = 0;
	for (long op = 0; op < a->ops; op++) {
		if (nlive < 256 && (nlive == 0 || rnd(&r) % 2)) {
			uint64_t size = rnd(&r) % 4 ? PG << (rnd(&r) % 6) : pick_size(&r, false);
			uint64_t iova;
			int ret = dme_iova_alloc(mt_space, size, PG, &iova);
			if (ret == -ENOSPC)
				continue;
			if (ret || !claim(iova, size, (uint8_t)(a->id + 1)) ||
			    !model_range_of(&(struct model){.ranges = geo, .nr_ranges = NGEO}, iova,
					    iova + size - 1)) {
				bad++;
				continue;
			}
			live[nlive++] = (struct hist){iova, size};
		} else {
			int i = (int)(rnd(&r) % (uint64_t)nlive);
			struct hist x = live[i];
			live[i] = live[--nlive];
			unclaim(x.iova, x.size);
			if (dme_iova_free(mt_space, x.iova, x.size))
				bad++;
			if (rnd(&r) % 64 == 0 && dme_iova_free(mt_space, x.iova, x.size) != -EINVAL)
				bad++;	/* double free must be refused, even on the fast path */
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

static long run_mt(int nthreads, long ops)
{
	struct dme_iova_geometry g = {geo, NGEO, PG};
	struct dme_iova_params p = {.mag_size = 16, .depot_max = 8};
	if (dme_iova_space_create(&g, &p, &mt_space))
		return 1;
	owner = calloc(MT_PAGES, 1);
	pthread_t th[16];
	struct mt_arg args[16];
	for (int i = 0; i < nthreads; i++) {
		args[i] = (struct mt_arg){i, ops};
		pthread_create(&th[i], NULL, mt_fn, &args[i]);
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	dme_iova_flush_caches(mt_space);
	struct dme_iova_stats st;
	dme_iova_stats(mt_space, &st);
	long bad = atomic_load(&mt_bad);
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

	long b1 = run_single(false, ops, 0x9e3779b97f4a7c15ull, &n1);
	ok(b1 == 0, "single thread, caches off: %ld ops match the model exactly (%ld mismatches)",
	   n1, b1);
	long b2 = run_single(true, ops, 0xdeadbeefcafef00dull, &n2);
	ok(b2 == 0, "single thread, caches on: %ld ops valid against the model (%ld mismatches)",
	   n2, b2);
	long b3 = run_mt(4, ops / 4);
	ok(b3 == 0, "4 threads, caches on: %ld ops, no overlap, no lost range (%ld errors)",
	   atomic_load(&mt_ops), b3);
	ok(n1 + n2 + atomic_load(&mt_ops) >= (ops >= 600000 ? 1000000 : 0),
	   "at least 10^6 operations in all (%ld)", n1 + n2 + atomic_load(&mt_ops));
	return tap_done();
}
