/* SPDX-License-Identifier: MIT */
/*
 * avl.h - a small intrusive AVL tree keyed by a uint64_t, for ordered maps
 * of disjoint ranges (the engine's VA registry and its IOVA index).
 *
 * Embed struct avl_node, set ->key, insert. Keys must be unique. Lookups
 * are floor/ceil/exact. No locking: the owner serialises every call.
 * Recursion depth is bounded by the AVL height (< 1.45 log2 n).
 */
#ifndef DME_AVL_H
#define DME_AVL_H

/* Internal symbols carry the dmei_ prefix in the library (libdme.a links
 * beside other libraries' own avl_*, tree_*...); the code uses the short
 * names. */
#define avl_find dmei_avl_find
#define avl_first dmei_avl_first
#define avl_floor dmei_avl_floor
#define avl_insert dmei_avl_insert
#define avl_next dmei_avl_next
#define avl_remove dmei_avl_remove

#include <stddef.h>
#include <stdint.h>

struct avl_node {
	struct avl_node *l, *r;
	uint64_t key;
	int h;
};

struct avl {
	struct avl_node *root;
	size_t n;
};

void avl_insert(struct avl *t, struct avl_node *x);
void avl_remove(struct avl *t, struct avl_node *x);
struct avl_node *avl_find(const struct avl *t, uint64_t key);
/* Largest key <= @key, or NULL. */
struct avl_node *avl_floor(const struct avl *t, uint64_t key);
/* Smallest key > @key, or NULL. */
struct avl_node *avl_next(const struct avl *t, uint64_t key);
/* Smallest key, or NULL. */
struct avl_node *avl_first(const struct avl *t);

#endif
