/* SPDX-License-Identifier: MIT */
/*
 * bench_map.c - engine mapping cases of `dme bench engine` (sim backend):
 *
 *  - 1 GiB registered as 262,144 4 KiB buffers in one batch: map calls per
 *    GiB (a real backend issues one ioctl per call);
 *  - 1 GiB registered as one region vs populating the same 1 GiB (the floor);
 *  - metadata bytes per mapped GiB;
 *  - register+unregister and lookup with 10^3 vs 10^6 live mappings;
 *  - 1 TiB of reserved address space under a type1-like budget of 65,535
 *    entries: entries used;
 *  - a registration hit (register+unregister inside a held mapping) with the
 *    memory monitor on against off (reg.hit_pair_monitor_cost, target <= 1.5);
 *  - a cold 2 MiB registration against a cold 4 KiB one with 1000 extra
 *    mappings in the process (reg.cold_2m_vs_4k_big_process, target <= 3);
 *  - 1 GiB as 262,144 VA-contiguous 4 KiB registrations evicted by one flush: unmap
 *    calls per GiB (map.unmap_calls_per_gib_evicted, target <= 1).
 * Memory is reserved with MAP_NORESERVE and never touched unless a case
 * says so: the simulator checks each new mapping's VMAs as the kernel's pin
 * would (one PROCMAP_QUERY ioctl), but pins nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <dme/engine.h>
#include <dme/sim.h>

#include "bench_map.h"

#define PG 4096ull
#define M2 (2ull << 20)
#define G1 (1ull << 30)

static void *reserve(uint64_t len, uint64_t align, int prot)
{
	uint8_t *p = mmap(NULL, len + align, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	uint8_t *a = (uint8_t *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	munmap(a + len, (size_t)(p + len + align - (a + len)));
	return a;
}

static struct dme_engine *sim_engine(unsigned width, uint64_t max_entries, unsigned entries,
				     uint64_t idle_budget)
{
	struct dme_config c;
	dme_config_init(&c);
	c.backend = DME_BACKEND_SIM;
	c.cache_budget_entries = entries;
	c.cache_budget_bytes = idle_budget;
	struct dme_sim_params sp = {.addr_width = width, .max_entries = max_entries};
	struct dme_engine *e = NULL;
	return dme_engine_open_sim(&c, &sp, &e) ? NULL : e;
}

static uint64_t map_calls(struct dme_engine *e)
{
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	return st.map_calls;
}

/* --- 1 GiB as 262,144 buffers --------------------------------------- */

struct gib {
	struct dme_engine *e;
	uint8_t *va;
	struct dme_region_req *q;
	size_t n;
};

static struct gib gib4k;

static int gib4k_prepare(void *arg)
{
	struct gib *g = arg;
	g->n = G1 / PG;
	g->va = reserve(G1, M2, PROT_READ | PROT_WRITE);
	g->q = calloc(g->n, sizeof(*g->q));
	g->e = sim_engine(39, 0, 1u << 24, 1);
	if (!g->va || !g->q || !g->e)
		return -ENOMEM;
	for (size_t i = 0; i < g->n; i++)
		g->q[i] = (struct dme_region_req){g->va + i * PG, PG, DME_MAP_RW, 0};
	return 0;
}

static void gib4k_finish(void *arg)
{
	struct gib *g = arg;
	dme_engine_close(g->e);
	munmap(g->va, G1);
	free(g->q);
}

static void gib4k_body(struct dme_bench_state *st, void *arg)
{
	struct gib *g = arg;
	uint64_t calls = 0, rounds = 0;
	while (dme_bench_next(st)) {
		uint64_t before = map_calls(g->e);
		if (dme_register_batch(g->e, g->q, g->n)) {
			dme_bench_fail(st, "batch registration failed");
			return;
		}
		calls += map_calls(g->e) - before;
		rounds++;
		dme_bench_pause(st);
		for (size_t i = 0; i < g->n; i++)
			dme_unregister(g->e, g->q[i].va, PG);
		dme_engine_flush(g->e);
		dme_bench_resume(st);
	}
	dme_bench_counter(st, "calls", rounds ? (double)calls / (double)rounds : 0);
}

/* --- 1 GiB as one region vs populate ---------------------------------- */

static struct gib gib1;

static int gib1_prepare(void *arg)
{
	struct gib *g = arg;
	g->va = reserve(G1, G1, PROT_READ | PROT_WRITE);
	g->e = sim_engine(39, 0, 65535, 1);
	if (!g->va || !g->e)
		return -ENOMEM;
	madvise(g->va, G1, MADV_HUGEPAGE);
	return madvise(g->va, G1, MADV_POPULATE_WRITE) ? -errno : 0;
}

static void gib1_body(struct dme_bench_state *st, void *arg)
{
	struct gib *g = arg;
	uint64_t iova;
	while (dme_bench_next(st)) {
		if (dme_register(g->e, g->va, G1, DME_MAP_RW, &iova) || dme_unregister(g->e, g->va, G1) ||
		    dme_engine_flush(g->e)) {
			dme_bench_fail(st, "register/unregister/flush of 1 GiB failed");
			return;
		}
	}
}

static void gib1_finish(void *arg)
{
	gib4k_finish(arg);
}

static void populate_body(struct dme_bench_state *st, void *arg)
{
	(void)arg;
	while (dme_bench_next(st)) {
		dme_bench_pause(st);
		uint8_t *p = reserve(G1, M2, PROT_READ | PROT_WRITE);
		if (!p) {
			dme_bench_fail(st, "mmap of 1 GiB failed");
			return;
		}
		madvise(p, G1, MADV_HUGEPAGE);
		dme_bench_resume(st);
		int ret = madvise(p, G1, MADV_POPULATE_WRITE);
		dme_bench_pause(st);
		munmap(p, G1);
		dme_bench_resume(st);
		if (ret) {
			dme_bench_fail(st, "MADV_POPULATE_WRITE failed");
			return;
		}
	}
}

/* --- metadata per mapped GiB ----------------------------------------- */

static void meta_body(struct dme_bench_state *st, void *arg)
{
	(void)arg;
	enum { GIBS = 8 };
	uint8_t *va = reserve(GIBS * G1, G1, PROT_READ | PROT_WRITE);
	struct dme_engine *e = sim_engine(39, 0, 65535, UINT64_MAX);
	if (!va || !e) {
		dme_bench_fail(st, "setup failed");
		return;
	}
	struct dme_engine_stats s0, s1, s8;
	uint64_t iova;
	dme_engine_stats(e, &s0);
	/* 2 MiB pages: hugepage-backed DMA memory, the case the budget is for */
	madvise(va, GIBS * G1, MADV_HUGEPAGE);
	int bad = dme_register(e, va, G1, DME_MAP_RW, &iova);
	dme_engine_stats(e, &s1);
	for (int i = 1; i < GIBS && !bad; i++)
		bad = dme_register(e, va + i * G1, G1, DME_MAP_RW, &iova);
	dme_engine_stats(e, &s8);
	while (dme_bench_next(st)) {
		uint64_t x;
		dme_vtoiova(e, va + 12345, &x);
	}
	if (bad)
		dme_bench_fail(st, "register failed");
	dme_bench_counter(st, "fixed", (double)s0.meta_bytes);
	dme_bench_counter(st, "one_gib", (double)(s1.meta_bytes - s0.meta_bytes));
	dme_bench_counter(st, "per_gib", (double)(s8.meta_bytes - s0.meta_bytes) / GIBS);
	dme_engine_close(e);
	munmap(va, GIBS * G1);
}

/* --- scale: 10^3 vs 10^6 live mappings ------------------------------- */

struct scale {
	unsigned live;
	struct dme_engine *e;
	uint8_t *va;
	uint64_t *order;
	uint64_t rng;
};

static struct scale sc3 = {.live = 1000}, sc6 = {.live = 1000000};

static inline uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static int scale_prepare(void *arg)
{
	struct scale *s = arg;
	/* live mappings on even pages; the odd page after each is churned */
	s->va = reserve(2ull * PG * s->live, M2, PROT_READ | PROT_WRITE);
	s->e = sim_engine(39, 0, 4 * s->live + 1024, 0 /* memlock: idle kept */);
	s->order = calloc(4096, sizeof(uint64_t));
	if (!s->va || !s->e || !s->order)
		return -ENOMEM;
	struct dme_region_req *q = calloc(s->live, sizeof(*q));
	if (!q)
		return -ENOMEM;
	for (unsigned i = 0; i < s->live; i++)
		q[i] = (struct dme_region_req){s->va + 2ull * i * PG, PG, DME_MAP_RW, 0};
	int ret = dme_register_batch(s->e, q, s->live);
	free(q);
	s->rng = 0x2545f4914f6cdd1dull;
	for (int i = 0; i < 4096; i++)
		s->order[i] = rnd(&s->rng) % s->live;
	return ret;
}

static void scale_finish(void *arg)
{
	struct scale *s = arg;
	dme_engine_close(s->e);
	munmap(s->va, 2ull * PG * s->live);
	free(s->order);
}

static void churn_body(struct dme_bench_state *st, void *arg)
{
	struct scale *s = arg;
	uint64_t n, iova;
	unsigned k = 0;
	while (dme_bench_batch(st, &n)) {
		for (uint64_t i = 0; i < n; i++, k++) {
			uint8_t *p = s->va + (2 * s->order[k & 4095] + 1) * PG;
			if (dme_register(s->e, p, PG, DME_MAP_RW, &iova) ||
			    dme_unregister(s->e, p, PG)) {
				dme_bench_fail(st, "register/unregister failed");
				return;
			}
		}
		dme_engine_flush(s->e);	/* the unmaps are part of the cost */
	}
}

static void lookup_body(struct dme_bench_state *st, void *arg)
{
	struct scale *s = arg;
	uint64_t n, iova, sum = 0;
	unsigned k = 0;
	while (dme_bench_batch(st, &n)) {
		for (uint64_t i = 0; i < n; i++, k++) {
			dme_vtoiova(s->e, s->va + 2 * s->order[k & 4095] * PG + (k & 0xfff), &iova);
			sum += iova;
		}
	}
	__asm__ volatile("" : : "r"(sum));
}

/* --- 1 TiB under a type1-like entry budget -------------------------- */

static struct gib tib;

static int tib_prepare(void *arg)
{
	struct gib *g = arg;
	g->n = 1024;
	g->va = reserve(1024 * G1, G1, PROT_READ | PROT_WRITE);
	g->q = calloc(g->n, sizeof(*g->q));
	/* 48-bit IOVAs (a 39-bit space holds 512 GiB); type1's default limit */
	g->e = sim_engine(48, 65535, 65535, 1);
	if (!g->va || !g->q || !g->e)
		return -ENOMEM;
	for (size_t i = 0; i < g->n; i++)
		g->q[i] = (struct dme_region_req){g->va + i * G1, G1, DME_MAP_RW, 0};
	return 0;
}

static void tib_finish(void *arg)
{
	struct gib *g = arg;
	dme_engine_close(g->e);
	munmap(g->va, 1024 * G1);
	free(g->q);
}

static void tib_body(struct dme_bench_state *st, void *arg)
{
	struct gib *g = arg;
	uint64_t calls = 0, rounds = 0;
	while (dme_bench_next(st)) {
		uint64_t before = map_calls(g->e);
		if (dme_register_batch(g->e, g->q, g->n)) {
			dme_bench_fail(st, "registering 1 TiB failed");
			return;
		}
		calls += map_calls(g->e) - before;
		rounds++;
		for (size_t i = 0; i < g->n; i++)
			dme_unregister(g->e, g->q[i].va, G1);
		dme_engine_flush(g->e);
	}
	dme_bench_counter(st, "entries", rounds ? (double)calls / (double)rounds : 0);
}

/*
 * A registration hit: register+unregister of a page inside a mapping that
 * another registration holds, with the memory monitor on and off. With the
 * monitor, every registration first checks the monitor's queue.
 */
struct hitpair {
	bool monitor;
	struct dme_engine *e;
	uint8_t *buf;
};

static int hitpair_prepare(void *arg)
{
	struct hitpair *h = arg;
	struct dme_config c;
	dme_config_init(&c);
	c.backend = DME_BACKEND_SIM;
	c.cache_monitor = h->monitor;
	uint64_t iova;
	h->buf = reserve(64 * PG, PG, PROT_READ | PROT_WRITE);
	if (!h->buf || dme_engine_open(&c, &h->e))
		return -ENOMEM;
	if (h->monitor && !dme_engine_cache_monitor(h->e))
		return -EOPNOTSUPP;
	return dme_register(h->e, h->buf, 64 * PG, DME_MAP_RW, &iova);
}

static void hitpair_finish(void *arg)
{
	struct hitpair *h = arg;
	if (h->e) {
		dme_unregister(h->e, h->buf, 64 * PG);
		dme_engine_close(h->e);
	}
	if (h->buf)
		munmap(h->buf, 64 * PG);
	h->e = NULL;
	h->buf = NULL;
}

static void hitpair_body(struct dme_bench_state *st, void *arg)
{
	struct hitpair *h = arg;
	uint64_t n, iova;
	while (dme_bench_batch(st, &n))
		for (uint64_t i = 0; i < n; i++) {
			uint8_t *p = h->buf + (i & 63) * PG;
			if (dme_register(h->e, p, PG, DME_MAP_RW, &iova) ||
			    dme_unregister(h->e, p, PG)) {
				dme_bench_fail(st, "a registration hit failed");
				return;
			}
		}
}

static struct hitpair hp_on = {.monitor = true}, hp_off = {.monitor = false};

/*
 * A cold registration (register, unregister, flush: a map and an unmap each
 * time) of 4 KiB and of 2 MiB in a process holding 1000 extra mappings: the
 * 2 MiB one must learn its page size without reading the whole process's
 * memory map.
 */
struct cold {
	uint64_t len;
	struct dme_engine *e;
	uint8_t *buf;
};

static uint8_t *extra_maps;

static int cold_prepare(void *arg)
{
	struct cold *c = arg;
	if (!extra_maps) {
		/* 1000 separate VMAs: alternate permissions so none merge */
		extra_maps = reserve(2000 * PG, PG, PROT_READ | PROT_WRITE);
		if (!extra_maps)
			return -ENOMEM;
		for (int i = 0; i < 2000; i += 2)
			mprotect(extra_maps + i * PG, PG, PROT_READ);
	}
	struct dme_config cfg;
	dme_config_init(&cfg);
	cfg.backend = DME_BACKEND_SIM;
	c->buf = reserve(c->len, M2, PROT_READ | PROT_WRITE);
	if (!c->buf || dme_engine_open(&cfg, &c->e))
		return -ENOMEM;
	return 0;
}

static void cold_finish(void *arg)
{
	struct cold *c = arg;
	if (c->e)
		dme_engine_close(c->e);
	if (c->buf)
		munmap(c->buf, c->len);
	c->e = NULL;
	c->buf = NULL;
}

static void cold_body(struct dme_bench_state *st, void *arg)
{
	struct cold *c = arg;
	uint64_t n, iova;
	while (dme_bench_batch(st, &n))
		for (uint64_t i = 0; i < n; i++)
			if (dme_register(c->e, c->buf, c->len, DME_MAP_RW, &iova) ||
			    dme_unregister(c->e, c->buf, c->len) || dme_engine_flush(c->e)) {
				dme_bench_fail(st, "a cold registration failed");
				return;
			}
}

static struct cold cold4k = {.len = PG}, cold2m = {.len = M2};

/*
 * 1 GiB registered as 262,144 separate 4 KiB registrations (VA-contiguous),
 * all unregistered, evicted by one flush: backend unmap calls, per GiB.
 */
static void evict_body(struct dme_bench_state *st, void *arg)
{
	const uint64_t nb = 262144;
	uint8_t *buf = reserve(nb * PG, PG, PROT_READ | PROT_WRITE);
	double calls = 0, rounds = 0;
	while (buf && dme_bench_next(st)) {
		struct dme_config c;
		dme_config_init(&c);
		c.backend = DME_BACKEND_SIM;
		c.map_batch = 65536;	/* nothing is unmapped before the flush */
		c.cache_budget_entries = 1u << 20; /* 262,144 live mappings fit */
		struct dme_engine *e;
		uint64_t iova;
		if (dme_engine_open(&c, &e)) {
			dme_bench_fail(st, "open");
			break;
		}
		bool good = true;
		for (uint64_t i = 0; i < nb && good; i++)
			good = !dme_register(e, buf + i * PG, PG, DME_MAP_RW, &iova);
		for (uint64_t i = 0; i < nb && good; i++)
			good = !dme_unregister(e, buf + i * PG, PG);
		if (!good) {
			dme_engine_close(e);
			dme_bench_fail(st, "registering 262,144 pages failed");
			break;
		}
		struct dme_sim_stats s0, s1;
		dme_sim_stats(dme_engine_sim(e), &s0);
		dme_engine_flush(e);
		dme_sim_stats(dme_engine_sim(e), &s1);
		calls += (double)(s1.unmap_calls - s0.unmap_calls);
		rounds++;
		dme_engine_close(e);
	}
	if (buf)
		munmap(buf, nb * PG);
	dme_bench_counter(st, "calls_per_gib", rounds ? calls / rounds : 0);
}

const struct dme_bench_case dme_bench_map_cases[] = {
	{"hit_pair_monitor_on", hitpair_body, &hp_on, 1, hitpair_prepare, hitpair_finish},
	{"hit_pair_monitor_off", hitpair_body, &hp_off, 1, hitpair_prepare, hitpair_finish},
	{"cold_4k_big_process", cold_body, &cold4k, 1, cold_prepare, cold_finish},
	{"evict_4k_registrations", evict_body, NULL, 1, NULL, NULL},
	{"cold_2m_big_process", cold_body, &cold2m, 1, cold_prepare, cold_finish},
	{"register_1g_4k_buffers", gib4k_body, &gib4k, 1, gib4k_prepare, gib4k_finish},
	{"register_1g_region", gib1_body, &gib1, 1, gib1_prepare, gib1_finish},
	{"populate_1g", populate_body, NULL, 1, NULL, NULL},
	{"meta_8g", meta_body, NULL, 1, NULL, NULL},
	{"churn_1e3", churn_body, &sc3, 1, scale_prepare, scale_finish},
	{"lookup_1e3", lookup_body, &sc3, 1, scale_prepare, scale_finish},
	{"churn_1e6", churn_body, &sc6, 1, scale_prepare, scale_finish},
	{"lookup_1e6", lookup_body, &sc6, 1, scale_prepare, scale_finish},
	{"register_1t", tib_body, &tib, 1, tib_prepare, tib_finish},
};
const size_t dme_bench_map_nr_cases = sizeof(dme_bench_map_cases) / sizeof(dme_bench_map_cases[0]);

static double ns(const struct dme_bench_result *r, size_t n, const char *name)
{
	const struct dme_bench_result *x = dme_bench_find(r, n, name);
	return x ? x->ns_per_iter : __builtin_nan("");
}

void dme_bench_map_summarize(const struct dme_bench_result *r, size_t n, struct dme_bench_out *out)
{
	dme_bench_out_num(out, "map.calls_per_gib_4k_buffers",
			  dme_bench_result_counter(dme_bench_find(r, n, "register_1g_4k_buffers"), "calls"));
	dme_bench_out_num(out, "map.register_1g_vs_populate",
			  ns(r, n, "register_1g_region") / ns(r, n, "populate_1g"));
	const struct dme_bench_result *m = dme_bench_find(r, n, "meta_8g");
	dme_bench_out_num(out, "meta.bytes_per_mapped_gib", dme_bench_result_counter(m, "one_gib"));
	dme_bench_out_num(out, "meta.bytes_per_gib_at_8g", dme_bench_result_counter(m, "per_gib"));
	dme_bench_out_num(out, "meta.fixed_bytes", dme_bench_result_counter(m, "fixed"));
	dme_bench_out_num(out, "scale.register_1e6_vs_1e3", ns(r, n, "churn_1e6") / ns(r, n, "churn_1e3"));
	dme_bench_out_num(out, "scale.lookup_1e6_vs_1e3", ns(r, n, "lookup_1e6") / ns(r, n, "lookup_1e3"));
	dme_bench_out_num(out, "reg.hit_pair_monitor_cost",
			  ns(r, n, "hit_pair_monitor_on") / ns(r, n, "hit_pair_monitor_off"));
	dme_bench_out_num(out, "reg.hit_pair_ns", ns(r, n, "hit_pair_monitor_on"));
	dme_bench_out_num(out, "map.unmap_calls_per_gib_evicted",
			  dme_bench_result_counter(dme_bench_find(r, n, "evict_4k_registrations"),
						   "calls_per_gib"));
	dme_bench_out_num(out, "reg.cold_2m_vs_4k_big_process",
			  ns(r, n, "cold_2m_big_process") / ns(r, n, "cold_4k_big_process"));
	dme_bench_out_num(out, "scale.entries_per_tib",
			  dme_bench_result_counter(dme_bench_find(r, n, "register_1t"), "entries"));
}

