/* SPDX-License-Identifier: MIT */
/*
 * flat_xlate.c - the flat two-level baseline (see flat_xlate.h). Owns its
 * directory and leaves; leaves live until flat_destroy(). Single writer.
 */
#include <stdlib.h>

#include "flat_xlate.h"

#define DIR_ENTRIES (1u << 17)

int flat_init(struct flat_xlate *f)
{
	f->dir = calloc(DIR_ENTRIES, sizeof(*f->dir));
	return f->dir ? 0 : -ENOMEM;
}

void flat_destroy(struct flat_xlate *f)
{
	for (unsigned i = 0; f->dir && i < DIR_ENTRIES; i++)
		free((void *)atomic_load_explicit(&f->dir[i], memory_order_relaxed));
	free(f->dir);
	f->dir = NULL;
}

int flat_set(struct flat_xlate *f, uint64_t va, uint64_t len, uint64_t iova)
{
	for (uint64_t off = 0; off < len; off += 1ull << 21) {
		uint64_t v = va + off;
		_Atomic(_Atomic uint64_t *) *slot = &f->dir[(v >> 30) & (DIR_ENTRIES - 1)];
		_Atomic uint64_t *leaf = atomic_load_explicit(slot, memory_order_relaxed);
		if (!leaf) {
			leaf = calloc(512, sizeof(*leaf));
			if (!leaf)
				return -ENOMEM;
			atomic_store_explicit(slot, leaf, memory_order_release);
		}
		atomic_store_explicit(&leaf[(v >> 21) & 511], iova + off + 1, memory_order_release);
	}
	return 0;
}

void flat_clear(struct flat_xlate *f, uint64_t va, uint64_t len)
{
	for (uint64_t off = 0; off < len; off += 1ull << 21) {
		uint64_t v = va + off;
		_Atomic uint64_t *leaf = atomic_load_explicit(
		    &f->dir[(v >> 30) & (DIR_ENTRIES - 1)], memory_order_relaxed);
		if (leaf)
			atomic_store_explicit(&leaf[(v >> 21) & 511], 0, memory_order_release);
	}
}
