/* SPDX-License-Identifier: MIT */
/*
 * dme/iova.h - the IOVA allocator.
 *
 * An IOVA space is built from a geometry exactly as the kernel reports it:
 * allowed ranges [start, last] (inclusive, holes between them) and a required
 * alignment. Every range handed out lies inside one allowed range, outside
 * every reservation, is aligned as asked, and never straddles a hole.
 *
 * Slow path: an AVL tree of busy ranges (allocations, reservations, holes)
 * augmented with the largest free gap in each subtree: the lowest gap of at
 * least size + alignment - granule (which fits whatever its start) in
 * O(log n); only when there is none, exact first fit over the smaller gaps.
 * Fast path: per-thread magazines per power-of-two size class over a shared
 * depot; a hit takes no lock and makes no syscall.
 * Quarantine: dme_iova_free_deferred() holds ranges back until the caller
 * says the unmap that covered them has completed.
 *
 * All functions are thread-safe. Errors are negative errno values; a failed
 * call changes nothing. Misuse (bad sizes, bad frees, bad geometry) comes
 * with a message through the log hook; -ENOSPC (the space is full), -EEXIST
 * (dme_iova_alloc_fixed() on a taken range) and -ENOMEM do not: the caller
 * decides whether they are errors.
 */
#ifndef DME_IOVA_H
#define DME_IOVA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct dme_iova_space;

/** struct dme_iova_range - an inclusive IOVA range [start, last]. */
struct dme_iova_range {
	uint64_t start;
	uint64_t last;
};

/** struct dme_iova_geometry - the address space as the kernel reports it. */
struct dme_iova_geometry {
	const struct dme_iova_range *ranges; /* allowed ranges, any order, disjoint */
	size_t nr_ranges;
	uint64_t alignment; /* power of two; 0 or 1 means byte granular */
};

/** struct dme_iova_params - tuning; zero fields take defaults. */
struct dme_iova_params {
	bool no_cache;		/* disable per-thread magazines */
	unsigned mag_size;	/* IOVAs per magazine (default 64, max 1024) */
	unsigned depot_max;	/* full magazines per class in the depot (default 32) */
	unsigned nr_classes;	/* cached size classes: alignment << 0 .. << (n-1) (default 10) */
};

/** struct dme_iova_stats - a snapshot; exact when no other thread runs. */
struct dme_iova_stats {
	uint64_t live_ranges;	 /* allocations handed out and not freed */
	uint64_t allocated_bytes; /* bytes in those ranges */
	uint64_t reserved_bytes; /* bytes reserved (not counting holes) */
	uint64_t quarantined_ranges, quarantined_bytes;
	uint64_t cached_ranges, cached_bytes; /* free IOVAs held by magazines and depot */
	uint64_t free_bytes;	 /* allowed - reserved - live - quarantined - cached */
	uint64_t cache_hits, cache_misses;
	uint64_t depot_magazines; /* full magazines in the depot, all classes */
	uint64_t cache_flushes;	 /* times pressure emptied the caches */
};

/**
 * dme_iova_space_create() - build an IOVA space from a geometry.
 * @geo:    allowed ranges and alignment (copied)
 * @params: tuning, or NULL for defaults
 * @out:    on success, the new space
 *
 * Return: 0, -EINVAL for empty, overlapping or misaligned ranges, a
 * non-power-of-two alignment or out-of-range @params, -ENOMEM when an
 * allocation fails (nothing is leaked and @out is untouched on any error).
 */
int dme_iova_space_create(const struct dme_iova_geometry *geo,
			  const struct dme_iova_params *params, struct dme_iova_space **out);

/**
 * dme_iova_space_destroy() - free the space and everything it holds.
 * @space: the space, or NULL. No thread may use it concurrently.
 */
void dme_iova_space_destroy(struct dme_iova_space *space);

/**
 * dme_iova_alloc() - reserve an IOVA range inside the space's geometry.
 * @space: the IOVA space
 * @size:  bytes, a non-zero multiple of the space's alignment
 * @align: power of two, at most 1 GiB; values below the space's alignment
 *         are raised to it
 * @iova:  on success, the first IOVA of the range
 *
 * Power-of-two sizes with @align <= @size are served from per-thread caches.
 *
 * Return: 0, -EINVAL for a bad size or alignment, -ENOSPC when no hole fits.
 */
int dme_iova_alloc(struct dme_iova_space *space, uint64_t size, uint64_t align, uint64_t *iova);

/**
 * dme_iova_alloc_congruent() - allocate with IOVA == @va modulo @page_size.
 * @space:     the IOVA space
 * @size:      bytes, a non-zero multiple of the space's alignment
 * @page_size: power of two up to 1 GiB (the backing page size of @va)
 * @va:        the virtual address the range will map
 * @iova:      on success, the first IOVA
 *
 * Lets hugepage-backed memory be mapped with 2 MiB / 1 GiB IOPTEs.
 *
 * Return: 0, -EINVAL, -ENOSPC.
 */
int dme_iova_alloc_congruent(struct dme_iova_space *space, uint64_t size, uint64_t page_size,
			     uint64_t va, uint64_t *iova);

/**
 * dme_iova_alloc_fixed() - claim exactly [@iova, @iova + @size - 1].
 * @space: the IOVA space
 * @iova:  first IOVA, aligned to the space's alignment
 * @size:  bytes, a non-zero multiple of the space's alignment
 *
 * Return: 0, -EINVAL when misaligned or not inside one allowed range,
 * -EEXIST when it overlaps a live, reserved or quarantined range.
 */
int dme_iova_alloc_fixed(struct dme_iova_space *space, uint64_t iova, uint64_t size);

/**
 * dme_iova_free() - return a range from dme_iova_alloc*() to the space.
 * @space: the IOVA space
 * @iova:  the IOVA that was returned
 * @size:  the size that was asked for
 *
 * Return: 0, or -EINVAL for a double free, an unknown range, a size mismatch
 * or a range in a hole (nothing changes).
 */
int dme_iova_free(struct dme_iova_space *space, uint64_t iova, uint64_t size);

/**
 * dme_iova_free_deferred() - free a range once its unmap has completed.
 * @space: the IOVA space
 * @iova:  the IOVA that was returned
 * @size:  the size that was asked for
 *
 * The range stays unavailable (quarantined) until dme_iova_release() is
 * called with an epoch at or after the one dme_iova_seal() returns next.
 *
 * Return: 0, or -EINVAL as for dme_iova_free().
 */
int dme_iova_free_deferred(struct dme_iova_space *space, uint64_t iova, uint64_t size);

/**
 * dme_iova_seal() - close the current quarantine epoch.
 * @space: the IOVA space
 *
 * Every range deferred before this call belongs to the returned epoch. Issue
 * the unmaps that cover them, then call dme_iova_release() with it.
 *
 * Return: the epoch (a number that only grows).
 */
uint64_t dme_iova_seal(struct dme_iova_space *space);

/**
 * dme_iova_release() - make quarantined ranges of epochs <= @epoch reusable.
 * @space: the IOVA space
 * @epoch: a value returned by dme_iova_seal()
 *
 * Return: the number of ranges released, or -EINVAL for an epoch that was
 * never sealed.
 */
int64_t dme_iova_release(struct dme_iova_space *space, uint64_t epoch);

/**
 * dme_iova_reserve() - take [@start, @last] out of the space.
 * @space: the IOVA space
 * @start: first IOVA, aligned to the space's alignment
 * @last:  last IOVA (inclusive); @last + 1 aligned, or the top of the space
 *
 * The parts that lie in holes are already unavailable and are ignored; the
 * caller's own reserved regions (e.g. a device's RMRR) may span holes.
 *
 * Return: 0, -EINVAL when misaligned or @last < @start, -EBUSY when a live,
 * quarantined or reserved range overlaps (caches are flushed first).
 */
int dme_iova_reserve(struct dme_iova_space *space, uint64_t start, uint64_t last);

/**
 * dme_iova_unreserve() - undo dme_iova_reserve() of exactly [@start, @last].
 * @space: the IOVA space
 * @start: as given to dme_iova_reserve()
 * @last:  as given to dme_iova_reserve()
 *
 * Return: 0, -ENOENT when no such reservation exists.
 */
int dme_iova_unreserve(struct dme_iova_space *space, uint64_t start, uint64_t last);

/**
 * dme_iova_flush_caches() - return every cached free IOVA to the tree.
 * @space: the IOVA space
 *
 * Empties the depot and the magazines of every thread at once, including
 * threads that are blocked or never call the allocator again; their fast
 * paths stay lock-free (see docs/iova.md). Tree allocations that find no
 * fit do the same before failing with -ENOSPC. Other threads' magazines
 * need membarrier(2); where it is refused they are emptied only when their
 * threads exit (logged once).
 */
void dme_iova_flush_caches(struct dme_iova_space *space);

/**
 * dme_iova_stats() - fill @st with a snapshot of @space's counters.
 * @space: the IOVA space
 * @st:    filled on return
 */
void dme_iova_stats(struct dme_iova_space *space, struct dme_iova_stats *st);

/**
 * dme_iova_geometry_get() - the space's allowed ranges.
 * @space:  the IOVA space
 * @ranges: filled with up to @max ranges, sorted
 * @max:    capacity of @ranges
 *
 * Return: the number of allowed ranges (may exceed @max).
 */
size_t dme_iova_geometry_get(struct dme_iova_space *space, struct dme_iova_range *ranges,
			     size_t max);

/**
 * dme_iova_check() - verify the tree's invariants (for tests and debugging).
 * @space: the IOVA space
 *
 * Return: 0, or -EUCLEAN with a message naming the broken invariant.
 */
int dme_iova_check(struct dme_iova_space *space);

#ifdef __cplusplus
}
#endif
#endif
