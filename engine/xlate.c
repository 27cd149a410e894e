/* SPDX-License-Identifier: MIT */
/*
 * xlate.c - the write side of the translation table (xlate.h has the shape,
 * the read side and the concurrency rules).
 *
 * Owns: per radix ("xtab") its directories, leaves and sub-tables, and a
 * small page allocator that carves them from 256 KiB chunks placed on the
 * replica's NUMA node.
 *
 * Every writer operation runs in phases so that a failure changes no
 * translation: check (-EEXIST), prepare (allocate and publish tables that do
 * not change any answer: empty sub-tables, or a sub-table spelling out a
 * linear slot page by page), then commit (stores that cannot fail). Prepare
 * touches every forward replica and the reverse table before commit touches
 * any of them.
 *
 * Locking: none inside; the caller serializes writers (xlate_set, _clear,
 * _trim, _destroy). Writers publish with release stores; readers (xlate.h)
 * load with acquire.
 */
#include <errno.h>
#include <inttypes.h>
#include <numa.h>
#include <numaif.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log_internal.h"
#include "xlate.h"

#define PAGE 4096ull
#define SLOT (1ull << 21)
#define GIB (1ull << 30)
#define KEY_LIMIT (1ull << XLATE_KEY_BITS)
#define LOW_MASK ((1ull << XLATE_LOW_BITS) - 1)
#define DIR_ENTRIES (1u << (XLATE_LOW_BITS - 30))
#define DIR_BYTES ((size_t)DIR_ENTRIES * sizeof(xword))
#define DIR_PAGES (DIR_BYTES / PAGE)
#define WORDS_PER_PAGE 512u
#define HI_ENTRIES (1u << (XLATE_KEY_BITS - XLATE_LOW_BITS))
#define CHUNK_PAGES 64u

_Thread_local struct xlate_tls xlate_tls __attribute__((tls_model("initial-exec")));

static _Atomic unsigned next_id = 1; /* 0 never names a table */

/* A directory (2^17 words, one per GiB) and which of its pages were written. */
struct xdir {
	xword *dir;
	uint64_t touched[DIR_PAGES / 64];
	unsigned nr_touched;
};

struct chunk {
	struct chunk *next;
	void *mem;
};

struct xtab {
	struct xdir low;		      /* keys below 2^47 */
	_Atomic(_Atomic(struct xdir *) *) hi; /* HI_ENTRIES, lazily; [0] unused */
	int node;			      /* NUMA node for this radix's pages, or -1 */
	struct chunk *chunks;
	char *cur; /* next fresh page of the current chunk */
	unsigned cur_left;
	void **spare; /* pages given back by trim (not resident) */
	size_t nr_spare, cap_spare;
	size_t pages_used; /* leaves and sub-tables in use */
	size_t nr_hi;	   /* high directories allocated */
};

/* ---- memory ---------------------------------------------------------------- */

static void place(void *p, size_t len, int node)
{
	if (node < 0)
		return;
	struct bitmask *bm = numa_allocate_nodemask();
	if (!bm)
		return;
	numa_bitmask_setbit(bm, (unsigned)node);
	if (mbind(p, len, MPOL_PREFERRED, bm->maskp, bm->size + 1, 0))
		dme_dbg("xlate: cannot place %zu bytes of tables on node %d: %s", len, node,
			strerror(errno));
	numa_free_nodemask(bm);
}

static void *map_zeroed(size_t len, int node)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	place(p, len, node);
	return p;
}

/* A zeroed 4 KiB table page, or NULL. */
static xword *page_alloc(struct xtab *t)
{
	void *p;
	if (t->nr_spare) {
		p = t->spare[--t->nr_spare]; /* zero: trim dropped its contents */
	} else {
		if (!t->cur_left) {
			struct chunk *c = malloc(sizeof(*c));
			if (!c)
				return NULL;
			c->mem = map_zeroed(CHUNK_PAGES * PAGE, t->node);
			if (!c->mem) {
				free(c);
				return NULL;
			}
			c->next = t->chunks;
			t->chunks = c;
			t->cur = c->mem;
			t->cur_left = CHUNK_PAGES;
		}
		p = t->cur;
		t->cur += PAGE;
		t->cur_left--;
	}
	t->pages_used++;
	return p;
}

/* Only with no reader running (trim): the page may be reused for any slot. */
static bool page_free(struct xtab *t, void *p)
{
	if (t->nr_spare == t->cap_spare) {
		size_t cap = t->cap_spare ? 2 * t->cap_spare : 64;
		void **n = realloc(t->spare, cap * sizeof(*n));
		if (!n)
			return false;
		t->spare = n;
		t->cap_spare = cap;
	}
	madvise(p, PAGE, MADV_DONTNEED); /* private anonymous: reads back as zeroes */
	t->spare[t->nr_spare++] = p;
	t->pages_used--;
	return true;
}

static int xt_init(struct xtab *t, int node)
{
	t->node = node;
	t->low.dir = map_zeroed(DIR_BYTES, node);
	return t->low.dir ? 0 : -ENOMEM;
}

static void xt_destroy(struct xtab *t)
{
	if (t->low.dir)
		munmap(t->low.dir, DIR_BYTES);
	_Atomic(struct xdir *) *hi = atomic_load_explicit(&t->hi, memory_order_relaxed);
	for (unsigned i = 1; hi && i < HI_ENTRIES; i++) {
		struct xdir *d = atomic_load_explicit(&hi[i], memory_order_relaxed);
		if (d) {
			munmap(d->dir, DIR_BYTES);
			free(d);
		}
	}
	free(hi);
	for (struct chunk *c = t->chunks, *n; c; c = n) {
		n = c->next;
		munmap(c->mem, CHUNK_PAGES * PAGE);
		free(c);
	}
	free(t->spare);
	memset(t, 0, sizeof(*t));
}

/* ---- walking a radix (writer side) ------------------------------------------ */

static struct xdir *xt_xdir(struct xtab *t, uint64_t key, bool create)
{
	unsigned h = (unsigned)(key >> XLATE_LOW_BITS);
	if (!h)
		return &t->low;
	_Atomic(struct xdir *) *hi = atomic_load_explicit(&t->hi, memory_order_relaxed);
	if (!hi) {
		if (!create)
			return NULL;
		hi = calloc(HI_ENTRIES, sizeof(*hi));
		if (!hi)
			return NULL;
		atomic_store_explicit(&t->hi, hi, memory_order_release);
	}
	struct xdir *d = atomic_load_explicit(&hi[h], memory_order_relaxed);
	if (!d && create) {
		d = calloc(1, sizeof(*d));
		if (!d)
			return NULL;
		d->dir = map_zeroed(DIR_BYTES, t->node);
		if (!d->dir) {
			free(d);
			return NULL;
		}
		t->nr_hi++;
		atomic_store_explicit(&hi[h], d, memory_order_release);
	}
	return d;
}

/* The leaf (512 slot words) covering @key's GiB; created on demand. */
static xword *xt_leaf(struct xtab *t, uint64_t key, bool create)
{
	struct xdir *d = xt_xdir(t, key, create);
	if (!d)
		return NULL;
	unsigned i = (unsigned)((key & LOW_MASK) >> 30);
	uint64_t v = atomic_load_explicit(&d->dir[i], memory_order_relaxed);
	if (v || !create)
		return (xword *)(uintptr_t)v;
	xword *leaf = page_alloc(t);
	if (!leaf)
		return NULL;
	unsigned pg = i / WORDS_PER_PAGE;
	if (!(d->touched[pg / 64] & (1ull << (pg % 64)))) {
		d->touched[pg / 64] |= 1ull << (pg % 64);
		d->nr_touched++;
	}
	atomic_store_explicit(&d->dir[i], (uint64_t)(uintptr_t)leaf, memory_order_release);
	return leaf;
}

static inline unsigned slot_index(uint64_t key)
{
	return (unsigned)(key >> 21) & 511;
}

static inline unsigned page_index(uint64_t key)
{
	return (unsigned)(key >> 12) & 511;
}

static inline xword *sub_of(uint64_t w)
{
	return (xword *)(uintptr_t)(w & XE_VAL);
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* The next @size boundary above @pos (a power of two), but no further than @end:
 * where a walk over [pos, end) leaves the current 2 MiB slot or GiB leaf. */
static inline uint64_t next_edge(uint64_t pos, uint64_t size, uint64_t end)
{
	return min_u64(end, (pos | (size - 1)) + 1);
}

/* True when any page of [key, end) is mapped. */
static bool xt_busy(struct xtab *t, uint64_t key, uint64_t end)
{
	for (uint64_t pos = key; pos < end;) {
		xword *leaf = xt_leaf(t, pos, false);
		if (!leaf) {
			pos = next_edge(pos, GIB, end);
			continue;
		}
		uint64_t slot_end = next_edge(pos, SLOT, end);
		uint64_t w = atomic_load_explicit(&leaf[slot_index(pos)], memory_order_relaxed);
		if (w & XE_LINEAR)
			return true;
		if (w & XE_SUB) {
			xword *sub = sub_of(w);
			for (uint64_t p = pos; p < slot_end; p += PAGE)
				if (atomic_load_explicit(&sub[page_index(p)], memory_order_relaxed))
					return true;
		}
		pos = slot_end;
	}
	return false;
}

/* Leaves for the range, and an (empty) sub-table for every slot it covers
 * only in part. Publishing these changes no answer. */
static int xt_prepare_set(struct xtab *t, uint64_t key, uint64_t end)
{
	for (uint64_t pos = key; pos < end;) {
		xword *leaf = xt_leaf(t, pos, true);
		if (!leaf)
			return -ENOMEM;
		uint64_t slot_end = next_edge(pos, SLOT, end);
		bool full = !(pos & (SLOT - 1)) && slot_end - pos == SLOT;
		xword *w = &leaf[slot_index(pos)];
		if (!full && !atomic_load_explicit(w, memory_order_relaxed)) {
			xword *sub = page_alloc(t);
			if (!sub)
				return -ENOMEM;
			atomic_store_explicit(w, (uint64_t)(uintptr_t)sub | XE_SUB,
					      memory_order_release);
		}
		pos = slot_end;
	}
	return 0;
}

/* Write key -> val for the range; everything is prepared and free. */
static void xt_fill(struct xtab *t, uint64_t key, uint64_t end, uint64_t val)
{
	for (uint64_t pos = key; pos < end;) {
		xword *leaf = xt_leaf(t, pos, false);
		uint64_t slot_end = next_edge(pos, SLOT, end);
		xword *w = &leaf[slot_index(pos)];
		uint64_t cur = atomic_load_explicit(w, memory_order_relaxed);
		if (!cur) { /* a whole, empty slot: one linear word */
			atomic_store_explicit(w, (val + (pos - key)) | XE_LINEAR,
					      memory_order_release);
		} else {
			xword *sub = sub_of(cur);
			for (uint64_t p = pos; p < slot_end; p += PAGE)
				atomic_store_explicit(&sub[page_index(p)],
						      (val + (p - key)) | XE_PAGE,
						      memory_order_release);
		}
		pos = slot_end;
	}
}

/* Replace every linear slot that [key, end) covers only in part by a
 * sub-table holding the same 512 translations. */
static int xt_prepare_clear(struct xtab *t, uint64_t key, uint64_t end)
{
	for (uint64_t pos = key; pos < end;) {
		xword *leaf = xt_leaf(t, pos, false);
		if (!leaf) {
			pos = next_edge(pos, GIB, end);
			continue;
		}
		uint64_t slot_end = next_edge(pos, SLOT, end);
		bool full = !(pos & (SLOT - 1)) && slot_end - pos == SLOT;
		xword *w = &leaf[slot_index(pos)];
		uint64_t cur = atomic_load_explicit(w, memory_order_relaxed);
		if (!full && (cur & XE_LINEAR)) {
			xword *sub = page_alloc(t);
			if (!sub)
				return -ENOMEM;
			uint64_t base = cur & XE_VAL;
			for (unsigned i = 0; i < WORDS_PER_PAGE; i++)
				atomic_store_explicit(&sub[i], (base + i * PAGE) | XE_PAGE,
						      memory_order_relaxed);
			atomic_store_explicit(w, (uint64_t)(uintptr_t)sub | XE_SUB,
					      memory_order_release);
		}
		pos = slot_end;
	}
	return 0;
}

/* Clear [key, end); partially covered linear slots were split by prepare. */
static void xt_clear(struct xtab *t, uint64_t key, uint64_t end)
{
	for (uint64_t pos = key; pos < end;) {
		xword *leaf = xt_leaf(t, pos, false);
		if (!leaf) {
			pos = next_edge(pos, GIB, end);
			continue;
		}
		uint64_t slot_end = next_edge(pos, SLOT, end);
		xword *w = &leaf[slot_index(pos)];
		uint64_t cur = atomic_load_explicit(w, memory_order_relaxed);
		if (cur & XE_LINEAR) {
			atomic_store_explicit(w, 0, memory_order_release);
		} else if (cur & XE_SUB) {
			xword *sub = sub_of(cur); /* stays: it serves this slot again */
			for (uint64_t p = pos; p < slot_end; p += PAGE)
				atomic_store_explicit(&sub[page_index(p)], 0, memory_order_release);
		}
		pos = slot_end;
	}
}

/* Call @fn for every maximal run of [key, end) that maps to consecutive
 * values, in key order; stops at the first error @fn returns. */
static int xt_runs(struct xtab *t, uint64_t key, uint64_t end,
		   int (*fn)(void *arg, uint64_t key, uint64_t val, uint64_t len), void *arg)
{
	uint64_t rk = 0, rv = 0, rl = 0;
	int ret = 0;
#define RUN_ADD(k, v, l)                                                                           \
	do {                                                                                       \
		if (rl && rk + rl == (k) && rv + rl == (v)) {                                      \
			rl += (l);                                                                 \
		} else {                                                                           \
			if (rl && (ret = fn(arg, rk, rv, rl)))                                     \
				return ret;                                                        \
			rk = (k), rv = (v), rl = (l);                                              \
		}                                                                                  \
	} while (0)
	for (uint64_t pos = key; pos < end;) {
		xword *leaf = xt_leaf(t, pos, false);
		if (!leaf) {
			pos = next_edge(pos, GIB, end);
			continue;
		}
		uint64_t slot_end = next_edge(pos, SLOT, end);
		uint64_t cur = atomic_load_explicit(&leaf[slot_index(pos)], memory_order_relaxed);
		if (cur & XE_LINEAR) {
			RUN_ADD(pos, (cur & XE_VAL) + (pos & (SLOT - 1)), slot_end - pos);
		} else if (cur & XE_SUB) {
			xword *sub = sub_of(cur);
			for (uint64_t p = pos; p < slot_end; p += PAGE) {
				uint64_t v =
				    atomic_load_explicit(&sub[page_index(p)], memory_order_relaxed);
				if (v)
					RUN_ADD(p, v & XE_VAL, PAGE);
			}
		}
		pos = slot_end;
	}
#undef RUN_ADD
	return rl ? fn(arg, rk, rv, rl) : 0;
}

static int run_prepare_clear(void *arg, uint64_t key, uint64_t val, uint64_t len)
{
	(void)key;
	return xt_prepare_clear(arg, val, val + len);
}

static int run_clear(void *arg, uint64_t key, uint64_t val, uint64_t len)
{
	(void)key;
	xt_clear(arg, val, val + len);
	return 0;
}

/* ---- public (internal API) --------------------------------------------------- */

int xlate_set(struct xlate *x, uint64_t va, uint64_t len, uint64_t iova, unsigned page_shift)
{
	uint64_t gran = page_shift == 12 ? PAGE : SLOT;
	if (page_shift != 12 && (page_shift < 21 || page_shift > 30)) {
		dme_err("xlate: page shift %u is neither 12 nor 21..30", page_shift);
		return -EINVAL;
	}
	if (!len || ((va | iova | len) & (gran - 1)) || va >= KEY_LIMIT || iova >= KEY_LIMIT ||
	    len > KEY_LIMIT - va || len > KEY_LIMIT - iova) {
		dme_err("xlate: cannot record VA 0x%" PRIx64 " length 0x%" PRIx64
			" at IOVA 0x%" PRIx64 ": empty, not %" PRIu64
			" KiB aligned, or beyond 2^%d",
			va, len, iova, gran >> 10, XLATE_KEY_BITS);
		return -EINVAL;
	}
	if (xt_busy(&x->fwd[0], va, va + len)) {
		dme_err("xlate: VA range 0x%" PRIx64 "+0x%" PRIx64 " already has translations", va,
			len);
		return -EEXIST;
	}
	if (xt_busy(x->rev, iova, iova + len)) {
		dme_err("xlate: IOVA range 0x%" PRIx64 "+0x%" PRIx64 " is already in use", iova,
			len);
		return -EEXIST;
	}
	for (unsigned i = 0; i < x->nr_nodes; i++)
		if (xt_prepare_set(&x->fwd[i], va, va + len))
			goto err_nomem;
	if (xt_prepare_set(x->rev, iova, iova + len))
		goto err_nomem;
	for (unsigned i = 0; i < x->nr_nodes; i++)
		xt_fill(&x->fwd[i], va, va + len, iova);
	xt_fill(x->rev, iova, iova + len, va);
	return 0;
err_nomem:
	dme_err("xlate: out of memory for tables recording VA 0x%" PRIx64 "+0x%" PRIx64, va, len);
	return -ENOMEM;
}

int xlate_clear(struct xlate *x, uint64_t va, uint64_t len)
{
	if (!len || ((va | len) & (PAGE - 1)) || va >= KEY_LIMIT || len > KEY_LIMIT - va) {
		dme_err("xlate: cannot clear VA 0x%" PRIx64 " length 0x%" PRIx64
			": empty, not 4 KiB aligned, or beyond 2^%d",
			va, len, XLATE_KEY_BITS);
		return -EINVAL;
	}
	uint64_t end = va + len;
	if (xt_runs(&x->fwd[0], va, end, run_prepare_clear, x->rev))
		goto err_nomem;
	for (unsigned i = 0; i < x->nr_nodes; i++)
		if (xt_prepare_clear(&x->fwd[i], va, end))
			goto err_nomem;
	xt_runs(&x->fwd[0], va, end, run_clear, x->rev);
	for (unsigned i = 0; i < x->nr_nodes; i++)
		xt_clear(&x->fwd[i], va, end);
	return 0;
err_nomem:
	dme_err("xlate: out of memory splitting 2 MiB entries to clear VA 0x%" PRIx64 "+0x%" PRIx64,
		va, len);
	return -ENOMEM;
}

static unsigned my_rep(const struct xlate *x)
{
	unsigned cpu, node = 0;
	if (getcpu(&cpu, &node))
		node = 0;
	xlate_tls.node = node;
	return x->node_rep[node & (XLATE_MAX_NODES - 1)];
}

const xword *xlate_fdir_slow(const struct xlate *x)
{
	struct xlate_tls *t = &xlate_tls;
#ifdef XLATE_RSEQ
	t->cpu = xlate_cpu(); /* first: a migration after this re-checks */
#endif
	t->dir = x->fdir[my_rep(x)];
	t->id = x->id;
	t->left = XLATE_NODE_REFRESH;
	return t->dir;
}

uint64_t xlate_lookup_high(const struct xlate *x, uint64_t va)
{
	if (va >= KEY_LIMIT)
		return XLATE_NONE;
	unsigned rep = x->nr_nodes == 1 ? 0 : my_rep(x);
	_Atomic(struct xdir *) *hi = atomic_load_explicit(&x->fwd[rep].hi, memory_order_acquire);
	if (!hi)
		return XLATE_NONE;
	struct xdir *d = atomic_load_explicit(&hi[va >> XLATE_LOW_BITS], memory_order_acquire);
	if (!d)
		return XLATE_NONE;
	uint64_t v;
	return xtab_get(d->dir, va & LOW_MASK, &v) ? XLATE_NONE : v;
}

uint64_t xlate_reverse_high(const struct xlate *x, uint64_t iova)
{
	if (iova >= KEY_LIMIT)
		return XLATE_NONE;
	_Atomic(struct xdir *) *hi = atomic_load_explicit(&x->rev->hi, memory_order_acquire);
	if (!hi)
		return XLATE_NONE;
	struct xdir *d = atomic_load_explicit(&hi[iova >> XLATE_LOW_BITS], memory_order_acquire);
	if (!d)
		return XLATE_NONE;
	uint64_t v;
	return xtab_get(d->dir, iova & LOW_MASK, &v) ? XLATE_NONE : v;
}

/* ---- trim ------------------------------------------------------------------------ */

static bool words_zero(const xword *t)
{
	for (unsigned i = 0; i < WORDS_PER_PAGE; i++)
		if (atomic_load_explicit(&t[i], memory_order_relaxed))
			return false;
	return true;
}

/* A sub-table spelling out one linear 2 MiB run: its base | XE_LINEAR, else 0. */
static uint64_t sub_linear(const xword *sub)
{
	uint64_t first = atomic_load_explicit(&sub[0], memory_order_relaxed);
	if (!first)
		return 0;
	for (unsigned i = 1; i < WORDS_PER_PAGE; i++)
		if (atomic_load_explicit(&sub[i], memory_order_relaxed) != first + i * PAGE)
			return 0;
	return (first & XE_VAL) | XE_LINEAR;
}

static size_t trim_dir(struct xtab *t, struct xdir *d)
{
	size_t freed = 0;
	for (unsigned pg = 0; pg < DIR_PAGES; pg++) {
		if (!(d->touched[pg / 64] & (1ull << (pg % 64))))
			continue;
		for (unsigned i = pg * WORDS_PER_PAGE; i < (pg + 1) * WORDS_PER_PAGE; i++) {
			xword *leaf = (xword *)(uintptr_t)atomic_load_explicit(
			    &d->dir[i], memory_order_relaxed);
			if (!leaf)
				continue;
			for (unsigned s = 0; s < WORDS_PER_PAGE; s++) {
				uint64_t w = atomic_load_explicit(&leaf[s], memory_order_relaxed);
				if (!(w & XE_SUB))
					continue;
				uint64_t lin = sub_linear(sub_of(w));
				if ((lin || words_zero(sub_of(w))) && page_free(t, sub_of(w))) {
					atomic_store_explicit(&leaf[s], lin, memory_order_relaxed);
					freed += PAGE;
				}
			}
			if (words_zero(leaf) && page_free(t, leaf)) {
				atomic_store_explicit(&d->dir[i], 0, memory_order_relaxed);
				freed += PAGE;
			}
		}
	}
	return freed;
}

static size_t xt_trim(struct xtab *t)
{
	size_t freed = trim_dir(t, &t->low);
	_Atomic(struct xdir *) *hi = atomic_load_explicit(&t->hi, memory_order_relaxed);
	for (unsigned i = 1; hi && i < HI_ENTRIES; i++) {
		struct xdir *d = atomic_load_explicit(&hi[i], memory_order_relaxed);
		if (d)
			freed += trim_dir(t, d);
	}
	return freed;
}

size_t xlate_trim(struct xlate *x)
{
	size_t freed = xt_trim(x->rev);
	for (unsigned i = 0; i < x->nr_nodes; i++)
		freed += xt_trim(&x->fwd[i]);
	return freed;
}

/* ---- sizes, init, destroy ----------------------------------------------------------- */

static size_t xt_meta(struct xtab *t)
{
	size_t b = sizeof(*t) + t->low.nr_touched * PAGE + t->pages_used * PAGE;
	_Atomic(struct xdir *) *hi = atomic_load_explicit(&t->hi, memory_order_relaxed);
	if (hi) {
		b += HI_ENTRIES * sizeof(*hi);
		for (unsigned i = 1; i < HI_ENTRIES; i++) {
			struct xdir *d = atomic_load_explicit(&hi[i], memory_order_relaxed);
			if (d)
				b += sizeof(*d) + d->nr_touched * PAGE;
		}
	}
	return b;
}

size_t xlate_meta_bytes(const struct xlate *x)
{
	size_t b = sizeof(*x) + xt_meta(x->rev);
	for (unsigned i = 0; i < x->nr_nodes; i++)
		b += xt_meta(&x->fwd[i]);
	return b;
}

int xlate_init(struct xlate *x, unsigned nr_nodes)
{
	int nodes[XLATE_MAX_NODES];
	unsigned nr_real = 0;
	memset(x, 0, sizeof(*x));
	if (numa_available() >= 0 && numa_num_configured_nodes() > 1) {
		for (int n = 0; n <= numa_max_node() && nr_real < XLATE_MAX_NODES; n++)
			if (numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)n))
				nodes[nr_real++] = n;
	}
	if (!nr_nodes)
		nr_nodes = nr_real ? nr_real : 1;
	if (nr_nodes > XLATE_MAX_NODES)
		nr_nodes = XLATE_MAX_NODES;
	x->nr_nodes = nr_nodes;
	x->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
	for (unsigned i = 0; i < nr_real; i++)
		x->node_rep[nodes[i] & (XLATE_MAX_NODES - 1)] = (uint8_t)(i % nr_nodes);

	x->fwd = calloc(nr_nodes, sizeof(*x->fwd));
	x->rev = calloc(1, sizeof(*x->rev));
	if (!x->fwd || !x->rev)
		goto err_destroy;
	for (unsigned i = 0; i < nr_nodes; i++) {
		if (xt_init(&x->fwd[i], i < nr_real ? nodes[i] : -1))
			goto err_destroy;
		x->fdir[i] = x->fwd[i].low.dir;
	}
	if (xt_init(x->rev, -1))
		goto err_destroy;
	x->rdir = x->rev->low.dir;
	return 0;
err_destroy:
	dme_err("xlate: out of memory for %u replicas", nr_nodes);
	xlate_destroy(x);
	return -ENOMEM;
}

void xlate_destroy(struct xlate *x)
{
	for (unsigned i = 0; x->fwd && i < x->nr_nodes; i++)
		xt_destroy(&x->fwd[i]);
	if (x->rev)
		xt_destroy(x->rev);
	free(x->fwd);
	free(x->rev);
	memset(x, 0, sizeof(*x));
}
