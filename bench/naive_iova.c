/* SPDX-License-Identifier: MIT */
/* naive_iova.c - see naive_iova.h. A baseline: deliberately simple. */
#include <errno.h>
#include <stdlib.h>

#include "naive_iova.h"

void naive_init(struct naive_iova *n, uint64_t lo, uint64_t hi)
{
	pthread_mutex_init(&n->lock, NULL);
	n->head.next = NULL;
	n->head.start = 0;
	n->head.last = 0;	/* unused: the head stands for 'below lo' */
	n->tail = &n->head;
	n->lo = lo;
	n->hi = hi;
}

void naive_destroy(struct naive_iova *n)
{
	struct naive_node *p = n->head.next;
	while (p) {
		struct naive_node *q = p->next;
		free(p);
		p = q;
	}
	pthread_mutex_destroy(&n->lock);
}

int naive_append(struct naive_iova *n, uint64_t start, uint64_t size)
{
	struct naive_node *x = malloc(sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->start = start;
	x->last = start + size - 1;
	x->next = NULL;
	n->tail->next = x;
	n->tail = x;
	return 0;
}

int naive_alloc(struct naive_iova *n, uint64_t size, uint64_t align, uint64_t *iova)
{
	struct naive_node *x = malloc(sizeof(*x));
	if (!x)
		return -ENOMEM;
	pthread_mutex_lock(&n->lock);
	for (struct naive_node *p = &n->head; p; p = p->next) {
		uint64_t from = p == &n->head ? n->lo : p->last + 1;
		uint64_t lo = (from + align - 1) & ~(align - 1);
		if (lo < from || (p->next && p->next->start <= lo))
			continue;
		uint64_t hi = p->next ? p->next->start - 1 : n->hi;
		if (lo <= hi && hi - lo >= size - 1) {
			x->start = lo;
			x->last = lo + size - 1;
			x->next = p->next;
			p->next = x;
			if (!x->next)
				n->tail = x;
			pthread_mutex_unlock(&n->lock);
			*iova = lo;
			return 0;
		}
	}
	pthread_mutex_unlock(&n->lock);
	free(x);
	return -ENOSPC;
}

int naive_free(struct naive_iova *n, uint64_t iova, uint64_t size)
{
	pthread_mutex_lock(&n->lock);
	for (struct naive_node *p = &n->head; p->next; p = p->next) {
		struct naive_node *x = p->next;
		if (x->start == iova) {
			if (x->last - x->start + 1 != size)
				break;
			p->next = x->next;
			if (n->tail == x)
				n->tail = p;
			pthread_mutex_unlock(&n->lock);
			free(x);
			return 0;
		}
	}
	pthread_mutex_unlock(&n->lock);
	return -EINVAL;
}
