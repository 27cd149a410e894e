/* SPDX-License-Identifier: MIT */
/*
 * engine.c - the mapping engine: registry, batching, lazy unmap, budget.
 *
 * Objects. A region is one backend mapping: [va, va+len) at [iova, +len)
 * with permissions. It is in exactly one state:
 *   ACTIVE  - registered (refs > 0), in the VA and IOVA indexes and the
 *             translation table;
 *   IDLE    - refs == 0, still mapped and indexed, on the LRU list;
 *   PENDING - evicted: out of the indexes and the translation table, still
 *             mapped, its IOVA freed into the allocator's quarantine; it
 *             waits for the batched unmap, after which the quarantine epoch
 *             is released.
 * A region whose backend is not ready yet (no device attached on a backend
 * that needs one) is ACTIVE or IDLE with mapped == false; attach replays it.
 *
 * Invariants (dme_engine_check()):
 *   - regions in the VA index are disjoint; every byte of an ACTIVE or
 *     IDLE region translates to its IOVA; nothing else translates;
 *   - map_calls - unmap_calls == number of mapped regions;
 *   - pinned_bytes == the sum of the lengths of mapped regions.
 *
 * Locking. e->lock serialises everything but the lock-free translation
 * (xlate) readers; backend ops run under it (backend.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <dme/engine.h>
#include <dme/mem.h>
#include <dme/sim.h>

#include "avl.h"
#include "backend.h"
#include "internal.h"
#include "compiler.h"
#include "log_internal.h"
#include "xlate.h"

enum { R_ACTIVE, R_IDLE, R_PENDING };

struct region {
	struct avl_node by_va;	 /* key: va */
	uint64_t va, len, iova;
	uint64_t page_size;
	unsigned prot;		 /* BE_PROT_* */
	uint32_t refs;
	uint8_t state;
	bool mapped;		 /* the backend holds it */
	int fd;
	uint64_t fd_off;
	uint64_t epoch;		 /* PENDING: quarantine epoch of its IOVA */
	struct region *prev, *next; /* LRU (IDLE) or pending list */
};

struct rlist {
	struct region head;
	uint64_t n, bytes;
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
	struct dme_engine_stats st;
};

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

static inline struct region *va_region(struct avl_node *n)
{
	return n ? container_of(n, struct region, by_va) : NULL;
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

/* ---------------------------------------------------------------------- */
/* Lazy unmap                                                             */

/* IDLE -> PENDING: out of the indexes, IOVA into quarantine. */
static void region_evict(struct dme_engine *e, struct region *r)
{
	rlist_del(&e->lru, r);
	region_unpublish(e, r);
	e->st.evictions++;
	if (!r->mapped) {
		dme_iova_free(e->iova, r->iova, r->len);
		free(r);
		return;
	}
	/* cannot fail: the allocator handed out exactly this range */
	dme_iova_free_deferred(e->iova, r->iova, r->len);
	r->epoch = e->epoch;
	r->state = R_PENDING;
	rlist_add_tail(&e->pending, r);
}

/*
 * Unmap every PENDING region, then release the quarantine up to the oldest
 * epoch still pending. On a backend error the rest stay pending (still
 * mapped, IOVAs still quarantined) for the next flush.
 */
static int pending_flush(struct dme_engine *e)
{
	if (!e->pending.n)
		return 0;
	uint64_t sealed = dme_iova_seal(e->iova);
	e->epoch = sealed + 1;
	size_t n = e->pending.n, done = 0, i = 0;
	struct be_unmap *u = malloc(n * sizeof(*u));
	if (!u)
		return -ENOMEM;
	for (struct region *r = e->pending.head.next; r != &e->pending.head; r = r->next)
		u[i++] = (struct be_unmap){r->iova, r->len};
	int ret = be_unmap_chunked(e, u, n, &done);
	free(u);
	for (i = 0; i < done; i++) {
		struct region *r = e->pending.head.next;
		rlist_del(&e->pending, r);
		e->st.pinned_bytes -= r->len;
		free(r);
	}
	e->st.live_mappings -= done;
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
		dme_err("engine: %zu of %zu unmaps failed (%s); they stay pending", n - done, n,
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
/* Registration                                                           */

struct run {
	uint64_t va, len;
	unsigned prot;
	uint64_t page_size;
	uint64_t iova;
	struct region *r;
	int fd;
	uint64_t fd_off;
};

/* What the caller knows about the memory of a one-buffer registration. */
struct mem_hint {
	uint64_t page_size;
	int fd;
	uint64_t fd_off;
};

static unsigned prot_of(unsigned flags)
{
	return BE_PROT_READ | (flags & DME_MAP_WRITE ? BE_PROT_WRITE : 0);
}

static int cmp_req_va(const void *a, const void *b, void *arg)
{
	const struct dme_region_req *reqs = arg;
	uint64_t x = (uintptr_t)reqs[*(const size_t *)a].va, y = (uintptr_t)reqs[*(const size_t *)b].va;
	return x < y ? -1 : x > y;
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

/*
 * Plan a batch: each request either hits an existing region (a reference)
 * or joins a run of new, VA-contiguous requests with equal permissions.
 * @hit[i] is the region request i hits, or NULL.
 */
static int plan_batch(struct dme_engine *e, struct dme_region_req *reqs, size_t n, size_t *order,
		      struct region **hit, struct run *runs, size_t *nr_runs, size_t *run_of)
{
	size_t nr = 0;
	for (size_t k = 0; k < n; k++) {
		size_t i = order[k];
		struct dme_region_req *q = &reqs[i];
		uint64_t va = (uintptr_t)q->va, end = va + q->len;
		unsigned prot = prot_of(q->flags);
		/* one look-up settles the common cases: the last region starting
		 * before @end either misses [va, end) (nothing overlaps) or holds
		 * all of it (a hit); anything else takes the loop below */
		struct region *f = va_region(avl_floor(&e->by_va, end - 1));
		hit[i] = NULL;
		if (f && f->va + f->len > va) {
			if (f->va <= va && end - f->va <= f->len && (f->prot & prot) == prot) {
				hit[i] = f;
				continue;
			}
			struct region *r = region_at(e, va);
			/* anything overlapping that is idle can go; active is a conflict */
			for (;;) {
				struct region *o = region_at(e, va);
				if (!o) {
					o = va_region(avl_next(&e->by_va, va));
					if (o && o->va >= end)
						o = NULL;
				}
				if (!o)
					break;
				if (o->state != R_IDLE) {
					dme_err("register: [0x%" PRIx64 ", 0x%" PRIx64 ") overlaps registered [0x%" PRIx64 ", 0x%" PRIx64 ")%s",
						va, end, o->va, o->va + o->len,
						r == o ? " with fewer permissions" : " without being inside it");
					return -EBUSY;
				}
				region_evict(e, o);
			}
		}
		struct run *last = nr ? &runs[nr - 1] : NULL;
		if (last && va < last->va + last->len) {
			if (end <= last->va + last->len && (last->prot & prot) == prot) {
				run_of[i] = nr - 1;	/* inside a run of this batch */
				continue;
			}
			dme_err("register: buffers %p and the one before it overlap partially", q->va);
			return -EINVAL;
		}
		if (last && va == last->va + last->len && last->prot == prot) {
			last->len += q->len;
		} else {
			runs[nr++] = (struct run){va, q->len, prot, 4096, 0, NULL, -1, 0};
		}
		run_of[i] = nr - 1;
	}
	*nr_runs = nr;
	return 0;
}

/*
 * The backing page size of each run decides its IOVA alignment (IOVA == VA
 * modulo the page size, so the IOMMU can use 2M/1G entries). Runs below
 * 2 MiB cannot hold a large page and skip the look-up; for the others
 * /proc/self/smaps also proves the range is mapped (and writable when the
 * device may write) before any kernel call.
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
 * every run to its physical address. @runs has room for @cap runs.
 */
static int runs_split_pa(struct dme_region_req *reqs, size_t n, struct region **hit,
			 size_t *run_of, struct run *runs, size_t *nr, size_t cap)
{
	size_t out = *nr;	/* new runs are appended, then moved down */
	for (size_t k = 0; k < *nr; k++) {
		struct run u = runs[k];
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
			if (out == cap) {
				free(pa);
				return -ENOMEM;
			}
			uint64_t p0 = pa[(cstart - base) / ps] + ((cstart - base) % ps);
			runs[out] = u;
			runs[out].va = cstart;
			runs[out].len = cend - cstart;
			runs[out].iova = p0;
			out++;
			cstart = cend;
		}
		free(pa);
		for (size_t i = 0; i < n; i++) {
			if (hit[i] || run_of[i] != k)
				continue;
			uint64_t a = (uintptr_t)reqs[i].va, z = a + reqs[i].len;
			size_t c;
			for (c = first; c < out && !(a >= runs[c].va && a < runs[c].va + runs[c].len); c++)
				;
			if (c == out || z > runs[c].va + runs[c].len) {
				dme_err("register: buffer %p +0x%zx is not physically contiguous (no IOMMU: register each hugepage on its own)",
					reqs[i].va, reqs[i].len);
				return -EINVAL;
			}
			run_of[i] = c;
		}
	}
	/* move the new runs down over the old ones */
	size_t nnew = out - *nr;
	memmove(runs, runs + *nr, nnew * sizeof(*runs));
	for (size_t i = 0; i < n; i++)
		if (!hit[i])
			run_of[i] -= *nr;
	*nr = nnew;
	return 0;
}

static int register_batch(struct dme_engine *e, struct dme_region_req *reqs, size_t n,
			  const struct mem_hint *hint)
{
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (check_req(&reqs[i], i))
			return -EINVAL;

	size_t *order = malloc(n * sizeof(*order) * 2);
	struct region **hit = malloc(n * sizeof(*hit));
	/* without an IOMMU a run may split at every physical discontinuity */
	size_t cap = e->geo.needs_pa ? 4 * n + 64 : n;
	struct run *runs = malloc(cap * sizeof(*runs));
	struct be_map *maps = malloc(cap * sizeof(*maps));
	if (!order || !hit || !runs || !maps) {
		free(order);
		free(hit);
		free(runs);
		free(maps);
		return -ENOMEM;
	}
	size_t *run_of = order + n;
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, n, sizeof(*order), cmp_req_va, reqs);

	size_t nr = 0, mapped = 0, with_iova = 0;
	pthread_mutex_lock(&e->lock);
	int ret = plan_batch(e, reqs, n, order, hit, runs, &nr, run_of);
	if (!ret)
		ret = runs_inspect(runs, nr, hint, e->geo.needs_pa);
	if (!ret && e->geo.needs_pa)
		ret = runs_split_pa(reqs, n, hit, run_of, runs, &nr, cap);
	if (ret)
		goto out;
	if (nr) {
		ret = budget_enforce(e, nr);
		if (ret)
			goto out;
		if (e->st.live_mappings + nr > e->entry_limit) {
			if (e->entry_limit_src)
				dme_err("register: %zu new mappings would exceed %s of %" PRIu64 " map entries (%" PRIu64 " live, none idle); unregister, or register VA-contiguous buffers in one batch to share an entry",
					nr, e->entry_limit_src, e->entry_limit, e->st.live_mappings);
			else
				dme_err("register: %zu new mappings would exceed the budget of %" PRIu64 " map entries (%" PRIu64 " live, none idle); raise DME_CACHE_ENTRIES or unregister",
					nr, e->entry_limit, e->st.live_mappings);
			ret = -ENOSPC;
			goto out;
		}
	}
	/* IOVAs: congruent to the VA modulo its page size (large IOPTEs) */
	for (; with_iova < nr; with_iova++) {
		struct run *u = &runs[with_iova];
		uint64_t size;
		if (!align_up_checked(u->len, e->geo.alignment, &size)) {
			ret = -EINVAL;
			goto err_free_iova;
		}
		/* runs of 2 MiB or more get 2 MiB congruence even on 4 KiB pages:
		 * free for the allocator, and THP or a later large page can then
		 * use 2 MiB IOPTEs */
		uint64_t cong = u->page_size;
		if (cong < (2u << 20) && size >= (2u << 20))
			cong = 2u << 20;
		if (e->geo.needs_pa)	/* IOVA == physical address (split above) */
			ret = dme_iova_alloc_fixed(e->iova, u->iova, size);
		else if (is_pow2(size) && cong <= size && !(u->va & (cong - 1)))
			/* an aligned IOVA is congruent too; small power-of-two runs
			 * then come from the allocator's per-thread caches */
			ret = dme_iova_alloc(e->iova, size, cong, &u->iova);
		else
			ret = dme_iova_alloc_congruent(e->iova, size, cong, u->va, &u->iova);
		if (ret) {
			dme_err("register: no IOVA range of 0x%" PRIx64 " bytes left in the address space",
				size);
			goto err_free_iova;
		}
		maps[with_iova] = (struct be_map){u->va, u->iova, size, u->prot, u->fd, u->fd_off};
	}
	if (e->geo.ready) {
		ret = be_map_chunked(e, maps, nr, &mapped);
		if (ret)
			goto err_unmap;
	}
	for (size_t k = 0; k < nr; k++) {
		struct region *r = calloc(1, sizeof(*r));
		if (!r) {
			ret = -ENOMEM;
			goto err_unpublish;
		}
		*r = (struct region){.va = runs[k].va, .len = maps[k].len, .iova = runs[k].iova,
				     .page_size = runs[k].page_size, .prot = runs[k].prot,
				     .state = R_ACTIVE, .mapped = e->geo.ready, .fd = runs[k].fd,
				     .fd_off = runs[k].fd_off};
		ret = region_publish(e, r);
		if (ret) {
			free(r);
			goto err_unpublish;
		}
		runs[k].r = r;
		if (r->mapped)
			e->st.pinned_bytes += r->len;
	}
	/* commit: references, IOVAs for the caller */
	for (size_t i = 0; i < n; i++) {
		struct region *r = hit[i] ? hit[i] : runs[run_of[i]].r;
		if (hit[i]) {
			e->st.cache_hits++;
			if (r->state == R_IDLE) {
				rlist_del(&e->lru, r);
				r->state = R_ACTIVE;
			}
		}
		r->refs++;
		reqs[i].iova = r->iova + ((uintptr_t)reqs[i].va - r->va);
	}
	e->st.live_mappings += e->geo.ready ? nr : 0;
	ret = 0;
	goto out;

err_unpublish:
	for (size_t k = 0; k < nr && runs[k].r; k++) {
		region_unpublish(e, runs[k].r);
		if (runs[k].r->mapped)
			e->st.pinned_bytes -= runs[k].r->len;
		free(runs[k].r);
	}
err_unmap:
	if (mapped) {
		struct be_unmap *u = malloc(mapped * sizeof(*u));
		size_t d = 0;
		int uret = -ENOMEM;
		if (u) {
			for (size_t k = 0; k < mapped; k++)
				u[k] = (struct be_unmap){maps[k].iova, maps[k].len};
			uret = be_unmap_chunked(e, u, mapped, &d);
			free(u);
		}
		if (uret) {
			dme_err("register: undoing a failed batch: %zu mappings could not be unmapped (%s); their IOVAs are kept out of use",
				mapped - d, strerror(-uret));
			/* keep the still-mapped IOVAs allocated: never reuse them */
			for (size_t k = d; k < mapped; k++)
				runs[k].len = 0;
			e->st.live_mappings += mapped - d;
			e->orphans += mapped - d;
		}
	}
err_free_iova:
	for (size_t k = 0; k < with_iova; k++)
		if (runs[k].len)
			dme_iova_free(e->iova, runs[k].iova, maps[k].len);
out:
	pthread_mutex_unlock(&e->lock);
	free(order);
	free(hit);
	free(runs);
	free(maps);
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
	struct region *r = region_at(e, a);
	if (!r || !len || a + len < a || a + len - r->va > r->len || r->state != R_ACTIVE) {
		pthread_mutex_unlock(&e->lock);
		dme_err("unregister: [%p, +0x%zx) is not registered", va, len);
		return -EINVAL;
	}
	int ret = 0;
	if (--r->refs == 0) {
		r->state = R_IDLE;
		rlist_add_tail(&e->lru, r);
		ret = budget_enforce(e, 0);
	}
	pthread_mutex_unlock(&e->lock);
	return ret;
}

DME_EXPORT int dme_engine_flush(struct dme_engine *e)
{
	pthread_mutex_lock(&e->lock);
	while (e->lru.n)
		region_evict(e, e->lru.head.next);
	int ret = pending_flush(e);
	pthread_mutex_unlock(&e->lock);
	return ret;
}

/*
 * Unmap the region holding exactly [va, +len) now, whatever its references
 * (the memory is about to go away). Lock held.
 */
static int region_drop_locked(struct dme_engine *e, uint64_t va, uint64_t len)
{
	if (!region_at(e, va))
		return -ENOENT;
	for (uint64_t a = va; a < va + len;) {
		struct region *r = region_at(e, a);
		if (!r) {
			a += 4096;
			continue;
		}
		a = r->va + r->len;
		if (r->state == R_ACTIVE) {
			r->refs = 0;
			r->state = R_IDLE;
			rlist_add_tail(&e->lru, r);
		}
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
	struct dme_mem *m;
	ret = dme_mem_alloc(&p, &m);
	if (ret)
		return ret;
	struct mem_hint h = {m->page_size, m->fd, m->fd_offset};
	/* without an IOMMU each page is its own physically contiguous piece */
	size_t n = e->geo.needs_pa ? m->len / m->page_size : 1;
	struct dme_region_req *q = calloc(n, sizeof(*q));
	if (!q) {
		dme_mem_free(m);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		q[i] = (struct dme_region_req){(char *)m->va + i * (m->len / n), m->len / n, flags, 0};
	ret = register_batch(e, q, n, &h);
	uint64_t iova = q[0].iova;
	free(q);
	if (ret) {
		dme_mem_free(m);
		return ret;
	}
	*out = (struct dme_dma_mem){m->va, m->len, iova, m->page_size, m->node_actual, m};
	return 0;
}

DME_EXPORT int dme_dma_free(struct dme_engine *e, struct dme_dma_mem *d)
{
	pthread_mutex_lock(&e->lock);
	int ret = region_drop_locked(e, (uintptr_t)d->va, d->len);
	pthread_mutex_unlock(&e->lock);
	if (ret == -ENOENT)
		dme_err("dma_free: %p is not memory of this engine", d->va);
	if (ret)
		return ret;	/* still mapped: the memory must not go back */
	dme_mem_free(d->mem);
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
	return engine_open_with(cfg, open_configured, NULL, out);
}

static int open_sim_params(struct dme_engine *e, const void *params)
{
	e->ops = &be_sim_ops;
	return dme_sim_open(params, &e->be);
}

DME_EXPORT int dme_engine_open_sim(const struct dme_config *cfg,
				   const struct dme_sim_params *params, struct dme_engine **out)
{
	return engine_open_with(cfg, open_sim_params, params, out);
}

DME_EXPORT void dme_engine_close(struct dme_engine *e)
{
	if (!e)
		return;
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
	if (pending_flush(e))
		dme_err("close: %" PRIu64 " mappings could not be unmapped", e->pending.n);
	while (e->pending.n) {
		struct region *r = e->pending.head.next;
		rlist_del(&e->pending, r);
		free(r);
	}
	pthread_mutex_unlock(&e->lock);
	xlate_destroy(&e->xlate);
	dme_iova_space_destroy(e->iova);
	e->ops->close(e->be);
	free(e->geo_rsv);
	engine_free(e);
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

DME_EXPORT int dme_engine_check(struct dme_engine *e)
{
	int ret = 0;
	pthread_mutex_lock(&e->lock);
	uint64_t prev_end = 0, mapped = 0, pinned = 0;
	bool first = true;
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
		if ((r->state == R_ACTIVE) != (r->refs > 0)) {
			dme_err("engine: region 0x%" PRIx64 " state and references disagree", r->va);
			ret = -EUCLEAN;
		}
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
		mapped++;
		pinned += r->len;
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
	return ret;
}

DME_EXPORT int dme_share(struct dme_engine *src, struct dme_engine *dst, void *va, size_t len,
			 unsigned flags, uint64_t *iova)
{
	uint64_t a = (uintptr_t)va;
	if (src == dst || src->ops != dst->ops || !src->ops->copy) {
		dme_err("share: both engines must be siblings on a backend that can copy");
		return -EINVAL;
	}
	struct dme_region_req q = {va, len, flags, 0};
	if (check_req(&q, 0))
		return -EINVAL;
	/* lock order: source, then destination */
	pthread_mutex_lock(&src->lock);
	pthread_mutex_lock(&dst->lock);
	unsigned prot = prot_of(flags);
	struct region *r = region_at(src, a);
	int ret = -ENOENT;
	if (!r || a + len - r->va > r->len || (r->prot & prot) != prot || !r->mapped) {
		dme_err("share: [%p, +0x%zx) is not mapped in the source with these permissions",
			va, len);
		goto out;
	}
	ret = -EBUSY;
	if (region_at(dst, a) || region_at(dst, a + len - 1)) {
		dme_err("share: [%p, +0x%zx) is already registered in the destination", va, len);
		goto out;
	}
	ret = budget_enforce(dst, 1);
	if (ret)
		goto out;
	uint64_t cong = r->page_size, dst_iova;
	if (cong < (2u << 20) && len >= (2u << 20))
		cong = 2u << 20;
	ret = dme_iova_alloc_congruent(dst->iova, len, cong, a, &dst_iova);
	if (ret) {
		dme_err("share: no IOVA range of 0x%zx bytes left in the destination", len);
		goto out;
	}
	ret = src->ops->copy(src->be, dst->be, r->iova + (a - r->va), dst_iova, len, prot);
	if (ret)
		goto err_free_iova;
	dst->st.map_calls++;
	dst->st.bytes_mapped += len;
	struct region *n = calloc(1, sizeof(*n));
	if (!n) {
		ret = -ENOMEM;
		goto err_unmap;
	}
	*n = (struct region){.va = a, .len = len, .iova = dst_iova, .page_size = r->page_size,
			     .prot = prot, .refs = 1, .state = R_ACTIVE, .mapped = true, .fd = -1};
	ret = region_publish(dst, n);
	if (ret) {
		free(n);
		goto err_unmap;
	}
	dst->st.live_mappings++;
	dst->st.pinned_bytes += len;
	*iova = dst_iova;
	goto out;
err_unmap:
	{
		struct be_unmap u = {dst_iova, len};
		size_t d;
		if (be_unmap_chunked(dst, &u, 1, &d))
			dst->orphans++, dst->st.live_mappings++;
	}
err_free_iova:
	dme_iova_free(dst->iova, dst_iova, len);
out:
	pthread_mutex_unlock(&dst->lock);
	pthread_mutex_unlock(&src->lock);
	return ret;
}
