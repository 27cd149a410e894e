/* SPDX-License-Identifier: MIT */
/* avl.c - see avl.h. */
#include "avl.h"

static inline int ht(const struct avl_node *n)
{
	return n ? n->h : 0;
}

static inline void fix(struct avl_node *n)
{
	int a = ht(n->l), b = ht(n->r);
	n->h = 1 + (a > b ? a : b);
}

static struct avl_node *rot_r(struct avl_node *y)
{
	struct avl_node *x = y->l;
	y->l = x->r;
	x->r = y;
	fix(y);
	fix(x);
	return x;
}

static struct avl_node *rot_l(struct avl_node *x)
{
	struct avl_node *y = x->r;
	x->r = y->l;
	y->l = x;
	fix(x);
	fix(y);
	return y;
}

static struct avl_node *bal(struct avl_node *n)
{
	fix(n);
	int d = ht(n->l) - ht(n->r);
	if (d > 1) {
		if (ht(n->l->l) < ht(n->l->r))
			n->l = rot_l(n->l);
		return rot_r(n);
	}
	if (d < -1) {
		if (ht(n->r->r) < ht(n->r->l))
			n->r = rot_r(n->r);
		return rot_l(n);
	}
	return n;
}

static struct avl_node *ins(struct avl_node *n, struct avl_node *x)
{
	if (!n)
		return x;
	if (x->key < n->key)
		n->l = ins(n->l, x);
	else
		n->r = ins(n->r, x);
	return bal(n);
}

void avl_insert(struct avl *t, struct avl_node *x)
{
	x->l = x->r = NULL;
	x->h = 1;
	t->root = ins(t->root, x);
	t->n++;
}

static struct avl_node *rm_min(struct avl_node *n, struct avl_node **min)
{
	if (!n->l) {
		*min = n;
		return n->r;
	}
	n->l = rm_min(n->l, min);
	return bal(n);
}

static struct avl_node *rm(struct avl_node *n, struct avl_node *x)
{
	if (!n)
		return NULL;
	if (n != x) {
		if (x->key < n->key)
			n->l = rm(n->l, x);
		else
			n->r = rm(n->r, x);
		return bal(n);
	}
	if (!n->r)
		return n->l;
	struct avl_node *m;
	struct avl_node *r = rm_min(n->r, &m);
	m->l = n->l;
	m->r = r;
	return bal(m);
}

void avl_remove(struct avl *t, struct avl_node *x)
{
	t->root = rm(t->root, x);
	t->n--;
}

struct avl_node *avl_find(const struct avl *t, uint64_t key)
{
	struct avl_node *n = t->root;
	while (n && n->key != key)
		n = key < n->key ? n->l : n->r;
	return n;
}

struct avl_node *avl_floor(const struct avl *t, uint64_t key)
{
	struct avl_node *n = t->root, *best = NULL;
	while (n) {
		if (n->key <= key) {
			best = n;
			n = n->r;
		} else {
			n = n->l;
		}
	}
	return best;
}

struct avl_node *avl_next(const struct avl *t, uint64_t key)
{
	struct avl_node *n = t->root, *best = NULL;
	while (n) {
		if (n->key > key) {
			best = n;
			n = n->l;
		} else {
			n = n->r;
		}
	}
	return best;
}

struct avl_node *avl_first(const struct avl *t)
{
	struct avl_node *n = t->root;
	while (n && n->l)
		n = n->l;
	return n;
}
