/* SPDX-License-Identifier: MIT */
/*
 * test-engine: the mapping engine on the sim backend: registration,
 * translation, the mapping cache, lazy batched unmap, budgets, permissions,
 * and all-or-nothing batches under injected failures at every position.
 * The sim's device reads and writes memory through its IO page table, so
 * "mapped" is checked the way a device would see it.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <dme/engine.h>
#include <dme/sim.h>

#include "logcap.h"
#include "tap.h"

#define PG 4096ull

static struct dme_engine *open_sim(unsigned entries, uint64_t budget)
{
	struct dme_config c;
	dme_config_init(&c);
	c.backend = DME_BACKEND_SIM;
	if (entries)
		c.cache_budget_entries = entries;
	c.cache_budget_bytes = budget;
	struct dme_engine *e = NULL;
	if (dme_engine_open(&c, &e))
		return NULL;
	return e;
}

static void *mem(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static bool balanced(struct dme_engine *e)
{
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	return st.map_calls - st.unmap_calls == st.live_mappings &&
	       st.pinned_bytes == st.registry_bytes && dme_engine_check(e) == 0;
}

static void test_open(void)
{
	struct dme_engine *e = open_sim(0, 0);
	ok(e != NULL, "open: sim backend");
	ok(!strcmp(dme_engine_backend_name(e), "sim"), "open: it says sim");
	ok(dme_engine_sim(e) != NULL, "open: the simulator is reachable");
	struct dme_iova_range r[8];
	uint64_t al;
	size_t n = dme_engine_geometry(e, r, 8, &al);
	ok(n == 2 && r[0].start == 0 && r[0].last == 0xfedfffff && r[1].start == 0xfef00000 &&
		   r[1].last == 0x7fffffffff && al == PG,
	   "open: VT-d geometry with the MSI hole");
	dme_engine_close(e);

	struct dme_config c;
	dme_config_init(&c);
	c.backend = DME_BACKEND_SIM;
	c.allow_iovas_set = true;
	c.allow_iova_start = 0x100000000ull;
	c.allow_iova_last = 0x1ffffffffull;
	ok_eq(dme_engine_open(&c, &e), 0, "open: with an IOVA window");
	n = dme_engine_geometry(e, r, 8, &al);
	ok(n == 1 && r[0].start == 0x100000000ull && r[0].last == 0x1ffffffffull,
	   "open: the window narrows the geometry");
	dme_engine_close(e);
}

static void test_register_translate(void)
{
	struct dme_engine *e = open_sim(0, 0);
	struct dme_sim *sim = dme_engine_sim(e);
	uint8_t *buf = mem(16 * PG);
	uint64_t iova, x;
	ok_eq(dme_register(e, buf, 16 * PG, DME_MAP_RW, &iova), 0, "register 64K");
	ok(!(iova & (PG - 1)) && (iova < 0xfee00000 || iova > 0xfeefffff), "IOVA aligned, outside the MSI hole");
	ok(dme_vtoiova(e, buf, &x) == 0 && x == iova, "vtoiova of the first byte");
	ok(dme_vtoiova(e, buf + 5 * PG + 123, &x) == 0 && x == iova + 5 * PG + 123, "vtoiova inside");
	ok(dme_vtoiova(e, buf + 16 * PG, &x) == -ENOENT, "vtoiova past the end is -ENOENT");
	void *va;
	ok(dme_iovatov(e, iova + 7 * PG + 9, &va) == 0 && va == buf + 7 * PG + 9, "iovatov inverts it");
	ok(dme_iovatov(e, iova + 16 * PG, &va) == -ENOENT, "iovatov past the end is -ENOENT");

	memset(buf, 0x5a, 16 * PG);
	uint8_t in[64], pat[64];
	memset(pat, 0xa5, sizeof(pat));
	ok_eq(dme_sim_dma_read(sim, iova + 3 * PG, in, sizeof(in)), 0, "device reads through the IOMMU");
	ok(in[0] == 0x5a && in[63] == 0x5a, "device sees what the CPU wrote");
	ok_eq(dme_sim_dma_write(sim, iova + 15 * PG + 4000, pat, sizeof(pat)), 0, "device writes across a page");
	ok(buf[15 * PG + 4000] == 0xa5 && buf[15 * PG + 4063] == 0xa5, "CPU sees what the device wrote");

	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	uint64_t calls = st.map_calls;
	uint64_t i2;
	ok_eq(dme_register(e, buf + 4 * PG, 4 * PG, DME_MAP_RW, &i2), 0, "register a sub-range");
	ok_eq(i2, iova + 4 * PG, "sub-range gets the IOVA inside the mapping");
	ok_eq(dme_register(e, buf, 16 * PG, DME_MAP_READ, &i2), 0, "read-only inside a RW mapping");
	dme_engine_stats(e, &st);
	ok(st.map_calls == calls && st.cache_hits == 2, "both served from the cache: no map call");
	ok_eq(dme_register(e, buf + 8 * PG, 16 * PG, DME_MAP_RW, &i2), -EBUSY, "partial overlap is -EBUSY");
	ok(balanced(e), "stats balance and invariants hold");

	ok_eq(dme_unregister(e, buf + 4 * PG, 4 * PG), 0, "unregister the sub-range");
	ok_eq(dme_unregister(e, buf, 16 * PG), 0, "unregister the read-only reference");
	ok_eq(dme_unregister(e, buf, 16 * PG), 0, "unregister the first registration");
	ok_eq(dme_unregister(e, buf, 16 * PG), -EINVAL, "a fourth unregister is refused");
	dme_engine_stats(e, &st);
	ok(st.idle_mappings == 1 && dme_vtoiova(e, buf, &x) == 0, "idle mapping stays mapped and translated");
	ok_eq(dme_register(e, buf, 16 * PG, DME_MAP_RW, &i2), 0, "re-register the idle range");
	ok(i2 == iova && st.map_calls == calls, "same IOVA, no map call");
	dme_unregister(e, buf, 16 * PG);
	ok_eq(dme_engine_flush(e), 0, "flush unmaps idle mappings");
	ok(dme_vtoiova(e, buf, &x) == -ENOENT, "no translation after flush");
	logcap_reset();
	ok_eq(dme_sim_dma_read(sim, iova, in, 8), -EFAULT, "device access after unmap faults");
	dme_engine_stats(e, &st);
	ok(st.faults >= 1 && st.live_mappings == 0 && st.pinned_bytes == 0, "fault counted; nothing mapped");
	ok(balanced(e), "stats balance after flush");
	dme_engine_close(e);
	munmap(buf, 16 * PG);
}

static void test_readonly(void)
{
	struct dme_engine *e = open_sim(0, 0);
	struct dme_sim *sim = dme_engine_sim(e);
	uint8_t *buf = mem(PG);
	uint64_t iova;
	uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	memset(buf, 7, PG);
	ok_eq(dme_register(e, buf, PG, DME_MAP_READ, &iova), 0, "register a transmit buffer read-only");
	ok_eq(dme_sim_dma_read(sim, iova, b, 8), 0, "device may read it");
	ok_eq(dme_sim_dma_write(sim, iova, b, 8), -EFAULT, "device write is refused");
	ok(buf[0] == 7, "memory untouched by the refused write");
	uint64_t x;
	ok_eq(dme_register(e, buf, PG, DME_MAP_RW, &x), -EBUSY, "RW over an active read-only mapping is -EBUSY");
	dme_unregister(e, buf, PG);
	ok_eq(dme_register(e, buf, PG, DME_MAP_RW, &x), 0, "RW over an idle read-only mapping remaps it");
	ok_eq(dme_sim_dma_write(sim, x, b, 8), 0, "now the device may write");
	ok(balanced(e), "readonly: stats balance");
	dme_engine_close(e);
	munmap(buf, PG);
}

static void test_bad_input(void)
{
	struct dme_engine *e = open_sim(0, 0);
	uint8_t *buf = mem(4 * PG);
	uint64_t iova;
	logcap_reset();
	ok_eq(dme_register(e, buf + 1, PG, DME_MAP_RW, &iova), -EINVAL, "unaligned VA refused");
	ok(strstr(logcap.last, "page aligned") != NULL, "the message says why");
	ok_eq(dme_register(e, buf, 0, DME_MAP_RW, &iova), -EINVAL, "zero length refused");
	ok_eq(dme_register(e, buf, 100, DME_MAP_RW, &iova), -EINVAL, "partial page refused");
	ok_eq(dme_register(e, (void *)(uintptr_t)(UINT64_MAX - PG + 1), 2 * PG, DME_MAP_RW, &iova), -EINVAL,
	      "wrapping range refused");
	ok_eq(dme_register(e, buf, PG, 0x10, &iova), -EINVAL, "unknown flags refused");
	ok_eq(dme_unregister(e, buf, PG), -EINVAL, "unregister of unregistered memory refused");
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	ok(st.map_calls == 0 && st.live_mappings == 0, "bad input issued no map call");
	ok_eq(dme_register(e, buf, PG, DME_MAP_RW, &iova), 0, "engine still usable");
	dme_engine_close(e);
	munmap(buf, 4 * PG);
}

static void test_batch_coalesce(void)
{
	struct dme_engine *e = open_sim(0, 0);
	enum { N = 256 };
	uint8_t *buf = mem(N * PG);
	static struct dme_region_req q[N];
	for (int i = 0; i < N; i++) {
		int j = (i * 97) % N;	/* shuffled order */
		q[i] = (struct dme_region_req){buf + j * PG, PG, DME_MAP_RW, 0};
	}
	ok_eq(dme_register_batch(e, q, N), 0, "batch of 256 shuffled 4K buffers");
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	ok_eq(st.map_calls, 1, "one contiguous run, one map call");
	int good = 1;
	for (int i = 0; i < N; i++) {
		uint64_t x;
		int j = (i * 97) % N;
		good &= q[i].iova == q[0].iova - (uint64_t)((0 * 97) % N) * PG + (uint64_t)j * PG;
		good &= dme_vtoiova(e, buf + j * PG, &x) == 0 && x == q[i].iova;
	}
	ok(good, "IOVAs contiguous like the VAs and translated");
	/* a second batch: two runs with a gap and different permissions */
	uint8_t *b2 = mem(8 * PG);
	struct dme_region_req r2[4] = {{b2, PG, DME_MAP_RW, 0}, {b2 + PG, PG, DME_MAP_RW, 0},
				       {b2 + 3 * PG, PG, DME_MAP_READ, 0}, {b2 + 4 * PG, PG, DME_MAP_READ, 0}};
	ok_eq(dme_register_batch(e, r2, 4), 0, "batch with two runs");
	dme_engine_stats(e, &st);
	ok_eq(st.map_calls, 3, "two runs, two more map calls");
	struct dme_region_req dup[2] = {{b2 + 6 * PG, 2 * PG, DME_MAP_RW, 0}, {b2 + 7 * PG, PG, DME_MAP_RW, 0}};
	ok_eq(dme_register_batch(e, dup, 2), 0, "a buffer inside another of the same batch");
	ok_eq(dup[1].iova, dup[0].iova + PG, "it shares that run");
	struct dme_region_req part[2] = {{b2 + 5 * PG, 2 * PG, DME_MAP_RW, 0}, {b2 + 6 * PG, 2 * PG, DME_MAP_RW, 0}};
	ok_eq(dme_register_batch(e, part, 2), -EBUSY, "partial overlap with a registered range refused");
	ok(balanced(e), "batch: stats balance");
	dme_engine_close(e);
	munmap(buf, N * PG);
	munmap(b2, 8 * PG);
}

static void test_batch_injection(void)
{
	static const int errs[] = {ENOMEM, EFAULT, ENOSPC, EEXIST, ENOENT, EINTR};
	enum { R = 8 };
	uint8_t *buf = mem(2 * R * PG);
	int all = 1, msgs = 1;
	for (size_t k = 0; k < sizeof(errs) / sizeof(errs[0]); k++) {
		for (int pos = 1; pos <= R; pos++) {
			struct dme_engine *e = open_sim(0, 0);
			struct dme_sim *sim = dme_engine_sim(e);
			struct dme_region_req q[R];
			for (int i = 0; i < R; i++)	/* every other page: 8 runs */
				q[i] = (struct dme_region_req){buf + 2 * i * PG, PG, DME_MAP_RW, 0};
			struct dme_iova_range before;
			(void)before;
			dme_sim_inject(sim, DME_SIM_OP_MAP, (uint64_t)pos, -errs[k]);
			logcap_reset();
			int ret = dme_register_batch(e, q, R);
			struct dme_engine_stats st;
			dme_engine_stats(e, &st);
			struct dme_sim_stats ss;
			dme_sim_stats(sim, &ss);
			uint64_t x;
			bool clean = ret == -errs[k] && st.live_mappings == 0 && ss.live_mappings == 0 &&
				     st.pinned_bytes == 0 && balanced(e);
			for (int i = 0; i < R; i++)
				clean &= dme_vtoiova(e, buf + 2 * i * PG, &x) == -ENOENT;
			/* the same batch goes through afterwards: nothing was leaked */
			clean &= dme_register_batch(e, q, R) == 0 && balanced(e);
			msgs &= logcap.count[DME_LOG_ERR] > 0 || pos > R;
			if (!clean) {
				diag("errno %d at request %d: ret %d live %llu sim live %llu", errs[k], pos,
				     ret, (unsigned long long)st.live_mappings,
				     (unsigned long long)ss.live_mappings);
				all = 0;
			}
			dme_engine_close(e);
		}
	}
	ok(all, "map failure at every position of a batch of 8, for ENOMEM EFAULT ENOSPC EEXIST ENOENT EINTR: nothing left behind");
	ok(msgs, "every failed batch logged an error");

	/* an unmap that fails keeps the mapping pending and its IOVA quarantined */
	struct dme_engine *e = open_sim(0, 0);
	struct dme_sim *sim = dme_engine_sim(e);
	uint64_t iova, x;
	dme_register(e, buf, PG, DME_MAP_RW, &iova);
	dme_unregister(e, buf, PG);
	dme_sim_inject(sim, DME_SIM_OP_UNMAP, 1, -EINTR);
	ok_eq(dme_engine_flush(e), -EINTR, "a failing unmap is reported");
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	ok(st.pending_unmaps == 1 && st.live_mappings == 1, "the mapping stays pending");
	ok(dme_vtoiova(e, buf, &x) == -ENOENT, "but no longer translates");
	ok(balanced(e), "stats balance with a pending unmap");
	uint8_t b[4];
	ok_eq(dme_sim_dma_read(sim, iova, b, 4), 0, "the IOMMU still maps it (so its IOVA must not be reused)");
	ok_eq(dme_engine_flush(e), 0, "the next flush retries and succeeds");
	dme_engine_stats(e, &st);
	ok(st.pending_unmaps == 0 && st.live_mappings == 0 && balanced(e), "then everything is clean");
	dme_engine_close(e);
	munmap(buf, 2 * R * PG);
}

static void test_budgets(void)
{
	struct dme_engine *e = open_sim(16, 0);
	uint8_t *buf = mem(64 * PG);
	uint64_t iova;
	int good = 1;
	for (int i = 0; i < 16; i++)
		good &= dme_register(e, buf + 2 * i * PG, PG, DME_MAP_RW, &iova) == 0;
	ok(good, "16 mappings fill an entry budget of 16");
	logcap_reset();
	ok_eq(dme_register(e, buf + 40 * PG, PG, DME_MAP_RW, &iova), -ENOSPC, "the 17th is -ENOSPC");
	ok(strstr(logcap.last, "DME_CACHE_ENTRIES") != NULL, "the message says how to raise it");
	dme_unregister(e, buf, PG);
	ok_eq(dme_register(e, buf + 40 * PG, PG, DME_MAP_RW, &iova), 0, "after an unregister the idle one is evicted");
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	ok(st.evictions == 1 && st.live_mappings == 16, "one eviction, still 16 live");
	ok(balanced(e), "budget: stats balance");
	dme_engine_close(e);

	/* a backend limit below DME_CACHE_ENTRIES: the message names the backend's */
	struct dme_sim_params sp = {.max_entries = 4};
	ok_eq(dme_engine_open_sim(NULL, &sp, &e), 0, "a sim with an entry limit of 4");
	good = 1;
	for (int i = 0; i < 4; i++)
		good &= dme_register(e, buf + 2 * i * PG, PG, DME_MAP_RW, &iova) == 0;
	logcap_reset();
	ok(good && dme_register(e, buf + 40 * PG, PG, DME_MAP_RW, &iova) == -ENOSPC,
	   "the 5th mapping is -ENOSPC from the engine");
	ok(strstr(logcap.last, "max_entries") != NULL && strstr(logcap.last, "DME_CACHE_ENTRIES") == NULL,
	   "the message names the backend's limit, not DME_CACHE_ENTRIES");
	dme_engine_close(e);

	e = open_sim(0, 4 * PG);	/* keep at most 16K of idle mappings */
	for (int i = 0; i < 8; i++) {
		dme_register(e, buf + 2 * i * PG, PG, DME_MAP_RW, &iova);
		dme_unregister(e, buf + 2 * i * PG, PG);
	}
	dme_engine_stats(e, &st);
	ok(st.idle_mappings == 4 && st.evictions == 4, "idle byte budget keeps 4 of 8 idle mappings");
	ok(balanced(e), "idle budget: stats balance");
	dme_engine_close(e);
	munmap(buf, 64 * PG);
}

static void test_attach(void)
{
	struct dme_engine *e = open_sim(0, 0);
	ok_eq(dme_engine_attach(e, "0000:00:03.0"), 0, "attach a device");
	ok_eq(dme_engine_detach(e, "0000:00:04.0"), -ENOENT, "detach of an unknown device is -ENOENT");
	ok_eq(dme_engine_detach(e, "0000:00:03.0"), 0, "detach it");
	dme_sim_inject(dme_engine_sim(e), DME_SIM_OP_ATTACH, 1, -EPERM);
	ok_eq(dme_engine_attach(e, "0000:00:03.0"), -EPERM, "attach failure is reported");
	ok(balanced(e), "attach: invariants hold");
	dme_engine_close(e);
}

int main(void)
{
	logcap_install();
	test_open();
	test_register_translate();
	test_readonly();
	test_bad_input();
	test_batch_coalesce();
	test_batch_injection();
	test_budgets();
	test_attach();
	return tap_done();
}
