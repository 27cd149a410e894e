/* SPDX-License-Identifier: MIT */
/*
 * tree.c - AVL tree of busy IOVA ranges augmented with the largest free gap
 * in each subtree. See tree.h for the invariants.
 *
 * Gap bookkeeping: inserting x between p and s changes s->gap; removing x
 * changes its successor's gap. In both cases the successor lies on the path
 * the recursion walks (an ancestor of x's leaf slot, or x's in-order
 * successor pulled up from its right subtree), except when x has a single
 * right child: AVL balance makes that child a leaf, and it is updated
 * explicitly. Every node on the walked path is re-augmented on the way up.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include "compiler.h"
#include "log_internal.h"
#include "tree.h"

static inline int h(const struct node *n)
{
	return n ? n->height : 0;
}

static inline uint64_t mg(const struct node *n)
{
	return n ? n->max_gap : 0;
}

static inline void update(struct node *n)
{
	int hl = h(n->l), hr = h(n->r);
	uint64_t m = n->gap, ml = mg(n->l), mr = mg(n->r);
	n->height = 1 + (hl > hr ? hl : hr);
	if (ml > m)
		m = ml;
	if (mr > m)
		m = mr;
	n->max_gap = m;
}

static struct node *rot_right(struct node *y)
{
	struct node *x = y->l;
	y->l = x->r;
	x->r = y;
	update(y);
	update(x);
	return x;
}

static struct node *rot_left(struct node *x)
{
	struct node *y = x->r;
	x->r = y->l;
	y->l = x;
	update(x);
	update(y);
	return y;
}

static struct node *balance(struct node *n)
{
	update(n);
	int bf = h(n->l) - h(n->r);
	if (bf > 1) {
		if (h(n->l->l) < h(n->l->r))
			n->l = rot_left(n->l);
		return rot_right(n);
	}
	if (bf < -1) {
		if (h(n->r->r) < h(n->r->l))
			n->r = rot_right(n->r);
		return rot_left(n);
	}
	return n;
}

static struct node *insert_rec(struct node *n, struct node *x)
{
	if (!n)
		return x;
	if (x->start < n->start)
		n->l = insert_rec(n->l, x);
	else
		n->r = insert_rec(n->r, x);
	return balance(n);
}

struct node *tree_floor(struct tree *t, uint64_t addr)
{
	struct node *n = t->root, *best = NULL;
	while (n) {
		if (n->start <= addr) {
			best = n;
			n = n->r;
		} else {
			n = n->l;
		}
	}
	return best;
}

struct node *tree_next(struct tree *t, uint64_t addr)
{
	struct node *n = t->root, *best = NULL;
	while (n) {
		if (n->start > addr) {
			best = n;
			n = n->l;
		} else {
			n = n->r;
		}
	}
	return best;
}

struct node *tree_find_exact(struct tree *t, uint64_t start)
{
	struct node *n = t->root;
	while (n && n->start != start)
		n = start < n->start ? n->l : n->r;
	return n;
}

struct node *tree_max(struct tree *t)
{
	struct node *n = t->root;
	while (n && n->r)
		n = n->r;
	return n;
}

void tree_insert(struct tree *t, struct node *x)
{
	struct node *p = tree_floor(t, x->start);
	struct node *s = tree_next(t, x->start);
	uint64_t prev_end = p ? p->last + 1 : 0;

	x->l = x->r = NULL;
	x->height = 1;
	x->gap = x->start - prev_end;
	x->max_gap = x->gap;
	if (s)
		s->gap = s->start - (x->last + 1);	/* s is an ancestor of x's slot */
	t->root = insert_rec(t->root, x);
	t->nr++;
}

static struct node *remove_min(struct node *n, struct node **min)
{
	if (!n->l) {
		*min = n;
		return n->r;
	}
	n->l = remove_min(n->l, min);
	return balance(n);
}

static struct node *remove_rec(struct node *n, struct node *x)
{
	if (n != x) {
		if (x->start < n->start)
			n->l = remove_rec(n->l, x);
		else
			n->r = remove_rec(n->r, x);
		return balance(n);
	}
	if (!n->l && !n->r)
		return NULL;
	if (!n->l) {
		update(n->r);	/* a leaf: the successor, whose gap changed */
		return n->r;
	}
	if (!n->r)
		return n->l;
	struct node *m;
	struct node *r = remove_min(n->r, &m);
	m->l = n->l;
	m->r = r;
	return balance(m);
}

void tree_remove(struct tree *t, struct node *x)
{
	struct node *s = tree_next(t, x->start);
	if (s)
		s->gap += x->gap + (x->last - x->start + 1);
	t->root = remove_rec(t->root, x);
	t->nr--;
}

static bool fit(uint64_t lo, uint64_t hi, uint64_t size, uint64_t align, uint64_t phase,
		uint64_t *out)
{
	uint64_t a = lo + ((phase - lo) & (align - 1));
	if (a < lo || a > hi || hi - a < size - 1)
		return false;
	*out = a;
	return true;
}

/* Exact first fit: visits every gap of at least @size in address order,
 * until one has a slot with the alignment and phase. */
static struct node *find_rec(struct node *n, uint64_t size, uint64_t align, uint64_t phase,
			     uint64_t *addr)
{
	while (n && n->max_gap >= size) {
		struct node *r = find_rec(n->l, size, align, phase, addr);
		if (r)
			return r;
		if (n->gap >= size && fit(n->start - n->gap, n->start - 1, size, align, phase, addr))
			return n;
		n = n->r;	/* tail call by hand */
	}
	return NULL;
}

/* The lowest node whose gap is at least @need: one descent by max_gap. */
static struct node *find_lowest(struct node *n, uint64_t need)
{
	while (n && n->max_gap >= need) {
		if (mg(n->l) >= need)
			n = n->l;
		else if (n->gap >= need)
			return n;
		else
			n = n->r;
	}
	return NULL;
}

int tree_find_fit(struct tree *t, uint64_t size, uint64_t align, uint64_t phase, uint64_t granule,
		  struct node **succ, uint64_t *addr)
{
	struct node *m = tree_max(t);
	uint64_t tail_lo = m ? m->last + 1 : 0;
	bool tail = !m || m->last != UINT64_MAX;
	uint64_t need;
	/* a gap of size + align - granule holds an aligned slot whatever its
	 * start: take the lowest such gap in O(log n) */
	if (!__builtin_add_overflow(size, align - granule, &need)) {
		struct node *s = find_lowest(t->root, need);
		if (s) {
			fit(s->start - s->gap, s->start - 1, size, align, phase, addr);
			*succ = s;
			return 0;
		}
		if (tail && UINT64_MAX - tail_lo >= need - 1) {
			fit(tail_lo, UINT64_MAX, size, align, phase, addr);
			*succ = NULL;
			return 0;
		}
		if (align <= granule)
			return -ENOSPC; /* need == size: nothing smaller can fit */
	}
	/* only gaps in [size, need) are left: the exact search, which visits
	 * just those */
	struct node *s = find_rec(t->root, size, align, phase, addr);
	if (s) {
		*succ = s;
		return 0;
	}
	if (tail && fit(tail_lo, UINT64_MAX, size, align, phase, addr)) {
		*succ = NULL;
		return 0;
	}
	return -ENOSPC;
}

struct check_ctx {
	const struct node *prev;
	int bad;
};

static int check_rec(const struct node *n, struct check_ctx *c, uint64_t *count)
{
	if (!n)
		return 0;
	int hl = check_rec(n->l, c, count);
	if (c->bad)
		return 0;
	uint64_t prev_end = c->prev ? c->prev->last + 1 : 0;
	if (n->last < n->start) {
		dme_err("iova tree: node [0x%llx, 0x%llx] has last < start",
			(unsigned long long)n->start, (unsigned long long)n->last);
		c->bad = 1;
	} else if (c->prev && n->start <= c->prev->last) {
		dme_err("iova tree: node 0x%llx overlaps or is out of order",
			(unsigned long long)n->start);
		c->bad = 1;
	} else if (n->gap != n->start - prev_end) {
		dme_err("iova tree: node 0x%llx gap %llu, expected %llu",
			(unsigned long long)n->start, (unsigned long long)n->gap,
			(unsigned long long)(n->start - prev_end));
		c->bad = 1;
	}
	c->prev = n;
	(*count)++;
	int hr = check_rec(n->r, c, count);
	if (c->bad)
		return 0;
	uint64_t m = n->gap;
	if (mg(n->l) > m)
		m = mg(n->l);
	if (mg(n->r) > m)
		m = mg(n->r);
	if (n->max_gap != m || hl != h(n->l) || hr != h(n->r) || n->height != 1 + (hl > hr ? hl : hr) ||
	    hl - hr > 1 || hr - hl > 1) {
		dme_err("iova tree: node 0x%llx augment or balance broken",
			(unsigned long long)n->start);
		c->bad = 1;
	}
	return n->height;
}

int tree_check(struct tree *t)
{
	struct check_ctx c = {NULL, 0};
	uint64_t count = 0;
	check_rec(t->root, &c, &count);
	if (!c.bad && count != t->nr) {
		dme_err("iova tree: %llu nodes, counter says %llu", (unsigned long long)count,
			(unsigned long long)t->nr);
		c.bad = 1;
	}
	return c.bad ? -EUCLEAN : 0;
}

static void destroy_rec(struct node *n, void (*free_node)(struct node *))
{
	while (n) {
		destroy_rec(n->l, free_node);
		struct node *r = n->r;
		free_node(n);
		n = r;
	}
}

void tree_destroy(struct tree *t, void (*free_node)(struct node *))
{
	destroy_rec(t->root, free_node);
	t->root = NULL;
	t->nr = 0;
}
