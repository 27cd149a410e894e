/* SPDX-License-Identifier: MIT */
/*
 * bench_iova.c - the IOVA allocator suite (dme bench iova).
 *
 * Cached path: alloc+free pairs of 4 KiB on 1 and 2 threads. Tree path: a
 * steady state of N live ranges (10^3, 10^5) where each step frees a random
 * live range and allocates one of a random size (1..16 pages), first fit, run
 * identically on dme's tree (caches off) and on the naive list baseline.
 */
#include <errno.h>
#include <stdlib.h>

#include <dme/iova.h>

#include "naive_iova.h"
#include "shim.h"

#define PAGE 0x1000ull

static const struct dme_iova_range vtd[] = {{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};

/* --- cached pairs --------------------------------------------------- */

static struct dme_iova_space *pair_space;

static int pair_prepare(void *arg)
{
	struct dme_iova_geometry g = {vtd, 2, PAGE};
	struct dme_iova_params p = {.no_cache = arg != NULL};
	return dme_iova_space_create(&g, &p, &pair_space);
}

static void pair_finish(void *arg)
{
	(void)arg;
	dme_iova_space_destroy(pair_space);
	pair_space = NULL;
}

static void pair_body(struct dme_bench_state *st, void *arg)
{
	(void)arg;
	uint64_t n, v;
	while (dme_bench_batch(st, &n)) {
		for (uint64_t i = 0; i < n; i++) {
			if (dme_iova_alloc(pair_space, PAGE, PAGE, &v) ||
			    dme_iova_free(pair_space, v, PAGE)) {
				dme_bench_fail(st, "alloc/free failed");
				return;
			}
		}
	}
}

/* A tree baseline with 10^3 live ranges around, caches off. */
static int tree_pair_prepare(void *arg)
{
	int ret = pair_prepare(arg);
	uint64_t v;
	for (int i = 0; !ret && i < 1000; i++)
		ret = dme_iova_alloc(pair_space, PAGE * (1 + i % 4), PAGE, &v);
	return ret;
}

/* --- steady-state churn ---------------------------------------------- */

struct churn {
	unsigned live;
	bool naive;
	uint64_t *iova, *size;
	uint64_t rng;
	struct dme_iova_space *s;
	struct naive_iova nv;
};

static inline uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static int churn_prepare(void *arg)
{
	struct churn *c = arg;
	c->iova = calloc(c->live, sizeof(uint64_t));
	c->size = calloc(c->live, sizeof(uint64_t));
	if (!c->iova || !c->size)
		return -ENOMEM;
	c->rng = 0x9e3779b97f4a7c15ull;
	uint64_t at = 0;
	if (c->naive) {
		naive_init(&c->nv, 0, 0xfedfffff);
	} else {
		struct dme_iova_geometry g = {vtd, 2, PAGE};
		struct dme_iova_params p = {.no_cache = true};
		if (dme_iova_space_create(&g, &p, &c->s))
			return -ENOMEM;
	}
	for (unsigned i = 0; i < c->live; i++) {
		c->size[i] = PAGE * (1 + rnd(&c->rng) % 16);
		c->iova[i] = at;
		int ret = c->naive ? naive_append(&c->nv, at, c->size[i])
				   : dme_iova_alloc_fixed(c->s, at, c->size[i]);
		if (ret)
			return ret;
		at += c->size[i];
	}
	return 0;
}

static void churn_finish(void *arg)
{
	struct churn *c = arg;
	if (c->naive)
		naive_destroy(&c->nv);
	else
		dme_iova_space_destroy(c->s);
	free(c->iova);
	free(c->size);
}

static void churn_body(struct dme_bench_state *st, void *arg)
{
	struct churn *c = arg;
	uint64_t n;
	while (dme_bench_batch(st, &n)) {
		for (uint64_t k = 0; k < n; k++) {
			unsigned i = (unsigned)(rnd(&c->rng) % c->live);
			uint64_t sz = PAGE * (1 + rnd(&c->rng) % 16);
			int ret;
			if (c->naive) {
				ret = naive_free(&c->nv, c->iova[i], c->size[i]);
				ret = ret ? ret : naive_alloc(&c->nv, sz, PAGE, &c->iova[i]);
			} else {
				ret = dme_iova_free(c->s, c->iova[i], c->size[i]);
				ret = ret ? ret : dme_iova_alloc(c->s, sz, PAGE, &c->iova[i]);
			}
			if (ret) {
				dme_bench_fail(st, "churn step failed");
				return;
			}
			c->size[i] = sz;
		}
	}
}

static struct churn tree_1e3 = {.live = 1000}, tree_1e5 = {.live = 100000};
static struct churn naive_1e3 = {.live = 1000, .naive = true};
static struct churn naive_1e5 = {.live = 100000, .naive = true};

static const struct dme_bench_case cases[] = {
	{"cached_pair_1t", pair_body, NULL, 1, pair_prepare, pair_finish},
	{"cached_pair_2t", pair_body, NULL, 2, pair_prepare, pair_finish},
	{"tree_pair_1e3", pair_body, (void *)1, 1, tree_pair_prepare, pair_finish},
	{"tree_churn_1e3", churn_body, &tree_1e3, 1, churn_prepare, churn_finish},
	{"naive_churn_1e3", churn_body, &naive_1e3, 1, churn_prepare, churn_finish},
	{"tree_churn_1e5", churn_body, &tree_1e5, 1, churn_prepare, churn_finish},
	{"naive_churn_1e5", churn_body, &naive_1e5, 1, churn_prepare, churn_finish},
};

static double ratio(const struct dme_bench_result *r, size_t n, const char *num, const char *den)
{
	const struct dme_bench_result *a = dme_bench_find(r, n, num), *b = dme_bench_find(r, n, den);
	return a && b && b->ns_per_iter > 0 ? a->ns_per_iter / b->ns_per_iter : __builtin_nan("");
}

static void summarize(const struct dme_bench_result *r, size_t n, struct dme_bench_out *out)
{
	const struct dme_bench_result *c1 = dme_bench_find(r, n, "cached_pair_1t");
	dme_bench_out_num(out, "iova.cached_ns_per_pair", c1 ? c1->ns_per_iter : __builtin_nan(""));
	dme_bench_out_num(out, "iova.speedup_vs_naive_1e5", ratio(r, n, "naive_churn_1e5", "tree_churn_1e5"));
	dme_bench_out_num(out, "iova.speedup_vs_naive_1e3", ratio(r, n, "naive_churn_1e3", "tree_churn_1e3"));
	dme_bench_out_num(out, "iova.speedup_vs_tree", ratio(r, n, "tree_pair_1e3", "cached_pair_1t"));
	/* ns per iteration with 2 threads is wall time over both threads' pairs */
	dme_bench_out_num(out, "iova.scaling_2t", ratio(r, n, "cached_pair_1t", "cached_pair_2t"));
}

const struct dme_bench_suite dme_bench_suite_iova = {
	.name = "iova",
	.doc = "IOVA allocator: cached pairs, tree churn vs a naive first-fit list",
	.cases = cases,
	.nr_cases = sizeof(cases) / sizeof(cases[0]),
	.summarize = summarize,
};
