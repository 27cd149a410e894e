/* SPDX-License-Identifier: MIT */
/*
 * Guest check of dme's engine against the kernel's iommufd mock domain
 * (CONFIG_IOMMUFD_TEST, the 'mock' shape: no VT-d, no device). The engine
 * runs on iommufd with no device; the test attaches a mock domain to the
 * engine's own IOAS (IOMMU_TEST_CMD MOCK_DOMAIN) and lets the engine take the
 * new geometry (dme__engine_refresh). Then, for every buffer dme says is
 * registered, MD_CHECK_MAP compares the mock IO page table at dme's IOVA with
 * the pages at dme's VA, and MD_CHECK_REFS checks the pin count of each
 * 4 KiB page: 1 while mapped (registered or idle), 0 once the engine has
 * unmapped it. Built against the running kernel tree's iommufd_test.h.
 */
#include "dmeguest.h"
#include "ioas.h"
#include "vmtest.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/iommufd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <dme/engine.h>
#include <dme/mem.h>

#include "guest-kernel.h"
#include "internal.h"
#include "iommufd_test.h"

#define APERTURE_START 0x1000000ull
#define APERTURE_LAST 0x7fffffffull

static int test_cmd(struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return ioctl(vm_iommufd, IOMMU_TEST_CMD, c) ? -errno : 0;
}

static int mock_domain(uint32_t ioas, uint32_t *stdev, uint32_t *hwpt)
{
	struct iommu_test_cmd c = {.op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas};
	int ret = test_cmd(&c);

	if (!ret) {
		*stdev = c.mock_domain.out_stdev_id;
		*hwpt = c.mock_domain.out_hwpt_id;
	}
	return ret;
}

static int check_map(uint32_t hwpt, uint64_t iova, uint64_t len, const void *p)
{
	struct iommu_test_cmd c = {
	    .op = IOMMU_TEST_OP_MD_CHECK_MAP,
	    .id = hwpt,
	    .check_map = {.iova = iova, .length = len, .uptr = (uintptr_t)p},
	};

	return test_cmd(&c);
}

static int check_refs(const void *p, uint64_t len, uint32_t refs)
{
	struct iommu_test_cmd c = {
	    .op = IOMMU_TEST_OP_MD_CHECK_REFS,
	    .check_refs = {.length = len, .uptr = (uintptr_t)p, .refs = refs},
	};

	return test_cmd(&c);
}

static int destroy(uint32_t id)
{
	struct iommu_destroy d = {.size = sizeof(d), .id = id};

	return ioctl(vm_iommufd, IOMMU_DESTROY, &d) ? -errno : 0;
}

/* One buffer the test registers: where, how long, 4 KiB pages or not. */
struct buf {
	const char *name;
	uint8_t *va;
	uint64_t len;
	bool small; /* 4 KiB pages: MD_CHECK_REFS counts them (it skips compound pages) */
	uint64_t iova;
};

/*
 * Every page of every buffer, as dme translates it (dme_vtoiova), is mapped
 * in the mock domain to that very page. Returns the number of pages that
 * are not.
 */
static int check_all_maps(struct dme_engine *e, uint32_t hwpt, struct buf *b, int n)
{
	int bad = 0;

	for (int i = 0; i < n; i++) {
		for (uint64_t off = 0; off < b[i].len; off += SZ_4K) {
			uint64_t iova;
			int ret = dme_vtoiova(e, b[i].va + off, &iova);
			if (!ret)
				ret = check_map(hwpt, iova, SZ_4K, b[i].va + off);
			if (ret) {
				if (bad++ < 4)
					tap_diag("  %s +0x%" PRIx64 ": %s", b[i].name, off,
						 strerror(-ret));
			}
		}
	}
	return bad;
}

/* MD_CHECK_REFS of every 4 KiB-page buffer. Returns how many disagree. */
static int check_all_refs(struct buf *b, int n, uint32_t refs)
{
	int bad = 0;

	for (int i = 0; i < n; i++)
		if (b[i].small && check_refs(b[i].va, b[i].len, refs) != 0) {
			bad++;
			tap_diag("  %s: MD_CHECK_REFS %u fails", b[i].name, refs);
		}
	return bad;
}

static struct dme_engine *open_engine(bool window)
{
	struct dme_config c;
	struct dme_engine *e = NULL;

	dme_config_init(&c);
	c.backend = DME_BACKEND_IOMMUFD;
	c.nr_devices = 0;
	if (window) {
		c.allow_iovas_set = true;
		c.allow_iova_start = APERTURE_START;
		c.allow_iova_last = APERTURE_LAST;
	}
	return dme_engine_open(&c, &e) ? NULL : e;
}

/*
 * The main run: an engine whose IOVA window is the mock aperture, buffers
 * registered before and after the mock domain arrives.
 */
static void run_window(void)
{
	enum { EARLY = 0, SINGLE, BATCH_RUN, BATCH_SEP, RO, HUGE, NR };
	struct buf b[NR] = {
	    [EARLY] = {"early (before the domain)", NULL, 16 * SZ_4K, true, 0},
	    [SINGLE] = {"single", NULL, 64 * SZ_4K, true, 0},
	    [BATCH_RUN] = {"batched run", NULL, 32 * SZ_4K, true, 0},
	    [BATCH_SEP] = {"batched separate", NULL, 4 * SZ_4K, true, 0},
	    [RO] = {"read-only", NULL, 4 * SZ_4K, true, 0},
	    [HUGE] = {"hugepage", NULL, SZ_2M, false, 0},
	};
	struct dme_iova_range r[4];
	struct dme_mem *hm = NULL;
	struct dme_mem_params p;
	struct dme_engine *e;
	struct dg_ifd k;
	uint32_t stdev = 0, hwpt = 0;
	uint64_t align, x;
	size_t n;

	e = open_engine(true);
	if (!tap_check(e != NULL,
		       "window: open iommufd with no device, IOVA window 0x1000000-0x7fffffff") ||
	    !tap_ret(dg_ifd_init(e, &k), 0, "window: probe IOAS"))
		tap_fatal("engine on iommufd without a device");
	vm_iommufd = k.fd;
	n = dme_engine_geometry(e, r, 4, &align);
	tap_check(n == 1 && r[0].start == APERTURE_START && r[0].last == APERTURE_LAST,
		  "window: the geometry is the window");

	for (int i = 0; i < NR; i++)
		if (b[i].small && !(b[i].va = vm_small_alloc(b[i].len)))
			tap_fatal("mmap %s", b[i].name);
	dme_mem_params_init(&p, SZ_2M);
	p.hugepage = DME_HUGEPAGE_2M;
	p.flags = DME_MEM_F_STRICT;
	if (!tap_ret(dme_mem_alloc(&p, &hm), 0, "dme_mem_alloc one 2 MiB hugepage"))
		tap_fatal("hugepage memory");
	b[HUGE].va = hm->va;

	tap_ret(check_refs(b[EARLY].va, b[EARLY].len, 0), 0,
		"early: MD_CHECK_REFS 0 before anything");
	tap_ret(dme_register(e, b[EARLY].va, b[EARLY].len, DME_MAP_RW, &b[EARLY].iova), 0,
		"early: register 64 KiB before any domain");
	tap_ret(check_refs(b[EARLY].va, b[EARLY].len, 0), 0,
		"early: MD_CHECK_REFS still 0 (an IOAS without a domain does not pin)");

	if (!tap_ret(mock_domain(k.ioas, &stdev, &hwpt), 0, "MOCK_DOMAIN on the engine's IOAS %u",
		     k.ioas)) {
		if (access("/sys/class/iommu/dmar0", F_OK) == 0)
			tap_diag("a VT-d IOMMU is present: boot this program in the 'mock' shape");
		tap_fatal("mock domain attached to the engine's IOAS");
	}
	tap_ret(dme__engine_refresh(e), 0, "dme__engine_refresh takes the mock geometry");
	n = dme_engine_geometry(e, r, 4, &align);
	tap_check(n == 1 && r[0].start == APERTURE_START && r[0].last == APERTURE_LAST,
		  "refresh: one range 0x1000000-0x7fffffff (got %zu, 0x%" PRIx64 "-0x%" PRIx64 ")",
		  n, r[0].start, r[0].last);
	tap_eq_u64(align, SZ_4K,
		   "refresh: the engine uses 4 KiB (the mock domain's 2 KiB is finer)");
	tap_ret(check_map(hwpt, b[EARLY].iova, b[EARLY].len, b[EARLY].va), 0,
		"early: MD_CHECK_MAP finds it in the mock domain after the attach");
	tap_ret(check_refs(b[EARLY].va, b[EARLY].len, 1), 0, "early: MD_CHECK_REFS 1 now");

	/* single, batched (one run + separate pages), read-only, hugepage */
	tap_ret(dme_register(e, b[SINGLE].va, b[SINGLE].len, DME_MAP_RW, &b[SINGLE].iova), 0,
		"single: register 256 KiB");
	struct dme_region_req q[32 + 2];
	for (int i = 0; i < 32; i++)
		q[i] = (struct dme_region_req){b[BATCH_RUN].va + (31 - i) * SZ_4K, SZ_4K,
					       DME_MAP_RW, 0};
	q[32] = (struct dme_region_req){b[BATCH_SEP].va, SZ_4K, DME_MAP_RW, 0};
	q[33] = (struct dme_region_req){b[BATCH_SEP].va + 2 * SZ_4K, SZ_4K, DME_MAP_RW, 0};
	struct dme_engine_stats st0, st;
	dme_engine_stats(e, &st0);
	tap_ret(dme_register_batch(e, q, 34), 0,
		"batch: 32 contiguous pages (reversed) and 2 separate ones in one batch");
	dme_engine_stats(e, &st);
	tap_eq_u64(st.map_calls - st0.map_calls, 3, "batch: three IOAS_MAP (one run, two pages)");
	b[BATCH_RUN].iova = q[31].iova;
	tap_ret(dme_register(e, b[RO].va, b[RO].len, DME_MAP_READ, &b[RO].iova), 0,
		"read-only: register 16 KiB read-only");
	tap_ret(dme_register(e, b[HUGE].va, b[HUGE].len, DME_MAP_RW, &b[HUGE].iova), 0,
		"hugepage: register 2 MiB");

	/* BATCH_SEP has pages 0 and 2 registered, not 1 and 3 */
	struct buf sep[2] = {
	    {"batched separate 0", b[BATCH_SEP].va, SZ_4K, true, q[32].iova},
	    {"batched separate 2", b[BATCH_SEP].va + 2 * SZ_4K, SZ_4K, true, q[33].iova}};
	struct buf all[NR + 1];
	int na = 0;
	for (int i = 0; i < NR; i++)
		if (i != BATCH_SEP)
			all[na++] = b[i];
	all[na++] = sep[0];
	all[na++] = sep[1];
	bool inside = true;
	for (int i = 0; i < na; i++) {
		all[i].iova = 0;
		dme_vtoiova(e, all[i].va, &all[i].iova);
		inside &=
		    all[i].iova >= APERTURE_START && all[i].iova + all[i].len - 1 <= APERTURE_LAST;
	}
	tap_check(inside, "every IOVA dme reports lies in the mock aperture");
	tap_eq_u64(
	    (uint64_t)check_all_maps(e, hwpt, all, na), 0,
	    "MD_CHECK_MAP: every page of every registration is mapped at dme's IOVA to dme's VA");
	tap_eq_u64((uint64_t)check_all_refs(all, na, 1), 0,
		   "MD_CHECK_REFS: every 4 KiB page is pinned exactly once");
	tap_ret(check_refs(b[BATCH_SEP].va + SZ_4K, SZ_4K, 0), 0,
		"MD_CHECK_REFS: the page between the two separate ones is not pinned");
	tap_ret(check_map(hwpt, b[SINGLE].iova, SZ_4K, b[SINGLE].va + SZ_4K), -EINVAL,
		"MD_CHECK_MAP with the VA shifted by a page fails EINVAL (the check has teeth)");

	/* a cache hit maps and pins nothing more */
	dme_engine_stats(e, &st0);
	tap_ret(dme_register(e, b[SINGLE].va + 8 * SZ_4K, 8 * SZ_4K, DME_MAP_READ, &x), 0,
		"cache hit: a read-only sub-range of the single buffer");
	dme_engine_stats(e, &st);
	tap_check(st.map_calls == st0.map_calls && x == b[SINGLE].iova + 8 * SZ_4K &&
		      check_refs(b[SINGLE].va, b[SINGLE].len, 1) == 0,
		  "cache hit: no IOAS_MAP, IOVA inside the mapping, pin count still 1");
	tap_ret(dme_unregister(e, b[SINGLE].va + 8 * SZ_4K, 8 * SZ_4K), 0,
		"cache hit: unregister it");
	tap_check(dg_balanced(e), "stats balance with everything registered");

	/* unregister: idle mappings stay pinned until the flush */
	bool unreg = dme_unregister(e, b[EARLY].va, b[EARLY].len) == 0 &&
		     dme_unregister(e, b[SINGLE].va, b[SINGLE].len) == 0 &&
		     dme_unregister(e, b[RO].va, b[RO].len) == 0 &&
		     dme_unregister(e, b[HUGE].va, b[HUGE].len) == 0;
	for (int i = 0; i < 34; i++)
		unreg &= dme_unregister(e, q[i].va, SZ_4K) == 0;
	tap_check(unreg, "unregister every buffer");
	tap_eq_u64((uint64_t)check_all_refs(all, na, 1), 0,
		   "idle: unregistered but not flushed, every page is still pinned once");
	tap_ret(dme_engine_flush(e), 0, "dme_engine_flush");
	tap_eq_u64(
	    (uint64_t)check_all_refs(all, na, 0), 0,
	    "flushed: MD_CHECK_REFS 0 for every page: pin counts are back where they started");
	int still = 0;
	for (int i = 0; i < na; i++)
		still += check_map(hwpt, all[i].iova, SZ_4K, all[i].va) != -EINVAL;
	tap_eq_u64((uint64_t)still, 0,
		   "flushed: MD_CHECK_MAP finds none of them in the mock domain");
	tap_eq_u64(dg_ifd_unmap_all(&k), 0, "flushed: the IOAS holds nothing");
	tap_check(dg_balanced(e), "stats balance after the flush");

	/* coherence on the real kernel: an idle mapping whose memory was
	 * replaced (munmap, mmap at the same address) is never served again */
	tap_check(dme_engine_cache_monitor(e) != NULL,
		  "coherence: the engine watches caller memory (%s)",
		  dme_engine_cache_monitor(e) ? dme_engine_cache_monitor(e) : "no monitor");
	{
		const uint64_t len = 16 * SZ_4K;
		uint8_t *c = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
				  0);
		uint64_t ci = 0, cj = 0;
		memset(c, 1, len);
		bool reg = dme_register(e, c, len, DME_MAP_RW, &ci) == 0 &&
			   dme_unregister(e, c, len) == 0;
		tap_check(reg && check_refs(c, len, 1) == 0,
			  "coherence: registered and unregistered, the old pages stay pinned (idle)");
		munmap(c, len);
		uint8_t *d = mmap(c, len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		memset(d, 2, len);
		dme_engine_stats(e, &st0);
		tap_ret(d == c ? dme_register(e, d, len, DME_MAP_RW, &cj) : -1, 0,
			"coherence: new memory at the same address registers");
		dme_engine_stats(e, &st);
		tap_check(st.cache_hits == st0.cache_hits && st.map_calls == st0.map_calls + 1,
			  "coherence: it was mapped anew, not served from the cache");
		tap_ret(check_map(hwpt, cj, len, d), 0,
			"coherence: MD_CHECK_MAP: its IOVA maps the new pages");
		tap_ret(check_refs(d, len, 1), 0, "coherence: the new pages are pinned once");
		tap_ret(dme_unregister(e, d, len), 0, "coherence: unregister");
		tap_ret(dme_engine_flush(e), 0, "coherence: flush");
		tap_ret(check_refs(d, len, 0), 0, "coherence: after the flush nothing stays pinned");
		munmap(d, len);
	}
	tap_check(dg_balanced(e), "coherence: stats balance");

	tap_ret(destroy(stdev), 0, "DESTROY the mock device");
	dg_ifd_fini(&k);
	dme_engine_close(e);
	dme_mem_free(hm);
	for (int i = 0; i < NR; i++)
		if (b[i].small)
			munmap(b[i].va, b[i].len);
}

/*
 * No window: the IOAS of an engine without a device is [0, 2^64-1], so an
 * early registration lands outside the mock aperture and the kernel refuses
 * the domain; without one, refresh narrows the allocator to the aperture.
 */
static void run_no_window(void)
{
	struct dme_iova_range r[4];
	struct dme_engine *e = open_engine(false);
	struct dg_ifd k;
	uint32_t stdev = 0, hwpt = 0;
	uint8_t *buf = vm_small_alloc(8 * SZ_4K);
	uint64_t iova = 0, align;

	if (!tap_check(e != NULL && buf, "no window: open iommufd with no device") ||
	    !tap_ret(dg_ifd_init(e, &k), 0, "no window: probe IOAS"))
		return;
	vm_iommufd = k.fd;
	tap_ret(dme_register(e, buf, SZ_4K, DME_MAP_RW, &iova), 0, "no window: register a page");
	tap_diag("no window: the page got IOVA 0x%" PRIx64, iova);
	int ret = mock_domain(k.ioas, &stdev, &hwpt);
	if (iova < APERTURE_START) {
		tap_ret(
		    ret, -EADDRINUSE,
		    "no window: MOCK_DOMAIN is refused (the page is mapped below the aperture)");
		tap_ret(dme_unregister(e, buf, SZ_4K), 0, "no window: unregister it");
		tap_ret(dme_engine_flush(e), 0, "no window: flush");
		ret = mock_domain(k.ioas, &stdev, &hwpt);
	}
	if (!tap_ret(ret, 0, "no window: MOCK_DOMAIN on the (now empty) IOAS"))
		goto out;
	tap_ret(dme__engine_refresh(e), 0, "no window: refresh");
	size_t n = dme_engine_geometry(e, r, 4, &align);
	tap_check(n == 1 && r[0].start == APERTURE_START && r[0].last == APERTURE_LAST,
		  "no window: the geometry is the mock aperture (got %zu, 0x%" PRIx64 "-0x%" PRIx64
		  ")",
		  n, r[0].start, r[0].last);
	struct dme_region_req q[4];
	for (int i = 0; i < 4; i++)
		q[i] = (struct dme_region_req){buf + 2 * i * SZ_4K, SZ_4K, DME_MAP_RW, 0};
	tap_ret(dme_register_batch(e, q, 4), 0, "no window: register 4 separate pages");
	int bad = 0;
	for (int i = 0; i < 4; i++)
		bad += q[i].iova < APERTURE_START || q[i].iova + SZ_4K - 1 > APERTURE_LAST ||
		       check_map(hwpt, q[i].iova, SZ_4K, q[i].va) != 0 ||
		       check_refs(q[i].va, SZ_4K, 1) != 0;
	tap_eq_u64((uint64_t)bad, 0,
		   "no window: each inside the aperture, in the mock domain, pinned once");
	for (int i = 0; i < 4; i++)
		dme_unregister(e, q[i].va, SZ_4K);
	tap_ret(dme_engine_flush(e), 0, "no window: unregister and flush");
	bad = 0;
	for (int i = 0; i < 4; i++)
		bad += check_refs(q[i].va, SZ_4K, 0) != 0;
	tap_eq_u64((uint64_t)bad, 0, "no window: pin counts back to 0");
	tap_check(dg_balanced(e), "no window: stats balance");
	tap_ret(destroy(stdev), 0, "no window: DESTROY the mock device");
out:
	dg_ifd_fini(&k);
	dme_engine_close(e);
	munmap(buf, 8 * SZ_4K);
}

int main(void)
{
	tap_init("engine-mock");
	dg_log_install(DME_LOG_INFO);
	run_window();
	run_no_window();
	return tap_done();
}
