/* SPDX-License-Identifier: MIT */
/*
 * test-iova: every IOVA allocator API and error, one behaviour per check;
 * threads park with full magazines or race flushes (also in the TSan build).
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <dme/iova.h>

#include "logcap.h"
#include "memtest.h"
#include "tap.h"

#define K4 0x1000ull
#define M2 0x200000ull
#define G1 0x40000000ull

/* x86 VT-d in QEMU (aw-bits 39) */
static const struct dme_iova_range vtd[] = {
	{0, 0xfedfffff},
	{0xfef00000, 0x7fffffffff},
};

static struct dme_iova_space *mk(const struct dme_iova_range *r, size_t n, uint64_t align,
				 bool cache)
{
	struct dme_iova_geometry g = {r, n, align};
	struct dme_iova_params p = {.no_cache = !cache};
	struct dme_iova_space *s = NULL;
	if (dme_iova_space_create(&g, &p, &s))
		return NULL;
	return s;
}

static bool in_ranges(uint64_t a, uint64_t size, const struct dme_iova_range *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a >= r[i].start && a + size - 1 <= r[i].last && a + size - 1 >= a)
			return true;
	return false;
}

static void test_create_errors(void)
{
	struct dme_iova_space *s = NULL;
	struct dme_iova_geometry g = {vtd, 2, 3};
	ok_eq(dme_iova_space_create(&g, NULL, &s), -EINVAL, "create: non power-of-two alignment");
	g = (struct dme_iova_geometry){vtd, 0, K4};
	ok_eq(dme_iova_space_create(&g, NULL, &s), -EINVAL, "create: no ranges");
	struct dme_iova_range ov[] = {{0, 0x1fff}, {0x1000, 0x2fff}};
	g = (struct dme_iova_geometry){ov, 2, K4};
	ok_eq(dme_iova_space_create(&g, NULL, &s), -EINVAL, "create: overlapping ranges");
	struct dme_iova_range mis[] = {{0x800, 0x1fff}};
	g = (struct dme_iova_geometry){mis, 1, K4};
	ok_eq(dme_iova_space_create(&g, NULL, &s), -EINVAL, "create: misaligned range");
	struct dme_iova_range rev[] = {{0x2000, 0xfff}};
	g = (struct dme_iova_geometry){rev, 1, K4};
	ok_eq(dme_iova_space_create(&g, NULL, &s), -EINVAL, "create: last < start");
	ok(s == NULL, "create: out parameter untouched on error");
	struct dme_iova_range unsorted[] = {vtd[1], vtd[0]};
	g = (struct dme_iova_geometry){unsorted, 2, K4};
	ok_eq(dme_iova_space_create(&g, NULL, &s), 0, "create: ranges in any order");
	struct dme_iova_range got[4];
	ok(dme_iova_geometry_get(s, got, 4) == 2 && got[0].start == 0 &&
		   got[1].start == 0xfef00000,
	   "geometry_get returns the ranges sorted");
	dme_iova_space_destroy(s);
	dme_iova_space_destroy(NULL);
}

static void test_basic(bool cache)
{
	const char *m = cache ? "cached" : "tree";
	struct dme_iova_space *s = mk(vtd, 2, K4, cache);
	uint64_t a, b;
	ok_eq(dme_iova_alloc(s, K4, K4, &a), 0, "%s: alloc 4K", m);
	ok_eq(dme_iova_alloc(s, K4, K4, &b), 0, "%s: alloc another 4K", m);
	ok(a != b && !(a & 0xfff) && !(b & 0xfff), "%s: two distinct aligned IOVAs", m);
	struct dme_iova_stats st;
	dme_iova_stats(s, &st);
	ok(st.live_ranges == 2 && st.allocated_bytes == 2 * K4, "%s: stats count 2 live ranges", m);
	ok_eq(dme_iova_free(s, a, K4), 0, "%s: free", m);
	ok_eq(dme_iova_free(s, b, K4), 0, "%s: free the other", m);
	dme_iova_stats(s, &st);
	ok(st.live_ranges == 0 && st.allocated_bytes == 0, "%s: stats back to zero", m);
	ok_eq(dme_iova_check(s), 0, "%s: tree invariants hold", m);
	dme_iova_space_destroy(s);
}

static void test_alignments(void)
{
	struct dme_iova_space *s = mk(vtd, 2, K4, false);
	uint64_t dummy, a;
	dme_iova_alloc(s, K4, K4, &dummy);	/* so nothing is trivially aligned */
	int good = 1;
	for (unsigned sh = 12; sh <= 30; sh++) {
		uint64_t al = 1ull << sh;
		if (dme_iova_alloc(s, K4 * 3, al, &a) || (a & (al - 1)) ||
		    !in_ranges(a, K4 * 3, vtd, 2))
			good = 0;
	}
	ok(good, "alignments 4K..1G are honoured");
	ok_eq(dme_iova_alloc(s, K4, 2 * G1, &a), -EINVAL, "alignment above 1 GiB refused");
	ok_eq(dme_iova_alloc(s, K4, 3 * K4, &a), -EINVAL, "non power-of-two alignment refused");
	ok_eq(dme_iova_alloc(s, 0, K4, &a), -EINVAL, "zero size refused");
	ok_eq(dme_iova_alloc(s, K4 + 1, K4, &a), -EINVAL, "size not a multiple of the alignment refused");
	ok_eq(dme_iova_alloc(s, G1, G1, &a), 0, "1 GiB at 1 GiB alignment");
	ok(!(a & (G1 - 1)) && in_ranges(a, G1, vtd, 2), "1 GiB range is aligned and inside");
	dme_iova_space_destroy(s);
}

/*
 * Alignment above what the size needs: a gap of size + align - 4K fits
 * whatever its start, and the lowest such gap is taken in O(log n); when no
 * gap is that large, the exact search still finds a slot that fits exactly.
 */
static void test_aligned_fill(void)
{
	struct dme_iova_range r[] = {{0, 0xfffff}}; /* 1M */
	struct dme_iova_space *s = mk(r, 1, K4, false);
	uint64_t a, last = 0;
	int n = 0, aligned = 1;
	dme_iova_alloc(s, K4, K4, &a); /* nothing below 0x10000 fits 64K at 64K */
	while (dme_iova_alloc(s, 0x10000, 0x10000, &a) == 0) {
		aligned &= !(a & 0xffff);
		last = a;
		n++;
	}
	ok(n == 15 && aligned, "aligned fill: 15 x 64K at 64K fit in 1M - 4K (%d)", n);
	ok_eq(last, 0xf0000, "aligned fill: the last one is the exact fit at the top");
	ok_eq(dme_iova_check(s), 0, "aligned fill: invariants hold");
	dme_iova_space_destroy(s);

	/* [ 4K | 64K gap at 0x1000 | live | exact 64K gap at 0x40000 | live ] */
	s = mk(r, 1, K4, false);
	dme_iova_alloc_fixed(s, 0, K4);
	dme_iova_alloc_fixed(s, 0x11000, 0x2f000);
	dme_iova_alloc_fixed(s, 0x50000, 0xb0000);
	ok_eq(dme_iova_alloc(s, 0x10000, 0x10000, &a), 0,
	      "exact fit: found when no gap fits every alignment");
	ok_eq(a, 0x40000, "exact fit: it skips the misaligned 64K gap");
	ok_eq(dme_iova_alloc(s, 0x10000, 0x10000, &a), -ENOSPC, "exact fit: then nothing fits");
	dme_iova_space_destroy(s);

	/* [ live | exact 64K gap at 0x10000 | live | 256K gap at 0x41000 ] */
	s = mk(r, 1, K4, false);
	dme_iova_alloc_fixed(s, 0, 0x10000);
	dme_iova_alloc_fixed(s, 0x20000, 0x21000);
	dme_iova_alloc_fixed(s, 0x81000, 0x7f000);
	ok_eq(dme_iova_alloc(s, 0x10000, 0x10000, &a), 0, "big gap: 64K at 64K");
	ok_eq(a, 0x50000, "big gap: the lowest gap that fits any alignment wins over an exact fit");
	dme_iova_space_destroy(s);
}

static void test_holes(void)
{
	/* two small ranges around a hole: an allocation must never straddle it */
	struct dme_iova_range r[] = {{0x10000, 0x1ffff}, {0x30000, 0x3ffff}};
	struct dme_iova_space *s = mk(r, 2, K4, false);
	uint64_t a, b;
	ok_eq(dme_iova_alloc(s, 0xc000, K4, &a), 0, "hole: 48K fits in the first range");
	ok_eq(a, 0x10000, "hole: first fit is the bottom of the first range");
	ok_eq(dme_iova_alloc(s, 0x8000, K4, &b), 0, "hole: 32K does not fit the rest of range 1");
	ok_eq(b, 0x30000, "hole: it goes to range 2, not across the hole");
	ok_eq(dme_iova_alloc(s, 0x10000, K4, &b), -ENOSPC, "hole: 64K fits nowhere");
	ok_eq(dme_iova_alloc_fixed(s, 0x1f000, 0x2000), -EINVAL, "fixed across the hole refused");
	ok_eq(dme_iova_alloc_fixed(s, 0x20000, K4), -EINVAL, "fixed inside the hole refused");
	logcap_reset();
	ok_eq(dme_iova_free(s, 0x20000, K4), -EINVAL, "free in a hole refused");
	ok(strstr(logcap.last, "hole") != NULL, "free in a hole: the message says so");
	ok_eq(dme_iova_check(s), 0, "hole: invariants hold");
	dme_iova_space_destroy(s);

	/* VT-d: the MSI window is never handed out */
	s = mk(vtd, 2, K4, false);
	uint64_t x;
	ok_eq(dme_iova_alloc_fixed(s, 0, 0xfedff000), 0, "vtd: fill below the MSI window");
	ok_eq(dme_iova_alloc(s, 2 * K4, K4, &x), 0, "vtd: next allocation succeeds");
	ok(x >= 0xfef00000, "vtd: it lands above the MSI window (0x%llx)", (unsigned long long)x);
	ok_eq(dme_iova_alloc_fixed(s, 0xfee00000, K4), -EINVAL, "vtd: fixed in the MSI window refused");
	ok_eq(dme_iova_alloc_fixed(s, 0x8000000000ull, K4), -EINVAL, "vtd: fixed above the aperture refused");
	dme_iova_space_destroy(s);
}

static void test_fixed(void)
{
	struct dme_iova_space *s = mk(vtd, 2, K4, false);
	uint64_t a;
	ok_eq(dme_iova_alloc_fixed(s, 0x100000, 0x10000), 0, "fixed: claim 64K at 1M");
	ok_eq(dme_iova_alloc_fixed(s, 0x108000, K4), -EEXIST, "fixed: overlap is -EEXIST");
	ok_eq(dme_iova_alloc_fixed(s, 0x100800, K4), -EINVAL, "fixed: misaligned is -EINVAL");
	ok_eq(dme_iova_alloc_fixed(s, 0xfffffffffffff000ull, 0x2000), -EINVAL, "fixed: wrapping range refused");
	ok_eq(dme_iova_free(s, 0x100000, K4), -EINVAL, "free: size mismatch refused");
	ok_eq(dme_iova_free(s, 0x104000, K4), -EINVAL, "free: interior address refused");
	ok_eq(dme_iova_free(s, 0x100000, 0x10000), 0, "fixed range frees like any other");
	ok_eq(dme_iova_free(s, 0x100000, 0x10000), -EINVAL, "double free refused (tree)");
	ok_eq(dme_iova_free(s, 0x7000000000ull, K4), -EINVAL, "unknown range refused");
	ok_eq(dme_iova_alloc(s, K4, K4, &a), 0, "allocator still usable after bad frees");
	ok_eq(dme_iova_check(s), 0, "fixed: invariants hold");
	dme_iova_space_destroy(s);
}

static void test_congruent(void)
{
	struct dme_iova_space *s = mk(vtd, 2, K4, false);
	uint64_t a, d;
	dme_iova_alloc(s, K4, K4, &d);
	uint64_t va = 0x7f1234400000ull + 0x3000;	/* 2M page + 12K */
	ok_eq(dme_iova_alloc_congruent(s, 4 * M2, M2, va, &a), 0, "congruent: 8M for a 2M-page VA");
	ok_eq(a & (M2 - 1), va & (M2 - 1), "congruent: IOVA == VA mod 2 MiB");
	uint64_t va1g = 0x7f0040000000ull + 0x200000;
	ok_eq(dme_iova_alloc_congruent(s, G1, G1, va1g, &a), 0, "congruent: 1 GiB page");
	ok_eq(a & (G1 - 1), va1g & (G1 - 1), "congruent: IOVA == VA mod 1 GiB");
	ok_eq(dme_iova_alloc_congruent(s, K4, M2, 0x1234, &a), -EINVAL, "congruent: VA off the IOVA alignment refused");
	ok_eq(dme_iova_alloc_congruent(s, K4, 3 * K4, 0, &a), -EINVAL, "congruent: bad page size refused");
	dme_iova_space_destroy(s);
}

static void test_reserve(void)
{
	struct dme_iova_space *s = mk(vtd, 2, K4, true);
	uint64_t a;
	ok_eq(dme_iova_reserve(s, 0, 0xfffff), 0, "reserve the first 1M");
	ok_eq(dme_iova_alloc(s, K4, K4, &a), 0, "alloc after reserve");
	ok(a >= 0x100000, "alloc avoids the reservation");
	ok_eq(dme_iova_reserve(s, a, a + K4 - 1), -EBUSY, "reserve over a live range is -EBUSY");
	ok_eq(dme_iova_reserve(s, 0x80000, 0x10ffff), -EBUSY, "reserve overlapping a reservation is -EBUSY");
	ok_eq(dme_iova_reserve(s, 0x1000, 0x1fff + 1), -EINVAL, "misaligned reserve refused");
	ok_eq(dme_iova_reserve(s, 0xfed00000, 0xfeffffff), 0, "reserve may span the MSI hole");
	struct dme_iova_stats st;
	dme_iova_stats(s, &st);
	ok_eq(st.reserved_bytes, 0x100000 + 0x100000 + 0x100000, "reserved bytes exclude the hole");
	ok_eq(dme_iova_free(s, 0, 0x100000), -EINVAL, "a reservation cannot be freed");
	ok_eq(dme_iova_unreserve(s, 0, 0x1000), -ENOENT, "unreserve of an unknown range is -ENOENT");
	ok_eq(dme_iova_unreserve(s, 0xfed00000, 0xfeffffff), 0, "unreserve across the hole");
	ok_eq(dme_iova_unreserve(s, 0, 0xfffff), 0, "unreserve the first 1M");
	ok_eq(dme_iova_free(s, a, K4), 0, "free");
	dme_iova_stats(s, &st);
	ok_eq(st.reserved_bytes, 0, "no reserved bytes left");
	/* a reservation over a cached free IOVA flushes the cache instead of failing */
	ok_eq(dme_iova_reserve(s, a, a + K4 - 1), 0, "reserve over a cached free IOVA succeeds");
	ok_eq(dme_iova_check(s), 0, "reserve: invariants hold");
	dme_iova_space_destroy(s);
}

static void test_exhaustion(bool cache)
{
	const char *m = cache ? "cached" : "tree";
	struct dme_iova_range r[] = {{0x100000, 0x13ffff}};	/* 256K */
	struct dme_iova_space *s = mk(r, 1, K4, cache);
	uint64_t v[64], x;
	int okall = 1;
	for (int i = 0; i < 64; i++)
		okall &= dme_iova_alloc(s, K4, K4, &v[i]) == 0;
	ok(okall, "%s: 64 x 4K fill the 256K space", m);
	ok_eq(dme_iova_alloc(s, K4, K4, &x), -ENOSPC, "%s: exhausted space is -ENOSPC", m);
	ok_eq(dme_iova_check(s), 0, "%s: state intact after -ENOSPC", m);
	for (int i = 0; i < 64; i += 2)
		dme_iova_free(s, v[i], K4);
	ok_eq(dme_iova_alloc(s, 2 * K4, K4, &x), -ENOSPC, "%s: fragmented: no 8K hole", m);
	for (int i = 1; i < 64; i += 2)
		dme_iova_free(s, v[i], K4);
	/* every 4K sits in some cache now; a 256K allocation must still succeed */
	ok_eq(dme_iova_alloc(s, 0x40000, K4, &x), 0, "%s: recovered: caches give way to 256K", m);
	ok_eq(x, 0x100000, "%s: and it starts at the bottom", m);
	struct dme_iova_stats st;
	dme_iova_stats(s, &st);
	ok(st.free_bytes == 0 && st.cached_ranges == 0, "%s: stats: no free or cached bytes left", m);
	ok_eq(dme_iova_free(s, x, 0x40000), 0, "%s: free it", m);
	dme_iova_space_destroy(s);
}

static void test_cache_double_free(void)
{
	struct dme_iova_space *s = mk(vtd, 2, K4, true);
	uint64_t a, b;
	ok_eq(dme_iova_alloc(s, 0x10000, K4, &a), 0, "cache: alloc 64K");
	ok_eq(dme_iova_free(s, a, 0x10000), 0, "cache: free 64K");
	logcap_reset();
	ok_eq(dme_iova_free(s, a, 0x10000), -EINVAL, "cache: double free refused");
	ok(strstr(logcap.last, "double free") != NULL, "cache: message names the double free");
	ok_eq(dme_iova_alloc(s, 0x10000, K4, &b), 0, "cache: realloc");
	ok_eq(b, a, "cache: LIFO reuse of the cached IOVA");
	ok_eq(dme_iova_free(s, b, 0x8000), -EINVAL, "cache: size mismatch refused");
	ok_eq(dme_iova_free(s, b + 0x8000, 0x8000), -EINVAL, "cache: interior free refused");
	ok_eq(dme_iova_free(s, b, 0x10000), 0, "cache: right free accepted");
	struct dme_iova_stats st;
	dme_iova_stats(s, &st);
	ok(st.cache_hits >= 1 && st.cached_ranges >= 1 && st.live_ranges == 0,
	   "cache: stats show hits (%llu) and cached ranges (%llu)",
	   (unsigned long long)st.cache_hits, (unsigned long long)st.cached_ranges);
	dme_iova_flush_caches(s);
	dme_iova_stats(s, &st);
	ok(st.cached_ranges == 0 && st.cache_flushes >= 1, "cache: flush empties the caches");
	ok_eq(dme_iova_check(s), 0, "cache: invariants hold");
	dme_iova_space_destroy(s);
}

static void test_quarantine(bool cache)
{
	const char *m = cache ? "cached" : "tree";
	struct dme_iova_range r[] = {{0x100000, 0x103fff}};	/* 16K */
	struct dme_iova_space *s = mk(r, 1, K4, cache);
	uint64_t v[4], x;
	for (int i = 0; i < 4; i++)
		dme_iova_alloc(s, K4, K4, &v[i]);
	ok_eq(dme_iova_free_deferred(s, v[0], K4), 0, "%s: deferred free", m);
	ok_eq(dme_iova_free_deferred(s, v[0], K4), -EINVAL, "%s: deferred double free refused", m);
	ok_eq(dme_iova_free(s, v[0], K4), -EINVAL, "%s: free of a quarantined range refused", m);
	ok_eq(dme_iova_alloc(s, K4, K4, &x), -ENOSPC, "%s: quarantined IOVA is not reused", m);
	struct dme_iova_stats st;
	dme_iova_stats(s, &st);
	ok(st.quarantined_ranges == 1 && st.quarantined_bytes == K4, "%s: stats count the quarantine", m);
	uint64_t e1 = dme_iova_seal(s);
	ok_eq(dme_iova_free_deferred(s, v[1], K4), 0, "%s: deferred free in the next epoch", m);
	ok_eq(dme_iova_release(s, e1 + 1), -EINVAL, "%s: releasing an unsealed epoch refused", m);
	ok_eq(dme_iova_release(s, e1), 1, "%s: release epoch 1 frees exactly its range", m);
	ok_eq(dme_iova_alloc(s, K4, K4, &x), 0, "%s: released IOVA is reusable", m);
	ok_eq(x, v[0], "%s: and it is the released one", m);
	ok_eq(dme_iova_release(s, dme_iova_seal(s)), 1, "%s: the second epoch releases its range", m);
	ok_eq(dme_iova_check(s), 0, "%s: invariants hold", m);
	dme_iova_space_destroy(s);
}

static void test_release_to_cache(void)
{
	struct dme_iova_space *s = mk(vtd, 2, K4, true);
	uint64_t a, b;
	dme_iova_alloc(s, 0x8000, K4, &a);
	ok_eq(dme_iova_free_deferred(s, a, 0x8000), 0, "release: defer a cached-size range");
	struct dme_iova_stats st0, st1;
	dme_iova_stats(s, &st0);
	ok_eq(dme_iova_release(s, dme_iova_seal(s)), 1, "release: one range released");
	dme_iova_stats(s, &st1);
	ok(st1.cached_ranges == st0.cached_ranges + 1 && st1.quarantined_ranges == 0,
	   "release: it went back into this thread's magazine, not the tree");
	ok_eq(dme_iova_alloc(s, 0x8000, K4, &b), 0, "release: allocate that size again");
	ok(b == a, "release: the released IOVA comes straight from the cache");
	ok_eq(dme_iova_free(s, b, 0x8000), 0, "release: and frees normally");
	ok_eq(dme_iova_free(s, b, 0x8000), -EINVAL, "release: a double free is still caught");
	ok_eq(dme_iova_check(s), 0, "release: invariants hold");
	dme_iova_space_destroy(s);
}

static void test_full_space(void)
{
	/* a fresh IOAS reports [0, UINT64_MAX], alignment 1 */
	struct dme_iova_range r[] = {{0, UINT64_MAX}};
	struct dme_iova_space *s = mk(r, 1, 1, true);
	uint64_t a;
	ok(s != NULL, "full 64-bit space with byte alignment");
	ok_eq(dme_iova_alloc_fixed(s, UINT64_MAX - 0xfff, 0x1000), 0, "fixed at the very top");
	ok_eq(dme_iova_alloc(s, 3, 1, &a), 0, "3-byte allocation");
	ok_eq(a, 0, "first fit at 0");
	ok_eq(dme_iova_alloc(s, 1ull << 63, 1ull << 30, &a), 0, "2^63 bytes");
	struct dme_iova_stats st;
	dme_iova_stats(s, &st);
	ok(st.free_bytes > (1ull << 62), "free bytes are not wrapped");
	ok_eq(dme_iova_check(s), 0, "invariants hold at the top of the space");
	dme_iova_space_destroy(s);
}

struct thr {
	struct dme_iova_space *s;
	int ok;
};

static void *thr_fn(void *arg)
{
	struct thr *t = arg;
	uint64_t v[100];
	t->ok = 1;
	for (int r = 0; r < 200; r++) {
		for (int i = 0; i < 100; i++)
			t->ok &= dme_iova_alloc(t->s, K4 << (i % 4), K4, &v[i]) == 0;
		for (int i = 0; i < 100; i++)
			t->ok &= dme_iova_free(t->s, v[i], K4 << (i % 4)) == 0;
	}
	return NULL;
}

static void test_thread_exit(void)
{
	struct dme_iova_space *s = mk(vtd, 2, K4, true);
	struct thr t = {s, 0};
	pthread_t th;
	pthread_create(&th, NULL, thr_fn, &t);
	pthread_join(th, NULL);
	ok(t.ok, "thread: 20000 alloc/free pairs");
	struct dme_iova_stats st;
	dme_iova_stats(s, &st);
	ok(st.depot_magazines > 0 && st.live_ranges == 0,
	   "thread exit returns magazines to the depot (%llu)", (unsigned long long)st.depot_magazines);
	ok(st.cache_hits > 15000, "thread's hits survive its exit in the stats (%llu)",
	   (unsigned long long)st.cache_hits);
	uint64_t a;
	ok_eq(dme_iova_alloc(s, K4, K4, &a), 0, "another thread reuses the depot");
	dme_iova_stats(s, &st);
	ok(st.depot_magazines < 40, "depot stays bounded");
	ok_eq(dme_iova_check(s), 0, "thread: invariants hold");
	dme_iova_space_destroy(s);
}

/*
 * A thread fills a small space with 4 KiB ranges, frees them all (they stay
 * in its magazines and the depot) and parks on a barrier without exiting.
 * The main thread must still get the whole space: with dme_iova_flush_caches()
 * first, or by the tree allocation's own miss.
 */
struct parked {
	struct dme_iova_space *s;
	pthread_barrier_t bar;
	uint64_t v[128];
	int filled, alloc_while_full, stale_free, again;
};

static void *parked_fn(void *arg)
{
	struct parked *p = arg;
	uint64_t x;
	p->filled = 1;
	for (int i = 0; i < 128; i++)
		p->filled &= dme_iova_alloc(p->s, K4, K4, &p->v[i]) == 0;
	for (int i = 0; i < 128; i++)
		p->filled &= dme_iova_free(p->s, p->v[i], K4) == 0;
	pthread_barrier_wait(&p->bar); /* parked, magazines full */
	pthread_barrier_wait(&p->bar); /* main holds the whole space */
	p->alloc_while_full = dme_iova_alloc(p->s, K4, K4, &x);
	if (!p->alloc_while_full)
		dme_iova_free(p->s, x, K4);
	p->stale_free = dme_iova_free(p->s, p->v[5], K4);
	pthread_barrier_wait(&p->bar); /* checked */
	pthread_barrier_wait(&p->bar); /* main freed the space */
	p->again = dme_iova_alloc(p->s, K4, K4, &x) == 0 && dme_iova_free(p->s, x, K4) == 0;
	return NULL;
}

static void test_parked_thread(bool flush)
{
	const char *m = flush ? "parked, flushed" : "parked";
	struct dme_iova_range r[] = {{0x100000, 0x17ffff}}; /* 512K: 128 pages */
	struct dme_iova_space *s = mk(r, 1, K4, true);
	struct parked p = {.s = s};
	struct dme_iova_stats st;
	uint64_t x = 0;
	pthread_t th;
	pthread_barrier_init(&p.bar, NULL, 2);
	pthread_create(&th, NULL, parked_fn, &p);
	pthread_barrier_wait(&p.bar);
	ok(p.filled, "%s: a thread allocated and freed 128 x 4K, then parked", m);
	dme_iova_stats(s, &st);
	ok_eq(st.cached_ranges, 128, "%s: all 128 are cached", m);
	if (flush) {
		dme_iova_flush_caches(s);
		dme_iova_stats(s, &st);
		ok(st.cached_ranges == 0 && st.free_bytes == 0x80000,
		   "%s: flush returns the parked thread's IOVAs to the tree (%llu cached)", m,
		   (unsigned long long)st.cached_ranges);
	}
	ok_eq(dme_iova_alloc(s, 0x80000, K4, &x), 0, "%s: the whole space can be allocated", m);
	ok_eq(x, 0x100000, "%s: at its bottom", m);
	dme_iova_stats(s, &st);
	ok(st.cached_ranges == 0 && st.free_bytes == 0 && st.live_ranges == 1,
	   "%s: stats: one live range, nothing cached or free", m);
	ok_eq(dme_iova_check(s), 0, "%s: invariants hold", m);
	pthread_barrier_wait(&p.bar);
	pthread_barrier_wait(&p.bar);
	ok_eq(p.alloc_while_full, -ENOSPC,
	      "%s: the woken thread gets nothing from its stale magazines", m);
	ok_eq(p.stale_free, -EINVAL, "%s: its free of a reclaimed IOVA is refused", m);
	ok_eq(dme_iova_free(s, x, 0x80000), 0, "%s: free the whole space", m);
	pthread_barrier_wait(&p.bar);
	pthread_join(th, NULL);
	ok(p.again, "%s: the thread allocates and frees again", m);
	dme_iova_stats(s, &st);
	ok(st.live_ranges == 0, "%s: nothing live at the end", m);
	ok_eq(dme_iova_check(s), 0, "%s: invariants hold at the end", m);
	pthread_barrier_destroy(&p.bar);
	dme_iova_space_destroy(s);
}

/*
 * Where membarrier(2) is refused (seccomp here), a flush cannot be sure a
 * parked thread is outside its allocation window: it undoes its claims, says
 * so once, and the thread's cached IOVAs stay valid for it.
 */
struct idle {
	struct dme_iova_space *s;
	pthread_barrier_t bar;
	int filled, realloc_ok;
};

static void *idle_fn(void *arg)
{
	struct idle *p = arg;
	uint64_t v[128];
	p->filled = 1;
	for (int i = 0; i < 128; i++)
		p->filled &= dme_iova_alloc(p->s, K4, K4, &v[i]) == 0;
	for (int i = 0; i < 128; i++)
		p->filled &= dme_iova_free(p->s, v[i], K4) == 0;
	pthread_barrier_wait(&p->bar); /* parked */
	pthread_barrier_wait(&p->bar); /* main's flush and allocation failed */
	p->realloc_ok = 1;
	for (int i = 0; i < 128; i++)
		p->realloc_ok &= dme_iova_alloc(p->s, K4, K4, &v[i]) == 0;
	for (int i = 0; i < 128; i++)
		p->realloc_ok &= dme_iova_free(p->s, v[i], K4) == 0;
	return NULL;
}

static void no_membarrier_child(struct child_results *cr, void *arg)
{
	(void)arg;
	char msg[400];
#if defined(__x86_64__)
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = (unsigned short)ARRAY_LEN(f), .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0)) {
		child_skip(cr, "flush undoes its claims", "cannot install a seccomp filter");
		return;
	}
#else
	child_skip(cr, "flush undoes its claims", "the seccomp filter is written for x86-64");
	return;
#endif
	struct dme_iova_range r[] = {{0x100000, 0x17ffff}};
	struct dme_iova_space *s = mk(r, 1, K4, true);
	struct idle p = {.s = s};
	struct dme_iova_stats st;
	uint64_t x;
	pthread_t th;
	pthread_barrier_init(&p.bar, NULL, 2);
	pthread_create(&th, NULL, idle_fn, &p);
	pthread_barrier_wait(&p.bar);
	logcap_reset();
	dme_iova_flush_caches(s);
	int ret = dme_iova_alloc(s, 0x80000, K4, &x);
	dme_iova_stats(s, &st);
	snprintf(msg, sizeof(msg), "alloc %d, %llu cached, messages: %.300s", ret,
		 (unsigned long long)st.cached_ranges, logcap.all);
	child_ok(cr, p.filled && ret == -ENOSPC && st.cached_ranges == 128,
		 "the parked thread keeps its 128 cached IOVAs; the whole space is -ENOSPC", msg);
	child_ok(cr, strstr(logcap.all, "membarrier") != NULL, "the log says why", msg);
	child_ok(cr, dme_iova_check(s) == 0, "invariants hold", NULL);
	pthread_barrier_wait(&p.bar);
	pthread_join(th, NULL);
	child_ok(cr, p.realloc_ok, "the thread allocates its 128 IOVAs again and frees them", NULL);
	dme_iova_stats(s, &st);
	child_ok(cr, st.live_ranges == 0 && dme_iova_check(s) == 0, "nothing live, invariants hold",
		 NULL);
	pthread_barrier_destroy(&p.bar);
	dme_iova_space_destroy(s);
}

/*
 * Threads allocate and free cached sizes while the main thread flushes the
 * caches and takes large ranges: reclaiming other threads' magazines races
 * their lock-free fast paths. A page map claimed with atomic exchange catches
 * two live ranges overlapping at once.
 */
#define RACE_SPACE (64ull << 20)
#define RACE_THREADS 2
#define RACE_ROUNDS 20000

static _Atomic uint8_t race_owner[RACE_SPACE / K4];
static atomic_int race_done;
static atomic_long race_bad;

static bool race_claim(uint64_t iova, uint64_t size, uint8_t who)
{
	bool good = true;
	for (uint64_t pg = (iova - 0x100000) / K4; pg < (iova - 0x100000 + size) / K4; pg++)
		if (atomic_exchange(&race_owner[pg], who))
			good = false;
	return good;
}

static void race_unclaim(uint64_t iova, uint64_t size)
{
	for (uint64_t pg = (iova - 0x100000) / K4; pg < (iova - 0x100000 + size) / K4; pg++)
		atomic_store(&race_owner[pg], 0);
}

struct racer {
	struct dme_iova_space *s;
	uint8_t id;
};

static void *racer_fn(void *arg)
{
	struct racer *rc = arg;
	uint64_t x = 0x9e3779b97f4a7c15ull * rc->id, v[32], sz[32];
	long bad = 0;
	for (int r = 0; r < RACE_ROUNDS; r++) {
		int n = 0;
		for (int i = 0; i < 32; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			sz[n] = K4 << (x % 5);
			int ret = dme_iova_alloc(rc->s, sz[n], K4, &v[n]);
			if (ret == -ENOSPC)
				continue;
			if (ret || !race_claim(v[n], sz[n], rc->id))
				bad++;
			n++;
		}
		for (int i = 0; i < n; i++) {
			race_unclaim(v[i], sz[i]);
			bad += dme_iova_free(rc->s, v[i], sz[i]) != 0;
		}
	}
	atomic_fetch_add(&race_bad, bad);
	atomic_fetch_add(&race_done, 1);
	return NULL;
}

static void test_reclaim_race(void)
{
	struct dme_iova_range r[] = {{0x100000, 0x100000 + RACE_SPACE - 1}};
	struct dme_iova_space *s = mk(r, 1, K4, true);
	struct racer rc[RACE_THREADS];
	pthread_t th[RACE_THREADS];
	long flushes = 0, big = 0, bad = 0;
	for (int i = 0; i < RACE_THREADS; i++) {
		rc[i] = (struct racer){s, (uint8_t)(i + 1)};
		pthread_create(&th[i], NULL, racer_fn, &rc[i]);
	}
	do { /* at least once, however late the racers get the CPU */
		uint64_t x;
		dme_iova_flush_caches(s);
		flushes++;
		if (dme_iova_alloc(s, RACE_SPACE / 2, K4, &x) == 0) {
			big++;
			bad += !race_claim(x, RACE_SPACE / 2, 0x80);
			race_unclaim(x, RACE_SPACE / 2);
			bad += dme_iova_free(s, x, RACE_SPACE / 2) != 0;
		}
	} while (atomic_load(&race_done) < RACE_THREADS);
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_join(th[i], NULL);
	diag("%ld flushes and %ld half-space allocations during the race", flushes, big);
	ok_eq(atomic_load(&race_bad) + bad, 0,
	      "reclaim race: no overlap, no failed free while flushes reclaim live magazines");
	struct dme_iova_stats st;
	dme_iova_stats(s, &st);
	ok(st.live_ranges == 0 && st.free_bytes + st.cached_bytes == RACE_SPACE,
	   "reclaim race: every byte is free or cached afterwards");
	ok_eq(dme_iova_check(s), 0, "reclaim race: invariants hold");
	dme_iova_space_destroy(s);
}

int main(void)
{
	logcap_install();
	test_create_errors();
	test_basic(false);
	test_basic(true);
	test_alignments();
	test_aligned_fill();
	test_holes();
	test_fixed();
	test_congruent();
	test_reserve();
	test_exhaustion(false);
	test_exhaustion(true);
	test_cache_double_free();
	test_quarantine(false);
	test_quarantine(true);
	test_release_to_cache();
	test_full_space();
	test_thread_exit();
	test_parked_thread(true);
	test_parked_thread(false);
	run_in_child("no membarrier", no_membarrier_child, NULL);
	test_reclaim_race();
	return tap_done();
}
