/* SPDX-License-Identifier: MIT */
/*
 * iova-diff.h - one differential run of the IOVA allocator against the
 * reference model (iova-model.h), driven by a random source: a PRNG in
 * test-iova-diff, the fuzzer's input in fuzz-iova. run_single() returns the
 * number of mismatches and reports the first ones with diag().
 */
#ifndef DME_IOVA_DIFF_H
#define DME_IOVA_DIFF_H

#include <stdio.h>

#include "iova-model.h"

#ifndef diag
#define diag(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr))
#endif

#define PG 0x1000ull

static const struct dme_iova_range geo[] = {
	{0x1000, 0x3fffff},
	{0x500000, 0x5fffff},
	{0x800000, 0xffffff},
	{0x2000000, 0x3ffffff},
	{0x40000000, 0x40ffffff},
};
#define NGEO (sizeof(geo) / sizeof(geo[0]))

/* Random source: a xorshift generator, or the fuzzer's bytes when given. */
struct rsrc {
	uint64_t x;
	const uint8_t *data;
	size_t len, pos;
};

static inline uint64_t rnd(struct rsrc *r)
{
	if (r->data) {
		uint64_t v = 0;
		for (int i = 0; i < 4; i++)
			v = v << 8 | (r->pos < r->len ? r->data[r->pos++] : 0);
		return v * 0x9e3779b97f4a7c15ull >> 16 ^ v;
	}
	r->x ^= r->x << 13;
	r->x ^= r->x >> 7;
	r->x ^= r->x << 17;
	return r->x;
}

static uint64_t pick_size(struct rsrc *r, bool pow2)
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

static uint64_t pick_align(struct rsrc *r, uint64_t size)
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
static long run_single(bool cache, long ops, struct rsrc *rs, long *nops)
{
	struct dme_iova_geometry g = {geo, NGEO, PG};
	struct dme_iova_params p = {.no_cache = !cache, .mag_size = 8, .depot_max = 4};
	struct dme_iova_space *s;
	struct model m;
	long bad = 0;
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

	for (long op = 0; op < ops && (!rs->data || rs->pos < rs->len); op++) {
		unsigned k = rnd(rs) % 100;
		uint64_t iova, size, align, e;
		int ret, want;
		if (k < 40) {			/* alloc */
			bool pow2 = cache && (rnd(rs) & 1);
			size = pick_size(rs, pow2);
			align = pick_align(rs, size);
			uint64_t mv = 0;
			want = model_place(&m, size, align, 0, &mv);
			ret = dme_iova_alloc(s, size, align, &iova);
			if (ret != want) {
				FAIL("op %ld alloc(0x%llx, 0x%llx) = %d, model %d", op,
				     (unsigned long long)size, (unsigned long long)align, ret, want);
				continue;
			}
			if (ret)
				continue;
			if (!cache && iova != mv)
				FAIL("op %ld alloc: 0x%llx, the model places it at 0x%llx", op,
				     (unsigned long long)iova, (unsigned long long)mv);
			if ((iova & (align - 1)) || !model_range_of(&m, iova, iova + size - 1) ||
			    model_overlaps(&m, iova, iova + size - 1))
				FAIL("op %ld alloc: 0x%llx+0x%llx is misaligned, outside or busy", op,
				     (unsigned long long)iova, (unsigned long long)size);
			model_insert(&m, iova, iova + size - 1, M_LIVE);
			h[rnd(rs) % 64] = (struct hist){iova, size};
		} else if (k < 45) {		/* congruent */
			size = pick_size(rs, false);
			uint64_t pg = PG << (rnd(rs) % 10);
			uint64_t va = (rnd(rs) & ~(PG - 1)) & 0xffffffffffffull;
			uint64_t mv = 0;
			want = model_place(&m, size, pg, va & (pg - 1), &mv);
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
			size = pick_size(rs, false);
			iova = (rnd(rs) % 0x41000000ull) & ~(PG - 1);
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
			size_t i = rnd(rs) % m.n;
			if (m.b[i].kind != M_LIVE)
				continue;
			iova = m.b[i].start;
			size = m.b[i].last - iova + 1;
			bool def = rnd(rs) % 4 == 0;
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
			struct hist x = h[rnd(rs) % 64];
			if (!x.size)
				continue;
			if (rnd(rs) % 3 == 0)
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
			if (rnd(rs) & 1) {
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
			e = PG * (1 + rnd(rs) % 64);
			iova = (rnd(rs) % 0x41000000ull) & ~(PG - 1);
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
			if (i == m.n || rnd(rs) % 8 == 0) {
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

#endif
