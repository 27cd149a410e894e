/* SPDX-License-Identifier: MIT */
/*
 * skiplist.c - the mutex-guarded skiplist baseline (see skiplist.h).
 * Owns its nodes; s->lock guards everything, for readers too.
 */
#include <errno.h>
#include <stdlib.h>

#include "skiplist.h"

struct skip_node {
	uint64_t va, len, iova;
	struct skip_node *next[];
};

static struct skip_node *node_new(unsigned levels)
{
	return calloc(1, sizeof(struct skip_node) + levels * sizeof(struct skip_node *));
}

int skip_init(struct skiplist *s)
{
	s->head = node_new(SKIP_LEVELS);
	if (!s->head)
		return -ENOMEM;
	s->level = 1;
	s->rng = 0x2545f4914f6cdd1dull;
	return pthread_mutex_init(&s->lock, NULL) ? -ENOMEM : 0;
}

void skip_destroy(struct skiplist *s)
{
	for (struct skip_node *n = s->head, *next; n; n = next) {
		next = n->next[0];
		free(n);
	}
	pthread_mutex_destroy(&s->lock);
}

static unsigned random_level(struct skiplist *s)
{
	unsigned lv = 1;
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	for (uint64_t r = s->rng; lv < SKIP_LEVELS && (r & 3) == 0; r >>= 2)
		lv++; /* p = 1/4 */
	return lv;
}

/* Fill @pred with the last node before @va on every level; caller locks. */
static struct skip_node *find(struct skiplist *s, uint64_t va, struct skip_node **pred)
{
	struct skip_node *x = s->head;
	for (unsigned l = s->level; l-- > 0;) {
		while (x->next[l] && x->next[l]->va < va)
			x = x->next[l];
		if (pred)
			pred[l] = x;
	}
	return x->next[0];
}

int skip_insert(struct skiplist *s, uint64_t va, uint64_t len, uint64_t iova)
{
	struct skip_node *pred[SKIP_LEVELS];
	int ret = 0;
	pthread_mutex_lock(&s->lock);
	struct skip_node *at = find(s, va, pred);
	if (at && at->va == va) {
		ret = -EEXIST;
		goto out;
	}
	unsigned lv = random_level(s);
	struct skip_node *n = node_new(lv);
	if (!n) {
		ret = -ENOMEM;
		goto out;
	}
	n->va = va;
	n->len = len;
	n->iova = iova;
	for (; s->level < lv; s->level++)
		pred[s->level] = s->head;
	for (unsigned l = 0; l < lv; l++) {
		n->next[l] = pred[l]->next[l];
		pred[l]->next[l] = n;
	}
out:
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int skip_remove(struct skiplist *s, uint64_t va)
{
	struct skip_node *pred[SKIP_LEVELS];
	pthread_mutex_lock(&s->lock);
	struct skip_node *n = find(s, va, pred);
	if (!n || n->va != va) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	for (unsigned l = 0; l < s->level; l++)
		if (pred[l]->next[l] == n)
			pred[l]->next[l] = n->next[l];
	pthread_mutex_unlock(&s->lock);
	free(n);
	return 0;
}

int skip_lookup(struct skiplist *s, uint64_t va, uint64_t *iova)
{
	int ret = -ENOENT;
	pthread_mutex_lock(&s->lock);
	struct skip_node *x = s->head;
	for (unsigned l = s->level; l-- > 0;)
		while (x->next[l] && x->next[l]->va <= va)
			x = x->next[l];
	if (x != s->head && va - x->va < x->len) {
		*iova = x->iova + (va - x->va);
		ret = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}
