/* SPDX-License-Identifier: MIT */
/*
 * stats.c - process-wide counters of pin/: allocations, frees and live bytes
 * per source, failures, and how often each fallback was taken.
 *
 * Invariant: live_bytes[s] == sum of len over allocations of source s that
 * have not been freed. Counters are relaxed atomics: each value is exact, a
 * snapshot of several is not a single instant (fine for reporting).
 */
#include <string.h>

#include "compiler.h"
#include "pin.h"

static struct {
	uint64_t allocs[DME_MEM_SRC_COUNT];
	uint64_t frees[DME_MEM_SRC_COUNT];
	uint64_t live_bytes[DME_MEM_SRC_COUNT];
	uint64_t failures;
	uint64_t fallbacks[DME_MEM_FB_COUNT];
	uint64_t pages_misplaced;
} st;

static const char *const source_names[DME_MEM_SRC_COUNT] = {
    [DME_MEM_SRC_HUGETLB_MEMFD] = "hugetlb-memfd",
    [DME_MEM_SRC_HUGETLBFS] = "hugetlbfs",
    [DME_MEM_SRC_THP] = "thp",
    [DME_MEM_SRC_4K] = "4k",
};

static const char *const fallback_names[DME_MEM_FB_COUNT] = {
    [DME_MEM_FB_HUGETLB_SHORT] = "hugetlb_short",
    [DME_MEM_FB_HUGETLB_FAILED] = "hugetlb_failed",
    [DME_MEM_FB_MEMFD_REFUSED] = "memfd_refused",
    [DME_MEM_FB_THP_DISABLED] = "thp_disabled",
    [DME_MEM_FB_THP_PARTIAL] = "thp_partial",
    [DME_MEM_FB_POPULATE_TOUCH] = "populate_touch",
    [DME_MEM_FB_NODE_UNKNOWN] = "node_unknown",
    [DME_MEM_FB_NUMA_UNAVAILABLE] = "numa_unavailable",
    [DME_MEM_FB_MISPLACED] = "misplaced",
};

DME_EXPORT const char *dme_mem_source_name(enum dme_mem_source src)
{
	return (unsigned)src < DME_MEM_SRC_COUNT ? source_names[src] : "?";
}

DME_EXPORT const char *dme_mem_fallback_name(enum dme_mem_fallback fb)
{
	return (unsigned)fb < DME_MEM_FB_COUNT ? fallback_names[fb] : "?";
}

static inline void add(uint64_t *c, uint64_t v)
{
	__atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

void pin_note_fallback(struct dme_mem *m, enum dme_mem_fallback fb)
{
	m->fallbacks |= DME_MEM_FB_BIT(fb);
	add(&st.fallbacks[fb], 1);
}

void pin_stat_alloc(const struct dme_mem *m)
{
	add(&st.allocs[m->source], 1);
	add(&st.live_bytes[m->source], m->len);
	add(&st.pages_misplaced, m->pages_misplaced);
}

void pin_stat_free(const struct dme_mem *m)
{
	add(&st.frees[m->source], 1);
	__atomic_fetch_sub(&st.live_bytes[m->source], m->len, __ATOMIC_RELAXED);
}

void pin_stat_failure(void)
{
	add(&st.failures, 1);
}

static uint64_t get(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

DME_EXPORT void dme_mem_stats(struct dme_mem_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned s = 0; s < DME_MEM_SRC_COUNT; s++) {
		out->allocs[s] = get(&st.allocs[s]);
		out->frees[s] = get(&st.frees[s]);
		out->live_bytes[s] = get(&st.live_bytes[s]);
	}
	for (unsigned f = 0; f < DME_MEM_FB_COUNT; f++)
		out->fallbacks[f] = get(&st.fallbacks[f]);
	out->failures = get(&st.failures);
	out->pages_misplaced = get(&st.pages_misplaced);
}
