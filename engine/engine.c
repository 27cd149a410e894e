/* SPDX-License-Identifier: MIT */
/*
 * engine.c - the mapping engine: registry, batching, lazy unmap, budget.
 *
 * Objects. A region is one backend mapping: [va, va+len) at [iova, +len)
 * with permissions, and the exact ranges of the registrations on it. It is
 * in exactly one state:
 *   ACTIVE  - registered (refs > 0) or DMA memory (owned), in the VA index
 *             and the translation table;
 *   IDLE    - refs == 0, still mapped and indexed, on the LRU list; only
 *             DMA memory or a range the memory monitor watches;
 *   PENDING - evicted: out of the indexes and the translation table, still
 *             mapped, its IOVA freed into the allocator's quarantine; it
 *             waits for the batched unmap, after which the quarantine epoch
 *             is released.
 * A region whose backend is not ready yet (no device attached on a backend
 * that needs one) is ACTIVE or IDLE with mapped == false; attach replays it.
 *
 * Invariants (dme_engine_check()):
 *   - regions in the VA index are disjoint; every byte of an ACTIVE or
 *     IDLE region translates to its IOVA; nothing else translates; no two
 *     mappings share an IOVA;
 *   - refs == the sum of the registration counts; ACTIVE iff refs or owned;
 *   - map_calls - unmap_calls == number of mapped regions;
 *   - pinned_bytes == the sum of the lengths of mapped regions.
 *
 * Locking, in this order: engines_lock (the list of open engines, fork) ->
 * engine locks in address order (dme_share, fork_prepare) -> e->lock ->
 * the monitor's queue lock, the allocator's locks, the log hook's lock.
 * e->lock serialises everything but the lock-free translation (xlate)
 * readers; backend ops run under it (backend.h). The monitor's reader
 * thread never takes e->lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <dme/engine.h>
#include <dme/mem.h>
#include <dme/sim.h>

#include "avl.h"
#include "backend.h"
#include "internal.h"
#include "compiler.h"
#include "log_internal.h"
#include "monitor.h"
#include "xlate.h"

enum { R_ACTIVE, R_IDLE, R_PENDING };

/*
 * One registration's exact range, relative to its region, and how many
 * times it was registered. dme_unregister() drops a reference only for a
 * range that matches one of these exactly.
 */
struct ref {
	uint64_t off, len;
	uint32_t count;
};

#define REF_INLINE 2	/* references held without an allocation */

struct region {
	struct avl_node by_va;	 /* key: va */
	uint64_t va, len, iova;
	uint64_t page_size;
	unsigned prot;		 /* BE_PROT_* */
	uint32_t refs;		 /* sum of refv[].count */
	uint32_t nref, cref;	 /* references used / room in refv */
	struct ref *refv;	 /* inl, or an allocation when cref > REF_INLINE */
	struct ref inl[REF_INLINE];
	uint32_t want;		 /* batch scratch: references the batch may add */
	uint8_t state;
	bool mapped;		 /* the backend holds it */
	bool owned;		 /* DMA memory of dme_dma_alloc(): dme owns the VA range */
	bool watched;		 /* the memory monitor reports changes to its VA range */
	bool stale;		 /* its VA range changed (unmapped, remapped, dropped) */
	bool doomed;		 /* batch scratch: evicted if the batch succeeds */
	bool unwatchable;	 /* the monitor refused its range once */
	int fd;
	uint64_t fd_off;
	uint64_t epoch;		 /* PENDING: quarantine epoch of its IOVA */
	struct region *prev, *next; /* LRU (IDLE) or pending list */
};

struct rlist {
	struct region head;
	uint64_t n, bytes;
};

/* A live dme_dma_alloc() allocation, as handed out (dme_dma_free() checks it). */
struct dma_rec {
	struct dme_dma_mem d;
	struct dma_rec *next;
};

struct dme_engine {
	pthread_mutex_t lock;
	const struct be_ops *ops;
	void *be;
	struct dme_config cfg;
	struct be_geometry geo;
	struct dme_iova_space *iova;
	struct xlate xlate;
	struct avl by_va;
	struct rlist lru, pending;
	uint64_t entry_limit;	/* map entries the engine may hold */
	const char *entry_limit_src; /* the backend's limit when it is the lower one, else NULL */
	uint64_t idle_budget;	/* idle bytes kept mapped */
	/* reservations that narrow the allocator to the current geometry */
	struct dme_iova_range *geo_rsv;
	size_t nr_geo_rsv;
	uint64_t orphans;	/* mappings a failed undo could not remove */
	uint64_t epoch;		/* the allocator's open quarantine epoch */
	uint64_t family;	/* engines with equal family share a backend instance */
	struct dma_rec *dma;	/* live dme_dma_alloc() allocations */
	struct monitor *mon;	/* the memory monitor, NULL when none runs */
	uint64_t nwatched;	/* regions the monitor watches (<= WATCH_MAX) */
	bool forked;		/* this is a fork()ed child's copy of the engine */
	struct dme_engine *next_engine; /* every open engine (fork handling) */
	struct dme_engine_stats st;
};

static inline struct region *va_region(struct avl_node *n)
{
	return n ? container_of(n, struct region, by_va) : NULL;
}

/* ---------------------------------------------------------------------- */
/* Every open engine, for fork()                                          */

/*
 * fork() copies an engine, but not the threads inside it: a lock another
 * thread held would stay held in the child forever. The prepare handler
 * takes every engine's lock, so the child starts with each engine in a
 * consistent state and its locks free. The memory monitor's thread stays in
 * the parent: in the child no caller memory is watched, so mappings of
 * caller memory are no longer served to a registration that no live one
 * covers. The kernel objects (descriptors, IO address space) are the
 * parent's: see docs/engine.md for what a child may do.
 */
static pthread_mutex_t engines_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dme_engine *engines;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t next_family = 1;

static void fork_prepare(void)
{
	pthread_mutex_lock(&engines_lock);
	for (struct dme_engine *e = engines; e; e = e->next_engine)
		pthread_mutex_lock(&e->lock);
}

static void fork_parent(void)
{
	for (struct dme_engine *e = engines; e; e = e->next_engine)
		pthread_mutex_unlock(&e->lock);
	pthread_mutex_unlock(&engines_lock);
}

static void fork_child(void)
{
	for (struct dme_engine *e = engines; e; e = e->next_engine) {
		e->forked = true;
		e->mon = NULL;	/* the reader thread stayed in the parent */
		e->nwatched = 0;
		for (struct avl_node *a = avl_first(&e->by_va); a; a = avl_next(&e->by_va, a->key)) {
			struct region *r = va_region(a);
			r->watched = false;
			if (r->state == R_IDLE && !r->owned)
				r->stale = true;	/* never a hit again */
		}
		pthread_mutex_unlock(&e->lock);
	}
	pthread_mutex_unlock(&engines_lock);
}

static void atfork_install(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void engine_list_add(struct dme_engine *e)
{
	pthread_once(&atfork_once, atfork_install);
	pthread_mutex_lock(&engines_lock);
	/* kept in address order: fork_prepare() then locks engines in the
	 * order dme_share() does */
	struct dme_engine **pp = &engines;
	while (*pp && *pp < e)
		pp = &(*pp)->next_engine;
	e->next_engine = *pp;
	*pp = e;
	pthread_mutex_unlock(&engines_lock);
}

static void engine_list_del(struct dme_engine *e)
{
	pthread_mutex_lock(&engines_lock);
	struct dme_engine **pp = &engines;
	while (*pp && *pp != e)
		pp = &(*pp)->next_engine;
	if (*pp)
		*pp = e->next_engine;
	pthread_mutex_unlock(&engines_lock);
}

/* ---------------------------------------------------------------------- */
/* Lists                                                                  */

static void rlist_init(struct rlist *l)
{
	l->head.prev = l->head.next = &l->head;
	l->n = l->bytes = 0;
}

static void rlist_add_tail(struct rlist *l, struct region *r)
{
	r->prev = l->head.prev;
	r->next = &l->head;
	l->head.prev->next = r;
	l->head.prev = r;
	l->n++;
	l->bytes += r->len;
}

static void rlist_del(struct rlist *l, struct region *r)
{
	r->prev->next = r->next;
	r->next->prev = r->prev;
	r->prev = r->next = NULL;
	l->n--;
	l->bytes -= r->len;
}


/* ---------------------------------------------------------------------- */
/* Backend calls, in chunks of cfg.map_batch                              */

static int be_map_chunked(struct dme_engine *e, const struct be_map *m, size_t n, size_t *done)
{
	size_t off = 0;
	while (off < n) {
		size_t chunk = n - off < e->cfg.map_batch ? n - off : e->cfg.map_batch, d = 0;
		int ret = e->ops->map(e->be, m + off, chunk, &d);
		e->st.map_calls += d;
		for (size_t i = 0; i < d; i++)
			e->st.bytes_mapped += m[off + i].len;
		off += d;
		if (ret) {
			*done = off;
			return ret;
		}
	}
	*done = n;
	return 0;
}

static int be_unmap_chunked(struct dme_engine *e, const struct be_unmap *u, size_t n, size_t *done)
{
	size_t off = 0;
	while (off < n) {
		size_t chunk = n - off < e->cfg.map_batch ? n - off : e->cfg.map_batch, d = 0;
		int ret = e->ops->unmap(e->be, u + off, chunk, &d);
		e->st.unmap_calls += d;
		off += d;
		if (ret) {
			*done = off;
			return ret;
		}
	}
	*done = n;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Regions and their references                                           */

static struct region *region_new(void)
{
	struct region *r = calloc(1, sizeof(*r));
	if (r) {
		r->refv = r->inl;
		r->cref = REF_INLINE;
		r->fd = -1;
	}
	return r;
}

static void region_free(struct region *r)
{
	if (r->refv != r->inl)
		free(r->refv);
	free(r);
}

/*
 * References are kept sorted by (off, len). An entry whose count fell to 0
 * stays as a tombstone until they are half the array, so unregistering the
 * buffers of a large batch one by one costs O(log n) each.
 */
static uint32_t ref_lower(const struct region *r, uint64_t off, uint64_t len)
{
	uint32_t lo = 0, hi = r->nref;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct ref *f = &r->refv[mid];
		if (f->off < off || (f->off == off && f->len < len))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct ref *ref_find(struct region *r, uint64_t off, uint64_t len)
{
	uint32_t i = ref_lower(r, off, len);
	if (i < r->nref && r->refv[i].off == off && r->refv[i].len == len && r->refv[i].count)
		return &r->refv[i];
	return NULL;
}

/* Room for @extra more distinct references, so ref_add() cannot fail. */
static int ref_reserve(struct region *r, uint32_t extra)
{
	if (r->nref + extra <= r->cref)
		return 0;
	uint32_t c = r->cref * 2 > r->nref + extra ? r->cref * 2 : r->nref + extra;
	struct ref *v = malloc(c * sizeof(*v));
	if (!v)
		return -ENOMEM;
	memcpy(v, r->refv, r->nref * sizeof(*v));
	if (r->refv != r->inl)
		free(r->refv);
	r->refv = v;
	r->cref = c;
	return 0;
}

static void ref_add(struct region *r, uint64_t va, uint64_t len)
{
	uint64_t off = va - r->va;
	uint32_t i = ref_lower(r, off, len);
	if (i < r->nref && r->refv[i].off == off && r->refv[i].len == len) {
		r->refv[i].count++;	/* maybe a tombstone coming back */
	} else {
		memmove(&r->refv[i + 1], &r->refv[i], (r->nref - i) * sizeof(*r->refv));
		r->refv[i] = (struct ref){off, len, 1};
		r->nref++;
	}
	r->refs++;
}

/* One registration of @f goes; compacts when tombstones are half the array. */
static void ref_drop(struct region *r, struct ref *f)
{
	f->count--;
	r->refs--;
	if (f->count || r->nref < 16)
		return;
	uint32_t live = 0;
	for (uint32_t i = 0; i < r->nref; i++)
		live += r->refv[i].count != 0;
	if (2 * live > r->nref)
		return;
	uint32_t k = 0;
	for (uint32_t i = 0; i < r->nref; i++)
		if (r->refv[i].count)
			r->refv[k++] = r->refv[i];
	r->nref = k;
}

/* Is [va, end) inside one live registration of @r? Buffers rarely nest, so
 * the registrations starting just before @va are looked at first. */
static bool ref_covers(const struct region *r, uint64_t va, uint64_t end)
{
	uint64_t off = va - r->va, last = end - r->va;
	uint32_t i = ref_lower(r, off, UINT64_MAX), seen = 0;
	while (i-- > 0 && seen++ < 16) {
		const struct ref *f = &r->refv[i];
		if (f->count && f->off + f->len >= last)
			return true;
	}
	if (seen < 16)
		return false;
	for (uint32_t j = 0; j < r->nref; j++) {
		const struct ref *f = &r->refv[j];
		if (f->count && f->off <= off && f->off + f->len >= last)
			return true;
	}
	return false;
}

/* ---------------------------------------------------------------------- */
/* Indexes                                                                */

static int region_publish(struct dme_engine *e, struct region *r)
{
	int ret = xlate_set(&e->xlate, r->va, r->len, r->iova, ilog2_u64(r->page_size));
	if (ret)
		return ret;
	r->by_va.key = r->va;
	avl_insert(&e->by_va, &r->by_va);
	return 0;
}

static void region_unpublish(struct dme_engine *e, struct region *r)
{
	xlate_clear(&e->xlate, r->va, r->len);
	avl_remove(&e->by_va, &r->by_va);
}

/* The region containing @va, if any. */
static struct region *region_at(struct dme_engine *e, uint64_t va)
{
	struct region *r = va_region(avl_floor(&e->by_va, va));
	return r && va - r->va < r->len ? r : NULL;
}

/* The first region overlapping [va, end), if any. */
static struct region *region_first_in(struct dme_engine *e, uint64_t va, uint64_t end)
{
	struct region *o = region_at(e, va);
	if (!o) {
		o = va_region(avl_next(&e->by_va, va));
		if (o && o->va >= end)
			o = NULL;
	}
	return o;
}

/* ---------------------------------------------------------------------- */
/* Lazy unmap                                                             */

/*
 * Watched ranges are capped: each may split a VMA in two, and a process has
 * vm.max_map_count of them (65530 by default) for everything it maps. A
 * range over the cap is not watched now; it may be when others are gone.
 */
#define WATCH_MAX 8192

static bool region_watch(struct dme_engine *e, struct region *r)
{
	if (r->watched || r->stale || r->unwatchable || r->owned || !e->mon)
		return r->watched;
	if (e->nwatched >= WATCH_MAX)
		return false;
	if (monitor_watch(e->mon, r->va, r->len)) {
		r->unwatchable = true;	/* do not try again for this mapping */
		return false;
	}
	r->watched = true;
	e->nwatched++;
	return true;
}

static void region_unwatch(struct dme_engine *e, struct region *r)
{
	if (!r->watched)
		return;
	monitor_unwatch(e->mon, r->va, r->len);
	r->watched = false;
	e->nwatched--;
}

/* Out of the indexes, IOVA into quarantine, onto the pending list. */
static void region_retire(struct dme_engine *e, struct region *r)
{
	region_unpublish(e, r);
	region_unwatch(e, r);
	e->st.evictions++;
	if (!r->mapped) {
		dme_iova_free(e->iova, r->iova, r->len);
		region_free(r);
		return;
	}
	/* cannot fail: the allocator handed out exactly this range */
	dme_iova_free_deferred(e->iova, r->iova, r->len);
	r->epoch = e->epoch;
	r->state = R_PENDING;
	rlist_add_tail(&e->pending, r);
}

/* IDLE -> PENDING. */
static void region_evict(struct dme_engine *e, struct region *r)
{
	rlist_del(&e->lru, r);
	region_retire(e, r);
}

static int cmp_region_iova(const void *a, const void *b)
{
	const struct region *x = *(struct region *const *)a, *y = *(struct region *const *)b;
	return x->iova < y->iova ? -1 : x->iova > y->iova;
}

/*
 * Unmap every PENDING region, then release the quarantine up to the oldest
 * epoch still pending. Regions adjacent in IOVA go in one unmap request (a
 * request may remove several whole mappings: IOAS_UNMAP, type1's UNMAP_DMA).
 * On a backend error the rest stay pending (still mapped, IOVAs still
 * quarantined) for the next flush.
 */
static int pending_flush(struct dme_engine *e)
{
	if (!e->pending.n)
		return 0;
	uint64_t sealed = dme_iova_seal(e->iova);
	e->epoch = sealed + 1;
	size_t n = e->pending.n, nu = 0, done = 0, i = 0, k;
	struct region **rs = malloc(n * sizeof(*rs));
	struct be_unmap *u = malloc(n * sizeof(*u));
	size_t *first = malloc((n + 1) * sizeof(*first));	/* regions of request j */
	if (!rs || !u || !first) {
		free(rs);
		free(u);
		free(first);
		return -ENOMEM;
	}
	for (struct region *r = e->pending.head.next; r != &e->pending.head; r = r->next)
		rs[i++] = r;
	qsort(rs, n, sizeof(*rs), cmp_region_iova);
	for (i = 0; i < n; i++) {
		if (nu && u[nu - 1].iova + u[nu - 1].len == rs[i]->iova) {
			u[nu - 1].len += rs[i]->len;
			u[nu - 1].nr_maps++;
			continue;
		}
		first[nu] = i;
		u[nu++] = (struct be_unmap){rs[i]->iova, rs[i]->len, 1};
	}
	first[nu] = n;
	int ret = be_unmap_chunked(e, u, nu, &done);
	for (k = 0; k < first[done]; k++) {
		rlist_del(&e->pending, rs[k]);
		e->st.pinned_bytes -= rs[k]->len;
		region_free(rs[k]);
	}
	/* unmap_calls counts mappings removed, so maps - unmaps == live */
	e->st.unmap_calls += first[done] - done;
	e->st.live_mappings -= first[done];
	free(rs);
	free(u);
	free(first);
	/* every region of an epoch older than the oldest still pending is unmapped */
	uint64_t release_to = sealed;
	if (e->pending.n) {
		uint64_t oldest = e->pending.head.next->epoch;
		for (struct region *r = e->pending.head.next; r != &e->pending.head; r = r->next)
			if (r->epoch < oldest)
				oldest = r->epoch;
		release_to = oldest ? oldest - 1 : UINT64_MAX;
	}
	if (release_to != UINT64_MAX)
		dme_iova_release(e->iova, release_to);
	if (ret)
		dme_err("engine: %zu of %zu unmaps failed (%s); they stay pending", n - k, n,
			strerror(-ret));
	return ret;
}

/* Keep idle mappings within the budget; flush when a batch is due. */
static int budget_enforce(struct dme_engine *e, uint64_t want_entries)
{
	while (e->lru.n && (e->lru.bytes > e->idle_budget ||
			    e->st.live_mappings + want_entries > e->entry_limit))
		region_evict(e, e->lru.head.next);
	if (e->pending.n >= e->cfg.map_batch ||
	    e->st.live_mappings + want_entries > e->entry_limit)
		return pending_flush(e);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Coherence with the address space                                       */

/*
 * The monitor reported that [va, va+len) changed: no mapping of it may be
 * handed out again. Idle ones are evicted; an active one is the caller's
 * bug (memory unmapped while registered): it is marked stale (never a hit
 * again, evicted when its last registration goes) and reported.
 */
static void range_changed(void *arg, uint64_t va, uint64_t len)
{
	struct dme_engine *e = arg;
	uint64_t end = va + len < va ? UINT64_MAX : va + len, va0 = va;
	struct region *r;
	while (va < end && (r = region_first_in(e, va, end))) {
		va = r->va + r->len;
		if (r->owned)
			continue;	/* dme's own memory: only dme unmaps it */
		if (r->state == R_IDLE) {
			region_evict(e, r);
		} else if (!r->stale) {
			bool live = false;	/* a caller bug only if a live one is hit */
			for (uint32_t i = 0; i < r->nref && !live; i++)
				live = r->refv[i].count && r->va + r->refv[i].off < end &&
				       r->va + r->refv[i].off + r->refv[i].len > va0;
			if (!live) {
				/* an unregistered part of the mapping changed: only
				 * live registrations may be served from it now */
				region_unwatch(e, r);
				r->unwatchable = true;
				continue;
			}
			r->stale = true;
			dme_warn("engine: memory of the registered buffer [0x%" PRIx64 ", +0x%" PRIx64 ") was unmapped or dropped while registered; its IOVA no longer reaches it",
				 r->va, r->len);
		}
	}
}

static void coherence_sync(struct dme_engine *e)
{
	if (e->mon && unlikely(monitor_pending(e->mon)))
		monitor_drain(e->mon, range_changed, e);
}

/*
 * The last registration of @r went. DMA memory and watched caller memory
 * stay mapped (IDLE); caller memory nobody watches could be unmapped and
 * replaced behind dme's back, so its mapping goes now.
 */
static int region_idle(struct dme_engine *e, struct region *r)
{
	region_watch(e, r);
	if (r->watched && !r->stale) {
		r->state = R_IDLE;
		rlist_add_tail(&e->lru, r);
	} else {
		region_retire(e, r);
	}
	/* the registration is gone whatever the flush does: a failed unmap is
	 * logged by pending_flush() and retried by the next one */
	budget_enforce(e, 0);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Registration: plan (no side effects) -> IOVAs -> map -> evict -> publish */

struct run {
	uint64_t va, len;
	unsigned prot;
	uint64_t page_size;
	uint64_t iova;
	uint64_t size;		/* len rounded up to the geometry's granule */
	uint32_t nreq;		/* requests of the batch that join it */
	struct region *r;
	int fd;
	uint64_t fd_off;
};

/* What the caller knows about the memory of a registration. */
struct mem_hint {
	uint64_t page_size;
	int fd;
	uint64_t fd_off;
	bool owned;		/* DMA memory from dme_dma_alloc() */
};

#define BATCH_INLINE 4	/* requests handled without an allocation */

/*
 * One registration call: its requests in VA order, the region each one hits
 * or the run it joins, the idle regions it replaces, and how far it got.
 * Every step records its progress here so a failure undoes exactly what
 * was done (batch_undo()).
 */
struct batch {
	struct dme_region_req *reqs;
	size_t n;
	const struct mem_hint *hint;
	size_t *order;		/* request indexes sorted by VA */
	size_t *run_of;		/* run of each request that does not hit */
	struct region **hit;	/* region each request hits, or NULL */
	struct run *runs;
	size_t nr, cap_runs;
	struct region **victims;	/* idle regions the new runs replace */
	size_t nvict, cap_vict;
	struct be_map *maps;
	size_t with_iova, mapped, with_region;
	bool held;		/* batch_hold() took its idle regions off the LRU */
	/* storage for small batches: a hit makes no allocation */
	size_t order_inl[BATCH_INLINE], run_of_inl[BATCH_INLINE];
	struct region *hit_inl[BATCH_INLINE], *vict_inl[BATCH_INLINE];
	struct run runs_inl[BATCH_INLINE];
	struct be_map maps_inl[BATCH_INLINE];
};

static unsigned prot_of(unsigned flags)
{
	return BE_PROT_READ | (flags & DME_MAP_WRITE ? BE_PROT_WRITE : 0);
}

static int cmp_req_va(const void *a, const void *b, void *arg)
{
	const struct dme_region_req *reqs = arg;
	const struct dme_region_req *p = &reqs[*(const size_t *)a], *q = &reqs[*(const size_t *)b];
	uint64_t x = (uintptr_t)p->va, y = (uintptr_t)q->va;
	if (x != y)
		return x < y ? -1 : 1;
	/* equal starts: the longer first, so the shorter nests inside its run;
	 * then the wider permissions first, so the narrower one shares it */
	if (p->len != q->len)
		return p->len > q->len ? -1 : 1;
	unsigned pw = p->flags & DME_MAP_WRITE, qw = q->flags & DME_MAP_WRITE;
	return pw > qw ? -1 : pw < qw;
}

static int check_req(const struct dme_region_req *q, size_t i)
{
	uint64_t va = (uintptr_t)q->va;
	if (!q->len || (va & 0xfff) || (q->len & 0xfff) || va + q->len < va ||
	    (q->flags & ~DME_MAP_RW)) {
		dme_err("register: buffer %zu [%p, +0x%zx) flags 0x%x: must be page aligned, non-empty, not wrapping, flags DME_MAP_READ|DME_MAP_WRITE",
			i, q->va, q->len, q->flags);
		return -EINVAL;
	}
	return 0;
}

static int batch_init(struct batch *b, struct dme_region_req *reqs, size_t n,
		      const struct mem_hint *hint)
{
	memset(b, 0, offsetof(struct batch, order_inl));
	b->reqs = reqs;
	b->n = n;
	b->hint = hint;
	b->cap_runs = n;
	b->cap_vict = n > BATCH_INLINE ? n : BATCH_INLINE;
	if (n <= BATCH_INLINE) {
		b->order = b->order_inl;
		b->run_of = b->run_of_inl;
		b->hit = b->hit_inl;
		b->victims = b->vict_inl;
		b->runs = b->runs_inl;
		b->maps = b->maps_inl;
	} else {
		b->order = malloc(n * sizeof(*b->order));
		b->run_of = malloc(n * sizeof(*b->run_of));
		b->hit = malloc(n * sizeof(*b->hit));
		b->victims = malloc(n * sizeof(*b->victims));
		b->runs = malloc(n * sizeof(*b->runs));
		b->maps = malloc(n * sizeof(*b->maps));
		if (!b->order || !b->run_of || !b->hit || !b->victims || !b->runs || !b->maps)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		b->order[i] = i;
		b->hit[i] = NULL;	/* batch_unplan() reads every entry */
	}
	if (n > 1)
		qsort_r(b->order, n, sizeof(*b->order), cmp_req_va, reqs);
	return 0;
}

static void batch_fini(struct batch *b)
{
	if (b->order != b->order_inl) {
		free(b->order);
		free(b->run_of);
		free(b->hit);
	}
	if (b->victims != b->vict_inl)
		free(b->victims);
	if (b->runs != b->runs_inl)
		free(b->runs);
	if (b->maps != b->maps_inl)
		free(b->maps);
}

/* Room for @want runs (noiommu splits runs at physical discontinuities). */
static int batch_grow_runs(struct batch *b, size_t want)
{
	if (want <= b->cap_runs)
		return 0;
	size_t c = want > 2 * b->cap_runs ? want : 2 * b->cap_runs;
	struct run *r = malloc(c * sizeof(*r));
	struct be_map *m = malloc(c * sizeof(*m));
	if (!r || !m) {
		free(r);
		free(m);
		return -ENOMEM;
	}
	memcpy(r, b->runs, b->nr * sizeof(*r));
	if (b->runs != b->runs_inl)
		free(b->runs);
	if (b->maps != b->maps_inl)
		free(b->maps);
	b->runs = r;
	b->maps = m;
	b->cap_runs = c;
	return 0;
}

/*
 * May [va, end) with @prot take a reference on @r without a kernel call?
 * Only if @r's mapping is known to still reach that memory: dme's own DMA
 * memory, a watched range nothing has changed, or memory the caller holds
 * registered right now (a live registration covering it).
 */
static bool can_hit(const struct region *r, uint64_t va, uint64_t end, unsigned prot)
{
	if (r->doomed || r->stale || (r->prot & prot) != prot || va < r->va ||
	    end - r->va > r->len)
		return false;
	return r->owned || r->watched || ref_covers(r, va, end);
}

static void batch_unplan(struct batch *b)
{
	for (size_t k = 0; k < b->nvict; k++)
		b->victims[k]->doomed = false;
	for (size_t i = 0; i < b->n; i++)
		if (b->hit[i])
			b->hit[i]->want = 0;
}

/*
 * From plan to commit the idle regions a batch hits or replaces stay off
 * the LRU, so nothing the batch does meanwhile (the budget, reclaiming IOVA
 * space) can evict them under it. @e->lru gets them back on undo.
 */
static void batch_hold(struct dme_engine *e, struct batch *b)
{
	for (size_t k = 0; k < b->nvict; k++)
		rlist_del(&e->lru, b->victims[k]);
	for (size_t i = 0; i < b->n; i++) {
		struct region *r = b->hit[i];
		if (r && r->state == R_IDLE && r->prev) {
			rlist_del(&e->lru, r);
		}
	}
}

static void batch_release(struct dme_engine *e, struct batch *b)
{
	for (size_t k = 0; k < b->nvict; k++)
		if (!b->victims[k]->prev)
			rlist_add_tail(&e->lru, b->victims[k]);
	for (size_t i = 0; i < b->n; i++) {
		struct region *r = b->hit[i];
		if (r && r->state == R_IDLE && !r->prev)
			rlist_add_tail(&e->lru, r);
	}
}

/*
 * Plan, without side effects. Pass 1 finds the conflicts (-EBUSY: a
 * request overlaps a mapping in use that it cannot share) and the idle
 * regions to replace (victims). Pass 2 decides hits against what will
 * remain, so a request never hits a region another request of the same
 * batch replaces, and builds runs of new, VA-contiguous requests with
 * equal permissions.
 */
static int victim_add(struct batch *b, struct region *o)
{
	if (o->doomed)
		return 0;
	if (b->nvict == b->cap_vict) {
		size_t c = 2 * b->cap_vict;
		struct region **v = malloc(c * sizeof(*v));
		if (!v)
			return -ENOMEM;
		memcpy(v, b->victims, b->nvict * sizeof(*v));
		if (b->victims != b->vict_inl)
			free(b->victims);
		b->victims = v;
		b->cap_vict = c;
	}
	o->doomed = true;
	b->victims[b->nvict++] = o;
	return 0;
}

static int batch_plan(struct dme_engine *e, struct batch *b)
{
	for (size_t k = 0; k < b->n; k++) {
		const struct dme_region_req *q = &b->reqs[b->order[k]];
		uint64_t va = (uintptr_t)q->va, end = va + q->len;
		unsigned prot = prot_of(q->flags);
		for (struct region *o = region_first_in(e, va, end); o;) {
			if (can_hit(o, va, end, prot))
				break;	/* inside it: nothing else overlaps */
			if (o->state == R_ACTIVE) {
				dme_err("register: [0x%" PRIx64 ", 0x%" PRIx64 ") overlaps the mapping [0x%" PRIx64 ", 0x%" PRIx64 ") in use by %u registration(s)%s",
					va, end, o->va, o->va + o->len, o->refs,
					o->stale ? " whose memory was unmapped"
					: (o->prot & prot) != prot ? " with fewer permissions"
					: " and does not lie inside one of them");
				batch_unplan(b);
				return -EBUSY;
			}
			if (victim_add(b, o)) {
				batch_unplan(b);
				return -ENOMEM;
			}
			uint64_t next = o->va + o->len;
			o = next < end ? region_first_in(e, next, end) : NULL;
		}
	}
	size_t nr = 0;
	for (size_t k = 0; k < b->n; k++) {
		size_t i = b->order[k];
		const struct dme_region_req *q = &b->reqs[i];
		uint64_t va = (uintptr_t)q->va, end = va + q->len;
		unsigned prot = prot_of(q->flags);
		struct region *f = region_at(e, va);
		if (f && can_hit(f, va, end, prot)) {
			b->hit[i] = f;
			f->want++;
			continue;
		}
		struct run *last = nr ? &b->runs[nr - 1] : NULL;
		if (last && va < last->va + last->len) {
			if (end <= last->va + last->len && (last->prot & prot) == prot) {
				b->run_of[i] = nr - 1;	/* inside a run of this batch */
				continue;
			}
			dme_err("register: buffers %p and the one before it overlap partially", q->va);
			batch_unplan(b);
			return -EINVAL;
		}
		if (last && va == last->va + last->len && last->prot == prot)
			last->len += q->len;
		else
			b->runs[nr++] = (struct run){.va = va, .len = q->len, .prot = prot,
						     .page_size = 4096, .fd = -1};
		b->run_of[i] = nr - 1;
	}
	b->nr = nr;
	return 0;
}

/*
 * The backing page size of each run decides its IOVA alignment (IOVA == VA
 * modulo the page size, so the IOMMU can use 2M/1G entries). Runs below
 * 2 MiB cannot hold a large page and skip the look-up; for the others the
 * kernel's per-VMA query (PROCMAP_QUERY, one ioctl per VMA) gives the page
 * size and proves the range pinnable before any kernel call. Only without
 * an IOMMU (the pages must be hugetlb, which the query cannot tell) or on
 * a kernel without the query is /proc/self/smaps parsed.
 */
static int runs_inspect(struct run *runs, size_t nr, const struct mem_hint *hint, bool needs_pa)
{
	for (size_t k = 0; k < nr; k++) {
		struct run *u = &runs[k];
		if (hint) {
			u->page_size = hint->page_size;
			u->fd = hint->fd;
			u->fd_off = hint->fd_off;
		}
		if (hint && !needs_pa)
			continue;
		if (u->len < (2u << 20) && !needs_pa)
			continue;
		if (!needs_pa) {
			uint64_t vps = 0;
			int ret = dme_mem_vma_check((void *)(uintptr_t)u->va, u->len,
						    u->prot & BE_PROT_WRITE, &vps);
			if (ret) {
				dme_err("register: [0x%" PRIx64 ", +0x%" PRIx64 ") cannot be registered (%s)",
					u->va, u->len, strerror(-ret));
				return ret;
			}
			if (vps) {
				u->page_size = vps < (1ull << 30) ? vps : (1ull << 30);
				continue;
			}
		}
		struct dme_mem_segment *seg;
		size_t ns;
		int ret = dme_mem_inspect((void *)(uintptr_t)u->va, u->len, u->prot & BE_PROT_WRITE,
					  &seg, &ns);
		if (ret) {
			dme_err("register: [0x%" PRIx64 ", +0x%" PRIx64 ") cannot be registered (%s)",
				u->va, u->len, strerror(-ret));
			return ret;
		}
		uint64_t ps = UINT64_MAX;
		bool pinned = true;
		for (size_t i = 0; i < ns; i++) {
			if (seg[i].page_size < ps)
				ps = seg[i].page_size;
			pinned &= seg[i].source == DME_MEM_SRC_HUGETLB_MEMFD ||
				  seg[i].source == DME_MEM_SRC_HUGETLBFS;
		}
		free(seg);
		if (needs_pa && !pinned) {
			dme_err("register: [0x%" PRIx64 ", +0x%" PRIx64 ") is not hugetlb memory; without an IOMMU its physical addresses could change (use dme_dma_alloc or hugepages)",
				u->va, u->len);
			return -EINVAL;
		}
		u->page_size = ps < (1ull << 30) ? ps : (1ull << 30);
	}
	return 0;
}

/*
 * No IOMMU: a run's IOVA is its physical address, so a run must be
 * physically contiguous. Split each run where the physical pages stop being
 * adjacent; a single request may not straddle such a point. Sets ->iova of
 * every run to its physical address.
 */
static int runs_split_pa(struct batch *b)
{
	size_t nr = b->nr, out = nr;	/* new runs are appended, then moved down */
	for (size_t k = 0; k < nr; k++) {
		struct run u = b->runs[k];
		uint64_t ps = u.page_size, base = align_down(u.va, ps);
		size_t np = (size_t)((u.va + u.len - base + ps - 1) / ps);
		uint64_t *pa = malloc(np * sizeof(*pa));
		if (!pa)
			return -ENOMEM;
		int ret = dme_mem_pa_array((void *)(uintptr_t)base, np, ps, pa);
		if (ret) {
			free(pa);
			dme_err("register: physical addresses of [0x%" PRIx64 ", +0x%" PRIx64 ") unreadable (%s)",
				u.va, u.len, strerror(-ret));
			return ret;
		}
		size_t first = out;
		uint64_t cstart = u.va;
		for (size_t j = 1; j <= np; j++) {
			if (j < np && pa[j] == pa[j - 1] + ps)
				continue;
			uint64_t cend = base + j * ps < u.va + u.len ? base + j * ps : u.va + u.len;
			b->nr = out;	/* keep what is built while growing */
			ret = batch_grow_runs(b, out + 1);
			if (ret) {
				free(pa);
				return ret;
			}
			uint64_t p0 = pa[(cstart - base) / ps] + ((cstart - base) % ps);
			b->runs[out] = u;
			b->runs[out].va = cstart;
			b->runs[out].len = cend - cstart;
			b->runs[out].iova = p0;
			out++;
			cstart = cend;
		}
		free(pa);
		for (size_t i = 0; i < b->n; i++) {
			if (b->hit[i] || b->run_of[i] != k)
				continue;
			uint64_t a = (uintptr_t)b->reqs[i].va, z = a + b->reqs[i].len;
			size_t c;
			for (c = first; c < out && !(a >= b->runs[c].va && a < b->runs[c].va + b->runs[c].len); c++)
				;
			if (c == out || z > b->runs[c].va + b->runs[c].len) {
				dme_err("register: buffer %p +0x%zx is not physically contiguous (no IOMMU: register each hugepage on its own)",
					b->reqs[i].va, b->reqs[i].len);
				return -EINVAL;
			}
			b->run_of[i] = c;
		}
	}
	/* move the new runs down over the old ones */
	size_t nnew = out - nr;
	memmove(b->runs, b->runs + nr, nnew * sizeof(*b->runs));
	for (size_t i = 0; i < b->n; i++)
		if (!b->hit[i])
			b->run_of[i] -= nr;
	b->nr = nnew;
	return 0;
}

/* Make room in the IO address space: drop idle mappings, unmap pending ones,
 * and take back free IOVAs parked in the allocator's caches. */
static void reclaim_iova(struct dme_engine *e)
{
	while (e->lru.n)
		region_evict(e, e->lru.head.next);
	pending_flush(e);
	dme_iova_flush_caches(e->iova);
}

static int run_alloc_iova(struct dme_engine *e, struct run *u)
{
	/* runs of 2 MiB or more get 2 MiB congruence even on 4 KiB pages:
	 * free for the allocator, and THP or a later large page can then use
	 * 2 MiB IOPTEs */
	uint64_t cong = u->page_size;
	if (cong < (2u << 20) && u->size >= (2u << 20))
		cong = 2u << 20;
	if (e->geo.needs_pa)	/* IOVA == physical address (split above) */
		return dme_iova_alloc_fixed(e->iova, u->iova, u->size);
	if (is_pow2(u->size) && cong <= u->size && !(u->va & (cong - 1)))
		/* an aligned IOVA is congruent too; small power-of-two runs then
		 * come from the allocator's per-thread caches */
		return dme_iova_alloc(e->iova, u->size, cong, &u->iova);
	return dme_iova_alloc_congruent(e->iova, u->size, cong, u->va, &u->iova);
}

/*
 * The idle mappings this batch replaces go: after the map, or earlier when
 * room is short or (noiommu) they hold the IOVAs the new runs need; they are
 * cache, so a batch that fails after this has lost only cache.
 */
static void batch_drop_victims(struct dme_engine *e, struct batch *b)
{
	for (size_t k = 0; k < b->nvict; k++) {
		b->victims[k]->doomed = false;
		region_retire(e, b->victims[k]);
	}
	b->nvict = 0;
}

/* IOVAs for every run: congruent to the VA modulo its page size. */
static int batch_reserve_iovas(struct dme_engine *e, struct batch *b)
{
	int reclaimed = 0;
	while (b->with_iova < b->nr) {
		struct run *u = &b->runs[b->with_iova];
		if (!align_up_checked(u->len, e->geo.alignment, &u->size))
			return -EINVAL;
		int ret = run_alloc_iova(e, u);
		if (ret == -ENOSPC && reclaimed < 2 && !e->geo.needs_pa) {
			if (reclaimed++)	/* second try: replaced mappings too */
				batch_drop_victims(e, b);
			reclaim_iova(e);
			continue;
		}
		if (ret) {
			dme_err("register: no IOVA range of 0x%" PRIx64 " bytes left in the address space%s",
				u->size, reclaimed ? " (after unmapping every idle mapping)" : "");
			return ret;
		}
		b->maps[b->with_iova] = (struct be_map){u->va, u->iova, u->size, u->prot, u->fd,
							u->fd_off};
		b->with_iova++;
	}
	return 0;
}

/* Region objects and reference room, before anything is mapped. */
static int batch_prepare_regions(struct dme_engine *e, struct batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->hit[i] && b->hit[i]->want) {
			int ret = ref_reserve(b->hit[i], b->hit[i]->want);
			if (ret)
				return ret;
		}
	if (!b->with_region) {
		for (size_t k = 0; k < b->nr; k++)
			b->runs[k].nreq = 0;
		for (size_t i = 0; i < b->n; i++)
			if (!b->hit[i])
				b->runs[b->run_of[i]].nreq++;
	}
	for (; b->with_region < b->nr; b->with_region++) {
		struct run *u = &b->runs[b->with_region];
		struct region *r = region_new();
		if (!r)
			return -ENOMEM;
		r->va = u->va;
		r->len = u->size;
		r->iova = u->iova;
		r->page_size = u->page_size;
		r->prot = u->prot;
		r->state = R_ACTIVE;
		r->mapped = e->geo.ready;
		r->fd = u->fd;
		r->fd_off = u->fd_off;
		r->owned = b->hint && b->hint->owned;
		u->r = r;
		if (ref_reserve(r, u->nreq)) {
			region_free(r);
			u->r = NULL;
			return -ENOMEM;
		}
	}
	return 0;
}

/* Undo a batch that failed before its commit; nothing it did remains. */
static void batch_undo(struct dme_engine *e, struct batch *b, const char *what)
{
	if (b->mapped) {
		struct be_unmap *u = malloc(b->mapped * sizeof(*u));
		size_t d = 0;
		int uret = -ENOMEM;
		if (u) {
			for (size_t k = 0; k < b->mapped; k++)
				u[k] = (struct be_unmap){b->maps[k].iova, b->maps[k].len, 1};
			uret = be_unmap_chunked(e, u, b->mapped, &d);
			free(u);
		}
		if (uret) {
			dme_err("%s: undoing a failed batch: %zu mappings could not be unmapped (%s); their IOVAs are kept out of use",
				what, b->mapped - d, strerror(-uret));
			/* keep the still-mapped IOVAs allocated: never reuse them */
			for (size_t k = d; k < b->mapped; k++)
				b->runs[k].size = 0;
			e->st.live_mappings += b->mapped - d;
			e->orphans += b->mapped - d;
		}
	}
	for (size_t k = 0; k < b->with_iova; k++)
		if (b->runs[k].size)
			dme_iova_free(e->iova, b->runs[k].iova, b->maps[k].len);
	for (size_t k = 0; k < b->with_region; k++)
		if (b->runs[k].r)
			region_free(b->runs[k].r);
	if (b->held)
		batch_release(e, b);
	batch_unplan(b);
}

static int register_batch(struct dme_engine *e, struct dme_region_req *reqs, size_t n,
			  const struct mem_hint *hint)
{
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (check_req(&reqs[i], i))
			return -EINVAL;
	struct batch b;
	int ret = batch_init(&b, reqs, n, hint);
	if (ret)
		goto out_free;
	pthread_mutex_lock(&e->lock);
	coherence_sync(e);
	ret = batch_plan(e, &b);
	if (ret)
		goto out_unlock;
	batch_hold(e, &b);
	b.held = true;
	ret = runs_inspect(b.runs, b.nr, hint, e->geo.needs_pa);
	if (!ret && e->geo.needs_pa)
		ret = runs_split_pa(&b);
	if (ret)
		goto err_undo;
	if (b.nr && e->geo.needs_pa) {
		/* IOVA == physical address: the replaced mappings hold the very
		 * IOVAs the new runs need, so they go first */
		batch_drop_victims(e, &b);
		ret = pending_flush(e);
		if (ret)
			goto err_undo;
	}
	if (b.nr) {
		/* a failed unmap of other pending mappings only matters if the
		 * entries are still short (checked next) */
		budget_enforce(e, b.nr);
		if (e->st.live_mappings + b.nr > e->entry_limit && b.nvict) {
			batch_drop_victims(e, &b);
			pending_flush(e);
		}
		if (e->st.live_mappings + b.nr > e->entry_limit) {
			if (e->entry_limit_src)
				dme_err("register: %zu new mappings would exceed %s of %" PRIu64 " map entries (%" PRIu64 " live, none idle); unregister, or register VA-contiguous buffers in one batch to share an entry",
					b.nr, e->entry_limit_src, e->entry_limit, e->st.live_mappings);
			else
				dme_err("register: %zu new mappings would exceed the budget of %" PRIu64 " map entries (%" PRIu64 " live, none idle); raise DME_CACHE_ENTRIES or unregister",
					b.nr, e->entry_limit, e->st.live_mappings);
			ret = -ENOSPC;
			goto err_undo;
		}
	}
	ret = batch_reserve_iovas(e, &b);
	if (!ret)
		ret = batch_prepare_regions(e, &b);
	if (ret)
		goto err_undo;
	if (e->geo.ready && b.nr) {
		ret = be_map_chunked(e, b.maps, b.nr, &b.mapped);
		if (ret)
			goto err_undo;
	}
	/* the new mappings exist: the idle ones they replace go */
	batch_drop_victims(e, &b);
	for (size_t k = 0; k < b.nr; k++) {
		ret = region_publish(e, b.runs[k].r);
		if (ret) {
			while (k--)
				region_unpublish(e, b.runs[k].r);
			goto err_undo;
		}
	}
	/* commit: nothing below can fail */
	for (size_t k = 0; k < b.nr; k++) {
		struct region *r = b.runs[k].r;
		if (r->mapped)
			e->st.pinned_bytes += r->len;
		/* caller memory is watched from the start, so a munmap while it
		 * is registered is seen (and reported) too */
		region_watch(e, r);
	}
	e->st.live_mappings += e->geo.ready ? b.nr : 0;
	for (size_t k = 0; k < n; k++) {	/* in VA order: references append */
		size_t i = b.order[k];
		struct region *r = b.hit[i] ? b.hit[i] : b.runs[b.run_of[i]].r;
		if (b.hit[i]) {
			e->st.cache_hits++;
			r->want = 0;
			r->state = R_ACTIVE;	/* an idle one is off the LRU (held) */
		}
		if (!hint || !hint->owned)
			ref_add(r, (uintptr_t)reqs[i].va, reqs[i].len);
		reqs[i].iova = r->iova + ((uintptr_t)reqs[i].va - r->va);
	}
	if (e->geo.needs_pa && !(hint && hint->owned))
		for (size_t k = 0; k < b.nr; k++)
			/* the IOVA is the physical address: a child's copy-on-write
			 * must never move these pages away from it */
			madvise((void *)(uintptr_t)b.runs[k].va, b.runs[k].len, MADV_DONTFORK);
	ret = 0;
	goto out_unlock;
err_undo:
	batch_undo(e, &b, "register");
out_unlock:
	pthread_mutex_unlock(&e->lock);
out_free:
	batch_fini(&b);
	return ret;
}

DME_EXPORT int dme_register_batch(struct dme_engine *e, struct dme_region_req *reqs, size_t n)
{
	return register_batch(e, reqs, n, NULL);
}

DME_EXPORT int dme_register(struct dme_engine *e, void *va, size_t len, unsigned flags,
			    uint64_t *iova)
{
	struct dme_region_req q = {va, len, flags, 0};
	int ret = register_batch(e, &q, 1, NULL);
	if (!ret)
		*iova = q.iova;
	return ret;
}

DME_EXPORT int dme_unregister(struct dme_engine *e, void *va, size_t len)
{
	uint64_t a = (uintptr_t)va;
	pthread_mutex_lock(&e->lock);
	coherence_sync(e);	/* a changed range must not go idle as if intact */
	struct region *r = region_at(e, a);
	struct ref *f = r && r->state == R_ACTIVE ? ref_find(r, a - r->va, len) : NULL;
	if (!f) {
		pthread_mutex_unlock(&e->lock);
		if (r && r->owned && a == r->va)
			dme_err("unregister: [%p, +0x%zx) is DMA memory; give it back with dme_dma_free()",
				va, len);
		else
			dme_err("unregister: [%p, +0x%zx) is not a registration (unregister exactly the range that was registered)",
				va, len);
		return -EINVAL;
	}
	int ret = 0;
	ref_drop(r, f);
	if (r->refs == 0 && !r->owned)
		ret = region_idle(e, r);
	else
		/* part of the mapping has no registration now: watched, it can
		 * serve that part again without the caller's promise */
		region_watch(e, r);
	pthread_mutex_unlock(&e->lock);
	return ret;
}

DME_EXPORT int dme_engine_flush(struct dme_engine *e)
{
	pthread_mutex_lock(&e->lock);
	coherence_sync(e);
	while (e->lru.n)
		region_evict(e, e->lru.head.next);
	int ret = pending_flush(e);
	pthread_mutex_unlock(&e->lock);
	return ret;
}

/*
 * Unmap the DMA memory [va, +len) now, whatever registrations lie inside
 * it (the memory is about to go away). Lock held.
 */
static int dma_drop_locked(struct dme_engine *e, uint64_t va, uint64_t len)
{
	struct region *r;
	while ((r = region_first_in(e, va, va + len))) {
		r->refs = 0;
		r->nref = 0;
		r->owned = false;
		r->state = R_IDLE;
		rlist_add_tail(&e->lru, r);
		region_evict(e, r);
	}
	return pending_flush(e);
}

DME_EXPORT int dme_dma_alloc(struct dme_engine *e, size_t len, unsigned flags,
			     struct dme_dma_mem *out)
{
	struct dme_mem_params p;
	int ret = dme_mem_params_from_config(&p, &e->cfg, len);
	if (ret)
		return ret;
	struct dma_rec *rec = calloc(1, sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	struct dme_mem *m;
	ret = dme_mem_alloc(&p, &m);
	if (ret)
		goto err_rec;
	struct mem_hint h = {m->page_size, m->fd, m->fd_offset, true};
	pthread_mutex_lock(&e->lock);
	bool needs_pa = e->geo.needs_pa;
	pthread_mutex_unlock(&e->lock);
	/* without an IOMMU each page is its own physically contiguous piece */
	size_t n = needs_pa ? m->len / m->page_size : 1;
	struct dme_region_req *q = calloc(n, sizeof(*q));
	if (!q) {
		ret = -ENOMEM;
		goto err_mem;
	}
	for (size_t i = 0; i < n; i++)
		q[i] = (struct dme_region_req){(char *)m->va + i * (m->len / n), m->len / n, flags, 0};
	ret = register_batch(e, q, n, &h);
	uint64_t iova = q[0].iova;
	free(q);
	if (ret)
		goto err_mem;
	rec->d = (struct dme_dma_mem){m->va, m->len, iova, m->page_size, m->node_actual, m};
	pthread_mutex_lock(&e->lock);
	rec->next = e->dma;
	e->dma = rec;
	pthread_mutex_unlock(&e->lock);
	*out = rec->d;
	return 0;
err_mem:
	dme_mem_free(m);
err_rec:
	free(rec);
	return ret;
}

DME_EXPORT int dme_dma_free(struct dme_engine *e, struct dme_dma_mem *d)
{
	pthread_mutex_lock(&e->lock);
	struct dma_rec **pp = &e->dma, *rec;
	for (; (rec = *pp); pp = &rec->next)
		if (rec->d.mem == d->mem && rec->d.va == d->va)
			break;
	if (!rec || rec->d.len != d->len || rec->d.iova != d->iova) {
		pthread_mutex_unlock(&e->lock);
		dme_err("dma_free: {va %p, len 0x%zx, iova 0x%" PRIx64 "} is not a live allocation of this engine (%s)",
			d->va, d->len, d->iova,
			rec ? "its length or IOVA was changed" : "freed already, or from another engine");
		return rec ? -EINVAL : -ENOENT;
	}
	int ret = dma_drop_locked(e, (uintptr_t)rec->d.va, rec->d.len);
	if (!ret)
		*pp = rec->next;
	pthread_mutex_unlock(&e->lock);
	if (ret)
		return ret;	/* still mapped: the memory must not go back */
	dme_mem_free(rec->d.mem);
	free(rec);
	memset(d, 0, sizeof(*d));
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Translation                                                            */

DME_EXPORT int dme_vtoiova(const struct dme_engine *e, const void *va, uint64_t *iova)
{
	return xlate_lookup(&e->xlate, (uintptr_t)va, iova);
}

DME_EXPORT int dme_iovatov(const struct dme_engine *e, uint64_t iova, void **va)
{
	uint64_t v;
	int ret = xlate_reverse(&e->xlate, iova, &v);
	if (!ret)
		*va = (void *)(uintptr_t)v;
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Geometry                                                               */

/*
 * The map-entry budget: DME_CACHE_ENTRIES, capped by what the backend can
 * hold now. Follows every geometry change: a type1 container reports its
 * DMA_AVAIL only once a group has joined it.
 */
static void entry_limit_apply(struct dme_engine *e)
{
	e->entry_limit = e->cfg.cache_budget_entries;
	e->entry_limit_src = NULL;
	if (e->geo.max_entries && e->geo.max_entries < e->entry_limit) {
		e->entry_limit = e->geo.max_entries;
		e->entry_limit_src = e->geo.max_entries_src ? e->geo.max_entries_src
							    : "the backend's entry limit";
	}
}

/*
 * Make the allocator follow @g: reserve whatever the base space allows but
 * @g does not (holes a device adds, a narrower window). Fails with
 * -EADDRINUSE, changing nothing, when a live mapping sits there.
 */
static int geometry_apply(struct dme_engine *e, const struct be_geometry *g)
{
	struct dme_iova_range base[BE_MAX_RANGES];
	size_t nb = dme_iova_geometry_get(e->iova, base, BE_MAX_RANGES);
	struct dme_iova_range *rsv = calloc(2 * BE_MAX_RANGES * BE_MAX_RANGES + 1, sizeof(*rsv));
	if (!rsv)
		return -ENOMEM;
	size_t nr = 0;
	/* complement of g within each base range */
	for (size_t i = 0; i < nb; i++) {
		uint64_t cur = base[i].start;
		bool done = false;
		for (size_t j = 0; j < g->nr_ranges && !done; j++) {
			const struct dme_iova_range *a = &g->ranges[j];
			if (a->last < cur || a->start > base[i].last)
				continue;
			if (a->start > cur)
				rsv[nr++] = (struct dme_iova_range){cur, a->start - 1};
			if (a->last >= base[i].last)
				done = true;
			else
				cur = a->last + 1;
		}
		if (!done)
			rsv[nr++] = (struct dme_iova_range){cur, base[i].last};
	}
	/* drop the old narrowing, apply the new one */
	for (size_t i = 0; i < e->nr_geo_rsv; i++)
		dme_iova_unreserve(e->iova, e->geo_rsv[i].start, e->geo_rsv[i].last);
	size_t k;
	int ret = 0;
	for (k = 0; k < nr; k++) {
		ret = dme_iova_reserve(e->iova, rsv[k].start, rsv[k].last);
		if (ret)
			break;
	}
	if (ret) {
		dme_err("geometry: [0x%" PRIx64 ", 0x%" PRIx64 "] is no longer usable but holds live mappings",
			rsv[k].start, rsv[k].last);
		while (k--)
			dme_iova_unreserve(e->iova, rsv[k].start, rsv[k].last);
		for (size_t i = 0; i < e->nr_geo_rsv; i++)
			dme_iova_reserve(e->iova, e->geo_rsv[i].start, e->geo_rsv[i].last);
		free(rsv);
		return -EADDRINUSE;
	}
	free(e->geo_rsv);
	e->geo_rsv = rsv;
	e->nr_geo_rsv = nr;
	e->geo = *g;
	entry_limit_apply(e);
	return 0;
}

/* Map every recorded region (after the backend became ready). */
static int replay(struct dme_engine *e)
{
	size_t n = 0, i = 0, done = 0;
	for (struct avl_node *a = avl_first(&e->by_va); a; a = avl_next(&e->by_va, a->key))
		n += !va_region(a)->mapped;
	if (!n)
		return 0;
	struct be_map *m = malloc(n * sizeof(*m));
	struct region **rs = malloc(n * sizeof(*rs));
	int ret = -ENOMEM;
	if (!m || !rs)
		goto out;
	for (struct avl_node *a = avl_first(&e->by_va); a; a = avl_next(&e->by_va, a->key)) {
		struct region *r = va_region(a);
		if (!r->mapped) {
			rs[i] = r;
			m[i++] = (struct be_map){r->va, r->iova, r->len, r->prot, r->fd, r->fd_off};
		}
	}
	ret = be_map_chunked(e, m, n, &done);
	for (i = 0; i < done; i++) {
		rs[i]->mapped = true;
		e->st.pinned_bytes += rs[i]->len;
	}
	e->st.live_mappings += done;
	e->st.replays += done;
	if (ret)
		dme_err("attach: replaying recorded mappings failed after %zu of %zu (%s)", done, n,
			strerror(-ret));
out:
	free(m);
	free(rs);
	return ret;
}

static int query_geometry(struct dme_engine *e, struct be_geometry *g)
{
	memset(g, 0, sizeof(*g));
	int ret = e->ops->geometry(e->be, g);
	if (ret)
		return ret;
	if (!g->nr_ranges || !is_pow2(g->alignment ? g->alignment : 1)) {
		dme_err("%s: the backend reported an unusable geometry", e->ops->name);
		return -EIO;
	}
	if (!g->alignment)
		g->alignment = 1;
	/* IOVA 0 is never handed out: a device given a NULL address faults
	 * instead of reaching somebody's buffer */
	if (g->ranges[0].start == 0) {
		if (g->ranges[0].last < g->alignment || g->ranges[0].last < 4096) {
			memmove(&g->ranges[0], &g->ranges[1], (g->nr_ranges - 1) * sizeof(g->ranges[0]));
			g->nr_ranges--;
		} else {
			g->ranges[0].start = g->alignment > 4096 ? g->alignment : 4096;
		}
		if (!g->nr_ranges) {
			dme_err("%s: no IOVA range left beside page 0", e->ops->name);
			return -EIO;
		}
	}
	return 0;
}

DME_EXPORT int dme_engine_attach(struct dme_engine *e, const char *dev)
{
	struct be_geometry g;
	pthread_mutex_lock(&e->lock);
	int ret = e->ops->attach(e->be, dev);
	if (ret)
		goto out;
	ret = query_geometry(e, &g);
	if (!ret)
		ret = geometry_apply(e, &g);
	if (ret) {
		e->ops->detach(e->be, dev);
		goto out;
	}
	if (g.ready)
		ret = replay(e);
out:
	pthread_mutex_unlock(&e->lock);
	return ret;
}

void *dme__engine_backend(struct dme_engine *e)
{
	return e->be;
}

int dme__engine_refresh(struct dme_engine *e)
{
	struct be_geometry g;
	pthread_mutex_lock(&e->lock);
	int ret = query_geometry(e, &g);
	if (!ret)
		ret = geometry_apply(e, &g);
	if (!ret && g.ready)
		ret = replay(e);
	pthread_mutex_unlock(&e->lock);
	return ret;
}

DME_EXPORT int dme_engine_detach(struct dme_engine *e, const char *dev)
{
	struct be_geometry g;
	pthread_mutex_lock(&e->lock);
	int ret = e->ops->detach(e->be, dev);
	if (!ret && !query_geometry(e, &g))
		geometry_apply(e, &g);	/* a wider geometry never conflicts */
	pthread_mutex_unlock(&e->lock);
	return ret;
}

DME_EXPORT size_t dme_engine_geometry(struct dme_engine *e, struct dme_iova_range *ranges,
				      size_t max, uint64_t *align)
{
	pthread_mutex_lock(&e->lock);
	size_t n = e->geo.nr_ranges;
	for (size_t i = 0; i < n && i < max; i++)
		ranges[i] = e->geo.ranges[i];
	if (align)
		*align = e->geo.alignment;
	pthread_mutex_unlock(&e->lock);
	return n;
}

/* ---------------------------------------------------------------------- */
/* Lifetime                                                               */

static uint64_t memlock_budget(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == RLIM_INFINITY)
		return UINT64_MAX;
	return rl.rlim_cur;
}

/* Appends @s to the string in @buf (@len bytes), as much as fits. */
static void str_append(char *buf, size_t len, const char *s)
{
	size_t off = strlen(buf);
	if (off + 1 < len)
		strncat(buf, s, len - 1 - off);
}

/* Whether the host offers @o's interface: 0, or an error with @why set. */
static int probe_backend(const struct be_ops *o, const struct dme_config *c, char *why, size_t len)
{
	why[0] = 0;
	int ret = o->probe ? o->probe(c, why, len) : 0;
	if (ret && !why[0])
		str_append(why, len, strerror(-ret));
	return ret;
}

static int open_backend(struct dme_engine *e)
{
	const struct dme_config *c = &e->cfg;
	char why[256];
	if (c->backend != DME_BACKEND_AUTO) {
		for (const struct be_ops *const *o = be_all; *o; o++)
			if (!strcmp((*o)->name, dme_backend_name(c->backend))) {
				int ret = probe_backend(*o, c, why, sizeof(why));
				if (ret) {
					dme_err("DME_BACKEND=%s cannot be used on this host: %s",
						(*o)->name, why);
					return ret;
				}
				e->ops = *o;
				return (*o)->open(c, &e->be);
			}
		dme_err("backend %s is not built into this dme", dme_backend_name(c->backend));
		return -ENODEV;
	}
	/*
	 * auto: the simulator when no device is named. Named devices get a real
	 * interface or an error, never the simulator: a program that asked for
	 * a device must not run on without real DMA mappings. The error is the
	 * first one that is not "interface absent" (-ENODEV), else -ENODEV.
	 */
	char reasons[384] = "";
	int err = -ENODEV;
	for (const struct be_ops *const *o = be_all; *o; o++) {
		if ((*o == &be_sim_ops) != !c->nr_devices) {
			dme_dbg("backend %s: skipped, %s", (*o)->name,
				c->nr_devices ? "DME_DEVICE names devices"
					      : "no DME_DEVICE to attach");
			continue;
		}
		int ret = probe_backend(*o, c, why, sizeof(why));
		if (!ret) {
			ret = (*o)->open(c, &e->be);
			if (!ret) {
				e->ops = *o;
				if (*o == &be_sim_ops)
					dme_info("no DME_DEVICE named; using the simulator (DME_BACKEND=auto)");
				return 0;
			}
			why[0] = 0;
			str_append(why, sizeof(why), strerror(-ret));
		}
		dme_dbg("backend %s: not available (%s)", (*o)->name, why);
		str_append(reasons, sizeof(reasons), reasons[0] ? "; " : "");
		str_append(reasons, sizeof(reasons), (*o)->name);
		str_append(reasons, sizeof(reasons), ": ");
		str_append(reasons, sizeof(reasons), why);
		if (ret != -ENODEV && err == -ENODEV)
			err = ret;
	}
	if (!c->nr_devices) {
		dme_err("no backend could be opened: %s", reasons);
		return err;
	}
	char devs[DME_DEVICE_NAME_MAX + 32] = "";
	for (unsigned i = 0; i < c->nr_devices; i++) {
		str_append(devs, sizeof(devs), i ? "," : "");
		str_append(devs, sizeof(devs), c->devices[i]);
	}
	dme_err("DME_DEVICE=%s cannot be used (%s); not falling back to the simulator for a named device",
		devs, reasons);
	return err;
}

static struct dme_engine *engine_new(const struct dme_config *cfg, int *err)
{
	extern char **environ;
	struct dme_engine *e = calloc(1, sizeof(*e));
	if (!e) {
		*err = -ENOMEM;
		return NULL;
	}
	if (cfg) {
		e->cfg = *cfg;
	} else {
		dme_config_init(&e->cfg);
		*err = dme_config_apply_env(&e->cfg, environ);
		if (*err) {
			free(e);
			return NULL;
		}
	}
	if (!e->cfg.map_batch)
		e->cfg.map_batch = 1;
	pthread_mutex_init(&e->lock, NULL);
	rlist_init(&e->lru);
	rlist_init(&e->pending);
	return e;
}

/* With e->ops and e->be open: geometry, allocator, translation, budgets. */
static int engine_start(struct dme_engine *e)
{
	int ret = query_geometry(e, &e->geo);
	if (ret)
		return ret;
	if (e->cfg.allow_iovas_set) {
		/* narrow the window the way IOAS_ALLOW_IOVAS would */
		struct be_geometry w = e->geo;
		size_t k = 0;
		for (size_t i = 0; i < e->geo.nr_ranges; i++) {
			uint64_t a = e->geo.ranges[i].start > e->cfg.allow_iova_start
					     ? e->geo.ranges[i].start : e->cfg.allow_iova_start;
			uint64_t b = e->geo.ranges[i].last < e->cfg.allow_iova_last
					     ? e->geo.ranges[i].last : e->cfg.allow_iova_last;
			if (a <= b)
				w.ranges[k++] = (struct dme_iova_range){a, b};
		}
		if (!k) {
			dme_err("DME_ALLOW_IOVAS window misses every allowed IOVA range");
			return -EINVAL;
		}
		w.nr_ranges = k;
		e->geo = w;
	}
	struct dme_iova_geometry ig = {e->geo.ranges, e->geo.nr_ranges, e->geo.alignment};
	struct dme_iova_params ip = {.no_cache = !e->cfg.iova_cache,
				     .mag_size = e->cfg.iova_mag_size,
				     .depot_max = e->cfg.iova_depot_max};
	ret = dme_iova_space_create(&ig, &ip, &e->iova);
	if (ret)
		return ret;
	ret = xlate_init(&e->xlate, 0);
	if (ret) {
		dme_iova_space_destroy(e->iova);
		return ret;
	}
	entry_limit_apply(e);
	e->idle_budget = e->cfg.cache_budget_bytes ? e->cfg.cache_budget_bytes : memlock_budget();
	if (!e->cfg.cache_monitor)
		dme_info("engine: DME_CACHE_MONITOR=0: caller memory is unmapped once unregistered (DMA memory stays cached)");
	else if (monitor_open(&e->mon))
		dme_warn("engine: no memory monitor (userfaultfd) here: caller memory is unmapped once unregistered (DMA memory stays cached)");
	return 0;
}

static void engine_free(struct dme_engine *e)
{
	pthread_mutex_destroy(&e->lock);
	free(e);
}

/*
 * Every way of opening an engine: @open_be sets e->ops and e->be (the
 * engine's config is already in place), then the engine starts on it.
 */
static int engine_open_with(const struct dme_config *cfg,
			    int (*open_be)(struct dme_engine *e, const void *arg), const void *arg,
			    struct dme_engine **out)
{
	int ret;
	struct dme_engine *e = engine_new(cfg, &ret);
	if (!e)
		return ret;
	ret = open_be(e, arg);
	if (ret)
		goto err_free;
	ret = engine_start(e);
	if (ret)
		goto err_close;
	if (!e->family)
		e->family = atomic_fetch_add(&next_family, 1);
	*out = e;
	return 0;
err_close:
	e->ops->close(e->be);
err_free:
	engine_free(e);
	return ret;
}

static int open_configured(struct dme_engine *e, const void *arg)
{
	(void)arg;
	return open_backend(e);
}

DME_EXPORT int dme_engine_open(const struct dme_config *cfg, struct dme_engine **out)
{
	int ret = engine_open_with(cfg, open_configured, NULL, out);
	if (!ret)
		engine_list_add(*out);
	return ret;
}

static int open_sim_params(struct dme_engine *e, const void *params)
{
	e->ops = &be_sim_ops;
	return dme_sim_open(params, &e->be);
}

DME_EXPORT int dme_engine_open_sim(const struct dme_config *cfg,
				   const struct dme_sim_params *params, struct dme_engine **out)
{
	int ret = engine_open_with(cfg, open_sim_params, params, out);
	if (!ret)
		engine_list_add(*out);
	return ret;
}

DME_EXPORT void dme_engine_close(struct dme_engine *e)
{
	if (!e)
		return;
	engine_list_del(e);
	if (e->forked)
		return;	/* a child's copy: the kernel objects are the parent's; leave them */
	pthread_mutex_lock(&e->lock);
	/* every region, active or not, goes through the same unmap path */
	struct avl_node *a;
	while ((a = avl_first(&e->by_va))) {
		struct region *r = va_region(a);
		if (r->state == R_ACTIVE) {
			r->state = R_IDLE;
			rlist_add_tail(&e->lru, r);
		}
		region_evict(e, r);
	}
	int ret = pending_flush(e);
	if (ret)
		dme_err("close: %" PRIu64 " mappings could not be unmapped; their memory is not freed",
			e->pending.n);
	while (e->pending.n) {
		struct region *r = e->pending.head.next;
		rlist_del(&e->pending, r);
		region_free(r);
	}
	/* DMA memory the caller did not free: unmapped above, freed here */
	while (e->dma) {
		struct dma_rec *rec = e->dma;
		e->dma = rec->next;
		if (!ret)
			dme_mem_free(rec->d.mem);
		free(rec);
	}
	pthread_mutex_unlock(&e->lock);
	monitor_close(e->mon);
	xlate_destroy(&e->xlate);
	dme_iova_space_destroy(e->iova);
	e->ops->close(e->be);
	free(e->geo_rsv);
	engine_free(e);
}

DME_EXPORT const char *dme_engine_cache_monitor(const struct dme_engine *e)
{
	return e->mon ? monitor_mode(e->mon) : NULL;
}

DME_EXPORT const char *dme_engine_backend_name(const struct dme_engine *e)
{
	return e->ops->name;
}

DME_EXPORT struct dme_sim *dme_engine_sim(struct dme_engine *e)
{
	return e->ops == &be_sim_ops ? e->be : NULL;
}

DME_EXPORT void dme_engine_stats(struct dme_engine *e, struct dme_engine_stats *st)
{
	pthread_mutex_lock(&e->lock);
	*st = e->st;
	uint64_t active = 0, reg = 0;
	for (struct avl_node *a = avl_first(&e->by_va); a; a = avl_next(&e->by_va, a->key)) {
		struct region *r = va_region(a);
		active += r->state == R_ACTIVE;
		reg += r->len;
	}
	st->active_mappings = active;
	st->idle_mappings = e->lru.n;
	st->pending_unmaps = e->pending.n;
	st->registry_bytes = reg + e->pending.bytes;
	st->meta_bytes = xlate_meta_bytes(&e->xlate) + sizeof(*e) +
			 (e->by_va.n + e->pending.n) * sizeof(struct region);
	st->mapped_bytes = st->pinned_bytes;
	if (e->ops == &be_sim_ops) {
		struct dme_sim_stats ss;
		dme_sim_stats(e->be, &ss);
		st->faults = ss.faults;
	}
	pthread_mutex_unlock(&e->lock);
}

static int cmp_u64_pair(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

DME_EXPORT int dme_engine_check(struct dme_engine *e)
{
	int ret = 0;
	pthread_mutex_lock(&e->lock);
	uint64_t prev_end = 0, mapped = 0, pinned = 0;
	bool first = true;
	size_t nspan = 0, cap = e->by_va.n + e->pending.n;
	uint64_t (*span)[2] = malloc((cap ? cap : 1) * sizeof(*span));	/* {iova, len} */
	for (struct avl_node *a = avl_first(&e->by_va); a; a = avl_next(&e->by_va, a->key)) {
		struct region *r = va_region(a);
		uint64_t iova;
		if (!first && r->va < prev_end) {
			dme_err("engine: regions overlap at 0x%" PRIx64, r->va);
			ret = -EUCLEAN;
		}
		if (xlate_lookup(&e->xlate, r->va, &iova) || iova != r->iova ||
		    xlate_lookup(&e->xlate, r->va + r->len - 1, &iova) ||
		    iova != r->iova + r->len - 1) {
			dme_err("engine: translation of [0x%" PRIx64 ", +0x%" PRIx64 ") is wrong", r->va,
				r->len);
			ret = -EUCLEAN;
		}
		uint32_t sum = 0;
		for (uint32_t i = 0; i < r->nref; i++) {
			sum += r->refv[i].count;
			if (!r->refv[i].len || r->refv[i].off + r->refv[i].len > r->len ||
			    (i && (r->refv[i - 1].off > r->refv[i].off ||
				   (r->refv[i - 1].off == r->refv[i].off &&
				    r->refv[i - 1].len >= r->refv[i].len)))) {
				dme_err("engine: region 0x%" PRIx64 " holds a bad registration", r->va);
				ret = -EUCLEAN;
			}
		}
		if (sum != r->refs || (r->state == R_ACTIVE) != (r->refs > 0 || r->owned) ||
		    (r->state == R_IDLE) == (r->prev == NULL) || r->doomed || r->want) {
			dme_err("engine: region 0x%" PRIx64 " state and references disagree", r->va);
			ret = -EUCLEAN;
		}
		if (span)
			span[nspan][0] = r->iova, span[nspan++][1] = r->len;
		mapped += r->mapped;
		pinned += r->mapped ? r->len : 0;
		prev_end = r->va + r->len;
		first = false;
	}
	for (struct region *r = e->pending.head.next; r != &e->pending.head; r = r->next) {
		uint64_t iova;
		if (!xlate_lookup(&e->xlate, r->va, &iova) && !region_at(e, r->va)) {
			dme_err("engine: pending region 0x%" PRIx64 " still translates", r->va);
			ret = -EUCLEAN;
		}
		if (span)
			span[nspan][0] = r->iova, span[nspan++][1] = r->len;
		mapped++;
		pinned += r->len;
	}
	/* no two mappings share an IOVA (a device would reach the wrong one) */
	if (span) {
		qsort(span, nspan, sizeof(*span), cmp_u64_pair);
		for (size_t i = 1; i < nspan; i++)
			if (span[i][0] < span[i - 1][0] + span[i - 1][1]) {
				dme_err("engine: two mappings share IOVA 0x%" PRIx64, span[i][0]);
				ret = -EUCLEAN;
			}
		free(span);
	} else {
		ret = ret ? ret : -ENOMEM;
	}
	mapped += e->orphans;
	if (e->st.map_calls - e->st.unmap_calls != mapped || e->st.live_mappings != mapped) {
		dme_err("engine: maps %" PRIu64 " - unmaps %" PRIu64 " != live %" PRIu64 " (counted %" PRIu64 ")",
			e->st.map_calls, e->st.unmap_calls, e->st.live_mappings, mapped);
		ret = -EUCLEAN;
	}
	if (pinned != e->st.pinned_bytes) {
		dme_err("engine: pinned bytes %" PRIu64 " != registry total %" PRIu64,
			e->st.pinned_bytes, pinned);
		ret = -EUCLEAN;
	}
	pthread_mutex_unlock(&e->lock);
	int iret = dme_iova_check(e->iova);
	return ret ? ret : iret;
}

/* ---------------------------------------------------------------------- */
/* Sharing pinned pages with a second address space                        */

/* A sibling shares the source's backend instance (lock held by the caller). */
static int open_sibling_be(struct dme_engine *e, const void *src_)
{
	const struct dme_engine *src = src_;
	e->ops = src->ops;
	e->family = src->family;
	return src->ops->sibling(src->be, &e->cfg, &e->be);
}

DME_EXPORT int dme_engine_open_sibling(struct dme_engine *src, struct dme_engine **out)
{
	if (!src->ops->sibling || !src->ops->copy) {
		dme_err("%s: no second address space can share this one's pages", src->ops->name);
		return -EOPNOTSUPP;
	}
	struct dme_config cfg = src->cfg;
	cfg.nr_devices = 0;
	cfg.allow_iovas_set = false;
	pthread_mutex_lock(&src->lock);
	int ret = engine_open_with(&cfg, open_sibling_be, src, out);
	pthread_mutex_unlock(&src->lock);
	/* outside src->lock: fork_prepare() takes the list lock, then engines' */
	if (!ret)
		engine_list_add(*out);
	return ret;
}

/*
 * Map [va, +len), already mapped in @src, into its sibling @dst by sharing
 * @src's pinned pages (IOAS_COPY). The two locks are taken in address
 * order, so share(a, b) racing share(b, a) cannot deadlock.
 */
DME_EXPORT int dme_share(struct dme_engine *src, struct dme_engine *dst, void *va, size_t len,
			 unsigned flags, uint64_t *iova)
{
	uint64_t a = (uintptr_t)va;
	if (src == dst || src->family != dst->family || !src->ops->copy) {
		dme_err("share: the destination must be a sibling of the source (dme_engine_open_sibling) on a backend that can copy");
		return -EINVAL;
	}
	struct dme_region_req q = {va, len, flags, 0};
	if (check_req(&q, 0))
		return -EINVAL;
	struct dme_engine *lo = src < dst ? src : dst, *hi = src < dst ? dst : src;
	pthread_mutex_lock(&lo->lock);
	pthread_mutex_lock(&hi->lock);
	unsigned prot = prot_of(flags);
	int ret;
	coherence_sync(src);
	coherence_sync(dst);
	struct region *r = region_at(src, a);
	ret = -ENOENT;
	if (!r || !r->mapped || !can_hit(r, a, a + len, prot)) {
		dme_err("share: [%p, +0x%zx) is not registered and mapped in the source with these permissions",
			va, len);
		goto out;
	}
	ret = -EBUSY;
	for (struct region *o = region_first_in(dst, a, a + len); o;
	     o = o->va + o->len < a + len ? region_first_in(dst, o->va + o->len, a + len) : NULL)
		if (o->state == R_ACTIVE) {
			dme_err("share: [%p, +0x%zx) overlaps a mapping in use in the destination",
				va, len);
			goto out;
		}
	ret = budget_enforce(dst, 1);
	if (ret)
		goto out;
	struct region *n = region_new();
	if (!n) {
		ret = -ENOMEM;
		goto out;
	}
	uint64_t cong = r->page_size, dst_iova;
	if (cong < (2u << 20) && len >= (2u << 20))
		cong = 2u << 20;
	ret = dme_iova_alloc_congruent(dst->iova, len, cong, a, &dst_iova);
	if (ret) {
		dme_err("share: no IOVA range of 0x%zx bytes left in the destination", len);
		goto err_free_region;
	}
	ret = src->ops->copy(src->be, dst->be, r->iova + (a - r->va), dst_iova, len, prot);
	if (ret)
		goto err_free_iova;
	dst->st.map_calls++;
	dst->st.bytes_mapped += len;
	/* the shared mapping replaces idle ones of the destination */
	for (struct region *o; (o = region_first_in(dst, a, a + len));)
		region_evict(dst, o);
	n->va = a;
	n->len = len;
	n->iova = dst_iova;
	n->page_size = r->page_size;
	n->prot = prot;
	n->state = R_ACTIVE;
	n->mapped = true;
	ref_add(n, a, len);
	ret = region_publish(dst, n);
	if (ret)
		goto err_unmap;
	dst->st.live_mappings++;
	dst->st.pinned_bytes += len;
	*iova = dst_iova;
	goto out;
err_unmap: {
	struct be_unmap u = {dst_iova, len, 1};
	size_t d;
	if (be_unmap_chunked(dst, &u, 1, &d)) {
		/* still mapped: the IOVA stays allocated, never handed out again */
		dme_err("share: undoing a failed share: [0x%" PRIx64 ", +0x%zx) could not be unmapped; its IOVA is kept out of use",
			dst_iova, len);
		dst->orphans++;
		dst->st.live_mappings++;
		goto err_free_region;
	}
}
err_free_iova:
	dme_iova_free(dst->iova, dst_iova, len);
err_free_region:
	region_free(n);
out:
	pthread_mutex_unlock(&hi->lock);
	pthread_mutex_unlock(&lo->lock);
	return ret;
}
