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
#include <unistd.h>

#include <dme/engine.h>
#include <dme/mem.h>
#include <dme/sim.h>

#include "logcap.h"
#include "tap.h"
#include "memtest.h"

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
	ok(n == 2 && r[0].start == PG && r[0].last == 0xfedfffff && r[1].start == 0xfef00000 &&
		   r[1].last == 0x7fffffffff && al == PG,
	   "open: VT-d geometry with the MSI hole, page 0 kept out (no NULL IOVA)");
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
	int oret = dme_engine_open_sim(NULL, &sp, &e);
	ok_eq(oret, 0, "a sim with an entry limit of 4");
	if (oret) {
		munmap(buf, 64 * PG);
		return;
	}
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

static void test_replay_and_geometry(void)
{
	/* a backend that cannot map before a device is attached (type1-like),
	 * and a device that reserves [256 MiB, 512 MiB) */
	const uint64_t RS = 0x10000000, RL = 0x1fffffff, BIG = 96ull << 20;
	struct dme_sim_params sp = {.needs_attach = true, .has_attach_reserved = true,
				    .attach_reserved = {RS, RL}};
	struct dme_config c;
	dme_config_init(&c);
	struct dme_engine *e;
	ok_eq(dme_engine_open_sim(&c, &sp, &e), 0, "replay: open a sim that needs a device");
	struct dme_sim *sim = dme_engine_sim(e);
	uint8_t *buf = mem(8 * PG);
	uint64_t iova, x;
	memset(buf, 0x3c, 8 * PG);
	ok_eq(dme_register(e, buf, 8 * PG, DME_MAP_RW, &iova), 0, "replay: register before any device");
	ok(iova < RS, "replay: its IOVA (0x%llx) is below the region the device will reserve",
	   (unsigned long long)iova);
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	ok(st.map_calls == 0 && dme_vtoiova(e, buf, &x) == 0 && x == iova,
	   "replay: recorded and translated, no map call yet");
	uint8_t b[8];
	ok_eq(dme_sim_dma_read(sim, iova, b, 8), -EFAULT, "replay: the device cannot reach it yet");
	ok_eq(dme_engine_attach(e, "dev0"), 0, "replay: attach");
	dme_engine_stats(e, &st);
	ok(st.map_calls == 1 && st.replays == 1, "replay: the recorded mapping was issued on attach");
	ok(dme_sim_dma_read(sim, iova, b, 8) == 0 && b[0] == 0x3c, "replay: now the device reads it");
	struct dme_iova_range r[8];
	size_t n = dme_engine_geometry(e, r, 8, NULL);
	ok(n == 3 && r[0].last == RS - 1 && r[1].start == RL + 1,
	   "geometry: the device's reserved region is cut out after attach");
	/* four 96 MiB buffers: first fit runs past 256 MiB and must skip the region */
	uint8_t *big = mem(4 * BIG);
	int clean = 1;
	for (int i = 0; i < 4; i++) {
		uint64_t v;
		clean &= dme_register(e, big + i * BIG, BIG, DME_MAP_RW, &v) == 0 &&
			 (v + BIG <= RS || v > RL);
	}
	ok(clean, "geometry: no IOVA handed out in the reserved region");
	ok(balanced(e), "replay: stats balance");
	dme_engine_close(e);

	/* a mapping where the device's reserved region will be: attach refused */
	sp.needs_attach = false;
	ok_eq(dme_engine_open_sim(&c, &sp, &e), 0, "conflict: a sim that maps before attach");
	int found = 0;
	for (int i = 0; i < 4; i++) {
		uint64_t v;
		if (!dme_register(e, big + i * BIG, BIG, DME_MAP_RW, &v) && v + BIG > RS && v <= RL)
			found = 1;
	}
	ok(found, "conflict: a live mapping sits in the future reserved region");
	logcap_reset();
	ok(dme_engine_attach(e, "dev0") < 0 && logcap.count[DME_LOG_ERR] > 0,
	   "conflict: attaching a device that reserves it is refused and reported");
	n = dme_engine_geometry(e, r, 8, NULL);
	ok(n == 2, "conflict: the geometry is unchanged");
	ok(balanced(e), "conflict: stats balance");
	dme_engine_close(e);
	munmap(buf, 8 * PG);
	munmap(big, 4 * BIG);
}

static void test_share(void)
{
	struct dme_engine *a = open_sim(0, 0), *b = NULL;
	ok_eq(dme_engine_open_sibling(a, &b), 0, "share: a sibling address space");
	uint8_t *buf = mem(16 * PG);
	memset(buf, 0x77, 16 * PG);
	uint64_t ia, ib, x;
	dme_register(a, mem(PG), PG, DME_MAP_RW, &x);	/* so the two IOVAs differ */
	ok_eq(dme_register(a, buf, 16 * PG, DME_MAP_RW, &ia), 0, "share: register in the first");
	ok_eq(dme_share(a, b, buf + 4 * PG, 8 * PG, DME_MAP_READ, &ib), 0, "share: copy 8 pages read-only into the second");
	uint8_t r[16];
	ok(dme_sim_dma_read(dme_engine_sim(b), ib, r, 16) == 0 && r[0] == 0x77,
	   "share: the second address space's device reads the same memory");
	ok_eq(dme_sim_dma_write(dme_engine_sim(b), ib, r, 16), -EFAULT, "share: read-only there");
	ok(dme_vtoiova(b, buf + 5 * PG, &x) == 0 && x == ib + PG, "share: translated in the second");
	ok_eq(dme_share(a, b, buf + 4 * PG, PG, DME_MAP_READ, &x), -EBUSY, "share: twice is -EBUSY");
	ok_eq(dme_share(a, b, buf + 20 * PG, PG, DME_MAP_READ, &x), -ENOENT, "share: unregistered memory is -ENOENT");
	dme_sim_inject(dme_engine_sim(a), DME_SIM_OP_COPY, 1, -ENOMEM);
	uint8_t *other = mem(4 * PG);
	dme_register(a, other, 4 * PG, DME_MAP_RW, &x);
	ok_eq(dme_share(a, b, other, 4 * PG, DME_MAP_RW, &x), -ENOMEM, "share: a failing copy is reported");
	ok(balanced(a) && balanced(b), "share: both engines balance");
	ok_eq(dme_unregister(b, buf + 4 * PG, 8 * PG), 0, "share: unregister in the second");
	ok_eq(dme_engine_flush(b), 0, "share: flush the second");
	ok(dme_sim_dma_read(dme_engine_sim(a), ia, r, 16) == 0, "share: the first still maps it");
	ok(balanced(a) && balanced(b), "share: both engines still balance");
	dme_engine_close(b);
	dme_engine_close(a);
	munmap(buf, 16 * PG);
	munmap(other, 4 * PG);
}

static void test_dma_memory(void)
{
	struct hp_res hr;
	if (!hp_reserve(&hr, 0, 2048, 4)) {
		ok(0, "dma: cannot reserve 2 MiB hugepages (run as root)");
		return;
	}
	struct dme_config c;
	dme_config_init(&c);
	c.backend = DME_BACKEND_SIM;
	c.hugepage = DME_HUGEPAGE_2M;
	c.numa = DME_NUMA_LOCAL;
	struct dme_engine *e;
	dme_engine_open(&c, &e);
	struct dme_sim *sim = dme_engine_sim(e);
	struct dme_dma_mem d;
	ok_eq(dme_dma_alloc(e, 3 << 20, DME_MAP_RW, &d), 0, "dma: 3 MiB of 2 MiB hugepages");
	ok(d.page_size == 2u << 20 && d.len == 4u << 20, "dma: rounded to two 2 MiB pages");
	ok_eq(d.iova & ((2u << 20) - 1), (uintptr_t)d.va & ((2u << 20) - 1), "dma: IOVA == VA mod 2 MiB");
	struct dme_sim_walk w;
	ok(dme_sim_walk(sim, d.iova + 12345, &w) == 0 && w.page_size == 2u << 20,
	   "dma: the IOMMU maps it with 2 MiB entries");
	uint64_t x;
	ok(dme_vtoiova(e, (char *)d.va + (3 << 20), &x) == 0 && x == d.iova + (3 << 20), "dma: translated");
	memset(d.va, 0x11, 64);
	uint8_t b[64];
	ok(dme_sim_dma_read(sim, d.iova, b, 64) == 0 && b[0] == 0x11 && b[63] == 0x11, "dma: device reads it");
	uint64_t iova = d.iova;
	void *va = d.va;
	ok_eq(dme_dma_free(e, &d), 0, "dma: free");
	ok(dme_vtoiova(e, va, &x) == -ENOENT && dme_sim_dma_read(sim, iova, b, 8) == -EFAULT,
	   "dma: after free nothing translates and the device faults");
	ok(balanced(e), "dma: stats balance");

	/* caller memory that is hugepage backed gets a congruent IOVA too */
	struct dme_mem_params p;
	dme_mem_params_init(&p, 4u << 20);
	p.hugepage = DME_HUGEPAGE_2M;
	struct dme_mem *m;
	ok_eq(dme_mem_alloc(&p, &m), 0, "caller's own hugepage memory");
	uint64_t dummy;
	uint8_t *small = mem(PG);
	dme_register(e, small, PG, DME_MAP_RW, &dummy);	/* so 0 is not free */
	ok_eq(dme_register(e, m->va, m->len, DME_MAP_RW, &iova), 0, "register it");
	ok_eq(iova & ((2u << 20) - 1), (uintptr_t)m->va & ((2u << 20) - 1),
	      "its IOVA is congruent mod 2 MiB (page size found by inspection)");
	ok(dme_sim_walk(sim, iova, &w) == 0 && w.page_size == 2u << 20, "and mapped with 2 MiB entries");
	dme_unregister(e, m->va, m->len);
	dme_engine_flush(e);
	dme_mem_free(m);

	/* a large range that is not mapped is refused before any kernel call */
	uint8_t *hole = mem(4u << 20);
	munmap(hole + (1u << 20), 1u << 20);
	logcap_reset();
	ok(dme_register(e, hole, 4u << 20, DME_MAP_RW, &iova) < 0 && logcap.count[DME_LOG_ERR] > 0,
	   "a range with an unmapped hole is refused with a message");
	ok(balanced(e), "refused range left nothing behind");
	dme_engine_close(e);
	munmap(hole, 1u << 20);
	munmap(hole + (2u << 20), 2u << 20);
	munmap(small, PG);
	hp_release(&hr);
}

static void noiommu_no_cap(struct child_results *cr, void *arg)
{
	(void)arg;
	struct dme_config c;
	dme_config_init(&c);
	c.backend = DME_BACKEND_NOIOMMU;
	struct dme_engine *e = NULL;
	int dropped = drop_cap(21 /* CAP_SYS_ADMIN */);
	logcap_reset();
	int ret = dme_engine_open(&c, &e);
	char d[64];
	snprintf(d, sizeof(d), "drop %d, open %d", dropped, ret);
	child_ok(cr, dropped == 0 && ret == -EPERM && !e, "without CAP_SYS_ADMIN open is -EPERM", d);
	child_ok(cr, strstr(logcap.last, "CAP_SYS_ADMIN") != NULL, "the message names CAP_SYS_ADMIN",
		 logcap.last);
}

/* Does the VMA holding @p carry VmFlags @flag (two letters) in smaps? */
static bool vm_flag(const void *p, const char *flag)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false, found = false;
	uintptr_t a = (uintptr_t)p;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = a >= lo && a < hi;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			char want[8];
			snprintf(want, sizeof(want), " %s", flag);
			found = strstr(line, want) != NULL;
			break;
		}
	}
	if (f)
		fclose(f);
	return found;
}

static void test_noiommu(void)
{
	struct hp_res hr;
	if (!hp_reserve(&hr, 0, 2048, 4)) {
		ok(0, "noiommu: cannot reserve 2 MiB hugepages (run as root)");
		return;
	}
	struct dme_config c;
	dme_config_init(&c);
	c.backend = DME_BACKEND_NOIOMMU;
	c.hugepage = DME_HUGEPAGE_2M;
	c.numa = DME_NUMA_LOCAL;
	struct dme_engine *e = NULL;
	int ret = dme_engine_open(&c, &e);
	if (ret == -EPERM) {
		tap_skip("open refused with -EPERM: needs CAP_SYS_ADMIN (not root)", "noiommu");
		hp_release(&hr);
		return;
	}
	ok_eq(ret, 0, "noiommu: open (IOVA = physical address)");
	struct dme_dma_mem d;
	ok_eq(dme_dma_alloc(e, 4u << 20, DME_MAP_RW, &d), 0, "noiommu: 4 MiB of hugepages");
	uint64_t pa0, pa1, x;
	ok(dme_mem_pa(d.va, &pa0) == 0 && d.iova == pa0, "noiommu: IOVA is the physical address");
	ok(dme_mem_pa((char *)d.va + (2u << 20) + 8192, &pa1) == 0 &&
		   dme_vtoiova(e, (char *)d.va + (2u << 20) + 8192, &x) == 0 && x == pa1,
	   "noiommu: each hugepage translates to its own physical address");
	void *back;
	ok(dme_iovatov(e, pa1, &back) == 0 && back == (char *)d.va + (2u << 20) + 8192, "noiommu: reverse lookup");
	uint8_t *small = mem(PG);
	small[0] = 1;
	uint64_t iova;
	logcap_reset();
	ok_eq(dme_register(e, small, PG, DME_MAP_RW, &iova), -EINVAL, "noiommu: 4 KiB anonymous memory refused");
	ok(strstr(logcap.last, "hugetlb") != NULL, "noiommu: the message says why");
	/* caller hugetlb memory: its IOVA is its physical address, so a child's
	 * copy-on-write must never move the parent's page: MADV_DONTFORK */
	uint8_t *hp = mmap(NULL, 2u << 20, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (hp != MAP_FAILED) {
		hp[0] = 1;
		ok(!vm_flag(hp, "dc"), "noiommu: fresh caller hugetlb memory is not DONTFORK yet");
		ok_eq(dme_register(e, hp, 2u << 20, DME_MAP_RW, &iova), 0,
		      "noiommu: register caller hugetlb memory");
		ok(vm_flag(hp, "dc"), "noiommu: registered caller memory is MADV_DONTFORK (VmFlags dc)");
		ok_eq(dme_unregister(e, hp, 2u << 20), 0, "noiommu: unregister it");
		munmap(hp, 2u << 20);
	} else {
		ok(0, "noiommu: a caller hugepage (MAP_HUGETLB)");
	}
	ok(balanced(e), "noiommu: stats balance");
	ok_eq(dme_dma_free(e, &d), 0, "noiommu: free");
	ok(dme_vtoiova(e, back, &x) == -ENOENT, "noiommu: nothing translates after free");
	dme_engine_close(e);
	munmap(small, PG);
	hp_release(&hr);
	run_in_child("noiommu", noiommu_no_cap, NULL);
}

/* A backend asked for by name whose interface this host lacks. */
static void missing_backend(enum dme_backend_kind kind, const char *node)
{
	const char *name = dme_backend_name(kind);
	if (!access(node, F_OK)) {
		ok(1, "DME_BACKEND=%s without %s # SKIP this host has %s", name, node, node);
		return;
	}
	struct dme_config c;
	dme_config_init(&c);
	c.backend = kind;
	struct dme_engine *e = NULL;
	logcap_reset();
	ok_eq(dme_engine_open(&c, &e), -ENODEV, "DME_BACKEND=%s without %s is -ENODEV", name, node);
	ok(!e && logcap.count[DME_LOG_ERR] == 1 && strstr(logcap.last, name) &&
		   strstr(logcap.last, node),
	   "... with one error naming the backend and %s", node);
	diag("dme said: %s", logcap.last);
}

static void test_missing_backend(void)
{
	missing_backend(DME_BACKEND_IOMMUFD, "/dev/iommu");
	missing_backend(DME_BACKEND_VFIO, "/dev/vfio/vfio");
}

/* DME_BACKEND=auto: the simulator only when no device is named. */
static void test_auto_device(void)
{
	struct dme_config c;
	struct dme_engine *e = NULL;
	dme_config_init(&c);
	logcap_reset();
	ok_eq(dme_engine_open(&c, &e), 0, "auto without DME_DEVICE: opens");
	ok(e && !strcmp(dme_engine_backend_name(e), "sim") && logcap.count[DME_LOG_INFO] == 1 &&
		   logcap.count[DME_LOG_ERR] == 0,
	   "auto without DME_DEVICE: the simulator, said at info level");
	dme_engine_close(e);

	/* no device by that name exists on any machine (bus 0xff, function 7) */
	ok_eq(dme_config_set(&c, "DME_DEVICE", "0000:ff:1f.7"), 0, "DME_DEVICE=0000:ff:1f.7");
	e = NULL;
	logcap_reset();
	ok_eq(dme_engine_open(&c, &e), -ENODEV,
	      "auto with a device that cannot be opened is -ENODEV, not the simulator");
	ok(!e && logcap.count[DME_LOG_INFO] == 0 && logcap.count[DME_LOG_ERR] >= 1 &&
		   strstr(logcap.last, "DME_DEVICE=0000:ff:1f.7") && strstr(logcap.last, "iommufd") &&
		   strstr(logcap.last, "vfio") && strstr(logcap.last, "simulator"),
	   "... with an error naming the device, each backend's reason and the missing fallback");
	diag("dme said: %s", logcap.last);

	/* this host's reasons, where it has neither interface */
	if (!access("/dev/iommu", F_OK) || !access("/dev/vfio/vfio", F_OK)) {
		ok(1, "the reasons name /dev/iommu and /dev/vfio/vfio # SKIP this host has one");
		return;
	}
	ok(strstr(logcap.last, "/dev/iommu") && strstr(logcap.last, "/dev/vfio/vfio"),
	   "the reasons name /dev/iommu and /dev/vfio/vfio");
}

int main(void)
{
	logcap_install();
	test_open();
	test_missing_backend();
	test_auto_device();
	test_register_translate();
	test_readonly();
	test_bad_input();
	test_batch_coalesce();
	test_batch_injection();
	test_budgets();
	test_attach();
	test_replay_and_geometry();
	test_share();
	test_dma_memory();
	test_noiommu();
	return tap_done();
}
