/* SPDX-License-Identifier: MIT */
/*
 * iova-model.h - a trivially correct reference model of an IOVA space for
 * differential tests and the fuzzer: a sorted array of busy ranges, the
 * allocator's placement policy by linear scan. Slow on purpose; obviously
 * right.
 */
#ifndef DME_IOVA_MODEL_H
#define DME_IOVA_MODEL_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <dme/iova.h>

enum { M_LIVE, M_QUAR, M_RSV };

struct m_busy {
	uint64_t start, last;
	int kind;
	uint64_t epoch;
	uint64_t rsv_start, rsv_last; /* M_RSV: the reservation it belongs to */
};

struct model {
	const struct dme_iova_range *ranges;
	size_t nr_ranges;
	uint64_t granule;
	struct m_busy *b;
	size_t n, cap;
	uint64_t epoch;
	unsigned __int128 free_bytes;
};

static inline void model_init(struct model *m, const struct dme_iova_range *r, size_t nr,
			      uint64_t granule)
{
	memset(m, 0, sizeof(*m));
	m->ranges = r;
	m->nr_ranges = nr;
	m->granule = granule;
	for (size_t i = 0; i < nr; i++)
		m->free_bytes += (unsigned __int128)(r[i].last - r[i].start) + 1;
}

static inline void model_destroy(struct model *m)
{
	free(m->b);
}

/* index of the first busy range with start > a */
static inline size_t model_upper(const struct model *m, uint64_t a)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (m->b[mid].start <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static inline bool model_overlaps(const struct model *m, uint64_t a, uint64_t z)
{
	size_t i = model_upper(m, z);
	return i > 0 && m->b[i - 1].last >= a;
}

static inline const struct dme_iova_range *model_range_of(const struct model *m, uint64_t a,
							   uint64_t z)
{
	for (size_t i = 0; i < m->nr_ranges; i++)
		if (a >= m->ranges[i].start && z <= m->ranges[i].last && z >= a)
			return &m->ranges[i];
	return NULL;
}

static inline void model_insert(struct model *m, uint64_t a, uint64_t z, int kind)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 256;
		m->b = realloc(m->b, m->cap * sizeof(*m->b));
		if (!m->b)
			abort();
	}
	size_t i = model_upper(m, a);
	memmove(&m->b[i + 1], &m->b[i], (m->n - i) * sizeof(*m->b));
	m->b[i] = (struct m_busy){a, z, kind, m->epoch, 0, 0};
	m->n++;
	m->free_bytes -= (unsigned __int128)(z - a) + 1;
}

static inline void model_remove_at(struct model *m, size_t i)
{
	m->free_bytes += (unsigned __int128)(m->b[i].last - m->b[i].start) + 1;
	memmove(&m->b[i], &m->b[i + 1], (m->n - i - 1) * sizeof(*m->b));
	m->n--;
}

static inline int64_t model_find(const struct model *m, uint64_t a)
{
	size_t i = model_upper(m, a);
	return i > 0 && m->b[i - 1].start == a ? (int64_t)i - 1 : -1;
}

/* First fit: lowest a with a % align == phase, [a, a+size-1] inside one
 * allowed range and free. */
static inline bool model_fit(uint64_t lo, uint64_t hi, uint64_t size, uint64_t align,
			     uint64_t phase, uint64_t *out)
{
	uint64_t a = lo + ((phase - lo) & (align - 1));
	if (a < lo || a > hi || hi - a < size - 1)
		return false;
	*out = a;
	return true;
}

static inline int model_first_fit(const struct model *m, uint64_t size, uint64_t align,
				  uint64_t phase, uint64_t *out)
{
	for (size_t r = 0; r < m->nr_ranges; r++) {
		uint64_t cur = m->ranges[r].start, end = m->ranges[r].last;
		size_t i = model_upper(m, cur);
		if (i > 0 && m->b[i - 1].last >= cur)
			i--;
		for (;; i++) {
			if (i >= m->n || m->b[i].start > end) {
				if (model_fit(cur, end, size, align, phase, out))
					return 0;
				break;
			}
			if (m->b[i].start > cur &&
			    model_fit(cur, m->b[i].start - 1, size, align, phase, out))
				return 0;
			if (m->b[i].last >= end)
				break;
			if (m->b[i].last + 1 > cur)
				cur = m->b[i].last + 1;
		}
	}
	return -ENOSPC;
}

/* The allocator's placement: the lowest free interval of at least size +
 * align - granule (it fits at its first aligned slot, whatever its start);
 * when there is none, first fit. */
static inline int model_place(const struct model *m, uint64_t size, uint64_t align, uint64_t phase,
			      uint64_t *out)
{
	uint64_t g = m->granule > 1 ? m->granule : 1, need;
	if (align < g || __builtin_add_overflow(size, align - g, &need))
		return model_first_fit(m, size, align, phase, out);
	for (size_t r = 0; r < m->nr_ranges; r++) {
		uint64_t cur = m->ranges[r].start, end = m->ranges[r].last;
		size_t i = model_upper(m, cur);
		if (i > 0 && m->b[i - 1].last >= cur)
			i--;
		for (;; i++) {
			uint64_t hi = i >= m->n || m->b[i].start > end ? end : m->b[i].start - 1;
			if ((i >= m->n || m->b[i].start > cur) && hi >= cur &&
			    hi - cur >= need - 1 && model_fit(cur, hi, size, align, phase, out))
				return 0;
			if (i >= m->n || m->b[i].start > end || m->b[i].last >= end)
				break;
			if (m->b[i].last + 1 > cur)
				cur = m->b[i].last + 1;
		}
	}
	return model_first_fit(m, size, align, phase, out);
}

#endif
