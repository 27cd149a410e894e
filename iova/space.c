/* SPDX-License-Identifier: MIT */
/*
 * space.c - IOVA spaces: geometry, the locked tree path, per-thread
 * magazines over a shared depot, the lock-free state table behind them, and
 * quarantine.
 *
 * Ownership. Every busy range is a tree node (tree.h). A range owned by the
 * caches is a CACHE node: it stays busy in the tree whether it sits in a
 * magazine or has been handed out from one, so the tree never needs the lock
 * on a cache hit.
 *
 * Each CACHE range has a state slot saying whether it is FREE (in some
 * magazine or the depot) or LIVE (handed out). It is what lets a cache hit
 * refuse a double free or a size mismatch without the lock: a free is one CAS
 * LIVE->FREE. A slot's state word carries a generation that changes whenever
 * the slot is given to another range, so a reader that raced with a reuse
 * fails its CAS instead of acting on the wrong range. Slots never move; the
 * free fast path finds them through an open-addressed IOVA -> slot index.
 * Any fast-path miss or failed CAS falls back to the locked path, which is
 * authoritative: a miss costs time, never correctness. Index tables replaced
 * on growth stay allocated until the space is destroyed, so a late reader
 * never touches freed memory.
 *
 * Reclaim. A magazine entry records the slot and its exact state word (the
 * tag: generation, class, FREE) from when the range went in; a range is
 * taken out of a magazine only if its slot still holds exactly that tag. A
 * flush (a tree allocation that missed, or dme_iova_flush_caches()) takes
 * back the FREE ranges of every other thread's magazines, parked threads
 * included, without writing those magazines: under the lock it reads their
 * entries' slot numbers (as hints), moves each FREE slot to DEAD by CAS (a
 * tentative claim), and returns a range to the tree only once it is sure
 * the owner did not take it meanwhile. The owner then finds its entry stale
 * (tag mismatch) and drops it.
 *
 * The owner's allocation fast path takes FREE -> LIVE with plain stores, not
 * a CAS, inside a window marked by its tcache's "popping" flag:
 *     popping = 1; if (state == tag) state = LIVE; popping = 0 (release)
 * A flusher that made tentative claims calls membarrier(2)
 * (PRIVATE_EXPEDITED): every other thread of the process passes a full
 * barrier at some point P during the call. An owner whose load of the state
 * comes after P sees DEAD and goes slow. One whose load came before P also
 * stored popping = 1 before P, so the flusher sees the flag and waits for it
 * to drop (the window is a few instructions; a preempted owner only delays
 * the flush); then a LIVE store, if any, is visible and the flusher leaves
 * that slot alone. Slots still DEAD are returned. Should membarrier be
 * unavailable (seccomp, kernels before 4.14), the claims are undone and
 * other threads' caches are reclaimed only when they exit (warned once).
 * The free fast path needs none of this: it is a CAS LIVE -> FREE, and a
 * flush only ever claims FREE slots.
 *
 * Locking. space->lock guards the tree, the depot, the quarantine, the
 * counters, slot assignment and index writes, and every magazine pointer of
 * every thread cache (the owner swaps them only with the lock held). A
 * thread's magazine contents are written only by that thread; other threads
 * read their counts and entries (atomics), under the lock, to reclaim and
 * for stats. The global tc_lock guards the thread <-> space links used at
 * thread exit and space destroy. Order: tc_lock, then space->lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <dme/iova.h>

#include "compiler.h"
#include "log_internal.h"
#include "tree.h"

#define NCLASS_MAX 16
#define MAG_MAX 1024
#define PROBE_MAX 16

enum { ST_EMPTY = 0, ST_FREE = 1, ST_LIVE = 2, ST_DEAD = 3 };
#define KEY_EMPTY 0ull
#define KEY_TOMB 2ull
#define SLOT_SHIFT 12
#define SLOT_CHUNKS 4096

/* The state of one cache-owned range. Slots never move and are never freed
 * before the space, so a stale slot number is harmless: its key or its
 * generation no longer matches. */
struct cslot {
	_Atomic uint64_t key;	/* iova | 1, or KEY_EMPTY when unused */
	_Atomic uint64_t state; /* gen << 16 | cls << 8 | st */
};

/* IOVA -> slot index, for the free fast path only. Open addressing. */
struct cidx_ent {
	_Atomic uint64_t key;	/* iova | 1, KEY_EMPTY or KEY_TOMB */
	_Atomic uint64_t slot;
};

struct cidx {
	struct cidx_ent *e;
	uint64_t mask;
	unsigned bits;
	uint64_t used;	/* entries with a key or a tombstone */
	uint64_t valid; /* entries with a key */
	struct cidx *retired;
};

/* A free range in a magazine. slot and tag are atomics: reclaimers and
 * stats read other threads' entries. tag is the slot's state word when the
 * range went in; taking the range out is a CAS from exactly tag. */
struct mag_ent {
	uint64_t iova;
	_Atomic uint64_t tag;
	_Atomic uint32_t slot;
};

struct mag {
	_Atomic unsigned n; /* entries [0, n) are the magazine; some may be stale */
	struct mag *next;
	struct mag_ent *ent;
};

struct tclass {
	struct mag *loaded, *prev;
};

struct tcache {
	uint64_t space_id;
	struct dme_iova_space *space;	   /* NULL once the space is gone */
	struct tcache *next_in_space;
	struct tcache *next_in_thread;
	_Atomic unsigned popping; /* in the allocation fast path's window */
	_Atomic uint64_t hits, misses;
	struct tclass cls[NCLASS_MAX];
};

struct depot {
	struct mag **full;
	unsigned nfull;
	struct mag *empty;
};

struct dme_iova_space {
	/* read-mostly, shared by the fast paths */
	uint64_t id;
	unsigned nr_classes;
	unsigned base_shift;	/* class c holds ranges of 1 << (base_shift + c) */
	unsigned mag_size;
	bool cache;
	_Atomic(struct cidx *) idx;
	struct cslot *slot_chunk[SLOT_CHUNKS];

	pthread_mutex_t lock __attribute__((aligned(DME_CACHELINE)));
	struct tree tree;
	uint64_t granule;
	struct dme_iova_range *ranges;
	size_t nr_ranges;
	unsigned __int128 allowed_bytes;
	unsigned depot_max;
	struct depot depot[NCLASS_MAX];
	struct tcache *tcaches;
	/* counters (under lock) */
	uint64_t live_nodes, live_bytes;
	uint64_t cache_nodes[NCLASS_MAX];
	uint64_t quar_nodes, quar_bytes, rsv_bytes;
	uint64_t flushes, retired_hits, retired_misses;
	/* quarantine FIFO, oldest first */
	struct node *q_head, *q_tail;
	uint64_t epoch;		/* the open epoch: deferred frees join it */
	/* unused slots */
	uint32_t nslots, *slot_free;
	size_t nr_free, cap_free;
	/* reservations as the caller gave them */
	struct dme_iova_range *rsv;
	size_t nr_rsv, cap_rsv;
	/* a flush's tentative claims on other threads' slots */
	struct claim *claims;
	size_t cap_claims;
};

struct claim {
	uint32_t slot;
	uint64_t dead; /* the state word the claim left: tag with st = DEAD */
};

static _Atomic uint64_t next_space_id = 1;

/* ---------------------------------------------------------------------- */
/* Thread caches: discovery and thread exit                               */

static pthread_mutex_t tc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t tc_key;
static pthread_once_t tc_once = PTHREAD_ONCE_INIT;
/* initial-exec: libdme.so is linked, not dlopen()ed late, so a thread's
 * cache is found with one %fs-relative load instead of a __tls_get_addr call */
#define TLS_IE __attribute__((tls_model("initial-exec")))
static __thread struct tcache *tl_list TLS_IE;
static __thread struct {
	uint64_t id;
	struct tcache *tc;
} tl_hot TLS_IE;

static void thread_exit(void *arg);

static void tc_key_init(void)
{
	if (pthread_key_create(&tc_key, thread_exit))
		abort();	/* only fails when the process is out of keys */
}

static inline struct tcache *tcache_get(struct dme_iova_space *s);

/* ---------------------------------------------------------------------- */
/* Cache state: slots and the IOVA -> slot index                          */

static inline uint64_t st_make(uint64_t gen, unsigned cls, unsigned st)
{
	return gen << 16 | (uint64_t)cls << 8 | st;
}

static inline struct cslot *slot_at(const struct dme_iova_space *s, uint32_t i)
{
	return &s->slot_chunk[i >> SLOT_SHIFT][i & ((1u << SLOT_SHIFT) - 1)];
}

/* A slot for a new cache-owned range, in state FREE (lock held); @tag is
 * that state word. */
static int slot_get_locked(struct dme_iova_space *s, uint64_t iova, unsigned cls, uint32_t *out,
			   uint64_t *tag)
{
	uint32_t i;
	if (s->nr_free) {
		i = s->slot_free[--s->nr_free];
	} else {
		if (s->nslots == (uint32_t)SLOT_CHUNKS << SLOT_SHIFT)
			return -ENOSPC;
		i = s->nslots;
		if (!s->slot_chunk[i >> SLOT_SHIFT]) {
			s->slot_chunk[i >> SLOT_SHIFT] = calloc(1u << SLOT_SHIFT, sizeof(struct cslot));
			if (!s->slot_chunk[i >> SLOT_SHIFT])
				return -ENOMEM;
		}
		s->nslots++;
	}
	struct cslot *c = slot_at(s, i);
	uint64_t old = atomic_load_explicit(&c->state, memory_order_relaxed);
	*tag = st_make((old >> 16) + 1, cls, ST_FREE);
	atomic_store_explicit(&c->key, iova | 1, memory_order_relaxed);
	atomic_store_explicit(&c->state, *tag, memory_order_release);
	*out = i;
	return 0;
}

/* Retire slot @i (lock held). Without memory for the free list the slot
 * number is simply never reused: there are 2^24 of them. */
static void slot_put_locked(struct dme_iova_space *s, uint32_t i)
{
	struct cslot *c = slot_at(s, i);
	uint64_t old = atomic_load_explicit(&c->state, memory_order_relaxed);
	/* new generation first: a racing CAS on the old state fails */
	atomic_store_explicit(&c->state, st_make((old >> 16) + 1, 0, ST_DEAD),
			      memory_order_release);
	atomic_store_explicit(&c->key, KEY_EMPTY, memory_order_release);
	if (s->nr_free == s->cap_free) {
		size_t cap = s->cap_free ? s->cap_free * 2 : 256;
		uint32_t *f = realloc(s->slot_free, cap * sizeof(*f));
		if (!f)
			return;
		s->slot_free = f;
		s->cap_free = cap;
	}
	s->slot_free[s->nr_free++] = i;
}

/*
 * Move slot @i holding @iova from @from to @to; @now is the new state word.
 * The state is read before the key: a reuse of the slot in between changes
 * the generation, so the CAS fails and the caller falls back to the locked
 * path.
 */
static inline bool slot_move(const struct dme_iova_space *s, uint32_t i, uint64_t iova,
			     unsigned cls, unsigned from, unsigned to, uint64_t *now)
{
	struct cslot *c = slot_at(s, i);
	uint64_t st = atomic_load_explicit(&c->state, memory_order_acquire);
	if (atomic_load_explicit(&c->key, memory_order_relaxed) != (iova | 1))
		return false;
	if ((st & 0xffff) != ((uint64_t)cls << 8 | from))
		return false;
	*now = (st & ~0xffull) | to;
	return atomic_compare_exchange_strong_explicit(&c->state, &st, *now, memory_order_acq_rel,
						       memory_order_relaxed);
}

/* Take the range of a magazine entry: slot @i goes from exactly @tag (FREE)
 * to @to. False when the entry is stale: a flush reclaimed the range. */
static inline bool slot_claim(const struct dme_iova_space *s, uint32_t i, uint64_t tag, unsigned to)
{
	return atomic_compare_exchange_strong_explicit(&slot_at(s, i)->state, &tag,
						       (tag & ~0xffull) | to, memory_order_acq_rel,
						       memory_order_relaxed);
}

static inline uint64_t idx_hash(const struct cidx *t, uint64_t iova)
{
	return ((iova >> 12) * 0x9e3779b97f4a7c15ull) >> (64 - t->bits);
}

static struct cidx *idx_new(unsigned bits)
{
	struct cidx *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->e = calloc(1ull << bits, sizeof(*t->e));
	if (!t->e) {
		free(t);
		return NULL;
	}
	t->bits = bits;
	t->mask = (1ull << bits) - 1;
	return t;
}

/* Lock-free, bounded: a miss may be spurious (the caller then locks). */
static inline int64_t idx_find_fast(const struct cidx *t, uint64_t iova)
{
	uint64_t key = iova | 1, i = idx_hash(t, iova);
	for (unsigned p = 0; p < PROBE_MAX; p++, i = (i + 1) & t->mask) {
		uint64_t k = atomic_load_explicit(&t->e[i].key, memory_order_acquire);
		if (k == key)
			return (int64_t)atomic_load_explicit(&t->e[i].slot, memory_order_relaxed);
		if (k == KEY_EMPTY)
			return -1;
	}
	return -1;
}

static void idx_put(struct cidx *t, uint64_t iova, uint32_t slot)
{
	uint64_t i = idx_hash(t, iova);
	for (;; i = (i + 1) & t->mask) {
		uint64_t k = atomic_load_explicit(&t->e[i].key, memory_order_relaxed);
		if (k == KEY_EMPTY || k == KEY_TOMB)
			break;
	}
	if (atomic_load_explicit(&t->e[i].key, memory_order_relaxed) == KEY_EMPTY)
		t->used++;
	t->valid++;
	atomic_store_explicit(&t->e[i].slot, slot, memory_order_relaxed);
	atomic_store_explicit(&t->e[i].key, iova | 1, memory_order_release);
}

/*
 * Add @iova -> @slot (lock held). When the table is half full (tombstones
 * count), rebuild into a fresh one, twice as big if a quarter of it holds
 * keys. Readers of the old table still find correct slot numbers or miss;
 * it stays allocated until the space is destroyed.
 */
static int idx_insert_locked(struct dme_iova_space *s, uint64_t iova, uint32_t slot)
{
	struct cidx *t = atomic_load_explicit(&s->idx, memory_order_relaxed);
	if ((t->used + 1) * 2 > t->mask + 1) {
		struct cidx *n = idx_new(t->bits + ((t->valid + 1) * 4 > t->mask + 1 ? 1 : 0));
		if (!n)
			return -ENOMEM;
		for (uint64_t i = 0; i <= t->mask; i++) {
			uint64_t k = atomic_load_explicit(&t->e[i].key, memory_order_relaxed);
			if (k != KEY_EMPTY && k != KEY_TOMB)
				idx_put(n, k & ~1ull,
					(uint32_t)atomic_load_explicit(&t->e[i].slot, memory_order_relaxed));
		}
		n->retired = t;
		atomic_store_explicit(&s->idx, n, memory_order_release);
		t = n;
	}
	idx_put(t, iova, slot);
	return 0;
}

static void idx_delete_locked(struct dme_iova_space *s, uint64_t iova)
{
	struct cidx *t = atomic_load_explicit(&s->idx, memory_order_relaxed);
	uint64_t key = iova | 1, i = idx_hash(t, iova);
	for (uint64_t p = 0; p <= t->mask; p++, i = (i + 1) & t->mask) {
		uint64_t k = atomic_load_explicit(&t->e[i].key, memory_order_relaxed);
		if (k == KEY_EMPTY)
			return;
		if (k == key) {
			atomic_store_explicit(&t->e[i].key, KEY_TOMB, memory_order_release);
			t->valid--;
			return;
		}
	}
}

/* ---------------------------------------------------------------------- */
/* Nodes and counters                                                     */

static inline uint64_t class_size(const struct dme_iova_space *s, unsigned cls)
{
	return 1ull << (s->base_shift + cls);
}

static inline uint64_t node_size(const struct node *n)
{
	return n->last - n->start + 1;
}

static void account(struct dme_iova_space *s, const struct node *n, int sign)
{
	uint64_t sz = node_size(n);
	switch (n->kind) {
	case N_LIVE:
		s->live_nodes += sign;
		s->live_bytes += sign * sz;
		break;
	case N_CACHE:
		s->cache_nodes[n->cls] += sign;
		break;
	case N_QUAR:
		s->quar_nodes += sign;
		s->quar_bytes += sign * sz;
		break;
	case N_RSV:
		s->rsv_bytes += sign * sz;
		break;
	}
}

static struct node *node_new(uint64_t start, uint64_t last, unsigned kind)
{
	struct node *n = calloc(1, sizeof(*n));
	if (n) {
		n->start = start;
		n->last = last;
		n->kind = (uint8_t)kind;
	}
	return n;
}

static void node_free(struct node *n)
{
	free(n);
}

static int insert_locked(struct dme_iova_space *s, uint64_t start, uint64_t last, unsigned kind,
			 struct node **out)
{
	struct node *n = node_new(start, last, kind);
	if (!n)
		return -ENOMEM;
	tree_insert(&s->tree, n);
	account(s, n, 1);
	if (out)
		*out = n;
	return 0;
}

static void remove_locked(struct dme_iova_space *s, struct node *n)
{
	account(s, n, -1);
	tree_remove(&s->tree, n);
	node_free(n);
}

/* ---------------------------------------------------------------------- */
/* Caches: magazines and depot (slow halves; under the lock)              */

static struct mag *mag_new(struct dme_iova_space *s)
{
	struct mag *m = calloc(1, sizeof(*m) + s->mag_size * sizeof(struct mag_ent));
	if (!m)
		return NULL;
	m->ent = (struct mag_ent *)(m + 1);
	return m;
}

static struct mag *depot_take_empty(struct dme_iova_space *s, unsigned cls)
{
	struct depot *d = &s->depot[cls];
	struct mag *m = d->empty;
	if (m) {
		d->empty = m->next;
		return m;
	}
	return mag_new(s);
}

static void depot_put_empty(struct dme_iova_space *s, unsigned cls, struct mag *m)
{
	m->next = s->depot[cls].empty;
	s->depot[cls].empty = m;
}

/* Append a FREE range to @m, whose count is @n (the owner, or lock held). */
static inline void mag_put(struct mag *m, unsigned n, uint64_t iova, uint32_t slot, uint64_t tag)
{
	struct mag_ent *e = &m->ent[n];
	e->iova = iova;
	atomic_store_explicit(&e->slot, slot, memory_order_relaxed);
	atomic_store_explicit(&e->tag, tag, memory_order_relaxed);
	atomic_store_explicit(&m->n, n + 1, memory_order_relaxed);
}

/* Give the range of slot @i back to the tree; the caller just took the slot
 * FREE -> DEAD, so the range is its own. */
static void cache_return_locked(struct dme_iova_space *s, uint32_t i)
{
	uint64_t iova = atomic_load_explicit(&slot_at(s, i)->key, memory_order_relaxed) & ~1ull;
	struct node *n = tree_find_exact(&s->tree, iova);
	idx_delete_locked(s, iova);
	slot_put_locked(s, i);
	if (n && n->kind == N_CACHE && n->slot == i)
		remove_locked(s, n);
}

/* Return the ranges of the entries of @m to the tree, dropping stale ones.
 * @m is the caller's own, or the depot's. */
static void mag_drain_locked(struct dme_iova_space *s, struct mag *m)
{
	unsigned n = atomic_load_explicit(&m->n, memory_order_relaxed);
	for (unsigned i = 0; i < n; i++) {
		uint32_t slot = atomic_load_explicit(&m->ent[i].slot, memory_order_relaxed);
		if (slot_claim(s, slot, atomic_load_explicit(&m->ent[i].tag, memory_order_relaxed),
			       ST_DEAD))
			cache_return_locked(s, slot);
	}
	atomic_store_explicit(&m->n, 0, memory_order_relaxed);
}

/* Entries of @m whose range is still FREE in it (lock held). */
static unsigned mag_count_locked(const struct dme_iova_space *s, const struct mag *m)
{
	unsigned n = atomic_load_explicit(&m->n, memory_order_relaxed), v = 0;
	if (n > s->mag_size)
		n = s->mag_size;
	for (unsigned i = 0; i < n; i++) {
		uint32_t slot = atomic_load_explicit(&m->ent[i].slot, memory_order_relaxed);
		v += slot < s->nslots &&
		     atomic_load_explicit(&slot_at(s, slot)->state, memory_order_relaxed) ==
			 atomic_load_explicit(&m->ent[i].tag, memory_order_relaxed);
	}
	return v;
}

/*
 * A full barrier on every other running thread of the process (see
 * "Reclaim" at the top). Registration is per process image (a fork()ed child
 * starts unregistered), so an -EPERM registers and retries.
 */
static int fence_other_threads(void)
{
	if (!syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0))
		return 0;
	if (errno == EPERM &&
	    !syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) &&
	    !syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0))
		return 0;
	return -errno;
}

/* Finish or undo the tentative claims in s->claims[0, n) (lock held). */
static void claims_settle_locked(struct dme_iova_space *s, struct tcache *self, size_t n)
{
	static atomic_bool warned;
	int ret = fence_other_threads();
	if (ret) {
		for (size_t i = 0; i < n; i++) {
			uint64_t dead = s->claims[i].dead;
			atomic_compare_exchange_strong_explicit(
			    &slot_at(s, s->claims[i].slot)->state, &dead,
			    (dead & ~0xffull) | ST_FREE, memory_order_acq_rel,
			    memory_order_relaxed);
		}
		if (!atomic_exchange(&warned, true))
			dme_warn(
			    "iova: membarrier(PRIVATE_EXPEDITED) failed (%s): free IOVAs in other "
			    "threads' caches return to the tree only when those threads exit",
			    strerror(-ret));
		return;
	}
	/* an owner whose window began before its barrier has it open still, or
	 * closed it after storing LIVE; later windows see DEAD */
	for (struct tcache *tc = s->tcaches; tc; tc = tc->next_in_space)
		while (tc != self && atomic_load_explicit(&tc->popping, memory_order_acquire))
			sched_yield();
	for (size_t i = 0; i < n; i++)
		if (atomic_load_explicit(&slot_at(s, s->claims[i].slot)->state,
					 memory_order_acquire) == s->claims[i].dead)
			cache_return_locked(s, s->claims[i].slot);
}

/*
 * Take back every FREE range held in the magazines of threads other than
 * @self, whatever those threads are doing (lock held). Entries are read
 * racily, as hints: a slot number read while its owner rewrote the entry
 * names some slot, and any slot that is FREE belongs to some magazine whose
 * users all check the tag, so claiming it is always allowed. Claims are
 * settled in batches of the claim buffer's size.
 */
static void reclaim_others_locked(struct dme_iova_space *s, struct tcache *self)
{
	size_t n = 0;
	if (!s->claims) {
		size_t cap = 2 * (size_t)s->mag_size * s->nr_classes;
		s->claims = malloc(cap * sizeof(*s->claims));
		if (!s->claims)
			return; /* tried again at the next flush */
		s->cap_claims = cap;
	}
	for (struct tcache *tc = s->tcaches; tc; tc = tc->next_in_space) {
		if (tc == self)
			continue;
		for (unsigned c = 0; c < s->nr_classes; c++) {
			struct mag *ms[2] = {tc->cls[c].loaded, tc->cls[c].prev};
			for (int j = 0; j < 2; j++) {
				unsigned nm = atomic_load_explicit(&ms[j]->n, memory_order_relaxed);
				if (nm > s->mag_size)
					nm = s->mag_size;
				for (unsigned i = 0; i < nm; i++) {
					uint32_t slot = atomic_load_explicit(&ms[j]->ent[i].slot,
									     memory_order_relaxed);
					if (slot >= s->nslots)
						continue;
					uint64_t st = atomic_load_explicit(&slot_at(s, slot)->state,
									   memory_order_relaxed);
					if ((st & 0xff) != ST_FREE ||
					    !slot_claim(s, slot, st, ST_DEAD))
						continue;
					s->claims[n++] =
					    (struct claim){slot, (st & ~0xffull) | ST_DEAD};
					if (n == s->cap_claims) {
						claims_settle_locked(s, self, n);
						n = 0;
					}
				}
			}
		}
	}
	if (n)
		claims_settle_locked(s, self, n);
}

static void tcache_drain_locked(struct dme_iova_space *s, struct tcache *tc)
{
	for (unsigned c = 0; c < s->nr_classes; c++) {
		mag_drain_locked(s, tc->cls[c].loaded);
		mag_drain_locked(s, tc->cls[c].prev);
	}
}

/* Pressure: return every cached free range to the tree now - the depot's,
 * @self's, and every other thread's (reclaimed under their feet). */
static void flush_locked(struct dme_iova_space *s, struct tcache *self)
{
	for (unsigned c = 0; c < s->nr_classes; c++) {
		struct depot *d = &s->depot[c];
		while (d->nfull) {
			struct mag *m = d->full[--d->nfull];
			mag_drain_locked(s, m);
			depot_put_empty(s, c, m);
		}
	}
	if (self)
		tcache_drain_locked(s, self);
	reclaim_others_locked(s, self);
	s->flushes++;
}

/* ---------------------------------------------------------------------- */
/* Tree path                                                              */

static int tree_alloc_locked(struct dme_iova_space *s, struct tcache *self, uint64_t size,
			     uint64_t align, uint64_t phase, unsigned kind, struct node **out)
{
	struct node *succ;
	uint64_t addr;
	int ret = tree_find_fit(&s->tree, size, align, phase, s->granule, &succ, &addr);
	if (ret == -ENOSPC && s->cache) {
		/* cached IOVAs must never starve an allocation */
		flush_locked(s, self);
		ret = tree_find_fit(&s->tree, size, align, phase, s->granule, &succ, &addr);
	}
	if (ret)
		return ret;
	return insert_locked(s, addr, addr + size - 1, kind, out);
}

static int check_size_align(struct dme_iova_space *s, uint64_t size, uint64_t align,
			    const char *what)
{
	if (unlikely(!size || (size & (s->granule - 1)))) {
		dme_err("%s: size 0x%" PRIx64 " is not a non-zero multiple of the IOVA alignment 0x%" PRIx64,
			what, size, s->granule);
		return -EINVAL;
	}
	if (unlikely(!is_pow2(align) || align > (1ull << 30))) {
		dme_err("%s: alignment 0x%" PRIx64 " is not a power of two up to 1 GiB", what, align);
		return -EINVAL;
	}
	return 0;
}

__attribute__((noinline)) static int alloc_tree(struct dme_iova_space *s, uint64_t size, uint64_t align, uint64_t phase,
		      uint64_t *iova)
{
	struct node *n;
	struct tcache *self = s->cache ? tcache_get(s) : NULL;
	pthread_mutex_lock(&s->lock);
	int ret = tree_alloc_locked(s, self, size, align, phase, N_LIVE, &n);
	if (!ret)
		*iova = n->start;
	pthread_mutex_unlock(&s->lock);
	if (ret == -ENOSPC)
		dme_dbg("iova: no free range of 0x%" PRIx64 " bytes aligned 0x%" PRIx64, size, align);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Cache path                                                             */

static inline int cache_class(const struct dme_iova_space *s, uint64_t size, uint64_t align)
{
	if (!is_pow2(size) || align > size || (align & (align - 1)))
		return -1;
	unsigned sh = ilog2_u64(size);
	if (sh < s->base_shift || sh - s->base_shift >= s->nr_classes)
		return -1;
	return (int)(sh - s->base_shift);
}

__attribute__((noinline)) static struct tcache *tcache_get_slow(struct dme_iova_space *s)
{
	struct tcache *tc;
	for (tc = tl_list; tc; tc = tc->next_in_thread)
		if (tc->space_id == s->id)
			goto found;
	pthread_once(&tc_once, tc_key_init);
	tc = calloc(1, sizeof(*tc));
	if (!tc)
		return NULL;
	for (unsigned c = 0; c < s->nr_classes; c++) {
		tc->cls[c].loaded = mag_new(s);
		tc->cls[c].prev = mag_new(s);
		if (!tc->cls[c].loaded || !tc->cls[c].prev)
			goto err_free;
	}
	tc->space_id = s->id;
	tc->space = s;
	pthread_mutex_lock(&tc_lock);
	pthread_mutex_lock(&s->lock);
	tc->next_in_space = s->tcaches;
	s->tcaches = tc;
	pthread_mutex_unlock(&s->lock);
	tc->next_in_thread = tl_list;
	tl_list = tc;
	pthread_setspecific(tc_key, tc);
	pthread_mutex_unlock(&tc_lock);
found:
	tl_hot.id = s->id;
	tl_hot.tc = tc;
	return tc;
err_free:
	for (unsigned c = 0; c < s->nr_classes; c++) {
		free(tc->cls[c].loaded);
		free(tc->cls[c].prev);
	}
	free(tc);
	return NULL;
}

static inline struct tcache *tcache_get(struct dme_iova_space *s)
{
	if (likely(tl_hot.id == s->id))
		return tl_hot.tc;
	return tcache_get_slow(s);
}

static inline void count(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* Carve up to @want ranges of class @cls into the empty magazine @m. */
static int refill_locked(struct dme_iova_space *s, struct tcache *tc, unsigned cls, struct mag *m,
			 unsigned want)
{
	uint64_t size = class_size(s, cls);
	unsigned got = 0;
	while (got < want) {
		struct node *n;
		uint32_t slot;
		uint64_t tag;
		int ret = tree_alloc_locked(s, got ? NULL : tc, size, size, 0, N_CACHE, &n);
		if (ret) {
			if (got)
				break;
			return ret;
		}
		n->cls = (uint8_t)cls;
		s->cache_nodes[cls]++;	/* account() ran before cls was set */
		s->cache_nodes[0]--;
		ret = slot_get_locked(s, n->start, cls, &slot, &tag);
		if (!ret) {
			ret = idx_insert_locked(s, n->start, slot);
			if (ret)
				slot_put_locked(s, slot);
		}
		if (ret) {
			remove_locked(s, n);
			if (got)
				break;
			return ret;
		}
		n->slot = slot;
		mag_put(m, got, n->start, slot, tag);
		got++;
	}
	return 0;
}

__attribute__((noinline)) static int alloc_cached_slow(struct dme_iova_space *s, unsigned cls, uint64_t align,
			     uint64_t *iova)
{
	struct tcache *tc = tcache_get(s);
	if (!tc)
		return alloc_tree(s, class_size(s, cls), align, 0, iova);
	count(&tc->misses);
	struct tclass *k = &tc->cls[cls];
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct mag *m = k->loaded;
		unsigned n = atomic_load_explicit(&m->n, memory_order_relaxed);
		if (n) {
			struct mag_ent *e = &m->ent[n - 1];
			atomic_store_explicit(&m->n, n - 1, memory_order_relaxed);
			if (!slot_claim(s, atomic_load_explicit(&e->slot, memory_order_relaxed),
					atomic_load_explicit(&e->tag, memory_order_relaxed),
					ST_LIVE))
				continue; /* stale: a flush took the range back */
			*iova = e->iova;
			break;
		}
		if (atomic_load_explicit(&k->prev->n, memory_order_relaxed)) {
			k->loaded = k->prev;
			k->prev = m;
			continue;
		}
		struct depot *d = &s->depot[cls];
		if (d->nfull) {
			k->loaded = d->full[--d->nfull];
			depot_put_empty(s, cls, m);
			continue;
		}
		ret = refill_locked(s, tc, cls, m, s->mag_size / 2 ? s->mag_size / 2 : 1);
		if (ret)
			break;
	}
	pthread_mutex_unlock(&s->lock);
	/* no naturally aligned range left: a plain tree allocation may still fit */
	if (ret == -ENOSPC && align < class_size(s, cls))
		return alloc_tree(s, class_size(s, cls), align, 0, iova);
	return ret;
}

static int free_locked(struct dme_iova_space *s, struct tcache *tc, uint64_t iova, uint64_t size,
		       bool deferred);

__attribute__((noinline)) static int free_cached_slow(struct dme_iova_space *s, uint64_t iova, uint64_t size)
{
	struct tcache *tc = tcache_get(s);
	pthread_mutex_lock(&s->lock);
	int ret = free_locked(s, tc, iova, size, false);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* Put a range that just became FREE (state word @tag) into @tc's magazines
 * (lock held). */
static void cache_put_locked(struct dme_iova_space *s, struct tcache *tc, unsigned cls,
			     uint64_t iova, uint32_t slot, uint64_t tag)
{
	if (!tc) {
		if (slot_claim(s, slot, tag, ST_DEAD))
			cache_return_locked(s, slot);
		return;
	}
	struct tclass *k = &tc->cls[cls];
	unsigned n = atomic_load_explicit(&k->loaded->n, memory_order_relaxed);
	if (n == s->mag_size) {
		if (atomic_load_explicit(&k->prev->n, memory_order_relaxed)) {
			struct depot *d = &s->depot[cls];
			struct mag *e = depot_take_empty(s, cls);
			if (d->nfull < s->depot_max && e) {
				d->full[d->nfull++] = k->prev;
				k->prev = e;
			} else {
				if (e)
					depot_put_empty(s, cls, e);
				mag_drain_locked(s, k->prev);
			}
		}
		struct mag *t = k->loaded;
		k->loaded = k->prev;
		k->prev = t;
		n = 0;
	}
	mag_put(k->loaded, n, iova, slot, tag);
}

/* ---------------------------------------------------------------------- */
/* Fast paths                                                             */

DME_EXPORT int dme_iova_alloc(struct dme_iova_space *s, uint64_t size, uint64_t align,
			      uint64_t *iova)
{
	if (align < s->granule)
		align = s->granule;
	int cls = s->cache ? cache_class(s, size, align) : -1;
	if (likely(cls >= 0)) {
		struct tcache *tc = tl_hot.id == s->id ? tl_hot.tc : NULL;
		if (likely(tc)) {
			struct mag *m = tc->cls[cls].loaded;
			unsigned n = atomic_load_explicit(&m->n, memory_order_relaxed);
			if (likely(n)) {
				struct mag_ent *e = &m->ent[n - 1];
				struct cslot *c = slot_at(
				    s, atomic_load_explicit(&e->slot, memory_order_relaxed));
				uint64_t tag = atomic_load_explicit(&e->tag, memory_order_relaxed);
				/* FREE -> LIVE unless a flush claimed the range: plain
				 * stores in a window the flush waits out ("Reclaim") */
				atomic_store_explicit(&tc->popping, 1, memory_order_relaxed);
				atomic_signal_fence(memory_order_seq_cst);
				bool mine =
				    atomic_load_explicit(&c->state, memory_order_relaxed) == tag;
				if (likely(mine))
					atomic_store_explicit(&c->state, (tag & ~0xffull) | ST_LIVE,
							      memory_order_release);
				atomic_store_explicit(&tc->popping, 0, memory_order_release);
				if (likely(mine)) {
					atomic_store_explicit(&m->n, n - 1, memory_order_relaxed);
					count(&tc->hits);
					*iova = e->iova;
					return 0;
				}
			}
		}
		return alloc_cached_slow(s, (unsigned)cls, align, iova);
	}
	int ret = check_size_align(s, size, align, "dme_iova_alloc");
	if (ret)
		return ret;
	return alloc_tree(s, size, align, 0, iova);
}

DME_EXPORT int dme_iova_free(struct dme_iova_space *s, uint64_t iova, uint64_t size)
{
	int cls = s->cache ? cache_class(s, size, 1) : -1;
	if (likely(cls >= 0 && !(iova & (size - 1)))) {
		struct tcache *tc = tl_hot.id == s->id ? tl_hot.tc : NULL;
		if (likely(tc)) {
			struct mag *m = tc->cls[cls].loaded;
			unsigned n = atomic_load_explicit(&m->n, memory_order_relaxed);
			struct cidx *t = atomic_load_explicit(&s->idx, memory_order_acquire);
			int64_t i;
			uint64_t tag;
			if (likely(n < s->mag_size && (i = idx_find_fast(t, iova)) >= 0 &&
				   slot_move(s, (uint32_t)i, iova, (unsigned)cls, ST_LIVE, ST_FREE,
					     &tag))) {
				mag_put(m, n, iova, (uint32_t)i, tag);
				return 0;
			}
		}
		return free_cached_slow(s, iova, size);
	}
	pthread_mutex_lock(&s->lock);
	int ret = free_locked(s, NULL, iova, size, false);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Authoritative free (lock held)                                         */

static int bad_free(struct dme_iova_space *s, uint64_t iova, uint64_t size, const char *why)
{
	dme_err("iova: refusing to free [0x%" PRIx64 ", +0x%" PRIx64 "): %s", iova, size, why);
	return -EINVAL;
}

static void quarantine_locked(struct dme_iova_space *s, struct node *n)
{
	account(s, n, -1);
	n->from_cache = n->kind == N_CACHE;
	n->kind = N_QUAR;
	n->epoch = s->epoch;
	n->qnext = NULL;
	account(s, n, 1);
	if (s->q_tail)
		s->q_tail->qnext = n;
	else
		s->q_head = n;
	s->q_tail = n;
}

static int free_locked(struct dme_iova_space *s, struct tcache *tc, uint64_t iova, uint64_t size,
		       bool deferred)
{
	struct node *n = tree_find_exact(&s->tree, iova);
	if (!n) {
		struct node *f = tree_floor(&s->tree, iova);
		if (f && f->last >= iova && f->kind == N_HOLE)
			return bad_free(s, iova, size, "the address lies in a hole of the geometry");
		if (f && f->last >= iova)
			return bad_free(s, iova, size, "the address is inside another range, not its start");
		return bad_free(s, iova, size, "no range was allocated there");
	}
	switch (n->kind) {
	case N_HOLE:
		return bad_free(s, iova, size, "the address lies in a hole of the geometry");
	case N_RSV:
		return bad_free(s, iova, size, "the range is reserved; use dme_iova_unreserve()");
	case N_QUAR:
		return bad_free(s, iova, size, "double free: the range is already quarantined");
	case N_LIVE:
		if (node_size(n) != size)
			return bad_free(s, iova, size, "size does not match the allocation");
		if (deferred)
			quarantine_locked(s, n);
		else
			remove_locked(s, n);
		return 0;
	case N_CACHE: {
		if (class_size(s, n->cls) != size)
			return bad_free(s, iova, size, "size does not match the allocation");
		uint64_t tag;
		if (!slot_move(s, n->slot, iova, n->cls, ST_LIVE, ST_FREE, &tag))
			return bad_free(s, iova, size, "double free: the range is already free");
		if (deferred) {
			idx_delete_locked(s, iova);
			slot_put_locked(s, n->slot);
			quarantine_locked(s, n);
		} else {
			cache_put_locked(s, tc, n->cls, iova, n->slot, tag);
		}
		return 0;
	}
	}
	return -EINVAL;
}

/* ---------------------------------------------------------------------- */
/* Other allocation forms                                                 */

DME_EXPORT int dme_iova_alloc_congruent(struct dme_iova_space *s, uint64_t size,
					uint64_t page_size, uint64_t va, uint64_t *iova)
{
	int ret = check_size_align(s, size, page_size, "dme_iova_alloc_congruent");
	if (ret)
		return ret;
	uint64_t align = page_size < s->granule ? s->granule : page_size;
	uint64_t phase = va & (align - 1);
	if (phase & (s->granule - 1)) {
		dme_err("dme_iova_alloc_congruent: VA 0x%" PRIx64 " is not aligned to the IOVA alignment 0x%" PRIx64,
			va, s->granule);
		return -EINVAL;
	}
	return alloc_tree(s, size, align, phase, iova);
}

static const struct dme_iova_range *range_of(const struct dme_iova_space *s, uint64_t a)
{
	size_t lo = 0, hi = s->nr_ranges;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->ranges[mid].last < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->nr_ranges && s->ranges[lo].start <= a ? &s->ranges[lo] : NULL;
}

/* Any busy node other than holes in [a, b]? Reports the worst kind found. */
static bool overlap_locked(struct dme_iova_space *s, uint64_t a, uint64_t b, bool *only_cache)
{
	bool any = false;
	*only_cache = true;
	for (struct node *n = tree_floor(&s->tree, b); n && n->last >= a;
	     n = n->start ? tree_floor(&s->tree, n->start - 1) : NULL) {
		if (n->kind == N_HOLE)
			continue;
		any = true;
		if (n->kind != N_CACHE)
			*only_cache = false;
	}
	return any;
}

DME_EXPORT int dme_iova_alloc_fixed(struct dme_iova_space *s, uint64_t iova, uint64_t size)
{
	int ret = check_size_align(s, size, s->granule, "dme_iova_alloc_fixed");
	if (ret)
		return ret;
	uint64_t last = iova + size - 1;
	if ((iova & (s->granule - 1)) || last < iova) {
		dme_err("dme_iova_alloc_fixed: IOVA 0x%" PRIx64 " is misaligned or the range wraps", iova);
		return -EINVAL;
	}
	const struct dme_iova_range *r = range_of(s, iova);
	if (!r || r->last < last) {
		dme_err("dme_iova_alloc_fixed: [0x%" PRIx64 ", 0x%" PRIx64 "] is not inside one allowed range (it touches a hole)",
			iova, last);
		return -EINVAL;
	}
	struct tcache *self = s->cache ? tcache_get(s) : NULL;
	pthread_mutex_lock(&s->lock);
	bool only_cache;
	if (overlap_locked(s, iova, last, &only_cache) && only_cache) {
		flush_locked(s, self);
	}
	if (overlap_locked(s, iova, last, &only_cache)) {
		pthread_mutex_unlock(&s->lock);
		dme_dbg("dme_iova_alloc_fixed: [0x%" PRIx64 ", 0x%" PRIx64 "] is busy", iova, last);
		return -EEXIST;
	}
	ret = insert_locked(s, iova, last, N_LIVE, NULL);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

DME_EXPORT int dme_iova_free_deferred(struct dme_iova_space *s, uint64_t iova, uint64_t size)
{
	pthread_mutex_lock(&s->lock);
	int ret = free_locked(s, NULL, iova, size, true);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

DME_EXPORT uint64_t dme_iova_seal(struct dme_iova_space *s)
{
	pthread_mutex_lock(&s->lock);
	uint64_t e = s->epoch++;
	pthread_mutex_unlock(&s->lock);
	return e;
}

/*
 * A released range that came from the caches goes back into the caller's
 * magazines (FREE), so the next allocation of its size is a cache hit and
 * the tree is not touched twice. Falls back to the tree on any shortage.
 */
static bool release_to_cache_locked(struct dme_iova_space *s, struct tcache *tc, struct node *n)
{
	uint32_t slot;
	uint64_t tag;
	if (!tc || !n->from_cache || !s->cache)
		return false;
	if (slot_get_locked(s, n->start, n->cls, &slot, &tag))
		return false;
	if (idx_insert_locked(s, n->start, slot)) {
		slot_put_locked(s, slot);
		return false;
	}
	account(s, n, -1);
	n->kind = N_CACHE;
	n->from_cache = 0;
	n->slot = slot;
	account(s, n, 1);
	cache_put_locked(s, tc, n->cls, n->start, slot, tag);
	return true;
}

DME_EXPORT int64_t dme_iova_release(struct dme_iova_space *s, uint64_t epoch)
{
	int64_t released = 0;
	struct tcache *tc = s->cache ? tcache_get(s) : NULL;
	pthread_mutex_lock(&s->lock);
	if (epoch >= s->epoch) {
		pthread_mutex_unlock(&s->lock);
		dme_err("dme_iova_release: epoch %" PRIu64 " has not been sealed", epoch);
		return -EINVAL;
	}
	while (s->q_head && s->q_head->epoch <= epoch) {
		struct node *n = s->q_head;
		s->q_head = n->qnext;
		if (!s->q_head)
			s->q_tail = NULL;
		if (!release_to_cache_locked(s, tc, n))
			remove_locked(s, n);
		released++;
	}
	pthread_mutex_unlock(&s->lock);
	return released;
}

/* ---------------------------------------------------------------------- */
/* Reservations                                                           */

DME_EXPORT int dme_iova_reserve(struct dme_iova_space *s, uint64_t start, uint64_t last)
{
	if (last < start || (start & (s->granule - 1)) ||
	    (last != UINT64_MAX && ((last + 1) & (s->granule - 1)))) {
		dme_err("dme_iova_reserve: [0x%" PRIx64 ", 0x%" PRIx64 "] is empty or not aligned to 0x%" PRIx64,
			start, last, s->granule);
		return -EINVAL;
	}
	struct tcache *self = s->cache ? tcache_get(s) : NULL;
	int ret = 0;
	pthread_mutex_lock(&s->lock);
	bool only_cache;
	if (overlap_locked(s, start, last, &only_cache) && only_cache)
		flush_locked(s, self);
	if (overlap_locked(s, start, last, &only_cache)) {
		dme_err("dme_iova_reserve: [0x%" PRIx64 ", 0x%" PRIx64 "] overlaps a live, quarantined or reserved range",
			start, last);
		ret = -EBUSY;
		goto out;
	}
	if (s->nr_rsv == s->cap_rsv) {
		size_t cap = s->cap_rsv ? s->cap_rsv * 2 : 8;
		struct dme_iova_range *r = realloc(s->rsv, cap * sizeof(*r));
		if (!r) {
			ret = -ENOMEM;
			goto out;
		}
		s->rsv = r;
		s->cap_rsv = cap;
	}
	/* one node per allowed range the reservation touches */
	size_t inserted = 0;
	for (size_t i = 0; i < s->nr_ranges; i++) {
		uint64_t a = s->ranges[i].start > start ? s->ranges[i].start : start;
		uint64_t b = s->ranges[i].last < last ? s->ranges[i].last : last;
		if (a > b)
			continue;
		ret = insert_locked(s, a, b, N_RSV, NULL);
		if (ret) {
			/* unwind the parts already inserted */
			for (size_t j = 0; j < i && inserted; j++) {
				uint64_t a2 = s->ranges[j].start > start ? s->ranges[j].start : start;
				struct node *n = tree_find_exact(&s->tree, a2);
				if (n && n->kind == N_RSV && a2 <= last) {
					remove_locked(s, n);
					inserted--;
				}
			}
			goto out;
		}
		inserted++;
	}
	s->rsv[s->nr_rsv++] = (struct dme_iova_range){start, last};
out:
	pthread_mutex_unlock(&s->lock);
	return ret;
}

DME_EXPORT int dme_iova_unreserve(struct dme_iova_space *s, uint64_t start, uint64_t last)
{
	pthread_mutex_lock(&s->lock);
	size_t k;
	for (k = 0; k < s->nr_rsv; k++)
		if (s->rsv[k].start == start && s->rsv[k].last == last)
			break;
	if (k == s->nr_rsv) {
		pthread_mutex_unlock(&s->lock);
		dme_err("dme_iova_unreserve: no reservation [0x%" PRIx64 ", 0x%" PRIx64 "]", start, last);
		return -ENOENT;
	}
	for (size_t i = 0; i < s->nr_ranges; i++) {
		uint64_t a = s->ranges[i].start > start ? s->ranges[i].start : start;
		uint64_t b = s->ranges[i].last < last ? s->ranges[i].last : last;
		if (a > b)
			continue;
		struct node *n = tree_find_exact(&s->tree, a);
		if (n && n->kind == N_RSV)
			remove_locked(s, n);
	}
	s->rsv[k] = s->rsv[--s->nr_rsv];
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Lifetime                                                               */

static int cmp_range(const void *a, const void *b)
{
	const struct dme_iova_range *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

DME_EXPORT int dme_iova_space_create(const struct dme_iova_geometry *geo,
				     const struct dme_iova_params *params,
				     struct dme_iova_space **out)
{
	struct dme_iova_params p = params ? *params : (struct dme_iova_params){0};
	uint64_t gran = geo && geo->alignment > 1 ? geo->alignment : 1;
	if (!geo || !geo->nr_ranges || !geo->ranges || !is_pow2(gran)) {
		dme_err("dme_iova_space_create: the geometry needs at least one range and a power-of-two alignment");
		return -EINVAL;
	}
	if (p.mag_size > MAG_MAX || p.nr_classes > NCLASS_MAX) {
		dme_err("dme_iova_space_create: magazine size <= %d and classes <= %d", MAG_MAX,
			NCLASS_MAX);
		return -EINVAL;
	}
	int ret = -ENOMEM;
	struct dme_iova_space *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ranges = calloc(geo->nr_ranges, sizeof(*s->ranges));
	if (!s->ranges)
		goto err_free;
	memcpy(s->ranges, geo->ranges, geo->nr_ranges * sizeof(*s->ranges));
	qsort(s->ranges, geo->nr_ranges, sizeof(*s->ranges), cmp_range);
	s->nr_ranges = geo->nr_ranges;
	for (size_t i = 0; i < s->nr_ranges; i++) {
		const struct dme_iova_range *r = &s->ranges[i];
		if (r->last < r->start || (r->start & (gran - 1)) ||
		    (r->last != UINT64_MAX && ((r->last + 1) & (gran - 1))) ||
		    (i && r->start <= s->ranges[i - 1].last)) {
			dme_err("dme_iova_space_create: range [0x%" PRIx64 ", 0x%" PRIx64 "] is empty, misaligned to 0x%" PRIx64 " or overlaps another",
				r->start, r->last, gran);
			ret = -EINVAL;
			goto err_free;
		}
		s->allowed_bytes += (unsigned __int128)(r->last - r->start) + 1;
	}
	s->granule = gran;
	s->cache = !p.no_cache;
	s->mag_size = p.mag_size ? p.mag_size : 64;
	s->depot_max = p.depot_max ? p.depot_max : 32;
	s->nr_classes = p.nr_classes ? p.nr_classes : 10;
	s->base_shift = ilog2_u64(gran < 4096 ? 4096 : gran);
	if (s->base_shift + s->nr_classes > 63)
		s->nr_classes = 63 - s->base_shift;
	s->id = atomic_fetch_add(&next_space_id, 1);
	pthread_mutex_init(&s->lock, NULL);
	struct cidx *t = idx_new(12);
	if (!t)
		goto err_free;
	atomic_init(&s->idx, t);
	for (unsigned c = 0; c < s->nr_classes; c++) {
		s->depot[c].full = calloc(s->depot_max, sizeof(struct mag *));
		if (!s->depot[c].full)
			goto err_destroy;
	}
	/* holes: the complement of the allowed ranges */
	uint64_t cursor = 0;
	bool done = false;
	for (size_t i = 0; i < s->nr_ranges && !done; i++) {
		if (s->ranges[i].start > cursor &&
		    insert_locked(s, cursor, s->ranges[i].start - 1, N_HOLE, NULL))
			goto err_destroy;
		if (s->ranges[i].last == UINT64_MAX)
			done = true;
		else
			cursor = s->ranges[i].last + 1;
	}
	if (!done && insert_locked(s, cursor, UINT64_MAX, N_HOLE, NULL))
		goto err_destroy;
	*out = s;
	return 0;
err_destroy:
	dme_iova_space_destroy(s); /* everything past this point is an allocation */
	return -ENOMEM;
err_free:
	free(s->ranges);
	free(s);
	return ret;
}

static void tcache_free(struct tcache *tc, unsigned nr_classes)
{
	for (unsigned c = 0; c < nr_classes; c++) {
		free(tc->cls[c].loaded);
		free(tc->cls[c].prev);
	}
	free(tc);
}

/* Thread exit: hand this thread's magazines back to their spaces' depots. */
static void thread_exit(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&tc_lock);
	struct tcache *tc = tl_list;
	tl_list = NULL;
	tl_hot.id = 0;
	while (tc) {
		struct tcache *next = tc->next_in_thread;
		struct dme_iova_space *s = tc->space;
		unsigned ncls = NCLASS_MAX;
		if (s) {
			ncls = s->nr_classes;
			pthread_mutex_lock(&s->lock);
			for (unsigned c = 0; c < s->nr_classes; c++) {
				struct mag **pm[2] = {&tc->cls[c].loaded, &tc->cls[c].prev};
				for (int j = 0; j < 2; j++) {
					struct mag *m = *pm[j];
					struct depot *d = &s->depot[c];
					if (atomic_load_explicit(&m->n, memory_order_relaxed) &&
					    d->nfull < s->depot_max) {
						d->full[d->nfull++] = m;
					} else {
						mag_drain_locked(s, m);
						depot_put_empty(s, c, m);
					}
					*pm[j] = NULL;
				}
			}
			for (struct tcache **pp = &s->tcaches; *pp; pp = &(*pp)->next_in_space)
				if (*pp == tc) {
					*pp = tc->next_in_space;
					break;
				}
			s->retired_hits += atomic_load_explicit(&tc->hits, memory_order_relaxed);
			s->retired_misses += atomic_load_explicit(&tc->misses, memory_order_relaxed);
			pthread_mutex_unlock(&s->lock);
		}
		tcache_free(tc, ncls);
		tc = next;
	}
	pthread_mutex_unlock(&tc_lock);
}

DME_EXPORT void dme_iova_space_destroy(struct dme_iova_space *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&tc_lock);
	for (struct tcache *tc = s->tcaches, *next; tc; tc = next) {
		next = tc->next_in_space;
		tc->space = NULL;
		/* the calling thread's own cache can go now */
		for (struct tcache **pp = &tl_list; *pp; pp = &(*pp)->next_in_thread)
			if (*pp == tc) {
				*pp = tc->next_in_thread;
				tcache_free(tc, s->nr_classes);
				break;
			}
	}
	if (tl_hot.id == s->id)
		tl_hot.id = 0;
	pthread_mutex_unlock(&tc_lock);
	for (unsigned c = 0; c < NCLASS_MAX; c++) {
		struct depot *d = &s->depot[c];
		for (unsigned i = 0; i < d->nfull; i++)
			free(d->full[i]);
		free(d->full);
		for (struct mag *m = d->empty, *n; m; m = n) {
			n = m->next;
			free(m);
		}
	}
	for (unsigned i = 0; i < SLOT_CHUNKS && s->slot_chunk[i]; i++)
		free(s->slot_chunk[i]);
	free(s->slot_free);
	for (struct cidx *t = atomic_load(&s->idx), *r; t; t = r) {
		r = t->retired;
		free(t->e);
		free(t);
	}
	tree_destroy(&s->tree, node_free);
	pthread_mutex_destroy(&s->lock);
	free(s->claims);
	free(s->rsv);
	free(s->ranges);
	free(s);
}

/* ---------------------------------------------------------------------- */
/* Introspection                                                          */

DME_EXPORT void dme_iova_flush_caches(struct dme_iova_space *s)
{
	struct tcache *self = s->cache ? tcache_get(s) : NULL;
	pthread_mutex_lock(&s->lock);
	flush_locked(s, self);
	pthread_mutex_unlock(&s->lock);
}

DME_EXPORT void dme_iova_stats(struct dme_iova_space *s, struct dme_iova_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&s->lock);
	uint64_t cache_bytes = 0, cached_bytes = 0, cache_nodes = 0;
	st->cache_hits = s->retired_hits;
	st->cache_misses = s->retired_misses;
	for (unsigned c = 0; c < s->nr_classes; c++) {
		uint64_t in_mags = 0;
		const struct depot *d = &s->depot[c];
		for (unsigned i = 0; i < d->nfull; i++)
			in_mags += mag_count_locked(s, d->full[i]);
		st->depot_magazines += d->nfull;
		for (struct tcache *tc = s->tcaches; tc; tc = tc->next_in_space) {
			in_mags += mag_count_locked(s, tc->cls[c].loaded);
			in_mags += mag_count_locked(s, tc->cls[c].prev);
		}
		cache_nodes += s->cache_nodes[c];
		cache_bytes += s->cache_nodes[c] * class_size(s, c);
		st->cached_ranges += in_mags;
		cached_bytes += in_mags * class_size(s, c);
	}
	for (struct tcache *tc = s->tcaches; tc; tc = tc->next_in_space) {
		st->cache_hits += atomic_load_explicit(&tc->hits, memory_order_relaxed);
		st->cache_misses += atomic_load_explicit(&tc->misses, memory_order_relaxed);
	}
	st->cached_bytes = cached_bytes;
	st->live_ranges = s->live_nodes + cache_nodes - st->cached_ranges;
	st->allocated_bytes = s->live_bytes + cache_bytes - cached_bytes;
	st->reserved_bytes = s->rsv_bytes;
	st->quarantined_ranges = s->quar_nodes;
	st->quarantined_bytes = s->quar_bytes;
	st->cache_flushes = s->flushes;
	unsigned __int128 busy = (unsigned __int128)s->live_bytes + cache_bytes + s->quar_bytes +
				 s->rsv_bytes;
	unsigned __int128 fr = s->allowed_bytes - busy;
	st->free_bytes = fr > UINT64_MAX ? UINT64_MAX : (uint64_t)fr;
	pthread_mutex_unlock(&s->lock);
}

DME_EXPORT size_t dme_iova_geometry_get(struct dme_iova_space *s, struct dme_iova_range *ranges,
					size_t max)
{
	for (size_t i = 0; i < s->nr_ranges && i < max; i++)
		ranges[i] = s->ranges[i];
	return s->nr_ranges;
}

DME_EXPORT int dme_iova_check(struct dme_iova_space *s)
{
	pthread_mutex_lock(&s->lock);
	int ret = tree_check(&s->tree);
	/* every CACHE node has exactly one valid state-table entry */
	struct cidx *t = atomic_load_explicit(&s->idx, memory_order_relaxed);
	uint64_t cache_nodes = 0;
	for (unsigned c = 0; c < s->nr_classes; c++)
		cache_nodes += s->cache_nodes[c];
	if (!ret && t->valid != cache_nodes) {
		dme_err("iova: %" PRIu64 " cache-owned ranges but %" PRIu64 " index entries",
			cache_nodes, t->valid);
		ret = -EUCLEAN;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}
