/* SPDX-License-Identifier: MIT */
/*
 * skiplist.h - baseline for the lookup benchmark: VA runs in a skiplist
 * behind one mutex, the way a registry is often first written.
 *
 * Each node is a run {va, len, iova}; a lookup takes the mutex, finds the
 * last run starting at or below the VA, and checks that the VA is inside.
 * Every call (lookup, insert, remove) holds the mutex.
 */
#ifndef DME_BENCH_SKIPLIST_H
#define DME_BENCH_SKIPLIST_H

#include <pthread.h>
#include <stdint.h>

#define SKIP_LEVELS 16

struct skip_node;

struct skiplist {
	pthread_mutex_t lock;
	struct skip_node *head;
	unsigned level; /* levels in use */
	uint64_t rng;
};

int skip_init(struct skiplist *s);
void skip_destroy(struct skiplist *s);
/* Insert run [va, va + len) -> iova; -EEXIST if a run starts at va. */
int skip_insert(struct skiplist *s, uint64_t va, uint64_t len, uint64_t iova);
/* Remove the run starting at va; -ENOENT if none. */
int skip_remove(struct skiplist *s, uint64_t va);
/* The IOVA of va, or -ENOENT. */
int skip_lookup(struct skiplist *s, uint64_t va, uint64_t *iova);

#endif
