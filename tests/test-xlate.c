/* SPDX-License-Identifier: MIT */
/*
 * test-xlate: the VA -> IOVA translation table - set/lookup/clear at 2 MiB
 * and 4 KiB granularity, mixed slots, splits, boundaries up to 57-bit keys,
 * the reverse table, replicas, metadata size, a differential test against a
 * flat per-page model, and readers racing a writer (no torn or foreign value
 * ever seen).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/xlate.h"
#include "logcap.h"
#include "tap.h"

#define K4 0x1000ull
#define M2 0x200000ull
#define G1 0x40000000ull

static bool has(const struct xlate *x, uint64_t va, uint64_t want)
{
	uint64_t got = ~0ull;
	return xlate_lookup(x, va, &got) == 0 && got == want;
}

static bool none(const struct xlate *x, uint64_t va)
{
	uint64_t got = 0x5a5a;
	return xlate_lookup(x, va, &got) == -ENOENT && got == 0x5a5a;
}

static bool rhas(const struct xlate *x, uint64_t iova, uint64_t want)
{
	uint64_t got = ~0ull;
	return xlate_reverse(x, iova, &got) == 0 && got == want;
}

static bool rnone(const struct xlate *x, uint64_t iova)
{
	uint64_t got;
	return xlate_reverse(x, iova, &got) == -ENOENT;
}

static void test_2m(void)
{
	struct xlate x;
	ok_eq(xlate_init(&x, 1), 0, "init one replica");
	size_t m0 = xlate_meta_bytes(&x);
	uint64_t va = 0x7f0000000000ull, iova = 0x40000000;
	ok(none(&x, va), "empty: lookup is -ENOENT and leaves *iova alone");
	ok_eq(xlate_set(&x, va, 4 * M2, iova, 21), 0, "2M: set 8 MiB");
	ok(has(&x, va, iova) && has(&x, va + 4 * M2 - 1, iova + 4 * M2 - 1) &&
	       has(&x, va + M2 + 0x1234, iova + M2 + 0x1234),
	   "2M: first, last and inner bytes translate");
	ok(none(&x, va - 1) && none(&x, va + 4 * M2), "2M: the bytes around are unmapped");
	ok(rhas(&x, iova + 3 * M2 + 5, va + 3 * M2 + 5) && rnone(&x, iova + 4 * M2),
	   "2M: reverse lookup");
	ok_eq(xlate_meta_bytes(&x) - m0, 4 * 4096,
	      "2M: a leaf and a directory page in each direction, nothing per slot");
	ok_eq(xlate_clear(&x, va + M2, M2), 0, "2M: clear the second 2 MiB");
	ok(has(&x, va + M2 - 1, iova + M2 - 1) && none(&x, va + M2) && none(&x, va + 2 * M2 - 1) &&
	       has(&x, va + 2 * M2, iova + 2 * M2),
	   "2M: only the cleared slot is gone");
	ok(rnone(&x, iova + M2 + 7) && rhas(&x, iova + 2 * M2, va + 2 * M2),
	   "2M: reverse follows the clear");
	ok_eq(xlate_clear(&x, va, 4 * M2), 0, "2M: clear all (a part already clear)");
	ok(none(&x, va) && none(&x, va + 3 * M2) && rnone(&x, iova), "2M: nothing left");
	ok_eq(xlate_set(&x, va, 4 * M2, iova + G1, 30), 0, "1G page shift: 2 MiB granule");
	ok(has(&x, va + 0x123456, iova + G1 + 0x123456), "1G page shift: translates");
	xlate_destroy(&x);
}

static void test_4k(void)
{
	struct xlate x;
	xlate_init(&x, 1);
	uint64_t va = 0x7f1000003000ull, iova = 0x100005000ull;
	ok_eq(xlate_set(&x, va, 5 * K4, iova, 12), 0, "4K: set 5 pages, IOVA not 2M-congruent");
	bool good = true;
	for (uint64_t i = 0; i < 5; i++)
		good &= has(&x, va + i * K4 + 0x7ff, iova + i * K4 + 0x7ff) &&
			rhas(&x, iova + i * K4, va + i * K4);
	ok(good, "4K: every page translates both ways");
	ok(none(&x, va - 1) && none(&x, va + 5 * K4) && rnone(&x, iova - 1),
	   "4K: neighbours unmapped");
	ok_eq(xlate_clear(&x, va + 2 * K4, K4), 0, "4K: clear the middle page");
	ok(has(&x, va + K4, iova + K4) && none(&x, va + 2 * K4) &&
	       has(&x, va + 3 * K4, iova + 3 * K4),
	   "4K: only the middle page is gone");
	ok(rnone(&x, iova + 2 * K4) && rhas(&x, iova + 3 * K4, va + 3 * K4),
	   "4K: reverse follows the clear");

	/* a 4K-granular run covering whole slots uses one linear word per slot */
	size_t m0 = xlate_meta_bytes(&x);
	uint64_t v2 = 0x7f2000000000ull, i2 = 0x200003000ull;
	ok_eq(xlate_set(&x, v2, 2 * M2 + K4, i2, 12), 0, "4K: a run of 2 MiB + 2 MiB + 4 KiB");
	ok(has(&x, v2 + M2 + 0x1fff, i2 + M2 + 0x1fff) && has(&x, v2 + 2 * M2, i2 + 2 * M2),
	   "4K: whole slots and the tail translate");
	size_t grown = xlate_meta_bytes(&x) - m0;
	diag("4K run of 2M+2M+4K added %zu bytes of metadata", grown);
	/* fwd: leaf + sub for the tail slot; rev: leaf + subs for 3 partial IOVA slots (+ dir page)
	 */
	ok(grown <= 8 * 4096, "4K: whole VA slots need no sub-table");
	ok_eq(xlate_clear(&x, v2 + M2 + 0x10000, K4), 0, "split: clear one page of a linear slot");
	ok(none(&x, v2 + M2 + 0x10000) && has(&x, v2 + M2 + 0xf000, i2 + M2 + 0xf000) &&
	       has(&x, v2 + M2 + 0x11000, i2 + M2 + 0x11000) && has(&x, v2, i2),
	   "split: the slot keeps its other 511 pages");
	ok(rnone(&x, i2 + M2 + 0x10000) && rhas(&x, i2 + M2 + 0x11000, v2 + M2 + 0x11000),
	   "split: reverse follows");
	xlate_destroy(&x);
}

static void test_mixed_slot(void)
{
	struct xlate x;
	xlate_init(&x, 1);
	uint64_t slot = 0x7f3000000000ull;
	/* three runs in one 2 MiB slot, each at its own IOVA */
	ok_eq(xlate_set(&x, slot, 4 * K4, 0x10000000, 12), 0, "mixed: run 1 in the slot");
	ok_eq(xlate_set(&x, slot + 0x100000, 8 * K4, 0x20000000, 12), 0, "mixed: run 2");
	ok_eq(xlate_set(&x, slot + M2 - K4, K4, 0x30000000, 12), 0, "mixed: the last page");
	ok(has(&x, slot + 3 * K4, 0x10003000) && has(&x, slot + 0x107fff, 0x20007fff) &&
	       has(&x, slot + M2 - 1, 0x30000fff) && none(&x, slot + 4 * K4) &&
	       none(&x, slot + 0xff000),
	   "mixed: each run translates, the holes do not");
	ok_eq(xlate_set(&x, slot + 0x103000, K4, 0x40000000, 12), -EEXIST,
	      "mixed: a page inside run 2 is -EEXIST");
	ok_eq(xlate_set(&x, slot, M2, 0x50000000, 21), -EEXIST,
	      "mixed: a 2 MiB set over the slot is -EEXIST");
	ok_eq(xlate_clear(&x, slot, M2), 0, "mixed: clear the whole slot");
	ok(none(&x, slot) && none(&x, slot + 0x100000) && rnone(&x, 0x20000000) &&
	       rnone(&x, 0x30000000),
	   "mixed: all three runs gone both ways");
	ok_eq(xlate_set(&x, slot, M2, 0x50000000, 21), 0, "mixed: the slot is reusable at 2 MiB");
	ok(has(&x, slot + 0x1abcde, 0x501abcde), "mixed: the reused slot translates");
	xlate_destroy(&x);
}

static void test_errors(void)
{
	struct xlate x;
	xlate_init(&x, 1);
	uint64_t va = 0x7f4000000000ull;
	xlate_set(&x, va, M2, 0x80000000, 21);
	ok_eq(xlate_set(&x, va + M2 - K4, 2 * K4, 0x90000000, 12), -EEXIST,
	      "EEXIST: a 4K run overlapping a 2M entry");
	ok_eq(xlate_set(&x, va + 4 * M2, K4, 0x80001000, 12), -EEXIST,
	      "EEXIST: a free VA at an IOVA already in use");
	ok(none(&x, va + 4 * M2), "EEXIST: the failed set recorded nothing");
	ok_eq(xlate_set(&x, va + 4 * M2 + K4, M2, 0xa0000000, 21), -EINVAL,
	      "EINVAL: 2M granule, VA 4K aligned");
	ok_eq(xlate_set(&x, va + 4 * M2, M2, 0xa0001000, 21), -EINVAL,
	      "EINVAL: 2M granule, IOVA 4K aligned");
	ok_eq(xlate_set(&x, va + 4 * M2, M2 + K4, 0xa0000000, 21), -EINVAL,
	      "EINVAL: 2M granule, length 4K multiple");
	ok_eq(xlate_set(&x, va + 4 * M2, K4, 0xa0000000, 13), -EINVAL, "EINVAL: page shift 13");
	ok_eq(xlate_set(&x, va + 4 * M2, K4, 0xa0000000, 31), -EINVAL, "EINVAL: page shift 31");
	ok_eq(xlate_set(&x, va + 4 * M2, 0, 0xa0000000, 12), -EINVAL, "EINVAL: zero length");
	ok_eq(xlate_set(&x, va + 4 * M2 + 0x10, K4, 0xa0000000, 12), -EINVAL,
	      "EINVAL: VA not page aligned");
	ok_eq(xlate_set(&x, (1ull << 57) - K4, 2 * K4, 0xa0000000, 12), -EINVAL,
	      "EINVAL: past 2^57");
	ok_eq(xlate_set(&x, va + 4 * M2, K4, 1ull << 57, 12), -EINVAL, "EINVAL: IOVA at 2^57");
	ok_eq(xlate_clear(&x, va + 0x800, K4), -EINVAL, "EINVAL: clear not page aligned");
	ok_eq(xlate_clear(&x, va, 0), -EINVAL, "EINVAL: clear of zero length");
	ok_eq(xlate_clear(&x, 0x1000000000ull, M2), 0, "clear of an unmapped range is a no-op");
	ok(has(&x, va + 5, 0x80000005) && rhas(&x, 0x80000005, va + 5), "errors changed nothing");
	xlate_destroy(&x);
}

static void test_boundaries(void)
{
	struct xlate x;
	xlate_init(&x, 1);
	const uint64_t b47 = 1ull << 47, top = 1ull << 57;
	ok_eq(xlate_set(&x, 0, K4, 0x1000, 12), 0, "VA 0 can be recorded");
	ok(has(&x, 0, 0x1000) && has(&x, 0xfff, 0x1fff), "VA 0: first and last byte");
	ok_eq(xlate_set(&x, b47 - K4, K4, 0x2000, 12), 0, "last page below 2^47");
	ok(has(&x, b47 - 1, 0x2fff), "last byte below 2^47 (fast path)");
	ok_eq(xlate_set(&x, b47, M2, 0x200000, 21), 0, "first 2 MiB at 2^47 (high directory)");
	ok(has(&x, b47, 0x200000) && has(&x, b47 + M2 - 1, 0x3fffff), "2^47: first and last byte");
	ok_eq(xlate_set(&x, top - K4, K4, 0x400000, 12), 0, "last page below 2^57");
	ok(has(&x, top - 1, 0x400fff) && has(&x, top - K4, 0x400000),
	   "last byte of the 57-bit space");
	ok(none(&x, top) && none(&x, UINT64_MAX) && none(&x, top - K4 - 1),
	   "2^57, 2^64-1 and the byte below the last page are unmapped");
	ok_eq(xlate_set(&x, b47 - M2, 2 * M2, 0x600000, 21), -EEXIST,
	      "a run across 2^47 overlapping the mappings on both sides is -EEXIST");
	ok_eq(xlate_clear(&x, b47 - K4, 2 * K4), 0, "clear across 2^47");
	ok(none(&x, b47 - 1) && none(&x, b47) && has(&x, b47 + K4, 0x201000),
	   "the clear took one page on each side of 2^47");
	ok_eq(xlate_set(&x, b47 - M2, 2 * M2, 0x800000, 21), -EEXIST,
	      "the rest of the high slot still blocks a run across 2^47");
	ok_eq(xlate_set(&x, b47 - 2 * M2, 2 * M2, 0x800000, 12), 0, "4K run ending at 2^47");
	ok(has(&x, b47 - 2 * M2, 0x800000) && has(&x, b47 - K4, 0x800000 + 2 * M2 - K4),
	   "run ending at 2^47 translates");
	ok_eq(xlate_set(&x, 3 * G1 - M2, 2 * M2, 5 * G1 - M2, 21), 0,
	      "a run across a GiB boundary");
	ok(has(&x, 3 * G1 - 1, 5 * G1 - 1) && has(&x, 3 * G1, 5 * G1) && rhas(&x, 5 * G1, 3 * G1),
	   "across a GiB boundary: both sides, both ways");
	ok_eq(xlate_set(&x, 0x7f5000000000ull, K4, b47 + 0x5000, 12), 0, "IOVA above 2^47");
	ok(rhas(&x, b47 + 0x5123, 0x7f5000000123ull) && rnone(&x, top) && rnone(&x, UINT64_MAX),
	   "reverse: high IOVA found, 2^57 and 2^64-1 unmapped");
	xlate_destroy(&x);
}

/* Readers on another node read another replica: emulate being on @node for
 * table @x (what xlate_fdir_slow() would cache there). */
static void use_node(const struct xlate *x, unsigned node)
{
	xlate_tls.id = x->id;
	xlate_tls.dir = x->fdir[x->node_rep[node]];
	xlate_tls.node = node;
	xlate_tls.left = UINT32_MAX;
#ifdef XLATE_RSEQ
	xlate_tls.cpu = xlate_cpu();
#endif
}

static void test_replicas(void)
{
	struct xlate x;
	ok_eq(xlate_init(&x, 2), 0, "init two replicas");
	x.node_rep[1] = 1; /* as xlate_init would on a machine with nodes 0 and 1 */
	size_t m0 = xlate_meta_bytes(&x);
	uint64_t va = 0x7f6000000000ull;
	xlate_set(&x, va, 8 * M2, 0x40000000, 21);
	xlate_set(&x, va + 9 * M2, 3 * K4, 0x50000000, 12);
	bool same = true;
	for (unsigned node = 0; node < 2; node++) {
		use_node(&x, node);
		same &= has(&x, va + 5 * M2 + 9, 0x40000000 + 5 * M2 + 9) &&
			has(&x, va + 9 * M2 + K4, 0x50001000) && none(&x, va + 8 * M2);
	}
	ok(same, "replicas: node 0 and node 1 readers see the same translations");
	xlate_clear(&x, va + 9 * M2, K4);
	use_node(&x, 1);
	ok(none(&x, va + 9 * M2) && has(&x, va + 9 * M2 + K4, 0x50001000),
	   "replicas: a clear reaches the other replica");
	use_node(&x, 0);
	/* fwd x2: leaf + sub each, rev: leaf + sub x1 leaf, + directory pages */
	ok(xlate_meta_bytes(&x) - m0 <= 9 * 4096, "replicas: each replica holds its own tables");

	/* the real slow path: no cached table -> getcpu() -> this node's replica */
	struct xlate y;
	xlate_init(&y, 2);
	xlate_set(&y, va, M2, 0x60000000, 21);
	xlate_tls = (struct xlate_tls){0};
	ok(has(&x, va, 0x40000000) && xlate_tls.id == x.id &&
	       xlate_tls.dir == x.fdir[x.node_rep[xlate_tls.node % XLATE_MAX_NODES]],
	   "replicas: the first lookup caches this node's replica of that table");
	ok(has(&y, va, 0x60000000) && xlate_tls.id == y.id && has(&x, va, 0x40000000) &&
	       xlate_tls.id == x.id,
	   "replicas: alternating tables re-cache, never mix them up");
	unsigned id = x.id;
	xlate_destroy(&x);
	xlate_init(&x, 2); /* may reuse the address, never the id */
	ok(x.id != id && none(&x, va), "replicas: a new table at the same address is not confused "
				       "with the destroyed one");
	xlate_destroy(&x);
	xlate_destroy(&y);
	xlate_tls = (struct xlate_tls){0};
}

static void test_meta(void)
{
	struct xlate x;
	xlate_init(&x, 1);
	size_t fixed = xlate_meta_bytes(&x);
	ok(fixed <= 64 * 1024, "meta: an empty table holds %zu bytes (<= 64 KiB)", fixed);
	const uint64_t n2m = 32768; /* 64 GiB of hugepage-backed memory */
	for (uint64_t i = 0; i < 64; i++)
		xlate_set(&x, 0x7e0000000000ull + i * G1, G1, 0x100000000ull + i * G1, 21);
	size_t m = xlate_meta_bytes(&x);
	double per = (double)(m - fixed) / (double)n2m;
	diag("meta: 64 GiB in 2 MiB pages: %zu bytes, %.2f B per 2 MiB beyond the fixed part", m,
	     per);
	ok(m <= 64 * 1024 + 16 * n2m, "meta: <= 64 KiB + 16 B per 2 MiB mapped");
	for (uint64_t i = 0; i < 64; i++)
		xlate_clear(&x, 0x7e0000000000ull + i * G1, G1);
	size_t back = xlate_trim(&x);
	ok(back > 0 && xlate_meta_bytes(&x) <= fixed + 2 * 4096,
	   "trim: empty leaves are given back (%zu bytes)", back);
	/* a 4K-backed run covering a slot page by page collapses to a linear word */
	uint64_t va = 0x7f7000000000ull;
	xlate_set(&x, va, K4, 0x1000000, 12);
	xlate_set(&x, va + K4, M2 - K4, 0x1001000, 12); /* the same slot, continuing linearly */
	size_t before = xlate_meta_bytes(&x);
	xlate_trim(&x);
	ok(xlate_meta_bytes(&x) < before && has(&x, va + 0x1fffff, 0x11fffff) &&
	       has(&x, va, 0x1000000),
	   "trim: a sub-table spelling a linear run collapses and still translates");
	xlate_destroy(&x);
}

/* ---- differential ------------------------------------------------------------------- */

#define VBASE ((1ull << 47) - G1) /* the VA window straddles 2^47 */
#define VPAGES (2 * G1 / K4)
#define IPAGES (2 * G1 / K4)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_differential(void)
{
	static uint64_t fwd[VPAGES], rev[IPAGES]; /* page -> value + 1, 0 = unmapped */
	struct xlate x;
	xlate_init(&x, 1);
	unsigned bad_ret = 0, bad_look = 0, bad_rev = 0, sets = 0, clears = 0, exists = 0;
	dme_log_set_hook(NULL, NULL, DME_LOG_NONE);
	for (unsigned op = 0; op < 100000; op++) {
		unsigned kind = (unsigned)(rnd() % 16);
		if (kind < 9) {
			bool huge = kind < 3;
			uint64_t g = huge ? M2 / K4 : 1;
			uint64_t pages =
			    huge ? g * (1 + rnd() % 3) : 1 + rnd() % (rnd() % 4 ? 8 : 700);
			uint64_t vp = (rnd() % (VPAGES - pages)) / g * g;
			uint64_t ip = (rnd() % (IPAGES - pages)) / g * g;
			if (!huge &&
			    rnd() % 2) /* 2M-congruent, so whole slots can be linear both ways */
				ip = (ip & ~511ull) | (vp & 511);
			if (ip + pages > IPAGES)
				continue;
			int want = 0;
			for (uint64_t i = 0; i < pages && !want; i++)
				if (fwd[vp + i] || rev[ip + i])
					want = -EEXIST;
			int got =
			    xlate_set(&x, VBASE + vp * K4, pages * K4, ip * K4, huge ? 21 : 12);
			bad_ret += got != want;
			if (!want) {
				for (uint64_t i = 0; i < pages; i++) {
					fwd[vp + i] = (ip + i) * K4 + 1;
					rev[ip + i] = VBASE + (vp + i) * K4 + 1;
				}
				sets++;
			} else {
				exists++;
			}
		} else if (kind < 15) {
			uint64_t pages = 1 + rnd() % (rnd() % 4 ? 16 : 1500);
			uint64_t vp = rnd() % (VPAGES - pages);
			bad_ret += xlate_clear(&x, VBASE + vp * K4, pages * K4) != 0;
			for (uint64_t i = 0; i < pages; i++) {
				if (fwd[vp + i])
					rev[(fwd[vp + i] - 1) / K4] = 0;
				fwd[vp + i] = 0;
			}
			clears++;
		} else if (rnd() % 64 == 0) {
			xlate_trim(&x); /* single-threaded: no reader can be inside */
		}
		for (int k = 0; k < 8; k++) {
			uint64_t vp = rnd() % VPAGES, off = rnd() % K4, got = 0;
			int r = xlate_lookup(&x, VBASE + vp * K4 + off, &got);
			bad_look += fwd[vp] ? (r || got != fwd[vp] - 1 + off) : r != -ENOENT;
			uint64_t ip = rnd() % IPAGES;
			r = xlate_reverse(&x, ip * K4 + off, &got);
			bad_rev += rev[ip] ? (r || got != rev[ip] - 1 + off) : r != -ENOENT;
		}
	}
	logcap_install();
	uint64_t mapped = 0;
	for (uint64_t i = 0; i < VPAGES; i++)
		mapped += fwd[i] != 0;
	diag("differential: %u sets, %u refused with EEXIST, %u clears; %llu pages mapped at the "
	     "end; %zu bytes of metadata",
	     sets, exists, clears, (unsigned long long)mapped, xlate_meta_bytes(&x));
	ok(bad_ret == 0, "differential: every return code matches the model (%u wrong)", bad_ret);
	ok(bad_look == 0, "differential: every sampled lookup matches (%u wrong)", bad_look);
	ok(bad_rev == 0, "differential: every sampled reverse lookup matches (%u wrong)", bad_rev);
	unsigned full = 0;
	for (uint64_t i = 0; i < VPAGES; i += 97) {
		uint64_t got = 0;
		int r = xlate_lookup(&x, VBASE + i * K4, &got);
		full += fwd[i] ? (r || got != fwd[i] - 1) : r != -ENOENT;
	}
	ok(full == 0, "differential: a final sweep matches");
	xlate_destroy(&x);
}

/* ---- readers racing a writer ------------------------------------------------------------ */

/*
 * 4096 slots of 2 MiB. Odd slots churn freely (2 MiB and 4 KiB sets, clears).
 * Even slots live in generations: the writer sets the slot as one linear
 * 2 MiB word, then works on its first 504 pages (the first clear splits the
 * linear word into a sub-table, later sets and clears churn around), and now
 * and then recycles it: clear everything, set it linear again. While a
 * generation lives, its last 8 pages are "stable": never touched. gen[k] is
 * odd while they are guaranteed mapped (a seqcount: the writer bumps it to
 * even before clearing them), so a reader that sees the same odd gen before
 * and after a lookup knows the page was mapped throughout.
 *
 * Readers check: every lookup is -ENOENT or exactly the right IOVA (both
 * ways), and a stable page never vanishes. The writer sweeps through the
 * slots over the run (an emptied sub-table stays in its slot, so each even
 * slot is split from linear once) and announces the slot it works on, so
 * that half the probes land there while it is being split.
 */
#define CBASE 0x7f8000000000ull
#define CSLOTS 4096ull
#define CNOPS 300000u
#define CIOVA(va) ((va)-CBASE + 0x300000000ull) /* the only right answer */
#define STABLE_PAGES 8ull

struct race {
	struct xlate x;
	atomic_bool stop;
	atomic_ulong hot;    /* the slot the writer works on */
	atomic_uint running; /* readers that have started */
	atomic_ulong gen[CSLOTS];
	atomic_ulong wrong, vanished, hits, misses, splits_seen;
	atomic_bool seen_both; /* a reader has seen a hit and a miss */
};

static void *reader(void *arg)
{
	struct race *r = arg;
	static atomic_uint next_node;
	use_node(&r->x, atomic_fetch_add(&next_node, 1) % 2); /* half on each replica */
	uint64_t s = (uint64_t)(uintptr_t)&s | 1, hits = 0, misses = 0, wrong = 0, vanished = 0;
	atomic_fetch_add(&r->running, 1);
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		for (int i = 0; i < 256; i++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			uint64_t va = CBASE + (s % (CSLOTS * M2)), got = 0, rgot = 0, k;
			if (i & 1) { /* every other probe on a stable page of the hot slot */
				k = atomic_load_explicit(&r->hot, memory_order_relaxed) & ~1ull;
				va = CBASE + k * M2 + M2 - STABLE_PAGES * K4 +
				     (s % (STABLE_PAGES * K4));
			}
			k = (va - CBASE) / M2;
			bool stable_page = !(k % 2) && (va - CBASE) % M2 >= M2 - STABLE_PAGES * K4;
			uint64_t g1 = atomic_load_explicit(&r->gen[k], memory_order_acquire);
			int ret = xlate_lookup(&r->x, va, &got);
			int rret = xlate_reverse(&r->x, CIOVA(va), &rgot);
			/* the lookups' acquire loads keep this read after them; a clear
			 * they observed carries the writer's earlier gen bump with it */
			uint64_t g2 = atomic_load_explicit(&r->gen[k], memory_order_acquire);
			bool must = stable_page && (g1 & 1) && g1 == g2;
			if (ret == 0 && got == CIOVA(va))
				hits++;
			else if (ret == -ENOENT && must)
				vanished++;
			else if (ret == -ENOENT)
				misses++;
			else
				wrong++;
			if (rret == 0)
				wrong += rgot != va;
			else if (rret != -ENOENT)
				wrong++;
			else
				vanished += must;
		}
		if (hits && misses && !atomic_load_explicit(&r->seen_both, memory_order_relaxed))
			atomic_store_explicit(&r->seen_both, true, memory_order_relaxed);
	}
	atomic_fetch_add(&r->hits, hits);
	atomic_fetch_add(&r->misses, misses);
	atomic_fetch_add(&r->wrong, wrong);
	atomic_fetch_add(&r->vanished, vanished);
	return NULL;
}

static int race_set(struct race *r, uint64_t va, uint64_t len, unsigned shift)
{
	return xlate_set(&r->x, va, len, CIOVA(va), shift);
}

static void test_race(void)
{
	static struct race r;
	ok_eq(xlate_init(&r.x, 2), 0, "race: two replicas");
	r.x.node_rep[1] = 1;
	for (uint64_t k = 0; k < CSLOTS; k += 2) { /* even slots start linear and stable */
		race_set(&r, CBASE + k * M2, M2, 21);
		atomic_store(&r.gen[k], 1);
	}
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, reader, &r);
	while (atomic_load(&r.running) < 2)
		sched_yield();
	unsigned long sets = 0, clears = 0, recycles = 0;
	dme_log_set_hook(NULL, NULL, DME_LOG_NONE); /* EEXIST is expected */
	/* CNOPS operations, and on until the readers have seen both mapped
	 * and unmapped pages (they may get little CPU on a loaded machine) */
	for (unsigned op = 0; op < CNOPS || (!atomic_load(&r.seen_both) && op < 1000u * CNOPS);
	     op++) {
		uint64_t k = ((uint64_t)(op % CNOPS) * CSLOTS / CNOPS + rnd() % 16) % CSLOTS;
		uint64_t slot = CBASE + k * M2;
		uint64_t end = k % 2 ? 512 : 512 - STABLE_PAGES; /* never touch stable pages */
		uint64_t p = rnd() % end, n = 1 + rnd() % (end - p);
		atomic_store_explicit(&r.hot, k, memory_order_relaxed);
		switch (rnd() % 8) {
		case 0: /* odd: the whole slot at 2 MiB; even: a new generation */
			if (k % 2) {
				sets += race_set(&r, slot, M2, 21) == 0;
				break;
			}
			atomic_fetch_add_explicit(&r.gen[k], 1,
						  memory_order_release); /* even: unstable */
			xlate_clear(&r.x, slot, M2);
			race_set(&r, slot, M2, 21);
			atomic_fetch_add_explicit(&r.gen[k], 1,
						  memory_order_release); /* odd: stable */
			recycles++;
			break;
		case 1:
		case 2:
		case 3:
			sets += race_set(&r, slot + p * K4, n * K4, 12) == 0;
			break;
		default:
			clears += xlate_clear(&r.x, slot + p * K4, n * K4) == 0;
			break;
		}
	}
	atomic_store(&r.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	logcap_install();
	diag("race: %lu sets, %lu clears, %lu slot recycles; readers saw %lu hits, %lu misses, "
	     "%lu wrong, %lu stable pages vanished",
	     sets, clears, recycles, atomic_load(&r.hits), atomic_load(&r.misses),
	     atomic_load(&r.wrong), atomic_load(&r.vanished));
	ok(atomic_load(&r.wrong) == 0,
	   "race: every concurrent lookup was -ENOENT or exactly the right IOVA (and reverse)");
	ok(atomic_load(&r.vanished) == 0,
	   "race: pages mapped throughout never vanished while their slot was split and churned");
	ok(atomic_load(&r.hits) > 0 && atomic_load(&r.misses) > 0,
	   "race: readers saw both mapped and unmapped pages");
	xlate_destroy(&r.x);
}

int main(void)
{
	logcap_install();
	test_2m();
	test_4k();
	test_mixed_slot();
	test_errors();
	test_boundaries();
	test_replicas();
	test_meta();
	test_differential();
	test_race();
	return tap_done();
}
