/* SPDX-License-Identifier: MIT */
/*
 * sim.c - the sim backend: an in-process IOMMU with a real IO page table,
 * kernel-faithful map/unmap errors, fault injection, and a device that does
 * DMA through the table (public API in dme/sim.h).
 *
 * Owns: one IO address space per struct dme_sim: its page table, the areas
 * (mappings, exactly as mapped) and the devices attached to it.
 *
 * Page table. VT-d second-level shape: 512 x 64-bit entries a table, levels
 * numbered from 1 (4 KiB PTEs, IOVA bits 20:12) up to `levels` (the root).
 * An entry is 0 when not present; otherwise bits 63:12 hold an address and
 * bits 1:0 the R/W permission. A leaf at level 2 or 3 has PS (bit 7) set and
 * maps 2 MiB or 1 GiB; level 1 entries are always leaves; a non-leaf entry
 * points to the next table and carries R|W. The address in a leaf is the
 * process VA of the memory (the simulated "physical" address).
 * A request is cut into the largest leaves its IOVA and VA alignment and its
 * length allow, so 2 MiB-aligned runs get 2 MiB entries.
 *
 * Areas. An AVL tree (common/avl.h) keyed by IOVA holds every mapping as it was created by
 * one map request or one piece of a copy. It is the authority for the
 * overlap (-EEXIST), exact-unmap (-ENOENT) and entry-limit (-ENOSPC) checks,
 * each O(log n). Invariants (dme_sim_check()): areas are disjoint; every
 * byte of an area is mapped by leaves lying inside that area; no leaf lies
 * outside an area; the per-level counters match the table.
 *
 * Locking. map/unmap/copy/attach/detach/inject/close are serialized by the
 * caller (the engine's map lock). The device side (DMA, translate, walk,
 * faults, stats) may run on other threads at the same time: entries are
 * 64-bit atomics published with release and read with acquire, and a table
 * page is never freed while the sim is open (an emptied table stays in its
 * slot and serves that slot again; one replaced by a large leaf goes on the
 * retired list, freed at close), so a walker never touches freed memory.
 * fault_lock guards the fault log; device-side counters are atomics.
 *
 * Device memory access uses process_vm_readv/writev on our own pid when the
 * kernel allows it, so a leaf whose memory has been unmapped from the process
 * is a recorded fault (DME_SIM_FAULT_BAD_VA) instead of a crash; otherwise
 * plain memcpy.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <dme/mem.h>
#include <dme/sim.h>

#include "avl.h"
#include "backend.h"
#include "compiler.h"
#include "log_internal.h"

_Static_assert(DME_SIM_PROT_READ == BE_PROT_READ, "prot bits differ");
_Static_assert(DME_SIM_PROT_WRITE == BE_PROT_WRITE, "prot bits differ");
_Static_assert(DME_SIM_MAX_RANGES <= BE_MAX_RANGES, "geometry cannot hold the ranges");

#define PT_SHIFT 12
#define PT_BITS 9
#define PT_ENTRIES 512
#define PT_SIZE 4096

#define PTE_R 1ull
#define PTE_W 2ull
#define PTE_RW (PTE_R | PTE_W)
#define PTE_PS (1ull << 7)
#define PTE_ADDR (~0xfffull)

#define MAX_LEAF_LEVEL 3 /* 1 GiB */
#define VA_LIMIT (1ull << 57)
#define DEFAULT_FAULT_LOG 64

typedef _Atomic uint64_t pte_t;

struct area {
	struct avl_node node;	/* key: iova */
	uint64_t iova, last, va;
	unsigned prot;
};

struct inject {
	uint64_t req_left; /* fire when this reaches 0; 0 = disarmed */
	int req_err;
	uint64_t call_left;
	int call_err;
};

struct dme_sim {
	unsigned aw, levels;
	uint64_t alignment, max_entries;
	bool no_large;
	struct dme_iova_range ranges[DME_SIM_MAX_RANGES];
	size_t nr_ranges;
	bool needs_attach, has_rsv;
	struct dme_iova_range attach_rsv;

	pte_t *root;
	struct avl areas;	/* struct area by IOVA */
	uint64_t nr_areas;
	void **retired;
	size_t nr_retired, cap_retired;

	struct inject inj[DME_SIM_NR_OPS];
	char **devs;
	size_t nr_devs, cap_devs;

	pthread_mutex_t fault_lock;
	struct dme_sim_fault *flog;
	unsigned flog_cap, flog_head, flog_n;

	/* op side: written under the caller's lock */
	struct dme_sim_stats st;
	/* device side */
	_Atomic uint64_t faults, dma_reads, dma_writes, dma_bytes;
};

static const char *const op_names[DME_SIM_NR_OPS] = {"map", "unmap", "copy", "attach", "detach"};

static inline uint64_t level_size(unsigned lv)
{
	return 1ull << (PT_SHIFT + PT_BITS * (lv - 1));
}

static inline unsigned pt_index(uint64_t iova, unsigned lv)
{
	return (unsigned)(iova >> (PT_SHIFT + PT_BITS * (lv - 1))) & (PT_ENTRIES - 1);
}

static inline pte_t *pte_table(uint64_t v)
{
	return (pte_t *)(uintptr_t)(v & PTE_ADDR);
}

static inline bool pte_is_leaf(uint64_t v, unsigned lv)
{
	return lv == 1 || (v & PTE_PS);
}

/* ---- the area tree (common/avl.h, keyed by iova) ------------------------- */

static inline struct area *area_of(struct avl_node *n)
{
	return n ? container_of(n, struct area, node) : NULL;
}

/* The area with the largest start <= @iova, or NULL. */
static struct area *area_floor(struct dme_sim *s, uint64_t iova)
{
	return area_of(avl_floor(&s->areas, iova));
}

/* The area with the smallest start >= @iova, or NULL. */
static struct area *area_ceil(struct dme_sim *s, uint64_t iova)
{
	struct avl_node *n = avl_find(&s->areas, iova);
	return area_of(n ? n : avl_next(&s->areas, iova));
}

/* The area containing @iova, or NULL. */
static struct area *area_at(struct dme_sim *s, uint64_t iova)
{
	struct area *a = area_floor(s, iova);
	return a && a->last >= iova ? a : NULL;
}

/* ---- page-table pages ---------------------------------------------------- */

static pte_t *table_alloc(struct dme_sim *s, unsigned lv)
{
	pte_t *t = aligned_alloc(PT_SIZE, PT_SIZE);
	if (!t)
		return NULL;
	memset(t, 0, PT_SIZE);
	s->st.tables[lv]++;
	return t;
}

static size_t table_count(const pte_t *t, unsigned lv)
{
	size_t n = 1;
	for (unsigned i = 0; lv > 1 && i < PT_ENTRIES; i++) {
		uint64_t v = atomic_load_explicit(&t[i], memory_order_relaxed);
		if (v && !pte_is_leaf(v, lv))
			n += table_count(pte_table(v), lv - 1);
	}
	return n;
}

static void table_retire_reserved(struct dme_sim *s, pte_t *t, unsigned lv)
{
	for (unsigned i = 0; lv > 1 && i < PT_ENTRIES; i++) {
		uint64_t v = atomic_load_explicit(&t[i], memory_order_relaxed);
		if (v)
			table_retire_reserved(s, pte_table(v), lv - 1);
	}
	s->retired[s->nr_retired++] = t;
	s->st.tables[lv]--;
	s->st.retired_tables++;
}

/* Put an empty table (and the empty tables below it) on the retired list:
 * a concurrent walker may still be reading it. All or nothing. */
static int table_retire(struct dme_sim *s, pte_t *t, unsigned lv)
{
	size_t need = s->nr_retired + table_count(t, lv);
	if (need > s->cap_retired) {
		size_t cap = s->cap_retired ? 2 * s->cap_retired : 16;
		cap = cap < need ? need : cap;
		void **n = realloc(s->retired, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->retired = n;
		s->cap_retired = cap;
	}
	table_retire_reserved(s, t, lv);
	return 0;
}

/* True when the table and every table below it hold no leaf. */
static bool table_empty(const pte_t *t, unsigned lv)
{
	for (unsigned i = 0; i < PT_ENTRIES; i++) {
		uint64_t v = atomic_load_explicit(&t[i], memory_order_relaxed);
		if (!v)
			continue;
		if (pte_is_leaf(v, lv) || !table_empty(pte_table(v), lv - 1))
			return false;
	}
	return true;
}

static void table_free_all(pte_t *t, unsigned lv)
{
	for (unsigned i = 0; lv > 1 && i < PT_ENTRIES; i++) {
		uint64_t v = atomic_load_explicit(&t[i], memory_order_relaxed);
		if (v && !(v & PTE_PS))
			table_free_all(pte_table(v), lv - 1);
	}
	free(t);
}

/* Install one leaf of level @lv mapping @iova -> @va. The area check has
 * established that nothing is mapped there. */
static int pt_install(struct dme_sim *s, uint64_t iova, uint64_t va, unsigned lv, unsigned prot)
{
	pte_t *t = s->root;
	for (unsigned l = s->levels; l > lv; l--) {
		pte_t *e = &t[pt_index(iova, l)];
		uint64_t v = atomic_load_explicit(e, memory_order_relaxed);
		if (!v) {
			pte_t *child = table_alloc(s, l - 1);
			if (!child)
				return -ENOMEM;
			v = (uint64_t)(uintptr_t)child | PTE_RW;
			atomic_store_explicit(e, v, memory_order_release);
		} else if (pte_is_leaf(v, l)) {
			goto err_busy;
		}
		t = pte_table(v);
	}
	pte_t *e = &t[pt_index(iova, lv)];
	uint64_t v = atomic_load_explicit(e, memory_order_relaxed);
	if (v) {
		/* an emptied table from earlier 4 KiB mappings: replace it */
		if (pte_is_leaf(v, lv) || !table_empty(pte_table(v), lv - 1))
			goto err_busy;
		int ret = table_retire(s, pte_table(v), lv - 1);
		if (ret)
			return ret;
	}
	atomic_store_explicit(e, va | prot | (lv > 1 ? PTE_PS : 0), memory_order_release);
	s->st.leaf_entries[lv]++;
	return 0;
err_busy:
	dme_err("sim: page table already maps IOVA 0x%" PRIx64 " outside any area (internal error)",
		iova);
	return -EEXIST;
}

/* Clear the leaves of [iova, iova + len), all installed by pt_map(). */
static void pt_clear(struct dme_sim *s, uint64_t iova, uint64_t len)
{
	uint64_t pos = iova, end = iova + len;
	while (pos < end) {
		pte_t *t = s->root;
		uint64_t step = level_size(1);
		for (unsigned l = s->levels; l >= 1; l--) {
			pte_t *e = &t[pt_index(pos, l)];
			uint64_t v = atomic_load_explicit(e, memory_order_relaxed);
			if (!v)
				break; /* cannot happen: areas are fully mapped */
			if (pte_is_leaf(v, l)) {
				atomic_store_explicit(e, 0, memory_order_release);
				s->st.leaf_entries[l]--;
				step = level_size(l);
				break;
			}
			t = pte_table(v);
		}
		pos += step;
	}
}

static unsigned pick_level(const struct dme_sim *s, uint64_t iova, uint64_t va, uint64_t left)
{
	unsigned top = s->no_large ? 1 : (s->levels < MAX_LEAF_LEVEL ? s->levels : MAX_LEAF_LEVEL);
	for (unsigned lv = top; lv > 1; lv--) {
		uint64_t sz = level_size(lv);
		if (!((iova | va) & (sz - 1)) && left >= sz)
			return lv;
	}
	return 1;
}

/* Install leaves for [iova, +len) -> va; all or nothing. */
static int pt_map(struct dme_sim *s, uint64_t iova, uint64_t va, uint64_t len, unsigned prot)
{
	uint64_t done = 0;
	while (done < len) {
		unsigned lv = pick_level(s, iova + done, va + done, len - done);
		int ret = pt_install(s, iova + done, va + done, lv, prot);
		if (ret) {
			pt_clear(s, iova, done);
			return ret;
		}
		done += level_size(lv);
	}
	return 0;
}

/* Walk the table for @iova; lock-free against map/unmap. */
static int pt_walk(const struct dme_sim *s, uint64_t iova, struct dme_sim_walk *w)
{
	const pte_t *t = s->root;
	for (unsigned l = s->levels; l >= 1; l--) {
		uint64_t v = atomic_load_explicit(&t[pt_index(iova, l)], memory_order_acquire);
		if (!(v & PTE_RW))
			return -ENOENT;
		if (pte_is_leaf(v, l)) {
			uint64_t sz = level_size(l);
			w->va = (v & PTE_ADDR) + (iova & (sz - 1));
			w->prot = (unsigned)(v & PTE_RW);
			w->level = l;
			w->page_size = sz;
			return 0;
		}
		t = pte_table(v);
	}
	return -ENOENT;
}

/* ---- areas: creating and removing mappings ------------------------------- */

static bool in_geometry(const struct dme_sim *s, uint64_t iova, uint64_t last)
{
	if (s->has_rsv && s->nr_devs && iova <= s->attach_rsv.last && last >= s->attach_rsv.start)
		return false;	/* a device reserves it */
	size_t lo = 0, hi = s->nr_ranges;
	while (lo < hi) { /* first range whose last >= iova */
		size_t mid = (lo + hi) / 2;
		if (s->ranges[mid].last < iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->nr_ranges && s->ranges[lo].start <= iova && last <= s->ranges[lo].last;
}

/* Checks shared by map and the destination of copy, in the kernel's order. */
static int check_new(struct dme_sim *s, uint64_t iova, uint64_t len, unsigned prot, uint64_t extra,
		     const char *what)
{
	if (prot & ~PTE_RW || !(prot & PTE_RW)) {
		dme_err("sim: %s at IOVA 0x%" PRIx64 ": prot 0x%x must be READ and/or WRITE", what,
			iova, prot);
		return -EINVAL;
	}
	if (!len) {
		dme_err("sim: %s at IOVA 0x%" PRIx64 ": zero length", what, iova);
		return -EINVAL;
	}
	uint64_t last = iova + len - 1;
	if (last < iova) {
		dme_err("sim: %s at IOVA 0x%" PRIx64 " length 0x%" PRIx64 " wraps", what, iova,
			len);
		return -EOVERFLOW;
	}
	if ((iova | len) & (s->alignment - 1)) {
		dme_err("sim: %s at IOVA 0x%" PRIx64 " length 0x%" PRIx64
			" is not aligned to the IOVA alignment 0x%" PRIx64,
			what, iova, len, s->alignment);
		return -EINVAL;
	}
	if (!in_geometry(s, iova, last)) {
		dme_err("sim: %s of [0x%" PRIx64 ", 0x%" PRIx64
			"] leaves the allowed IOVA ranges (reserved hole or beyond %u-bit width)",
			what, iova, last, s->aw);
		return -EINVAL;
	}
	struct area *a = area_floor(s, last);
	if (a && a->last >= iova) {
		dme_err("sim: %s of [0x%" PRIx64 ", 0x%" PRIx64 "] overlaps the mapping [0x%" PRIx64
			", 0x%" PRIx64 "]",
			what, iova, last, a->iova, a->last);
		return -EEXIST;
	}
	if (s->max_entries && s->nr_areas + extra > s->max_entries) {
		dme_err("sim: %s at IOVA 0x%" PRIx64 ": the limit of %" PRIu64
			" mappings is reached",
			what, iova, s->max_entries);
		return -ENOSPC;
	}
	return 0;
}

/* Create one area; the range has been checked. All or nothing. */
static int area_create(struct dme_sim *s, uint64_t iova, uint64_t va, uint64_t len, unsigned prot)
{
	struct area *a = malloc(sizeof(*a));
	if (!a) {
		dme_err("sim: out of memory for a mapping at IOVA 0x%" PRIx64, iova);
		return -ENOMEM;
	}
	int ret = pt_map(s, iova, va, len, prot);
	if (ret) {
		if (ret == -ENOMEM)
			dme_err("sim: out of memory for page tables at IOVA 0x%" PRIx64, iova);
		free(a);
		return ret;
	}
	*a = (struct area){.iova = iova, .last = iova + len - 1, .va = va, .prot = prot};
	a->node.key = a->iova;
	avl_insert(&s->areas, &a->node);
	s->nr_areas++;
	s->st.mappings_created++;
	s->st.bytes_mapped += len;
	s->st.live_bytes += len;
	return 0;
}

static void area_destroy(struct dme_sim *s, struct area *a)
{
	uint64_t len = a->last - a->iova + 1;
	pt_clear(s, a->iova, len);
	avl_remove(&s->areas, &a->node);
	s->nr_areas--;
	s->st.mappings_removed++;
	s->st.bytes_unmapped += len;
	s->st.live_bytes -= len;
	free(a);
}

static int map_one(struct dme_sim *s, const struct be_map *r)
{
	int ret = check_new(s, r->iova, r->len, r->prot, 1, "map");
	if (ret)
		return ret;
	if (r->va & (PT_SIZE - 1) || r->va + r->len < r->va || r->va + r->len > VA_LIMIT) {
		dme_err("sim: map of VA 0x%" PRIx64 " length 0x%" PRIx64 " at IOVA 0x%" PRIx64
			": the VA range cannot be pinned",
			r->va, r->len, r->iova);
		return r->va & (PT_SIZE - 1) ? -EINVAL : -EFAULT;
	}
	/* refuse what the kernel's pin would (FOLL_WRITE when the device may
	 * write), after the IOVA checks as IOAS_MAP does: one system call per
	 * new mapping, never on a cache hit */
	ret = dme_mem_vma_check((void *)(uintptr_t)r->va, r->len, r->prot & PTE_W, NULL);
	if (ret) {
		dme_err("sim: map of VA 0x%" PRIx64 " length 0x%" PRIx64 " at IOVA 0x%" PRIx64
			": the kernel would not pin this memory (%s)",
			r->va, r->len, r->iova, strerror(-ret));
		return ret;
	}
	return area_create(s, r->iova, r->va, r->len, r->prot);
}

static int unmap_all(struct dme_sim *s)
{
	while (s->areas.root)
		area_destroy(s, area_of(s->areas.root));
	return 0;
}

/* Unmap exactly the areas that tile [iova, iova + len); nothing else. */
static int unmap_one(struct dme_sim *s, const struct be_unmap *r)
{
	if (r->iova == 0 && r->len == UINT64_MAX)
		return unmap_all(s);
	if (!r->len) {
		dme_err("sim: unmap at IOVA 0x%" PRIx64 ": zero length", r->iova);
		return -EINVAL;
	}
	uint64_t last = r->iova + r->len - 1;
	if (last < r->iova) {
		dme_err("sim: unmap at IOVA 0x%" PRIx64 " length 0x%" PRIx64 " wraps", r->iova,
			r->len);
		return -EOVERFLOW;
	}
	struct area *a = area_floor(s, r->iova);
	if (!a || a->last < r->iova)
		a = area_ceil(s, r->iova);
	uint64_t want = r->iova;
	const char *why = NULL;
	for (;;) {
		if (!a || a->iova > last) {
			why =
			    want == r->iova ? "nothing is mapped there" : "it has an unmapped gap";
			break;
		}
		if (a->iova < want) {
			why = "it cuts a mapping";
			break;
		}
		if (a->iova > want) {
			why = "it has an unmapped gap";
			break;
		}
		if (a->last > last) {
			why = "it cuts a mapping";
			break;
		}
		if (a->last == last)
			break;
		want = a->last + 1;
		a = area_ceil(s, want);
	}
	if (why) {
		if (a && a->iova <= last)
			dme_err("sim: unmap of [0x%" PRIx64 ", 0x%" PRIx64 "]: %s [0x%" PRIx64
				", 0x%" PRIx64 "]",
				r->iova, last, why, a->iova, a->last);
		else
			dme_err("sim: unmap of [0x%" PRIx64 ", 0x%" PRIx64 "]: %s", r->iova, last,
				why);
		return -ENOENT;
	}
	for (uint64_t at = r->iova;;) {
		a = area_floor(s, at);
		uint64_t a_last = a->last;
		area_destroy(s, a);
		if (a_last == last)
			break;
		at = a_last + 1;
	}
	return 0;
}

/* ---- fault injection ------------------------------------------------------ */

static int inject_fire(struct dme_sim *s, enum dme_sim_op op, bool call, size_t idx)
{
	struct inject *j = &s->inj[op];
	uint64_t *left = call ? &j->call_left : &j->req_left;
	if (!*left || --*left)
		return 0;
	int err = call ? j->call_err : j->req_err;
	s->st.injected++;
	if (call)
		dme_err("sim: injected error %d (%s) into this %s call", err, strerror(-err),
			op_names[op]);
	else
		dme_err("sim: injected error %d (%s) into %s request %zu", err, strerror(-err),
			op_names[op], idx);
	return err;
}

static int inject_arm(struct dme_sim *s, enum dme_sim_op op, uint64_t nth, int err, bool call)
{
	if ((unsigned)op >= DME_SIM_NR_OPS || (nth && (err >= 0 || err < -4095))) {
		dme_err(
		    "sim: cannot inject error %d into op %d: want a DME_SIM_OP_* and a negative "
		    "errno",
		    err, (int)op);
		return -EINVAL;
	}
	struct inject *j = &s->inj[op];
	if (call) {
		j->call_left = nth;
		j->call_err = err;
	} else {
		j->req_left = nth;
		j->req_err = err;
	}
	return 0;
}

/* ---- backend ops ----------------------------------------------------------- */

static int sim_geometry(void *be, struct be_geometry *geo)
{
	struct dme_sim *s = be;
	memset(geo, 0, sizeof(*geo));
	geo->nr_ranges = 0;
	for (size_t i = 0; i < s->nr_ranges; i++) {
		struct dme_iova_range r = s->ranges[i], v = s->attach_rsv;
		if (!(s->has_rsv && s->nr_devs) || v.last < r.start || v.start > r.last) {
			geo->ranges[geo->nr_ranges++] = r;
			continue;
		}
		/* cut the device's reserved region out of this range */
		if (v.start > r.start)
			geo->ranges[geo->nr_ranges++] = (struct dme_iova_range){r.start, v.start - 1};
		if (v.last < r.last)
			geo->ranges[geo->nr_ranges++] = (struct dme_iova_range){v.last + 1, r.last};
	}
	geo->alignment = s->alignment;
	geo->max_entries = s->max_entries;
	geo->max_entries_src = "the simulator's entry limit (dme_sim_params.max_entries)";
	geo->pgsize_bitmap = level_size(1);
	for (unsigned lv = 2; !s->no_large && lv <= MAX_LEAF_LEVEL && lv <= s->levels; lv++)
		geo->pgsize_bitmap |= level_size(lv);
	geo->has_copy = true;
	geo->ready = !s->needs_attach || s->nr_devs > 0;
	return 0;
}

static int sim_map(void *be, const struct be_map *reqs, size_t n, size_t *done)
{
	struct dme_sim *s = be;
	int ret;
	size_t i = 0;
	s->st.map_calls++;
	ret = inject_fire(s, DME_SIM_OP_MAP, true, 0);
	if (ret)
		goto out;
	for (; i < n; i++) {
		s->st.map_requests++;
		ret = inject_fire(s, DME_SIM_OP_MAP, false, i);
		if (!ret)
			ret = map_one(s, &reqs[i]);
		if (ret) {
			s->st.failed_requests++;
			goto out;
		}
	}
out:
	*done = i;
	return ret;
}

static int sim_unmap(void *be, const struct be_unmap *reqs, size_t n, size_t *done)
{
	struct dme_sim *s = be;
	int ret;
	size_t i = 0;
	s->st.unmap_calls++;
	ret = inject_fire(s, DME_SIM_OP_UNMAP, true, 0);
	if (ret)
		goto out;
	for (; i < n; i++) {
		s->st.unmap_requests++;
		ret = inject_fire(s, DME_SIM_OP_UNMAP, false, i);
		if (!ret)
			ret = unmap_one(s, &reqs[i]);
		if (ret) {
			s->st.failed_requests++;
			goto out;
		}
	}
out:
	*done = i;
	return ret;
}

/*
 * Copy: like IOAS_COPY, the source range (any sub-range of mappings, without
 * gaps) is mapped again at dst_iova of @dstv, one area per source area it
 * touches, sharing the same memory. All or nothing.
 */
static int sim_copy(void *be, void *dstv, uint64_t src_iova, uint64_t dst_iova, uint64_t len,
		    unsigned prot)
{
	struct dme_sim *s = be, *d = dstv;
	int ret;
	s->st.copy_calls++;
	ret = inject_fire(s, DME_SIM_OP_COPY, true, 0);
	if (!ret)
		ret = inject_fire(s, DME_SIM_OP_COPY, false, 0);
	if (ret)
		goto err;
	ret = -EINVAL;
	if (!d || !len || (src_iova & (s->alignment - 1)))
		goto err_msg;
	uint64_t src_last = src_iova + len - 1;
	ret = -EOVERFLOW;
	if (src_last < src_iova)
		goto err_msg;

	/* the source must be mapped without gaps; count its pieces */
	uint64_t pieces = 0, at = src_iova;
	for (;;) {
		struct area *a = area_at(s, at);
		ret = -ENOENT;
		if (!a)
			goto err_msg;
		ret = -EPERM;
		if ((prot & PTE_W) && !(a->prot & PTE_W))
			goto err_msg;
		pieces++;
		if (a->last >= src_last)
			break;
		at = a->last + 1;
	}
	ret = check_new(d, dst_iova, len, prot, pieces, "copy");
	if (ret)
		goto err;

	for (at = src_iova; at <= src_last;) {
		struct area *a = area_at(s, at);
		uint64_t piece_last = a->last < src_last ? a->last : src_last;
		ret = area_create(d, dst_iova + (at - src_iova), a->va + (at - a->iova),
				  piece_last - at + 1, prot);
		if (ret)
			goto err_unwind;
		if (piece_last == src_last)
			break;
		at = piece_last + 1;
	}
	return 0;

err_unwind:
	for (uint64_t u = src_iova; u < at;) {
		struct area *a = area_at(d, dst_iova + (u - src_iova));
		u += a->last - a->iova + 1;
		area_destroy(d, a);
	}
	goto err;
err_msg:
	dme_err("sim: copy of [0x%" PRIx64 ", +0x%" PRIx64 ") to IOVA 0x%" PRIx64 " failed: %s",
		src_iova, len, dst_iova,
		ret == -ENOENT	? "the source is not mapped without gaps"
		: ret == -EPERM ? "a source mapping is not writable"
				: "bad range or destination");
err:
	s->st.failed_requests++;
	return ret;
}

static int sim_attach(void *be, const char *dev)
{
	struct dme_sim *s = be;
	s->st.attach_calls++;
	int ret = inject_fire(s, DME_SIM_OP_ATTACH, true, 0);
	if (!ret)
		ret = inject_fire(s, DME_SIM_OP_ATTACH, false, 0);
	if (ret)
		return ret;
	if (!dev || !*dev) {
		dme_err("sim: attach needs a device name");
		return -EINVAL;
	}
	if (s->has_rsv && !s->nr_devs) {
		/* like iommufd: a device whose reserved region holds mappings
		 * cannot be attached */
		struct area *a = area_floor(s, s->attach_rsv.last);
		if (a && a->last >= s->attach_rsv.start) {
			dme_err("sim: %s reserves [0x%" PRIx64 ", 0x%" PRIx64 "] which holds mappings",
				dev, s->attach_rsv.start, s->attach_rsv.last);
			return -EADDRINUSE;
		}
	}
	for (size_t i = 0; i < s->nr_devs; i++) {
		if (!strcmp(s->devs[i], dev)) {
			dme_err("sim: device %s is already attached", dev);
			return -EBUSY;
		}
	}
	if (s->nr_devs == s->cap_devs) {
		size_t cap = s->cap_devs ? 2 * s->cap_devs : 4;
		char **n = realloc(s->devs, cap * sizeof(*n));
		if (!n)
			goto err_nomem;
		s->devs = n;
		s->cap_devs = cap;
	}
	char *name = strdup(dev);
	if (!name)
		goto err_nomem;
	s->devs[s->nr_devs++] = name;
	return 0;
err_nomem:
	dme_err("sim: out of memory attaching %s", dev);
	return -ENOMEM;
}

static int sim_detach(void *be, const char *dev)
{
	struct dme_sim *s = be;
	s->st.detach_calls++;
	int ret = inject_fire(s, DME_SIM_OP_DETACH, true, 0);
	if (!ret)
		ret = inject_fire(s, DME_SIM_OP_DETACH, false, 0);
	if (ret)
		return ret;
	for (size_t i = 0; dev && i < s->nr_devs; i++) {
		if (!strcmp(s->devs[i], dev)) {
			free(s->devs[i]);
			memmove(&s->devs[i], &s->devs[i + 1],
				(s->nr_devs - i - 1) * sizeof(char *));
			s->nr_devs--;
			return 0;
		}
	}
	dme_err("sim: detach of %s: no such device is attached", dev ? dev : "(null)");
	return -ENOENT;
}

static int sim_sibling(void *be, const struct dme_config *cfg, void **out)
{
	struct dme_sim *s = be;
	(void)cfg;
	struct dme_sim_params p = {.addr_width = s->aw, .max_entries = s->max_entries,
				   .alignment = s->alignment, .ranges = s->ranges,
				   .nr_ranges = s->nr_ranges, .fault_log = s->flog_cap,
				   .no_large_pages = s->no_large, .needs_attach = s->needs_attach,
				   .attach_reserved = s->attach_rsv,
				   .has_attach_reserved = s->has_rsv};
	return dme_sim_open(&p, out);
}

static void sim_close(void *be)
{
	dme_sim_close(be);
}

/* Clip the allowed ranges to the window of DME_ALLOW_IOVAS. */
static int apply_window(struct dme_sim *s, uint64_t start, uint64_t last)
{
	size_t n = 0;
	for (size_t i = 0; i < s->nr_ranges; i++) {
		struct dme_iova_range r = s->ranges[i];
		if (r.last < start || r.start > last)
			continue;
		r.start = r.start > start ? r.start : start;
		r.last = r.last < last ? r.last : last;
		s->ranges[n++] = r;
	}
	s->nr_ranges = n;
	if (!n) {
		dme_err("sim: allowed IOVA window [0x%" PRIx64 ", 0x%" PRIx64
			"] leaves no usable range",
			start, last);
		return -EINVAL;
	}
	return 0;
}

static int sim_open(const struct dme_config *cfg, void **be)
{
	void *h;
	int ret = dme_sim_open(NULL, &h);
	if (ret)
		return ret;
	struct dme_sim *s = h;
	if (cfg && cfg->allow_iovas_set) {
		ret = apply_window(s, cfg->allow_iova_start, cfg->allow_iova_last);
		if (ret)
			goto err_close;
	}
	for (unsigned i = 0; cfg && i < cfg->nr_devices; i++) {
		ret = sim_attach(s, cfg->devices[i]);
		if (ret)
			goto err_close;
	}
	*be = s;
	return 0;
err_close:
	dme_sim_close(s);
	return ret;
}

const struct be_ops be_sim_ops = {
    .name = "sim",
    .open = sim_open,
    .sibling = sim_sibling,
    .geometry = sim_geometry,
    .map = sim_map,
    .unmap = sim_unmap,
    .copy = sim_copy,
    .attach = sim_attach,
    .detach = sim_detach,
    .va_to_pa = NULL,
    .close = sim_close,
};

/* ---- the device ------------------------------------------------------------ */

static const char *const reason_names[] = {
    [DME_SIM_FAULT_NOT_PRESENT] = "not-present", [DME_SIM_FAULT_READ_ONLY] = "read-only",
    [DME_SIM_FAULT_WRITE_ONLY] = "write-only",	 [DME_SIM_FAULT_ADDRESS] = "address-width",
    [DME_SIM_FAULT_BAD_VA] = "bad-va",
};

DME_EXPORT const char *dme_sim_fault_reason_name(enum dme_sim_fault_reason reason)
{
	if ((unsigned)reason < ARRAY_SIZE(reason_names) && reason_names[reason])
		return reason_names[reason];
	return "unknown";
}

static void record_fault(struct dme_sim *s, uint64_t iova, enum dme_sim_access acc,
			 enum dme_sim_fault_reason why)
{
	atomic_fetch_add_explicit(&s->faults, 1, memory_order_relaxed);
	pthread_mutex_lock(&s->fault_lock);
	unsigned slot = (s->flog_head + s->flog_n) % s->flog_cap;
	s->flog[slot] = (struct dme_sim_fault){iova, acc, why};
	if (s->flog_n < s->flog_cap)
		s->flog_n++;
	else
		s->flog_head = (s->flog_head + 1) % s->flog_cap;
	pthread_mutex_unlock(&s->fault_lock);
	dme_warn("sim: DMA %s fault at IOVA 0x%" PRIx64 ": %s",
		 acc == DME_SIM_ACCESS_WRITE ? "write" : "read", iova,
		 dme_sim_fault_reason_name(why));
}

/* 1: process_vm_{readv,writev} on our own pid works; -1: use memcpy. */
static _Atomic int pvm_mode;

static int pvm_probe(void)
{
	int m = atomic_load_explicit(&pvm_mode, memory_order_relaxed);
	if (m)
		return m;
	uint64_t src = 0x5eed, dst = 0;
	struct iovec l = {&dst, sizeof(dst)}, r = {&src, sizeof(src)};
	m = process_vm_readv(getpid(), &l, 1, &r, 1, 0) == sizeof(dst) && dst == src ? 1 : -1;
	atomic_store_explicit(&pvm_mode, m, memory_order_relaxed);
	return m;
}

/* Copy between the device buffer and process memory; false if the VA is gone. */
static bool mem_xfer(void *dev, uint64_t va, size_t n, bool to_memory)
{
	if (pvm_probe() < 0) {
		if (to_memory)
			memcpy((void *)(uintptr_t)va, dev, n);
		else
			memcpy(dev, (const void *)(uintptr_t)va, n);
		return true;
	}
	struct iovec l = {dev, n}, r = {(void *)(uintptr_t)va, n};
	ssize_t got = to_memory ? process_vm_writev(getpid(), &l, 1, &r, 1, 0)
				: process_vm_readv(getpid(), &l, 1, &r, 1, 0);
	return got == (ssize_t)n;
}

static int dma(struct dme_sim *s, uint64_t iova, void *buf, size_t len, enum dme_sim_access acc)
{
	if (!len)
		return 0;
	if (iova + len - 1 < iova) {
		dme_err("sim: DMA of %zu bytes at IOVA 0x%" PRIx64 " wraps", len, iova);
		return -EINVAL;
	}
	unsigned need = acc == DME_SIM_ACCESS_WRITE ? DME_SIM_PROT_WRITE : DME_SIM_PROT_READ;
	size_t done = 0;
	while (done < len) {
		uint64_t at = iova + done;
		struct dme_sim_walk w;
		enum dme_sim_fault_reason why = 0;
		if (at >> s->aw)
			why = DME_SIM_FAULT_ADDRESS;
		else if (pt_walk(s, at, &w))
			why = DME_SIM_FAULT_NOT_PRESENT;
		else if (!(w.prot & need))
			why = acc == DME_SIM_ACCESS_WRITE ? DME_SIM_FAULT_READ_ONLY
							  : DME_SIM_FAULT_WRITE_ONLY;
		size_t n = 0;
		if (!why) {
			uint64_t in_page = w.page_size - (at & (w.page_size - 1));
			n = len - done < in_page ? len - done : (size_t)in_page;
			if (!mem_xfer((char *)buf + done, w.va, n, acc == DME_SIM_ACCESS_WRITE))
				why = DME_SIM_FAULT_BAD_VA;
		}
		if (why) {
			record_fault(s, at, acc, why);
			return -EFAULT;
		}
		done += n;
	}
	atomic_fetch_add_explicit(acc == DME_SIM_ACCESS_WRITE ? &s->dma_writes : &s->dma_reads, 1,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&s->dma_bytes, len, memory_order_relaxed);
	return 0;
}

DME_EXPORT int dme_sim_dma_read(struct dme_sim *sim, uint64_t iova, void *buf, size_t len)
{
	return dma(sim, iova, buf, len, DME_SIM_ACCESS_READ);
}

DME_EXPORT int dme_sim_dma_write(struct dme_sim *sim, uint64_t iova, const void *buf, size_t len)
{
	/* the buffer is only read from: mem_xfer copies towards memory */
	return dma(sim, iova, (void *)(uintptr_t)buf, len, DME_SIM_ACCESS_WRITE);
}

DME_EXPORT size_t dme_sim_faults(struct dme_sim *sim, struct dme_sim_fault *out, size_t max,
				 bool clear)
{
	pthread_mutex_lock(&sim->fault_lock);
	size_t n = sim->flog_n;
	for (size_t i = 0; i < n && i < max; i++)
		out[i] = sim->flog[(sim->flog_head + i) % sim->flog_cap];
	if (clear)
		sim->flog_head = sim->flog_n = 0;
	pthread_mutex_unlock(&sim->fault_lock);
	return n;
}

DME_EXPORT int dme_sim_walk(struct dme_sim *sim, uint64_t iova, struct dme_sim_walk *w)
{
	struct dme_sim_walk tmp;
	if (iova >> sim->aw || pt_walk(sim, iova, &tmp))
		return -ENOENT;
	*w = tmp;
	return 0;
}

DME_EXPORT int dme_sim_translate(struct dme_sim *sim, uint64_t iova, uint64_t *va, unsigned *prot)
{
	struct dme_sim_walk w;
	int ret = dme_sim_walk(sim, iova, &w);
	if (ret)
		return ret;
	*va = w.va;
	if (prot)
		*prot = w.prot;
	return 0;
}

/* ---- public control functions ---------------------------------------------- */

DME_EXPORT int dme_sim_inject(struct dme_sim *sim, enum dme_sim_op op, uint64_t nth, int err)
{
	return inject_arm(sim, op, nth, err, false);
}

DME_EXPORT int dme_sim_inject_call(struct dme_sim *sim, enum dme_sim_op op, uint64_t nth, int err)
{
	return inject_arm(sim, op, nth, err, true);
}

DME_EXPORT void dme_sim_inject_clear(struct dme_sim *sim)
{
	memset(sim->inj, 0, sizeof(sim->inj));
}

DME_EXPORT void dme_sim_stats(struct dme_sim *sim, struct dme_sim_stats *st)
{
	*st = sim->st;
	st->live_mappings = sim->nr_areas;
	st->faults = atomic_load_explicit(&sim->faults, memory_order_relaxed);
	st->dma_reads = atomic_load_explicit(&sim->dma_reads, memory_order_relaxed);
	st->dma_writes = atomic_load_explicit(&sim->dma_writes, memory_order_relaxed);
	st->dma_bytes = atomic_load_explicit(&sim->dma_bytes, memory_order_relaxed);
	st->levels = sim->levels;
	st->addr_width = sim->aw;
}

DME_EXPORT size_t dme_sim_devices(struct dme_sim *sim, const char **names, size_t max)
{
	for (size_t i = 0; i < sim->nr_devs && i < max; i++)
		names[i] = sim->devs[i];
	return sim->nr_devs;
}

/* ---- consistency check ------------------------------------------------------ */

struct census {
	uint64_t leaves[DME_SIM_MAX_LEVELS + 1], tables[DME_SIM_MAX_LEVELS + 1];
	uint64_t bytes;
};

static void census_table(const pte_t *t, unsigned lv, struct census *c)
{
	c->tables[lv]++;
	for (unsigned i = 0; i < PT_ENTRIES; i++) {
		uint64_t v = atomic_load_explicit(&t[i], memory_order_relaxed);
		if (!v)
			continue;
		if (pte_is_leaf(v, lv)) {
			c->leaves[lv]++;
			c->bytes += level_size(lv);
		} else {
			census_table(pte_table(v), lv - 1, c);
		}
	}
}

static int check_areas(struct dme_sim *s, struct avl_node *n, const struct area **prev,
		       uint64_t *count)
{
	if (!n)
		return 0;
	const struct area *a = area_of(n);
	int hl = n->l ? n->l->h : 0, hr = n->r ? n->r->h : 0;
	if (n->h != 1 + (hl > hr ? hl : hr) || hl - hr > 1 || hr - hl > 1 || n->key != a->iova) {
		dme_err("sim check: AVL height or key broken at area 0x%" PRIx64, a->iova);
		return -EUCLEAN;
	}
	int ret = check_areas(s, n->l, prev, count);
	if (ret)
		return ret;
	if (a->last < a->iova || (*prev && (*prev)->last >= a->iova)) {
		dme_err("sim check: area [0x%" PRIx64 ", 0x%" PRIx64
			"] out of order or overlapping",
			a->iova, a->last);
		return -EUCLEAN;
	}
	*prev = a;
	(*count)++;
	for (uint64_t at = a->iova; at - 1 != a->last;) {
		struct dme_sim_walk w;
		if (pt_walk(s, at, &w) || w.va != a->va + (at - a->iova) || w.prot != a->prot ||
		    (at & (w.page_size - 1)) || at + w.page_size - 1 > a->last) {
			dme_err("sim check: IOVA 0x%" PRIx64 " of area [0x%" PRIx64 ", 0x%" PRIx64
				"] is missing, wrong or spills out of its area",
				at, a->iova, a->last);
			return -EUCLEAN;
		}
		at += w.page_size;
		if (!at)
			break;
	}
	return check_areas(s, n->r, prev, count);
}

DME_EXPORT int dme_sim_check(struct dme_sim *sim)
{
	const struct area *prev = NULL;
	uint64_t count = 0;
	int ret = check_areas(sim, sim->areas.root, &prev, &count);
	if (ret)
		return ret;
	if (count != sim->nr_areas ||
	    sim->st.mappings_created - sim->st.mappings_removed != sim->nr_areas) {
		dme_err("sim check: %" PRIu64 " areas in the tree, %" PRIu64 " counted", count,
			sim->nr_areas);
		return -EUCLEAN;
	}
	struct census c = {0};
	census_table(sim->root, sim->levels, &c);
	if (c.bytes != sim->st.live_bytes) {
		dme_err("sim check: leaves map %" PRIu64 " bytes, areas %" PRIu64, c.bytes,
			sim->st.live_bytes);
		return -EUCLEAN;
	}
	for (unsigned lv = 1; lv <= sim->levels; lv++) {
		if (c.leaves[lv] != sim->st.leaf_entries[lv] ||
		    c.tables[lv] != sim->st.tables[lv]) {
			dme_err("sim check: level %u holds %" PRIu64 " leaves in %" PRIu64
				" tables, counters say %" PRIu64 " in %" PRIu64,
				lv, c.leaves[lv], c.tables[lv], sim->st.leaf_entries[lv],
				sim->st.tables[lv]);
			return -EUCLEAN;
		}
	}
	return 0;
}

/* ---- open / close ------------------------------------------------------------ */

static const struct dme_iova_range vtd_hole_below = {0, 0xfedfffffull};
#define VTD_ABOVE_HOLE 0xfef00000ull

static int set_ranges(struct dme_sim *s, const struct dme_sim_params *p)
{
	uint64_t top = (1ull << s->aw) - 1;
	if (!p || !p->ranges) {
		s->ranges[0] = vtd_hole_below;
		s->ranges[1] = (struct dme_iova_range){VTD_ABOVE_HOLE, top};
		s->nr_ranges = 2;
		return 0;
	}
	if (!p->nr_ranges || p->nr_ranges > DME_SIM_MAX_RANGES) {
		dme_err("sim: %zu allowed ranges given; want 1 to %d", p->nr_ranges,
			DME_SIM_MAX_RANGES);
		return -EINVAL;
	}
	s->nr_ranges = 0;
	for (size_t i = 0; i < p->nr_ranges; i++) {
		struct dme_iova_range r = p->ranges[i];
		if (r.last < r.start || r.last > top || (r.start & (s->alignment - 1)) ||
		    ((r.last + 1) & (s->alignment - 1)) ||
		    (i && r.start <= p->ranges[i - 1].last)) {
			dme_err("sim: allowed range %zu [0x%" PRIx64 ", 0x%" PRIx64
				"] is empty, misaligned, unsorted, overlapping or beyond %u bits",
				i, r.start, r.last, s->aw);
			return -EINVAL;
		}
		/* adjacent ranges are one range: mappings may span the seam */
		if (s->nr_ranges && s->ranges[s->nr_ranges - 1].last + 1 == r.start)
			s->ranges[s->nr_ranges - 1].last = r.last;
		else
			s->ranges[s->nr_ranges++] = r;
	}
	return 0;
}

DME_EXPORT int dme_sim_open(const struct dme_sim_params *p, void **be)
{
	unsigned aw = p && p->addr_width ? p->addr_width : 39;
	uint64_t align = p && p->alignment ? p->alignment : PT_SIZE;
	int ret = -EINVAL;
	if (aw != 39 && aw != 48 && aw != 57) {
		dme_err("sim: address width %u is not supported; expected 39, 48 or 57", aw);
		return -EINVAL;
	}
	if (!is_pow2(align) || align < PT_SIZE || align > level_size(MAX_LEAF_LEVEL)) {
		dme_err("sim: IOVA alignment 0x%" PRIx64 " must be a power of two in [4K, 1G]",
			align);
		return -EINVAL;
	}
	struct dme_sim *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->aw = aw;
	s->levels = (aw - PT_SHIFT) / PT_BITS;
	s->alignment = align;
	s->max_entries = p ? p->max_entries : 0;
	s->no_large = p && p->no_large_pages;
	s->needs_attach = p && p->needs_attach;
	s->has_rsv = p && p->has_attach_reserved;
	if (s->has_rsv)
		s->attach_rsv = p->attach_reserved;
	ret = set_ranges(s, p);
	if (ret)
		goto err_free;
	s->flog_cap = p && p->fault_log ? p->fault_log : DEFAULT_FAULT_LOG;
	ret = -ENOMEM;
	s->flog = calloc(s->flog_cap, sizeof(*s->flog));
	if (!s->flog)
		goto err_free;
	s->root = table_alloc(s, s->levels);
	if (!s->root)
		goto err_free_log;
	ret = pthread_mutex_init(&s->fault_lock, NULL);
	if (ret) {
		ret = -ret;
		goto err_free_root;
	}
	*be = s;
	return 0;
err_free_root:
	free(s->root);
err_free_log:
	free(s->flog);
err_free:
	if (ret == -ENOMEM)
		dme_err("sim: out of memory opening a sim");
	free(s);
	return ret;
}

DME_EXPORT void dme_sim_close(struct dme_sim *sim)
{
	if (!sim)
		return;
	while (sim->areas.root) {
		struct area *a = area_of(sim->areas.root);
		avl_remove(&sim->areas, &a->node);
		free(a);
	}
	table_free_all(sim->root, sim->levels);
	for (size_t i = 0; i < sim->nr_retired; i++)
		free(sim->retired[i]);
	free(sim->retired);
	for (size_t i = 0; i < sim->nr_devs; i++)
		free(sim->devs[i]);
	free(sim->devs);
	free(sim->flog);
	pthread_mutex_destroy(&sim->fault_lock);
	free(sim);
}
