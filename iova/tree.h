/* SPDX-License-Identifier: MIT */
/*
 * tree.h - the busy-range tree under an IOVA space.
 *
 * An AVL tree of disjoint busy ranges keyed by start. Busy means: handed out
 * (LIVE), owned by the per-thread caches (CACHE), quarantined (QUAR),
 * reserved by a caller (RSV), or outside the geometry (HOLE). Free space is
 * implicit: the gap in front of each node. Each node is augmented with the
 * largest gap in its subtree, so the lowest gap of any size is found by
 * descending only into subtrees whose max_gap is large enough.
 *
 * Invariants (checked by tree_check()):
 *   - in-order starts strictly increase and ranges do not overlap;
 *   - n->gap == n->start - (predecessor's last + 1), or n->start for the first;
 *   - n->max_gap == max(n->gap, children's max_gap);
 *   - AVL: child heights differ by at most one.
 * The space's tail [last node's last + 1, UINT64_MAX] is tracked by the
 * caller; the tree itself only knows gaps in front of nodes.
 * Locking: the caller holds the space's tree lock for every call.
 */
#ifndef DME_IOVA_TREE_H
#define DME_IOVA_TREE_H

/* Internal symbols carry the dmei_ prefix in the library (libdme.a links
 * beside other libraries' own tree_*); the code uses the short names. */
#define tree_check dmei_tree_check
#define tree_destroy dmei_tree_destroy
#define tree_find_exact dmei_tree_find_exact
#define tree_find_fit dmei_tree_find_fit
#define tree_floor dmei_tree_floor
#define tree_insert dmei_tree_insert
#define tree_max dmei_tree_max
#define tree_next dmei_tree_next
#define tree_remove dmei_tree_remove

#include <stdint.h>

enum node_kind { N_LIVE, N_CACHE, N_QUAR, N_RSV, N_HOLE };

struct node {
	struct node *l, *r;
	uint64_t start, last;
	uint64_t gap, max_gap;
	int height;
	uint8_t kind;
	uint8_t cls;		/* CACHE: size class */
	uint8_t from_cache;	/* QUAR: was a CACHE range; returns to the caches */
	uint32_t slot;		/* CACHE: state slot (space.c) */
	uint64_t epoch;		/* QUAR: epoch it was deferred in */
	struct node *qnext;	/* QUAR: FIFO link */
};

struct tree {
	struct node *root;
	uint64_t nr;
};

/*
 * A place for [size] with addr % align == phase (align a power of two at
 * least @granule; size, phase and every node boundary multiples of
 * @granule). Policy: the lowest gap of at least size + align - granule,
 * which fits whatever its alignment, found in O(log n); only when no gap
 * is that large, exact first fit over the gaps in [size, size + align -
 * granule), O((k + 1) log n) for k such gaps before the fit. With align ==
 * granule both are plain first fit. Returns the node that will follow the
 * new range (NULL: it goes in the tail) and the address.
 */
int tree_find_fit(struct tree *t, uint64_t size, uint64_t align, uint64_t phase, uint64_t granule,
		  struct node **succ, uint64_t *addr);
/* Insert @x (start/last/kind set); fixes the successor's gap. */
void tree_insert(struct tree *t, struct node *x);
/* Remove @x (a node of the tree); fixes the successor's gap. */
void tree_remove(struct tree *t, struct node *x);
/* The node whose start == @start, or NULL. */
struct node *tree_find_exact(struct tree *t, uint64_t start);
/* The node with the largest start <= @addr, or NULL. */
struct node *tree_floor(struct tree *t, uint64_t addr);
/* The node with the smallest start > @addr, or NULL. */
struct node *tree_next(struct tree *t, uint64_t addr);
/* The last node, or NULL. */
struct node *tree_max(struct tree *t);
/* Verify every invariant; 0 or -EUCLEAN (with a message). */
int tree_check(struct tree *t);
/* Free every node. */
void tree_destroy(struct tree *t, void (*free_node)(struct node *));

#endif
