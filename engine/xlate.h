/* SPDX-License-Identifier: MIT */
/*
 * xlate.h - the translation table behind dme_vtoiova(): VA -> IOVA without a
 * lock, plus the reverse IOVA -> VA (internal).
 *
 * Shape. One "xtab" is a radix keyed by a 57-bit address:
 *
 *   key bits 56:47  hi index   -- 0 for every user VA below 128 TiB; the
 *                                 directory for index 0 sits in struct xlate,
 *                                 others are reached through a lazily
 *                                 allocated array (an extra load, rare)
 *   key bits 46:30  directory  -- 2^17 words, one per GiB; the directory is
 *                                 1 MiB of address space whose pages the
 *                                 kernel materialises only when written
 *   key bits 29:21  leaf       -- 512 words, one per 2 MiB slot
 *   key bits 20:12  sub-table  -- 512 words, one per 4 KiB page, only where
 *                                 a slot is not one linear 2 MiB run
 *
 * A slot word is 0 (nothing mapped), value | XE_LINEAR (the whole 2 MiB maps
 * linearly: value is what the slot's first byte maps to, 4 KiB aligned), or
 * sub-table | XE_SUB. A sub-table word is 0 or page value | XE_PAGE.
 * xlate_set() writes a linear slot word for every empty 2 MiB slot a run
 * covers entirely (always the case for page_shift >= 21, where va, iova and
 * len are 2 MiB aligned) and 4 KiB words elsewhere, so a lookup costs two
 * dependent loads after the directory pointer (three in a 4 KiB region). A
 * slot that already holds an (emptied) sub-table keeps it and gets 512 page
 * words instead, until xlate_trim() collapses it (see Reclamation).
 *
 * The forward table (key VA) is replicated once per NUMA node; each replica's
 * pages are placed on its node when libnuma reports more than one node, and
 * a reader uses its own node's replica: the thread-local xlate_tls caches
 * that replica's directory (so the NUMA case costs the same dependent loads
 * as the single-node one) and is re-validated against the current CPU (see
 * struct xlate_tls). xlate_tls uses the initial-exec TLS model: libdme must
 * be linked at startup, not dlopen()ed late into a process short of static
 * TLS space. The reverse table (key IOVA, value VA) has one copy: it is the
 * same radix, O(1) rather than the O(log n) of a tree of runs, and dense
 * because dme allocates IOVAs first fit.
 *
 * Concurrency. Writers (xlate_set/clear/trim) are serialized by the caller
 * (the engine's map lock). Readers (xlate_lookup/reverse) never block and
 * never write shared memory: every word is a 64-bit atomic, tables are filled
 * before their pointer is published with release, and readers load with
 * acquire, so a reader sees a word either before or after a write, never
 * torn. A lookup racing a set or clear of the same page returns the old or
 * the new answer.
 *
 * Reclamation. No table is ever detached while readers may run: an emptied
 * sub-table stays in its slot and serves that slot again, leaves and
 * directories stay until xlate_destroy(). Because a table never changes
 * owner, a reader holding a stale pointer reads only words that belong to
 * the key it is looking up - no retired list, epochs or hazard pointers on
 * the read side, which stays a few plain loads. The price is memory bounded by
 * the address footprint ever mapped (4 KiB per GiB touched, plus 4 KiB per
 * 2 MiB slot ever mapped at 4 KiB granularity). xlate_trim() gives that back
 * (empty tables freed, linear sub-tables collapsed) but only at a point where
 * the caller guarantees no lookup is running: that is the engine's
 * quiescence hook, not something the table can detect itself.
 */
#ifndef DME_ENGINE_XLATE_H
#define DME_ENGINE_XLATE_H

/* Internal symbols carry the dmei_ prefix in the library (libdme.a links
 * beside other libraries' own avl_*, tree_*...); the code uses the short
 * names. */
#define xlate_clear dmei_xlate_clear
#define xlate_destroy dmei_xlate_destroy
#define xlate_fdir_slow dmei_xlate_fdir_slow
#define xlate_init dmei_xlate_init
#define xlate_lookup_high dmei_xlate_lookup_high
#define xlate_meta_bytes dmei_xlate_meta_bytes
#define xlate_reverse_high dmei_xlate_reverse_high
#define xlate_set dmei_xlate_set
#define xlate_tls dmei_xlate_tls
#define xlate_trim dmei_xlate_trim

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

#define XLATE_MAX_NODES 64	 /* replicas; more nodes share replicas */
#define XLATE_KEY_BITS 57	 /* keys (VA, IOVA) must lie below 2^57 */
#define XLATE_LOW_BITS 47	 /* keys below 2^47 take the fast path */
#define XLATE_NODE_REFRESH 4096u /* without rseq: lookups between node checks */

#define XE_LINEAR 1ull	   /* slot word: the 2 MiB slot maps linearly */
#define XE_SUB 2ull	   /* slot word: points to a 4 KiB sub-table */
#define XE_PAGE 1ull	   /* sub-table word: the page is mapped */
#define XE_VAL (~0xfffull) /* value (or pointer) bits of a word */

typedef _Atomic uint64_t xword;

struct xtab;

/** struct xlate - the VA -> IOVA table, its per-node replicas and its reverse. */
struct xlate {
	/* read side: the first cache line serves the common case */
	unsigned nr_nodes;		   /* forward replicas */
	unsigned id;			   /* unique among tables ever created */
	xword *fdir[XLATE_MAX_NODES];	   /* replica's directory for keys < 2^47 */
	xword *rdir;			   /* the reverse table's directory */
	uint8_t node_rep[XLATE_MAX_NODES]; /* NUMA node (mod 64) -> replica */
	/* write side */
	struct xtab *fwd; /* nr_nodes replicas */
	struct xtab *rev;
};

/*
 * Per thread: the directory of the replica for this thread's NUMA node, for
 * the table with id @id, valid while the thread stays on CPU @cpu. A thread
 * that alternates between tables takes the slow path at each switch; ids
 * are never reused, so a stale entry can only miss, never point into a
 * destroyed table.
 *
 * The CPU comes from the rseq area glibc registers for every thread (the
 * kernel rewrites cpu_id whenever the thread migrates), so validating the
 * cache is two loads and no store. Where rseq is not registered cpu_id is a
 * constant and the node chosen first stays (lookups remain correct, maybe
 * remote). Without <sys/rseq.h> a per-thread countdown re-checks the node
 * every XLATE_NODE_REFRESH lookups.
 */
struct xlate_tls {
	unsigned id;
	unsigned cpu;  /* rseq cpu_id when dir was chosen */
	unsigned left; /* without rseq: lookups until the next node check */
	unsigned node;
	const xword *dir;
};
extern _Thread_local struct xlate_tls xlate_tls __attribute__((tls_model("initial-exec")));

#if defined(__has_include) && __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#define XLATE_RSEQ 1
static inline unsigned xlate_cpu(void)
{
	const struct rseq *rs =
	    (const struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	return __atomic_load_n(&rs->cpu_id, __ATOMIC_RELAXED);
}
#endif

/**
 * xlate_init() - set up an empty table.
 * @x:        the table to initialise
 * @nr_nodes: forward replicas; 0 = one per NUMA node libnuma reports (1
 *            without NUMA); capped at XLATE_MAX_NODES
 *
 * Return: 0 or -ENOMEM (nothing to destroy then).
 */
int xlate_init(struct xlate *x, unsigned nr_nodes);

/**
 * xlate_destroy() - free every table. No reader or writer may run.
 * @x: the table (initialised, or zeroed)
 */
void xlate_destroy(struct xlate *x);

/**
 * xlate_set() - record that [@va, @va + @len) is mapped at @iova.
 * @x:          the table; writers serialized by the caller
 * @va:         first byte; aligned to the granule
 * @len:        bytes, a non-zero multiple of the granule
 * @iova:       IOVA of @va; aligned to the granule
 * @page_shift: backing page size of @va: 12 (4 KiB granule) or 21..30
 *              (2 MiB granule: one linear word per 2 MiB)
 *
 * Both directions are updated (all forward replicas and the reverse).
 *
 * Return: 0; -EINVAL for a bad page_shift, misaligned or empty range, or a
 * range beyond 2^57; -EEXIST when any page of the VA range or the IOVA range
 * is already mapped; -ENOMEM. On error no translation changed (empty tables
 * may have been added).
 */
int xlate_set(struct xlate *x, uint64_t va, uint64_t len, uint64_t iova, unsigned page_shift);

/**
 * xlate_clear() - forget the translations of [@va, @va + @len).
 * @x:   the table; writers serialized by the caller
 * @va:  first byte, 4 KiB aligned
 * @len: bytes, a non-zero multiple of 4 KiB
 *
 * Unmapped pages in the range are ignored; the reverse entries of the mapped
 * ones are cleared too. Clearing part of a linear 2 MiB slot splits it into
 * a sub-table first, which needs memory.
 *
 * Return: 0, -EINVAL for a misaligned or empty range or one beyond 2^57,
 * -ENOMEM (no translation changed).
 */
int xlate_clear(struct xlate *x, uint64_t va, uint64_t len);

/**
 * xlate_trim() - free empty tables and collapse linear sub-tables.
 * @x: the table; the caller guarantees that no reader is inside
 *     xlate_lookup() or xlate_reverse() and no writer runs
 *
 * Return: bytes of metadata given back.
 */
size_t xlate_trim(struct xlate *x);

/**
 * xlate_meta_bytes() - memory the table holds: struct, touched directory
 * pages, leaves and sub-tables of every replica and of the reverse table.
 * @x: the table
 */
size_t xlate_meta_bytes(const struct xlate *x);

/* The out-of-line lookups return the value or XLATE_NONE (values are below
 * 2^57), so that a caller's out parameter never escapes into a call and can
 * stay in a register. */
#define XLATE_NONE UINT64_MAX

const xword *xlate_fdir_slow(const struct xlate *x);
uint64_t xlate_lookup_high(const struct xlate *x, uint64_t va);
uint64_t xlate_reverse_high(const struct xlate *x, uint64_t iova);

/* A lookup in one radix whose key is below 2^47; @dir is its directory. */
static inline int xtab_get(const xword *dir, uint64_t key, uint64_t *out)
{
	uint64_t l = atomic_load_explicit(&dir[key >> 30], memory_order_acquire);
	if (unlikely(!l))
		return -ENOENT;
	const xword *leaf = (const xword *)(uintptr_t)l;
	uint64_t e = atomic_load_explicit(&leaf[(key >> 21) & 511], memory_order_acquire);
	if (likely(e & XE_LINEAR)) {
		*out = (e & XE_VAL) + (key & 0x1fffff);
		return 0;
	}
	if (!e)
		return -ENOENT;
	const xword *sub = (const xword *)(uintptr_t)(e & XE_VAL);
	uint64_t p = atomic_load_explicit(&sub[(key >> 12) & 511], memory_order_acquire);
	if (!p)
		return -ENOENT;
	*out = (p & XE_VAL) | (key & 0xfff);
	return 0;
}

static inline int xlate_value(uint64_t v, uint64_t *out)
{
	if (v == XLATE_NONE)
		return -ENOENT;
	*out = v;
	return 0;
}

/* The forward directory to read: this thread's node's replica. */
static inline const xword *xlate_fdir(const struct xlate *x)
{
	if (likely(x->nr_nodes == 1))
		return x->fdir[0];
	struct xlate_tls *t = &xlate_tls;
#ifdef XLATE_RSEQ
	if (likely(t->id == x->id) && likely(t->cpu == xlate_cpu()))
		return t->dir;
#else
	if (likely(t->id == x->id) && likely(t->left--))
		return t->dir;
#endif
	return xlate_fdir_slow(x); /* another table, or another CPU: check the node */
}

/**
 * xlate_lookup() - the IOVA of @va. Lock-free; any thread, any time.
 * @x:    the table
 * @va:   any byte of a mapped range
 * @iova: on success, its IOVA
 *
 * Return: 0, or -ENOENT when @va is not mapped.
 */
static inline int xlate_lookup(const struct xlate *x, uint64_t va, uint64_t *iova)
{
	if (unlikely(va >> XLATE_LOW_BITS))
		return xlate_value(xlate_lookup_high(x, va), iova);
	return xtab_get(xlate_fdir(x), va, iova);
}

/**
 * xlate_reverse() - the VA that @iova maps. Lock-free, like xlate_lookup().
 * @x:    the table
 * @iova: any byte of a mapped range
 * @va:   on success, the VA
 *
 * Return: 0, or -ENOENT when @iova is not mapped.
 */
static inline int xlate_reverse(const struct xlate *x, uint64_t iova, uint64_t *va)
{
	if (unlikely(iova >> XLATE_LOW_BITS))
		return xlate_value(xlate_reverse_high(x, iova), va);
	return xtab_get(x->rdir, iova, va);
}

#endif
