/* SPDX-License-Identifier: MIT */
/*
 * flat_xlate.h - baseline for the lookup benchmark: the plainest two-level
 * VA -> IOVA array one could write.
 *
 * A directory of 2^17 leaf pointers (one per GiB of a 47-bit VA space) and
 * leaves of 512 words (one per 2 MiB): word = IOVA of the slot + 1, 0 when
 * unmapped. 2 MiB granularity only, one copy, no reverse map, no overlap
 * checks, no 57-bit VAs. The same load chain as dme's table (struct ->
 * directory -> leaf), so the ratio against it measures what xlate's extras
 * cost: replica choice, the 57-bit branch, 4 KiB sub-tables.
 *
 * One writer at a time; readers may run concurrently (words are atomics,
 * leaves are published with release and never freed before destroy).
 */
#ifndef DME_BENCH_FLAT_XLATE_H
#define DME_BENCH_FLAT_XLATE_H

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>

struct flat_xlate {
	_Atomic(_Atomic uint64_t *) *dir;
};

int flat_init(struct flat_xlate *f);
void flat_destroy(struct flat_xlate *f);
/* Map [va, va + len) at iova; all three 2 MiB aligned, va below 2^47. */
int flat_set(struct flat_xlate *f, uint64_t va, uint64_t len, uint64_t iova);
void flat_clear(struct flat_xlate *f, uint64_t va, uint64_t len);

static inline int flat_lookup(const struct flat_xlate *f, uint64_t va, uint64_t *iova)
{
	_Atomic uint64_t *leaf =
	    atomic_load_explicit(&f->dir[(va >> 30) & ((1u << 17) - 1)], memory_order_acquire);
	if (!leaf)
		return -ENOENT;
	uint64_t e = atomic_load_explicit(&leaf[(va >> 21) & 511], memory_order_acquire);
	if (!e)
		return -ENOENT;
	*iova = e - 1 + (va & 0x1fffff);
	return 0;
}

#endif
