/* SPDX-License-Identifier: MIT */
/*
 * compiler.h - small internal helpers shared by every layer: branch hints,
 * alignment arithmetic, overflow-checked adds, symbol visibility.
 * Internal: never installed, never included by users.
 */
#ifndef DME_COMPILER_H
#define DME_COMPILER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define DME_EXPORT __attribute__((visibility("default")))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define DME_CACHELINE 64
#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

static inline bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/* Round @x up to a multiple of the power of two @a; false on overflow. */
static inline bool align_up_checked(uint64_t x, uint64_t a, uint64_t *out)
{
	uint64_t r = (x + (a - 1)) & ~(a - 1);
	if (r < x)
		return false;
	*out = r;
	return true;
}

static inline uint64_t align_down(uint64_t x, uint64_t a)
{
	return x & ~(a - 1);
}

static inline unsigned ilog2_u64(uint64_t x)
{
	return 63u - (unsigned)__builtin_clzll(x);
}

/* Smallest power of two >= x (x >= 1, x <= 2^63). */
static inline uint64_t roundup_pow2(uint64_t x)
{
	return x <= 1 ? 1 : 1ull << (64 - __builtin_clzll(x - 1));
}

#endif
