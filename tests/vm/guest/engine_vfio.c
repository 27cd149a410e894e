/* SPDX-License-Identifier: MIT */
/*
 * Guest check of dme's engine on the VFIO type1 container backend, against
 * the real kernel (NVMe behind QEMU's emulated VT-d). What the container
 * holds is read from the kernel, not from the engine:
 *   - DMA_AVAIL counts the container's mappings: dma_entry_limit - DMA_AVAIL
 *     must equal the engine's live mappings at every step;
 *   - UNMAP_DMA (type1v2) refuses to cut a mapping (EINVAL, nothing
 *     removed), so unmapping the first page of a registered run shows it is
 *     one kernel mapping; UNMAP_DMA where nothing is mapped returns size 0;
 *   - UNMAP_DMA of exactly a registered range returns its size, after which
 *     the test maps it again (MAP_DMA, same VA and IOVA).
 * Booted twice: in vm-basic (dma_entry_limit 65535) and in vm-vfio-limit
 * (vfio_iommu_type1.dma_entry_limit=64), where the engine must keep within
 * the limit on its own.
 */
#include "dmeguest.h"
#include "vfio.h"
#include "vmtest.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <dme/engine.h>
#include <dme/mem.h>

#include "internal.h"
#include "ioctl.h"

#define MSI_START 0xfee00000ull
#define MSI_LAST 0xfeefffffull
#define APERTURE_LAST 0x7fffffffffull

static struct vm_nvme dev;
static long limit; /* the container's dma_entry_limit */

static struct dme_engine *open_engine(unsigned entries, int *err)
{
	struct dme_config c;
	struct dme_engine *e = NULL;

	dme_config_init(&c);
	c.backend = DME_BACKEND_VFIO;
	c.nr_devices = 1;
	snprintf(c.devices[0], sizeof(c.devices[0]), "%s", dev.bdf);
	if (entries)
		c.cache_budget_entries = entries;
	*err = dme_engine_open(&c, &e);
	return *err ? NULL : e;
}

static struct vfio_ctx ctx_of(struct dme_engine *e)
{
	return (struct vfio_ctx){
	    .container = dme_vfio_container(dme__engine_backend(e)), .group = -1, .device = -1};
}

static bool iova_ok(uint64_t iova, uint64_t len)
{
	uint64_t last = iova + len - 1;

	return len && last >= iova && !(iova & (SZ_4K - 1)) && last <= APERTURE_LAST &&
	       (last < MSI_START || iova > MSI_LAST);
}

/* The kernel's mapping count (dma_entry_limit - DMA_AVAIL) equals the
 * engine's live mappings. */
static bool counts_agree(struct dme_engine *e, uint64_t *kernel)
{
	struct vfio_ctx v = ctx_of(e);
	struct dme_engine_stats st;
	long avail = vfio_dma_avail(&v);

	dme_engine_stats(e, &st);
	*kernel = avail < 0 ? UINT64_MAX : (uint64_t)(limit - avail);
	return avail >= 0 && *kernel == st.live_mappings;
}

static void check_counts(struct dme_engine *e, const char *what)
{
	struct dme_engine_stats st;
	uint64_t kernel;
	bool good = counts_agree(e, &kernel);

	dme_engine_stats(e, &st);
	tap_check(good, "%s: the container holds as many mappings as dme has live (%" PRIu64 ")",
		  what, st.live_mappings);
	if (!good)
		tap_diag("  kernel: %" PRIu64 " (dma_entry_limit %ld - DMA_AVAIL)", kernel, limit);
}

/* [iova, +len) is exactly one kernel mapping: cutting its first page is
 * refused, unmapping exactly it returns len (then it is mapped again), and,
 * when @alone (no other registration next to it), the pages around it hold
 * nothing: UNMAP_DMA of them returns 0 bytes. */
static bool kernel_holds(struct dme_engine *e, void *va, uint64_t iova, uint64_t len, bool alone,
			 const char *what)
{
	struct vfio_ctx v = ctx_of(e);
	uint64_t got = 0, before = 0, after = 0;
	int cut = len > SZ_4K ? vfio_unmap(&v, iova, SZ_4K, 0, NULL) : -1;
	int cut_errno = errno;
	int rb = alone && iova >= SZ_4K ? vfio_unmap(&v, iova - SZ_4K, SZ_4K, 0, &before) : 0;
	int ra = alone ? vfio_unmap(&v, iova + len, SZ_4K, 0, &after) : 0;
	int ex = vfio_unmap(&v, iova, len, 0, &got);
	int remap = ex == 0 ? vfio_map(&v, va, len, iova) : -1;
	bool good = (len == SZ_4K || (cut == -1 && cut_errno == EINVAL)) && rb == 0 && !before &&
		    ra == 0 && !after && ex == 0 && got == len && remap == 0;

	tap_check(good,
		  "%s: the container maps exactly IOVA [0x%" PRIx64 ", +0x%" PRIx64
		  ") as one mapping",
		  what, iova, len);
	if (!good)
		tap_diag("  cut first page %d/%d, before %d/0x%" PRIx64 ", after %d/0x%" PRIx64
			 ", exact %d/0x%" PRIx64 ", remap %d",
			 cut, cut_errno, rb, before, ra, after, ex, got, remap);
	return good;
}

static uint64_t unmap_all(struct dme_engine *e)
{
	struct vfio_ctx v = ctx_of(e);
	uint64_t got = 0;

	if (vfio_unmap(&v, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, &got) != 0)
		return (uint64_t) - (int64_t)errno;
	return got;
}

/* ---- the essentials (any dma_entry_limit) -------------------------------- */

static void check_geometry(struct dme_engine *e)
{
	struct vfio_ctx v = ctx_of(e);
	struct dme_iova_range r[8];
	uint64_t align = 0;
	size_t n = dme_engine_geometry(e, r, 8, &align);

	tap_check(n == 2 && r[0].start == 0x1000 && r[0].last == MSI_START - 1 &&
		      r[1].start == MSI_LAST + 1 && r[1].last == APERTURE_LAST,
		  "geometry: 0x1000-0xfedfffff and 0xfef00000-0x7fffffffff (the GET_INFO "
		  "IOVA_RANGE cap, less page 0)");
	tap_eq_u64(align, 0x1000, "geometry: alignment 0x1000 (smallest of iova_pgsizes)");
	tap_eq_u64((uint64_t)vfio_dma_avail(&v), (uint64_t)limit,
		   "geometry: DMA_AVAIL of the engine's container is dma_entry_limit (%ld)", limit);
}

static void scenario_anon(struct dme_engine *e)
{
	const uint64_t len = 64 * SZ_4K;
	uint8_t *buf = vm_small_alloc(len);
	struct dme_engine_stats st;
	uint64_t iova = 0, x;

	if (!buf)
		tap_fatal("anon: mmap");
	if (!tap_ret(dme_register(e, buf, len, DME_MAP_RW, &iova), 0, "anon: register 256 KiB"))
		return;
	tap_check(iova_ok(iova, len), "anon: IOVA 0x%" PRIx64 " inside the geometry", iova);
	dme_engine_stats(e, &st);
	tap_check(st.map_calls == 1 && st.live_mappings == 1,
		  "anon: one MAP_DMA, one live mapping");
	check_counts(e, "anon");
	kernel_holds(e, buf, iova, len, true, "anon");
	tap_ret(dme_unregister(e, buf, len), 0, "anon: unregister");
	check_counts(e, "anon: idle");
	tap_ret(dme_register(e, buf, len, DME_MAP_RW, &x), 0, "anon: register again");
	tap_check(x == iova, "anon: same IOVA from the idle mapping");
	tap_ret(dme_unregister(e, buf, len), 0, "anon: unregister again");
	tap_ret(dme_engine_flush(e), 0, "anon: flush");
	check_counts(e, "anon: flushed");
	tap_eq_u64(unmap_all(e), 0, "anon: UNMAP_DMA of everything finds nothing left");
	tap_check(dg_balanced(e), "anon: stats balance");
	munmap(buf, len);
}

static void scenario_huge(struct dme_engine *e)
{
	struct dme_mem_params p;
	struct dme_mem *m = NULL;
	uint64_t iova = 0;

	dme_mem_params_init(&p, 2 * SZ_2M);
	p.hugepage = DME_HUGEPAGE_2M;
	p.flags = DME_MEM_F_STRICT;
	if (!tap_ret(dme_mem_alloc(&p, &m), 0, "huge: dme_mem_alloc 4 MiB of 2 MiB hugepages"))
		return;
	if (tap_ret(dme_register(e, m->va, m->len, DME_MAP_RW, &iova), 0, "huge: register it")) {
		tap_check(iova_ok(iova, m->len), "huge: IOVA 0x%" PRIx64 " inside the geometry",
			  iova);
		kernel_holds(e, m->va, iova, m->len, true, "huge");
		tap_ret(dme_unregister(e, m->va, m->len), 0, "huge: unregister");
		tap_ret(dme_engine_flush(e), 0, "huge: flush");
		check_counts(e, "huge");
	}
	dme_mem_free(m);
}

static void scenario_batch(struct dme_engine *e)
{
	enum { N = 256 };
	static struct dme_region_req q[N];
	uint8_t *buf = vm_small_alloc(N * SZ_4K);
	struct dme_engine_stats st0, st;
	struct vfio_ctx v = ctx_of(e);
	bool contiguous = true;

	if (!buf)
		tap_fatal("batch: mmap");
	for (int i = 0; i < N; i++) {
		int j = (i * 97) % N;
		q[i] = (struct dme_region_req){buf + (size_t)j * SZ_4K, SZ_4K, DME_MAP_RW, 0};
	}
	long avail0 = vfio_dma_avail(&v);
	dme_engine_stats(e, &st0);
	if (!tap_ret(dme_register_batch(e, q, N), 0,
		     "batch: 256 VA-contiguous 4 KiB buffers, shuffled"))
		return;
	dme_engine_stats(e, &st);
	tap_eq_u64(st.map_calls - st0.map_calls, 1, "batch: exactly one MAP_DMA (map_calls delta)");
	tap_eq_u64((uint64_t)(avail0 - vfio_dma_avail(&v)), 1,
		   "batch: DMA_AVAIL drops by exactly 1: one container entry for 256 buffers");
	for (int i = 0; i < N; i++)
		contiguous &= q[i].iova == q[0].iova + (uint64_t)((i * 97) % N) * SZ_4K;
	tap_check(contiguous, "batch: IOVAs contiguous like the VAs");
	kernel_holds(e, buf, q[0].iova, N * SZ_4K, true, "batch");
	bool unreg = true;
	for (int i = 0; i < N; i++)
		unreg &= dme_unregister(e, q[i].va, SZ_4K) == 0;
	tap_check(unreg, "batch: unregister each buffer");
	tap_ret(dme_engine_flush(e), 0, "batch: flush");
	check_counts(e, "batch: flushed");
	tap_check(dg_balanced(e), "batch: stats balance");
	munmap(buf, N * SZ_4K);
}

static void scenario_inject(struct dme_engine *e)
{
	static const int errs[] = {ENOMEM, EFAULT, ENOSPC, EEXIST, ENOENT, EINTR};
	enum { R = 8 };
	uint8_t *buf = vm_small_alloc(2 * R * SZ_4K);
	struct dme_region_req q[R];

	if (!buf)
		tap_fatal("inject: mmap");
	for (size_t ei = 0; ei < sizeof(errs) / sizeof(errs[0]); ei++) {
		int bad = 0, err = errs[ei];
		for (int pos = 1; pos <= R; pos++) {
			struct dme_engine_stats st;
			uint64_t kernel = 0, x;

			for (int i = 0; i < R; i++)
				q[i] = (struct dme_region_req){buf + 2 * i * SZ_4K, SZ_4K,
							       DME_MAP_RW, 0};
			dg_log_reset();
			dg_log_quiet(true);
			dme_fault_ioctl(VFIO_IOMMU_MAP_DMA, (uint64_t)pos, -err);
			int first = dme_register_batch(e, q, R);
			dme_fault_ioctl(0, 0, 0);
			dg_log_quiet(false);
			dme_engine_stats(e, &st);
			bool clean = first == -err && st.live_mappings == 0 &&
				     counts_agree(e, &kernel) && kernel == 0 &&
				     dg_log_count(DME_LOG_ERR) > 0 && dg_balanced(e);
			for (int i = 0; i < R; i++)
				clean &= dme_vtoiova(e, buf + 2 * i * SZ_4K, &x) == -ENOENT;
			int ret = dme_register_batch(e, q, R);
			clean &= ret == 0 && counts_agree(e, &kernel) && kernel == R;
			for (int i = 0; ret == 0 && i < R; i++)
				clean &= dme_unregister(e, q[i].va, SZ_4K) == 0;
			clean &= dme_engine_flush(e) == 0 && counts_agree(e, &kernel) &&
				 kernel == 0 && dg_balanced(e);
			if (!clean) {
				bad++;
				tap_diag("inject %s at MAP_DMA %d: first %d, live %" PRIu64
					 ", kernel %" PRIu64 ", retry %d; last message: %s",
					 strerror(err), pos, first, st.live_mappings, kernel, ret,
					 dg_log_last());
			}
		}
		tap_eq_u64(
		    (uint64_t)bad, 0,
		    "inject: MAP_DMA failing with %s at each of the 8 positions of a batch: the "
		    "engine returns it, the container holds nothing, stats balance, the batch then "
		    "maps",
		    strerror(err));
	}

	uint64_t iova = 0, kernel = 0;
	struct dme_engine_stats st;
	tap_ret(dme_register(e, buf, SZ_4K, DME_MAP_RW, &iova), 0, "inject: register one page");
	tap_ret(dme_unregister(e, buf, SZ_4K), 0, "inject: unregister it");
	dme_fault_ioctl(VFIO_IOMMU_UNMAP_DMA, 1, -EINTR);
	tap_ret(dme_engine_flush(e), -EINTR,
		"inject: a flush whose UNMAP_DMA fails EINTR reports it");
	dme_fault_ioctl(0, 0, 0);
	dme_engine_stats(e, &st);
	tap_check(st.pending_unmaps == 1 && counts_agree(e, &kernel) && kernel == 1,
		  "inject: the mapping stays pending and the container still holds it");
	tap_check(dg_balanced(e), "inject: stats balance with a pending unmap");
	tap_ret(dme_engine_flush(e), 0, "inject: the next flush succeeds");
	tap_check(counts_agree(e, &kernel) && kernel == 0, "inject: the container holds nothing");
	tap_check(dg_balanced(e), "inject: stats balance at the end");
	munmap(buf, 2 * R * SZ_4K);
}

/* Detach and attach again: the container drops its IOMMU with the last
 * group, so the engine records registrations until the group is back. */
static void scenario_reattach(struct dme_engine *e)
{
	uint8_t *buf = vm_small_alloc(4 * SZ_4K);
	struct dme_engine_stats st0, st;
	uint64_t iova = 0, kernel = 0, x;

	if (!buf)
		tap_fatal("reattach: mmap");
	tap_ret(dme_register(e, buf, SZ_4K, DME_MAP_RW, &iova), 0, "reattach: register a page");
	dg_log_reset();
	tap_ret(dme_engine_detach(e, dev.bdf), -EBUSY,
		"reattach: detaching the last device under a live mapping is -EBUSY");
	tap_check(counts_agree(e, &kernel) && kernel == 1, "reattach: ... and the mapping stays");
	tap_check(dme_unregister(e, buf, SZ_4K) == 0 && dme_engine_flush(e) == 0,
		  "reattach: unregister and flush");
	tap_ret(dme_engine_detach(e, dev.bdf), 0, "reattach: detach");
	struct vfio_ctx v = ctx_of(e);
	tap_check(vfio_dma_avail(&v) == -1,
		  "reattach: with no group the container answers no IOMMU_GET_INFO (no DMA_AVAIL)");
	dme_engine_stats(e, &st0);
	tap_ret(dme_register(e, buf + 2 * SZ_4K, SZ_4K, DME_MAP_RW, &iova), 0,
		"reattach: register while detached (recorded)");
	tap_check(dme_vtoiova(e, buf + 2 * SZ_4K, &x) == 0 && x == iova,
		  "reattach: ... it translates");
	tap_ret(dme_engine_attach(e, dev.bdf), 0, "reattach: attach again");
	dme_engine_stats(e, &st);
	tap_check(st.replays - st0.replays == 1 && counts_agree(e, &kernel) && kernel == 1,
		  "reattach: the recorded mapping is replayed into the container");
	kernel_holds(e, buf + 2 * SZ_4K, iova, SZ_4K, true, "reattach");
	tap_check(dme_unregister(e, buf + 2 * SZ_4K, SZ_4K) == 0 && dme_engine_flush(e) == 0 &&
		      counts_agree(e, &kernel) && kernel == 0 && dg_balanced(e),
		  "reattach: unregister and flush: the container is empty, stats balance");
	munmap(buf, 4 * SZ_4K);
}

/* An entry budget below the kernel's: DME_CACHE_ENTRIES is what limits. */
static void scenario_budget(void)
{
	uint8_t *buf = vm_small_alloc(64 * SZ_4K);
	struct dme_engine *e;
	uint64_t iova;
	int err, good = 0;

	e = open_engine(8, &err);
	if (!tap_ret(err, 0, "budget: open with DME_CACHE_ENTRIES=8") || !buf)
		return;
	for (int i = 0; i < 8; i++)
		good += dme_register(e, buf + 2 * i * SZ_4K, SZ_4K, DME_MAP_RW, &iova) == 0;
	tap_eq_u64((uint64_t)good, 8, "budget: 8 mappings fit");
	dg_log_reset();
	tap_ret(dme_register(e, buf + 40 * SZ_4K, SZ_4K, DME_MAP_RW, &iova), -ENOSPC,
		"budget: the 9th is -ENOSPC");
	tap_check(strstr(dg_log_last(), "DME_CACHE_ENTRIES") != NULL,
		  "budget: ... and the message names DME_CACHE_ENTRIES");
	check_counts(e, "budget");
	dme_engine_close(e);
	munmap(buf, 64 * SZ_4K);
}

/* ---- dma_entry_limit=64 ------------------------------------------------- */

static void scenario_limit(void)
{
	enum { L = 64 };
	uint8_t *buf = vm_small_alloc(4 * L * SZ_4K);
	struct dme_engine_stats st;
	struct dme_engine *e;
	uint64_t iova, kernel;
	int err, good = 0;

	e = open_engine(0, &err);
	if (!tap_ret(err, 0, "limit: open on the container with dma_entry_limit 64") || !buf)
		return;
	struct vfio_ctx v = ctx_of(e);
	tap_eq_u64((uint64_t)vfio_dma_avail(&v), L, "limit: DMA_AVAIL is 64");
	for (int i = 0; i < L; i++)
		good += dme_register(e, buf + 2 * i * SZ_4K, SZ_4K, DME_MAP_RW, &iova) == 0;
	tap_eq_u64((uint64_t)good, L, "limit: 64 separate registrations succeed");
	tap_eq_u64((uint64_t)vfio_dma_avail(&v), 0, "limit: DMA_AVAIL is 0");
	dme_engine_stats(e, &st);
	uint64_t calls = st.map_calls;
	dg_log_reset();
	tap_ret(dme_register(e, buf + 2 * L * SZ_4K, SZ_4K, DME_MAP_RW, &iova), -ENOSPC,
		"limit: the 65th distinct mapping is -ENOSPC");
	dme_engine_stats(e, &st);
	tap_check(
	    dg_log_count(DME_LOG_ERR) == 1 && strncmp(dg_log_last(), "register:", 9) == 0,
	    "limit: ... refused by the engine itself, before any MAP_DMA (one engine message)");
	tap_check(strstr(dg_log_last(), "dma_entry_limit") != NULL &&
		      strstr(dg_log_last(), "64") != NULL,
		  "limit: ... and the message names the container's dma_entry_limit of 64");
	tap_diag("limit: dme said: %s", dg_log_last());
	tap_check(st.map_calls == calls && counts_agree(e, &kernel) && kernel == L,
		  "limit: still 64 mappings in dme and in the container");

	tap_ret(dme_unregister(e, buf + 2 * 7 * SZ_4K, SZ_4K), 0,
		"limit: unregister one (it stays idle)");
	tap_ret(dme_register(e, buf + 2 * L * SZ_4K, SZ_4K, DME_MAP_RW, &iova), 0,
		"limit: now the 65th fits: the idle mapping is evicted for it");
	dme_engine_stats(e, &st);
	tap_check(st.evictions == 1 && st.live_mappings == L && counts_agree(e, &kernel) &&
		      kernel == L,
		  "limit: one eviction, 64 live in dme and in the container");
	tap_check(dg_balanced(e), "limit: stats balance");

	/* 256 VA-contiguous buffers take one entry: coalescing fits a full container. */
	static struct dme_region_req q[256];
	uint8_t *big = vm_small_alloc(256 * SZ_4K);
	tap_ret(dme_unregister(e, buf, SZ_4K), 0, "limit: unregister another one");
	for (int i = 0; big && i < 256; i++)
		q[i] = (struct dme_region_req){big + (size_t)i * SZ_4K, SZ_4K, DME_MAP_RW, 0};
	tap_ret(big ? dme_register_batch(e, q, 256) : -ENOMEM, 0,
		"limit: a batch of 256 contiguous buffers fits in the one free entry");
	tap_check(counts_agree(e, &kernel) && kernel == L, "limit: 64 entries in the container");

	bool unreg = true;
	for (int i = 0; i <= L; i++)
		if (i != 0 && i != 7)
			unreg &= dme_unregister(e, buf + 2 * i * SZ_4K, SZ_4K) == 0;
	for (int i = 0; big && i < 256; i++)
		unreg &= dme_unregister(e, q[i].va, SZ_4K) == 0;
	tap_check(unreg, "limit: unregister everything");
	tap_ret(dme_engine_flush(e), 0, "limit: flush");
	tap_eq_u64((uint64_t)vfio_dma_avail(&v), L, "limit: DMA_AVAIL back to 64");
	tap_check(dg_balanced(e), "limit: stats balance");
	dme_engine_close(e);
	if (big)
		munmap(big, 256 * SZ_4K);
	munmap(buf, 4 * L * SZ_4K);
}

/*
 * An engine opened before any device: the container has no IOMMU yet, so
 * registrations are recorded and replayed by dme_engine_attach(), and the
 * entry limit is only known from then on.
 */
static void scenario_limit_attach(void)
{
	enum { L = 64 };
	uint8_t *buf = vm_small_alloc(4 * L * SZ_4K);
	struct dme_engine_stats st;
	struct dme_iova_range r[4];
	struct dme_engine *e = NULL;
	struct dme_config c;
	uint64_t iova[L + 1] = {0}, kernel, align, x;
	int good = 0;

	dme_config_init(&c);
	c.backend = DME_BACKEND_VFIO;
	if (!tap_ret(dme_engine_open(&c, &e), 0, "attach: open the vfio engine with no device") ||
	    !buf)
		return;
	tap_ret(dme_register(e, buf, SZ_4K, DME_MAP_RW, &iova[0]), 0,
		"attach: register before any device (recorded)");
	tap_ret(dme_register(e, buf + 2 * SZ_4K, SZ_4K, DME_MAP_READ, &iova[1]), 0,
		"attach: and a read-only one");
	tap_check(dme_vtoiova(e, buf, &x) == 0 && x == iova[0], "attach: it translates already");
	tap_ret(dme_engine_attach(e, dev.bdf), 0, "attach: dme_engine_attach(%s)", dev.bdf);
	dme_engine_stats(e, &st);
	tap_check(st.replays == 2 && st.live_mappings == 2,
		  "attach: both recorded mappings replayed");
	struct vfio_ctx v = ctx_of(e);
	tap_eq_u64((uint64_t)vfio_dma_avail(&v), L - 2, "attach: DMA_AVAIL is 62");
	kernel_holds(e, buf, iova[0], SZ_4K, false, "attach: replayed");
	size_t n = dme_engine_geometry(e, r, 4, &align);
	tap_check(n == 2 && r[0].last == MSI_START - 1 && r[1].start == MSI_LAST + 1 &&
		      r[1].last == APERTURE_LAST,
		  "attach: the geometry is now the container's (2 ranges)");
	for (int i = 2; i < L; i++)
		good += dme_register(e, buf + 2 * i * SZ_4K, SZ_4K, DME_MAP_RW, &iova[i]) == 0;
	tap_eq_u64((uint64_t)good, L - 2, "attach: 62 more registrations fill the container");
	dg_log_reset();
	tap_ret(dme_register(e, buf + 2 * L * SZ_4K, SZ_4K, DME_MAP_RW, &iova[L]), -ENOSPC,
		"attach: the 65th is -ENOSPC");
	tap_check(strncmp(dg_log_last(), "register:", 9) == 0 &&
		      strstr(dg_log_last(), "dma_entry_limit"),
		  "attach: ... refused by the engine, which learnt the limit at attach");
	tap_diag("attach: dme said: %s", dg_log_last());
	tap_ret(dme_unregister(e, buf + 2 * 9 * SZ_4K, SZ_4K), 0, "attach: unregister one");
	tap_ret(dme_register(e, buf + 2 * L * SZ_4K, SZ_4K, DME_MAP_RW, &iova[L]), 0,
		"attach: the 65th fits now: the idle one is evicted for it");
	tap_check(counts_agree(e, &kernel) && kernel == L,
		  "attach: 64 in dme and in the container");
	bool unreg = dme_unregister(e, buf + 2 * SZ_4K, SZ_4K) == 0;
	for (int i = 0; i <= L; i++)
		if (i != 1 && i != 9)
			unreg &= dme_unregister(e, buf + 2 * i * SZ_4K, SZ_4K) == 0;
	tap_check(unreg && dme_engine_flush(e) == 0 && counts_agree(e, &kernel) && kernel == 0,
		  "attach: unregister and flush everything: the container is empty");
	tap_check(dg_balanced(e), "attach: stats balance");
	dme_engine_close(e);
	munmap(buf, 4 * L * SZ_4K);
}

int main(void)
{
	struct dme_engine *e;
	int err;

	tap_init("engine-vfio");
	dg_log_install(DME_LOG_INFO);
	dev = vm_first_vfio_nvme();
	limit = vfio_dma_entry_limit();
	tap_check(limit > 0, "vfio_iommu_type1.dma_entry_limit is readable (%ld)", limit);

	if (limit == 64) {
		scenario_limit();
		scenario_limit_attach();
		return tap_done();
	}
	e = open_engine(0, &err);
	if (!tap_ret(err, 0, "open: dme_engine_open(vfio, %s)", dev.bdf))
		tap_fatal("engine on the type1 container");
	tap_check(strcmp(dme_engine_backend_name(e), "vfio") == 0, "open: the backend is vfio");
	check_geometry(e);
	{
		/* while this engine holds the group, no other engine gets the device */
		struct dme_config c;
		struct dme_engine *e2 = NULL;
		dme_config_init(&c);
		c.nr_devices = 1;
		snprintf(c.devices[0], sizeof(c.devices[0]), "%s", dev.bdf);
		for (int b = 0; b < 2; b++) {
			c.backend = b ? DME_BACKEND_VFIO : DME_BACKEND_IOMMUFD;
			dg_log_reset();
			err = dme_engine_open(&c, &e2);
			tap_ret(err, -EBUSY,
				"open: a second engine (%s) on the device this one holds is -EBUSY",
				dme_backend_name(c.backend));
			tap_diag("open: dme said: %s", dg_log_last());
			tap_check(strstr(dg_log_last(), "in use") != NULL,
				  "open: ... and the message says it is in use");
			if (!err)
				dme_engine_close(e2);
		}
	}
	scenario_anon(e);
	scenario_huge(e);
	scenario_batch(e);
	scenario_inject(e);
	scenario_reattach(e);
	dme_engine_close(e);
	scenario_budget();
	tap_skip("vm-vfio-limit boots with dma_entry_limit=64 for it",
		 "limit: the engine keeps within dma_entry_limit on its own");
	return tap_done();
}
