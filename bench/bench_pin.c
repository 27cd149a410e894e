/* SPDX-License-Identifier: MIT */
/*
 * bench_pin.c - the DMA memory suite (dme bench pin).
 *
 * Each populate case times dme_mem_alloc() of 1 GiB - the whole path: budget
 * check, mmap, mbind, MADV_DONTFORK, MADV_POPULATE_WRITE (default helper
 * threads; one 2 MiB case on the calling thread only, for context),
 * placement check - with 4 KiB pages, THP and 2 MiB hugetlb pages; the free after each
 * iteration is not timed, so at most one 1 GiB allocation is alive. The
 * bandwidth floor is a memset of 1 GiB of already-resident 2 MiB pages,
 * allocated by that case's prepare and freed by its finish.
 *
 * The suite reserves no hugepages: with fewer than 512 free 2 MiB pages the
 * 2 MiB cases fail with a message saying how to reserve them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <dme/log.h>
#include <dme/mem.h>

#include "shim.h"

#define GIB (1ull << 30)
#define M2 (2ull << 20)
#define NEED_2M (GIB / M2)

struct pin_case {
	enum dme_hugepage_pref hp;
	unsigned threads;    /* populate_threads: 0 auto */
	struct dme_mem *mem; /* memset case: the memory it writes */
};

static struct pin_case c4k = {.hp = DME_HUGEPAGE_NONE};
static struct pin_case cthp = {.hp = DME_HUGEPAGE_THP};
static struct pin_case c2m = {.hp = DME_HUGEPAGE_2M};
static struct pin_case c2m_1t = {.hp = DME_HUGEPAGE_2M, .threads = 1};
static struct pin_case cmemset = {.hp = DME_HUGEPAGE_2M};

static char short_msg[200];

/* NULL when 512 free 2 MiB pages are there, else why not (for dme_bench_fail). */
static const char *hugepages_missing(void)
{
	uint64_t free = 0;
	int ret = dme_mem_hugepages_free(M2, -1, &free);
	if (!ret && free >= NEED_2M)
		return NULL;
	snprintf(short_msg, sizeof(short_msg),
		 "needs %" PRIu64 " free 2 MiB hugepages, %" PRIu64 " free; reserve them first "
		 "(echo 600 > /proc/sys/vm/nr_hugepages)",
		 (uint64_t)NEED_2M, ret ? 0 : free);
	return short_msg;
}

static void params(struct dme_mem_params *p, enum dme_hugepage_pref hp, unsigned threads)
{
	dme_mem_params_init(p, GIB);
	p->hugepage = hp;
	p->populate_threads = threads;
	p->numa = DME_NUMA_LOCAL;
	/* measure the wanted source, never a fallback */
	if (hp == DME_HUGEPAGE_2M)
		p->flags = DME_MEM_F_STRICT;
}

static void populate_body(struct dme_bench_state *st, void *arg)
{
	struct pin_case *c = arg;
	struct dme_mem_params p;
	const char *why;
	double huge = 1;

	if (c->hp == DME_HUGEPAGE_2M && (why = hugepages_missing())) {
		dme_bench_fail(st, why);
		return;
	}
	params(&p, c->hp, c->threads);
	while (dme_bench_next(st)) {
		struct dme_mem *m;
		if (dme_mem_alloc(&p, &m)) {
			dme_bench_fail(st, "dme_mem_alloc of 1 GiB failed (see the log above)");
			return;
		}
		if (c->hp == DME_HUGEPAGE_THP && m->page_size != M2)
			huge = 0;
		dme_bench_pause(st);
		dme_mem_free(m);
		dme_bench_resume(st);
	}
	if (c->hp == DME_HUGEPAGE_THP)
		dme_bench_counter(st, "fully_huge", huge);
}

/* One untimed allocation first: in a VM, memory the guest freed may have been
 * handed back to the hypervisor (free page reporting), and touching it again
 * costs a host fault per 4 KiB - seconds per GiB that measure the hypervisor,
 * not this code. Right after a warm-up the same memory is still backed. */
static int populate_prepare(void *arg)
{
	struct pin_case *c = arg;
	struct dme_mem_params p;
	struct dme_mem *m;
	if (c->hp == DME_HUGEPAGE_2M && hugepages_missing())
		return 0; /* the body reports it */
	params(&p, c->hp, c->threads);
	if (dme_mem_alloc(&p, &m))
		return 0; /* likewise */
	dme_mem_free(m);
	return 0;
}

static int memset_prepare(void *arg)
{
	struct pin_case *c = arg;
	struct dme_mem_params p;
	c->mem = NULL;
	if (hugepages_missing())
		return 0; /* the body reports it */
	params(&p, c->hp, c->threads);
	return dme_mem_alloc(&p, &c->mem);
}

static void memset_finish(void *arg)
{
	struct pin_case *c = arg;
	dme_mem_free(c->mem);
	c->mem = NULL;
}

static void memset_body(struct dme_bench_state *st, void *arg)
{
	struct pin_case *c = arg;
	unsigned char v = 0;
	if (!c->mem) {
		dme_bench_fail(st, short_msg);
		return;
	}
	while (dme_bench_next(st)) {
		memset(c->mem->va, ++v, c->mem->len);
		__asm__ __volatile__("" : : "r"(c->mem->va) : "memory");
	}
}

static const struct dme_bench_case cases[] = {
    {"memset_2m_1g", memset_body, &cmemset, 1, memset_prepare, memset_finish},
    {"populate_2m_1g", populate_body, &c2m, 1, populate_prepare, NULL},
    {"populate_2m_1g_1t", populate_body, &c2m_1t, 1, populate_prepare, NULL},
    {"populate_thp_1g", populate_body, &cthp, 1, populate_prepare, NULL},
    {"populate_4k_1g", populate_body, &c4k, 1, populate_prepare, NULL},
};

static double ns(const struct dme_bench_result *r, size_t n, const char *name)
{
	const struct dme_bench_result *x = dme_bench_find(r, n, name);
	return x && x->ns_per_iter > 0 ? x->ns_per_iter : __builtin_nan("");
}

static void summarize(const struct dme_bench_result *r, size_t n, struct dme_bench_out *out)
{
	double mset = ns(r, n, "memset_2m_1g"), p2m = ns(r, n, "populate_2m_1g");
	double thp = ns(r, n, "populate_thp_1g"), p4k = ns(r, n, "populate_4k_1g");
	/* bandwidth ratio = (1 GiB / populate time) / (1 GiB / memset time) */
	dme_bench_out_num(out, "pin.populate_2m_vs_memset", mset / p2m);
	dme_bench_out_num(out, "pin.populate_2m_1t_vs_memset",
			  mset / ns(r, n, "populate_2m_1g_1t"));
	dme_bench_out_num(out, "pin.populate_thp_vs_memset", mset / thp);
	dme_bench_out_num(out, "pin.populate_4k_vs_memset", mset / p4k);
	dme_bench_out_num(out, "pin.populate_4k_ns_per_page", p4k / (double)(GIB / 4096));
	dme_bench_out_num(out, "pin.populate_thp_us_per_2m", thp / (double)NEED_2M / 1e3);
	dme_bench_out_num(out, "pin.populate_2m_us_per_page", p2m / (double)NEED_2M / 1e3);
	dme_bench_out_num(out, "pin.memset_gib_per_s", 1e9 / mset);
	dme_bench_out_num(out, "pin.populate_2m_gib_per_s", 1e9 / p2m);
	dme_bench_out_num(
	    out, "pin.thp_fully_huge",
	    dme_bench_result_counter(dme_bench_find(r, n, "populate_thp_1g"), "fully_huge"));
}

const struct dme_bench_suite dme_bench_suite_pin = {
    .name = "pin",
    .doc = "DMA memory: allocate+populate 1 GiB in 4K/THP/2M pages vs a memset floor",
    .cases = cases,
    .nr_cases = sizeof(cases) / sizeof(cases[0]),
    .summarize = summarize,
};
