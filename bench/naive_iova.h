/* SPDX-License-Identifier: MIT */
/*
 * naive_iova.h - the baseline allocator the IOVA benchmarks beat: a sorted
 * linked list of busy ranges under a mutex, first fit by linear scan, free
 * by linear search. This is how older userspace allocators behave.
 */
#ifndef DME_NAIVE_IOVA_H
#define DME_NAIVE_IOVA_H

#include <pthread.h>
#include <stdint.h>

struct naive_node {
	struct naive_node *next;
	uint64_t start, last;
};

struct naive_iova {
	pthread_mutex_t lock;
	struct naive_node head;	/* sentinel: [0, lo - 1] busy */
	struct naive_node *tail;
	uint64_t lo, hi;	/* allowed [lo, hi] */
};

void naive_init(struct naive_iova *n, uint64_t lo, uint64_t hi);
void naive_destroy(struct naive_iova *n);
/* Append a busy range above every other (for fast setup). */
int naive_append(struct naive_iova *n, uint64_t start, uint64_t size);
int naive_alloc(struct naive_iova *n, uint64_t size, uint64_t align, uint64_t *iova);
int naive_free(struct naive_iova *n, uint64_t iova, uint64_t size);

#endif
