/* SPDX-License-Identifier: MIT */
/*
 * bench_engine.c - the engine suite (dme bench engine). So far: lookup.
 *
 * Lookup: 4096 registered runs of 2 MiB (VA gaps between them, so they stay
 * 4096 separate runs), looked up at 64 Ki random addresses inside them by
 * one thread, while a writer thread keeps mapping and unmapping runs
 * elsewhere (one set+clear pair per microsecond on each structure).
 * Structures: dme's table (xlate.h), the flat two-level array
 * (flat_xlate.h, the floor) and a mutex-guarded skiplist (skiplist.h, the
 * usual first attempt); xlate variants with two replicas (the NUMA path) and
 * with 4 KiB-backed runs of 64 KiB (sub-tables).
 *
 * Each case compares two structures A/B-interleaved: the body alternates
 * timed chunks of CHUNK lookups on A and on B (one writer thread churns
 * both), so frequency drift and noisy neighbours hit both sides alike and
 * the ratio stays meaningful on a shared machine. Counters a_ns / b_ns are
 * ns per lookup; one benchmark iteration is CHUNK/256 lookups on each side.
 *
 * Derived keys: lookup.ratio_vs_flat (target <= 1.2),
 * lookup.speedup_vs_locked_skiplist (target >= 10), the variants' ratios,
 * and the metadata size of a dense hugepage mapping (xlate.meta_*: empty
 * table, bytes per further 2 MiB, and 64 GiB total / budget of 64 KiB + 16 B
 * per 2 MiB, which must stay <= 1).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "../engine/xlate.h"
#include "flat_xlate.h"
#include "bench_map.h"
#include "shim.h"
#include "skiplist.h"

#define K4 0x1000ull
#define M2 0x200000ull
#define G1 0x40000000ull
#define RUNS 4096u
#define VBASE 0x7f0000000000ull
#define IBASE 0x100000000ull
#define NKEYS 65536u
#define CHUNK 4096u
#define CHURN_VA 0x500000000000ull
#define CHURN_IOVA 0x8000000000ull
#define WRITER_PERIOD_NS 1000u

enum kind { XLATE, XLATE_2REP, XLATE_4K, FLAT, SKIP };

/* One structure filled with the looked-up runs, and its keys. */
struct side {
	enum kind kind;
	uint64_t run_len, stride; /* of the looked-up runs */
	struct xlate x;
	struct flat_xlate f;
	struct skiplist s;
	uint64_t *keys;
};

/* A case: two sides looked up alternately, one writer churning both. */
struct pair {
	struct side a, b;
	pthread_t writer;
	atomic_bool stop, running;
	atomic_ulong writer_ops;
	bool meta; /* also measure the metadata size */
	double meta_fixed, meta_per_2m, meta_budget_use;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static inline uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void churn(struct side *sd, uint64_t j)
{
	uint64_t va = CHURN_VA + (j % 64) * M2, iova = CHURN_IOVA + (j % 64) * M2;
	switch (sd->kind) {
	case FLAT:
		if (flat_set(&sd->f, va, M2, iova) == 0)
			flat_clear(&sd->f, va, M2);
		break;
	case SKIP:
		if (skip_insert(&sd->s, va, M2, iova) == 0)
			skip_remove(&sd->s, va);
		break;
	default:
		if (xlate_set(&sd->x, va, 16 * K4, iova, 12) == 0)
			xlate_clear(&sd->x, va, 16 * K4);
		break;
	}
}

/* Per period: one map + unmap of a run outside the looked-up ones, on each side. */
static void *writer(void *arg)
{
	struct pair *p = arg;
	atomic_store(&p->running, true);
	for (uint64_t j = 0; !atomic_load_explicit(&p->stop, memory_order_relaxed); j++) {
		uint64_t deadline = now_ns() + WRITER_PERIOD_NS;
		churn(&p->a, j);
		churn(&p->b, j);
		atomic_fetch_add_explicit(&p->writer_ops, 1, memory_order_relaxed);
		while (now_ns() < deadline)
			cpu_relax();
	}
	return NULL;
}

/*
 * Metadata of a dense mapping in 2 MiB pages: the empty table, the slope
 * between 32 and 64 GiB (what each further 2 MiB costs), and the 64 GiB total
 * against the budget of 64 KiB + 16 B per 2 MiB.
 */
static int measure_meta(struct pair *p)
{
	const uint64_t va = 0x7e0000000000ull; /* 1 GiB aligned, well below 2^47 */
	struct xlate m;
	int ret = xlate_init(&m, 1);
	if (ret)
		return ret;
	size_t fixed = xlate_meta_bytes(&m), at32 = 0;
	for (uint64_t i = 0; i < 64 && !ret; i++) {
		ret = xlate_set(&m, va + i * G1, G1, IBASE + i * G1, 21);
		if (i == 31)
			at32 = xlate_meta_bytes(&m);
	}
	size_t at64 = xlate_meta_bytes(&m);
	p->meta_fixed = (double)fixed;
	p->meta_per_2m = (double)(at64 - at32) / (32.0 * 512.0);
	p->meta_budget_use = (double)at64 / (64.0 * 1024 + 16.0 * 64 * 512);
	xlate_destroy(&m);
	return ret;
}

static int side_fill(struct side *sd)
{
	int ret;
	switch (sd->kind) {
	case FLAT:
		ret = flat_init(&sd->f);
		break;
	case SKIP:
		ret = skip_init(&sd->s);
		break;
	default:
		ret = xlate_init(&sd->x, sd->kind == XLATE_2REP ? 2 : 1);
		break;
	}
	for (uint64_t i = 0; i < RUNS && !ret; i++) {
		uint64_t va = VBASE + i * sd->stride, iova = IBASE + i * sd->stride;
		if (sd->kind == FLAT)
			ret = flat_set(&sd->f, va, sd->run_len, iova);
		else if (sd->kind == SKIP)
			ret = skip_insert(&sd->s, va, sd->run_len, iova);
		else
			ret = xlate_set(&sd->x, va, sd->run_len, iova,
					sd->kind == XLATE_4K ? 12 : 21);
	}
	sd->keys = ret ? NULL : malloc(NKEYS * sizeof(*sd->keys));
	if (ret || !sd->keys)
		return ret ? ret : -ENOMEM;
	uint64_t r = 0x9e3779b97f4a7c15ull;
	for (unsigned k = 0; k < NKEYS; k++)
		sd->keys[k] = VBASE + (rnd(&r) % RUNS) * sd->stride + rnd(&r) % sd->run_len;
	return 0;
}

static void side_free(struct side *sd)
{
	switch (sd->kind) {
	case FLAT:
		flat_destroy(&sd->f);
		break;
	case SKIP:
		skip_destroy(&sd->s);
		break;
	default:
		xlate_destroy(&sd->x);
		break;
	}
	free(sd->keys);
	sd->keys = NULL;
}

static int pair_prepare(void *arg)
{
	struct pair *p = arg;
	int ret = p->meta ? measure_meta(p) : 0;
	if (!ret)
		ret = side_fill(&p->a);
	if (!ret)
		ret = side_fill(&p->b);
	if (ret)
		return ret;
	atomic_store(&p->stop, false);
	atomic_store(&p->running, false);
	atomic_store(&p->writer_ops, 0);
	if (pthread_create(&p->writer, NULL, writer, p))
		return -EAGAIN;
	while (!atomic_load(&p->running))
		sched_yield();
	return 0;
}

static void pair_finish(void *arg)
{
	struct pair *p = arg;
	atomic_store(&p->stop, true);
	pthread_join(p->writer, NULL);
	side_free(&p->a);
	side_free(&p->b);
}

/* CHUNK lookups on one side, inlined per structure; counts misses. Each loop
 * has its own result variable so none escapes into another's call. */
#define CHUNK_LOOP(call)                                                                           \
	for (unsigned k = 0; k < CHUNK; k++, i++) {                                                \
		uint64_t iova = 0, va = keys[i & (NKEYS - 1)];                                     \
		miss += (call) != 0;                                                               \
		acc += iova;                                                                       \
	}

static uint64_t chunk(struct side *sd, uint64_t i, uint64_t *sum)
{
	uint64_t miss = 0, acc = 0;
	const uint64_t *keys = sd->keys;
	switch (sd->kind) {
	case FLAT:
		CHUNK_LOOP(flat_lookup(&sd->f, va, &iova))
		break;
	case SKIP:
		CHUNK_LOOP(skip_lookup(&sd->s, va, &iova))
		break;
	default:
		CHUNK_LOOP(xlate_lookup(&sd->x, va, &iova))
		break;
	}
	*sum += acc;
	return miss;
}

static volatile uint64_t sink;

static void pair_body(struct dme_bench_state *st, void *arg)
{
	struct pair *p = arg;
	uint64_t n, i = 0, sum = 0, miss = 0, ta = 0, tb = 0, chunks = 0;
	uint64_t w0 = atomic_load(&p->writer_ops);
	while (dme_bench_batch(st, &n)) {
		for (uint64_t k = 0; k < n; k += 256, i += CHUNK, chunks++) {
			uint64_t t0 = now_ns();
			miss += chunk(&p->a, i, &sum);
			uint64_t t1 = now_ns();
			miss += chunk(&p->b, i, &sum);
			uint64_t t2 = now_ns();
			ta += t1 - t0;
			tb += t2 - t1;
		}
	}
	sink = sum;
	if (miss) {
		dme_bench_fail(st, "a lookup missed a mapped VA");
		return;
	}
	double lookups = (double)chunks * CHUNK;
	dme_bench_counter(st, "a_ns", (double)ta / lookups);
	dme_bench_counter(st, "b_ns", (double)tb / lookups);
	dme_bench_counter(st, "writer_ops", (double)(atomic_load(&p->writer_ops) - w0));
	if (p->meta) {
		dme_bench_counter(st, "meta_fixed", p->meta_fixed);
		dme_bench_counter(st, "meta_per_2m", p->meta_per_2m);
		dme_bench_counter(st, "meta_budget_use", p->meta_budget_use);
	}
}

#define SIDE_2M(k)                                                                                 \
	{                                                                                          \
		.kind = (k), .run_len = M2, .stride = 2 * M2                                       \
	}

static struct pair vs_flat = {.a = SIDE_2M(XLATE), .b = SIDE_2M(FLAT), .meta = true};
static struct pair vs_skip = {.a = SIDE_2M(XLATE), .b = SIDE_2M(SKIP)};
static struct pair rep2_vs_flat = {.a = SIDE_2M(XLATE_2REP), .b = SIDE_2M(FLAT)};
static struct pair k4_vs_flat = {.a = {.kind = XLATE_4K, .run_len = 16 * K4, .stride = 32 * K4},
				 .b = SIDE_2M(FLAT)};

static const struct dme_bench_case cases[] = {
    {"lookup_xlate_vs_flat", pair_body, &vs_flat, 1, pair_prepare, pair_finish},
    {"lookup_xlate_vs_skiplist", pair_body, &vs_skip, 1, pair_prepare, pair_finish},
    {"lookup_xlate2rep_vs_flat", pair_body, &rep2_vs_flat, 1, pair_prepare, pair_finish},
    {"lookup_xlate4k_vs_flat", pair_body, &k4_vs_flat, 1, pair_prepare, pair_finish},
};

static double counter(const struct dme_bench_result *r, size_t n, const char *c, const char *name)
{
	return dme_bench_result_counter(dme_bench_find(r, n, c), name);
}

static void summarize(const struct dme_bench_result *r, size_t n, struct dme_bench_out *out)
{
	const char *vf = "lookup_xlate_vs_flat", *vs = "lookup_xlate_vs_skiplist";
	dme_bench_out_num(out, "lookup.ratio_vs_flat",
			  counter(r, n, vf, "a_ns") / counter(r, n, vf, "b_ns"));
	dme_bench_out_num(out, "lookup.speedup_vs_locked_skiplist",
			  counter(r, n, vs, "b_ns") / counter(r, n, vs, "a_ns"));
	const char *r2 = "lookup_xlate2rep_vs_flat", *k4 = "lookup_xlate4k_vs_flat";
	dme_bench_out_num(out, "lookup.ratio_2rep_vs_flat",
			  counter(r, n, r2, "a_ns") / counter(r, n, r2, "b_ns"));
	dme_bench_out_num(out, "lookup.ratio_4k_vs_flat",
			  counter(r, n, k4, "a_ns") / counter(r, n, k4, "b_ns"));
	dme_bench_out_num(out, "lookup.xlate_ns", counter(r, n, vf, "a_ns"));
	dme_bench_out_num(out, "lookup.flat_ns", counter(r, n, vf, "b_ns"));
	dme_bench_out_num(out, "lookup.skiplist_ns", counter(r, n, vs, "b_ns"));
	dme_bench_out_num(out, "lookup.writer_ops", counter(r, n, vf, "writer_ops"));
	dme_bench_out_num(out, "xlate.meta_fixed_bytes", counter(r, n, vf, "meta_fixed"));
	dme_bench_out_num(out, "xlate.meta_bytes_per_2m_dense", counter(r, n, vf, "meta_per_2m"));
	dme_bench_out_num(out, "xlate.meta_budget_use_64g", counter(r, n, vf, "meta_budget_use"));
}

/* The suite joins these lookup cases with the mapping cases of bench_map.c. */
static void summarize_all(const struct dme_bench_result *r, size_t n, struct dme_bench_out *out)
{
	summarize(r, n, out);
	dme_bench_map_summarize(r, n, out);
}

#define NR_LOOKUP (sizeof(cases) / sizeof(cases[0]))
static struct dme_bench_case all_cases[NR_LOOKUP + 16];
static struct dme_bench_suite engine_suite;

static void engine_suite_build(void)
{
	size_t n = 0;
	for (size_t i = 0; i < NR_LOOKUP; i++)
		all_cases[n++] = cases[i];
	for (size_t i = 0; i < dme_bench_map_nr_cases && n < NR_LOOKUP + 16; i++)
		all_cases[n++] = dme_bench_map_cases[i];
	engine_suite = (struct dme_bench_suite){
		.name = "engine",
		.doc = "engine: lookup under a writer vs flat/skiplist; batching, metadata, scale",
		.cases = all_cases,
		.nr_cases = n,
		.summarize = summarize_all,
	};
}

const struct dme_bench_suite *dme_bench_engine_suite(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, engine_suite_build);
	return &engine_suite;
}
