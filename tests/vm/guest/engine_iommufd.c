/* SPDX-License-Identifier: MIT */
/*
 * Guest check of dme's engine on the iommufd backend, against the real
 * kernel: an NVMe controller bound to vfio-pci behind QEMU's emulated VT-d
 * (aw-bits 39). It mirrors tests/test-engine.c (which runs on the
 * simulator), and after each scenario asks the kernel - not the engine -
 * what the engine's IOAS holds (dmeguest.h): every region dme reports is
 * mapped exactly, nothing else is, and a failed call leaves nothing behind.
 */
#include "dmeguest.h"
#include "ioas.h"
#include "vmtest.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <linux/iommufd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dme/engine.h>
#include <dme/mem.h>

#include "ioctl.h"

/* QEMU intel-iommu, aw-bits=39: everything below 2^39 except the MSI window. */
#define MSI_START 0xfee00000ull
#define MSI_LAST 0xfeefffffull
#define APERTURE_LAST 0x7fffffffffull

#define SZ_32M (32 * SZ_1M)

static struct vm_nvme dev;

static struct dme_engine *open_engine(const struct dme_config *base, int *err)
{
	struct dme_config c;
	struct dme_engine *e = NULL;

	if (base) {
		c = *base;
	} else {
		dme_config_init(&c);
		c.backend = DME_BACKEND_IOMMUFD;
		c.nr_devices = 1;
		snprintf(c.devices[0], sizeof(c.devices[0]), "%s", dev.bdf);
	}
	*err = dme_engine_open(&c, &e);
	return *err ? NULL : e;
}

/* Inside the VT-d geometry, off the MSI window, page aligned. */
static bool iova_ok(uint64_t iova, uint64_t len)
{
	uint64_t last = iova + len - 1;

	return len && last >= iova && !(iova & (SZ_4K - 1)) && last <= APERTURE_LAST &&
	       (last < MSI_START || iova > MSI_LAST);
}

/* The kernel holds [iova, +len) mapped from va with the right permission
 * and, when @alone (no other registration next to it), nothing in the
 * pages just around it. */
static bool kernel_holds(struct dg_ifd *k, const void *va, uint64_t iova, uint64_t len, bool write,
			 bool alone, const char *what)
{
	int mapped = dg_ifd_mapped(k, iova, len, write);
	int before = alone && iova >= SZ_4K ? dg_ifd_free(k, iova - SZ_4K, SZ_4K) : 0;
	int after = alone ? dg_ifd_free(k, iova + len, SZ_4K) : 0;
	uint64_t got = 0;
	int exact = dg_ifd_exact(k, va, iova, len, write, &got);
	bool good = !mapped && !before && !after && !exact && got == len;

	tap_check(good, "%s: the kernel maps exactly IOVA [0x%" PRIx64 ", +0x%" PRIx64 ")%s", what,
		  iova, len, write ? " writable" : "");
	if (!good)
		tap_diag("  copy probe %d, page before %d, page after %d, exact unmap %d removed "
			 "0x%" PRIx64,
			 mapped, before, after, exact, got);
	return good;
}

/* ---- geometry ------------------------------------------------------------- */

static void check_geometry(struct dme_engine *e, struct dg_ifd *k)
{
	struct dme_iova_range r[8];
	struct iommu_iova_range kr[8];
	uint64_t align = 0, kalign = 0;
	size_t n = dme_engine_geometry(e, r, 8, &align);

	tap_eq_u64(n, 2, "geometry: dme_engine_geometry reports 2 ranges");
	/* the kernel's range 0 starts at 0; dme keeps IOVA page 0 out of use */
	tap_check(n >= 1 && r[0].start == 0x1000 && r[0].last == MSI_START - 1,
		  "geometry: range 0 is 0x1000-0xfedfffff: the kernel's 0x0-0xfedfffff without page 0 (got 0x%" PRIx64 "-0x%" PRIx64 ")",
		  r[0].start, r[0].last);
	tap_check(n >= 2 && r[1].start == MSI_LAST + 1 && r[1].last == APERTURE_LAST,
		  "geometry: range 1 is 0xfef00000-0x7fffffffff (got 0x%" PRIx64 "-0x%" PRIx64 ")",
		  r[1].start, r[1].last);
	tap_eq_u64(align, 0x1000, "geometry: alignment 0x1000");
	int kn = ioas_iova_ranges(k->ioas, kr, 8, &kalign);
	bool same = kn == (int)n && kalign == align;
	for (int i = 0; same && i < kn; i++)
		same = (kr[i].start == r[i].start || (i == 0 && kr[0].start == 0 && r[0].start == 0x1000)) &&
		       kr[i].last == r[i].last;
	tap_check(same, "geometry: IOAS_IOVA_RANGES of the engine's IOAS %u, less page 0", k->ioas);
}

/* ---- anonymous 4 KiB memory ------------------------------------------------ */

static void scenario_anon(struct dme_engine *e, struct dg_ifd *k)
{
	const uint64_t len = 64 * SZ_4K;
	uint8_t *buf = vm_small_alloc(len), *ro = vm_small_alloc(4 * SZ_4K);
	struct dme_engine_stats st;
	uint64_t iova = 0, ro_iova = 0, x = 0;

	if (!buf || !ro)
		tap_fatal("anon: mmap 64 + 4 pages");
	if (!tap_ret(dme_register(e, buf, len, DME_MAP_RW, &iova), 0, "anon: register 256 KiB RW"))
		return;
	tap_check(iova_ok(iova, len),
		  "anon: IOVA 0x%" PRIx64 " inside the geometry, off the MSI window", iova);
	tap_check(dme_vtoiova(e, buf + 5 * SZ_4K + 7, &x) == 0 && x == iova + 5 * SZ_4K + 7,
		  "anon: dme_vtoiova inside the buffer");
	dme_engine_stats(e, &st);
	tap_check(st.map_calls == 1 && st.live_mappings == 1 && st.pinned_bytes == len,
		  "anon: one map call, one live mapping, 256 KiB pinned");
	kernel_holds(k, buf, iova, len, true, true, "anon");

	tap_ret(dme_register(e, ro, 4 * SZ_4K, DME_MAP_READ, &ro_iova), 0,
		"anon: register 16 KiB read-only (a transmit buffer)");
	tap_ret(dg_ifd_mapped(k, ro_iova, 4 * SZ_4K, false), 0,
		"anon: the kernel maps the read-only buffer readable");
	tap_ret(dg_ifd_mapped(k, ro_iova, 4 * SZ_4K, true), -EPERM,
		"anon: ... and not writable (IOAS_COPY with WRITEABLE fails EPERM)");

	tap_ret(dme_unregister(e, buf, len), 0, "anon: unregister");
	tap_ret(dg_ifd_mapped(k, iova, len, true), 0,
		"anon: an unregistered mapping stays mapped in the kernel (idle)");
	tap_ret(dme_register(e, buf, len, DME_MAP_RW, &x), 0, "anon: register it again");
	dme_engine_stats(e, &st);
	tap_check(x == iova && st.map_calls == 2 && st.cache_hits == 1,
		  "anon: same IOVA, served by the idle mapping without a kernel call");
	tap_ret(dme_unregister(e, buf, len), 0, "anon: unregister again");
	tap_ret(dme_unregister(e, ro, 4 * SZ_4K), 0, "anon: unregister the read-only buffer");
	tap_ret(dme_engine_flush(e), 0, "anon: dme_engine_flush");
	tap_check(dme_vtoiova(e, buf, &x) == -ENOENT, "anon: no translation after the flush");
	tap_check(dg_ifd_free(k, iova, SZ_4K) == 0 &&
		      dg_ifd_free(k, iova + len - SZ_4K, SZ_4K) == 0 &&
		      dg_ifd_free(k, ro_iova, SZ_4K) == 0,
		  "anon: the kernel no longer maps either buffer");
	tap_eq_u64(dg_ifd_unmap_all(k), 0, "anon: IOAS_UNMAP of everything finds nothing left");
	tap_check(dg_balanced(e), "anon: stats balance, dme_engine_check() == 0");
	munmap(buf, len);
	munmap(ro, 4 * SZ_4K);
}

/* ---- hugepage memory from dme_mem_alloc ------------------------------------ */

static void scenario_huge(struct dme_engine *e, struct dg_ifd *k)
{
	struct dme_mem_params p;
	struct dme_mem *m = NULL;
	uint8_t *page = vm_small_alloc(SZ_4K);
	uint64_t iova = 0, page_iova = 0;

	dme_mem_params_init(&p, 4 * SZ_2M);
	p.hugepage = DME_HUGEPAGE_2M;
	p.flags = DME_MEM_F_STRICT;
	if (!tap_ret(dme_mem_alloc(&p, &m), 0,
		     "huge: dme_mem_alloc 8 MiB of 2 MiB hugepages (strict)"))
		return;
	tap_check(m->page_size == SZ_2M && m->source == DME_MEM_SRC_HUGETLB_MEMFD,
		  "huge: backed by 2 MiB pages from a hugetlb memfd (got %zu, %s)", m->page_size,
		  dme_mem_source_name(m->source));
	/* A 4 KiB registration first, so that the lowest free IOVA is not
	 * 2 MiB aligned: congruence below is then the engine's doing. */
	if (!page)
		tap_fatal("huge: mmap a page");
	tap_ret(dme_register(e, page, SZ_4K, DME_MAP_RW, &page_iova), 0,
		"huge: register a 4 KiB page first");
	if (!tap_ret(dme_register(e, m->va, m->len, DME_MAP_RW, &iova), 0, "huge: register it"))
		goto out;
	tap_check(iova_ok(iova, m->len), "huge: IOVA 0x%" PRIx64 " inside the geometry", iova);
	tap_diag("huge: VA %p IOVA 0x%" PRIx64 ": VA mod 2 MiB 0x%" PRIx64
		 ", IOVA mod 2 MiB 0x%" PRIx64,
		 m->va, iova, (uint64_t)((uintptr_t)m->va % SZ_2M), (uint64_t)(iova % SZ_2M));
	tap_check(iova % SZ_2M == (uintptr_t)m->va % SZ_2M,
		  "huge: IOVA congruent to the VA modulo 2 MiB (lets VT-d use 2 MiB IOPTEs)");
	kernel_holds(k, m->va, iova, m->len, true, false, "huge");
	tap_ret(dme_unregister(e, m->va, m->len), 0, "huge: unregister");
	tap_ret(dme_unregister(e, page, SZ_4K), 0, "huge: unregister the page");
	tap_ret(dme_engine_flush(e), 0, "huge: flush");
	tap_eq_u64(dg_ifd_unmap_all(k), 0, "huge: the kernel holds nothing afterwards");
	tap_check(dg_balanced(e), "huge: stats balance");
out:
	dme_mem_free(m);
	munmap(page, SZ_4K);
}

/* ---- the first range, filled ----------------------------------------------- */

#define FILL_MAX 160

struct fill {
	void *va;
	uint64_t iova, len;
};

/*
 * Large registrations need VA, not RAM: one 32 MiB hugetlb memfd is mapped
 * at many addresses, each mapping registered on its own. 127 of them fill
 * 0-0xfdffffff; what follows must skip the MSI window.
 */
static void scenario_fill(void)
{
	static struct fill f[FILL_MAX];
	struct dme_engine *e;
	struct dg_ifd k;
	int nr = 0, bad = 0, below = 0, above = 0, err;
	bool kernel_ok = true, all_ok = true;

	int fd = memfd_create("dme-fill", MFD_CLOEXEC | MFD_HUGETLB);
	if (fd < 0 || ftruncate(fd, (off_t)SZ_32M) != 0) {
		tap_check(false, "fill: a 32 MiB hugetlb memfd: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	e = open_engine(NULL, &err);
	if (!tap_ret(err, 0, "fill: a fresh engine") ||
	    !tap_ret(dg_ifd_init(e, &k), 0, "fill: probe IOAS"))
		goto out_fd;
	vm_iommufd = k.fd;

	/* 130 x 32 MiB, then 4 MiB pieces for the gap below the window,
	 * then 2 MiB and 4 KiB ones at its edge. */
	static const struct {
		int count;
		uint64_t len;
	} plan[] = {{130, SZ_32M}, {8, 4 * SZ_1M}, {2, SZ_2M}, {4, SZ_4K}};
	for (size_t s = 0; s < sizeof(plan) / sizeof(plan[0]); s++) {
		for (int i = 0; i < plan[s].count && nr < FILL_MAX; i++) {
			void *va = mmap(NULL, SZ_32M, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			if (va == MAP_FAILED) {
				all_ok = false;
				tap_diag("fill: mmap %d: %s", nr, strerror(errno));
				break;
			}
			f[nr].va = va;
			f[nr].len = plan[s].len;
			int ret = dme_register(e, va, plan[s].len, DME_MAP_RW, &f[nr].iova);
			if (ret) {
				all_ok = false;
				tap_diag("fill: registration %d of 0x%" PRIx64 ": %s", nr,
					 plan[s].len, strerror(-ret));
				munmap(va, SZ_32M);
				break;
			}
			if (!iova_ok(f[nr].iova, f[nr].len))
				bad++;
			if (f[nr].iova + f[nr].len - 1 < MSI_START)
				below++;
			else
				above++;
			nr++;
		}
	}
	tap_check(
	    all_ok && nr == 144,
	    "fill: 144 registrations (130 x 32 MiB, 8 x 4 MiB, 2 x 2 MiB, 4 x 4 KiB) succeed (%d)",
	    nr);
	tap_eq_u64((uint64_t)bad, 0,
		   "fill: no IOVA lies in 0xfee00000-0xfeefffff or beyond 0x7fffffffff");
	uint64_t top_below = 0;
	for (int i = 0; i < nr; i++)
		if (f[i].iova < MSI_START && f[i].iova + f[i].len > top_below)
			top_below = f[i].iova + f[i].len;
	tap_diag("fill: %d mappings below the MSI window (up to 0x%" PRIx64 "), %d above it", below,
		 top_below, above);
	tap_check(below >= 127 && above >= 3,
		  "fill: the first range is filled (%d below the window) and the rest spills above "
		  "it (%d)",
		  below, above);
	tap_check(top_below > MSI_START - 16 * SZ_1M,
		  "fill: the first range is used up to within 16 MiB of the window (0x%" PRIx64 ")",
		  top_below);

	/* What the kernel holds: every region (IOAS_COPY probe), and in total. */
	for (int i = 0; i < nr; i++)
		if (dg_ifd_mapped(&k, f[i].iova, f[i].len, true) != 0) {
			kernel_ok = false;
			tap_diag("fill: IOVA 0x%" PRIx64 " +0x%" PRIx64
				 " is not mapped in the kernel",
				 f[i].iova, f[i].len);
		}
	tap_check(kernel_ok, "fill: the kernel maps all %d regions", nr);
	/* placement is the allocator's choice; the edge itself must be usable */
	int edge = dg_ifd_free(&k, MSI_START - SZ_4K, SZ_4K);
	tap_check(edge == 0 || edge == -EEXIST,
		  "fill: ... the last page below the MSI window is usable (%s)",
		  edge == -EEXIST ? "in use" : edge == 0 ? "free" : strerror(-edge));
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	uint64_t total = 0;
	for (int i = 0; i < nr; i++)
		total += f[i].len;
	tap_check(st.live_mappings == (uint64_t)nr && st.pinned_bytes == total,
		  "fill: %" PRIu64 " live mappings, 0x%" PRIx64 " bytes pinned, as registered",
		  st.live_mappings, st.pinned_bytes);
	tap_check(dg_balanced(e), "fill: stats balance");

	bool unreg = true;
	for (int i = 0; i < nr; i++)
		unreg &= dme_unregister(e, f[i].va, f[i].len) == 0;
	tap_check(unreg, "fill: unregister all");
	tap_ret(dme_engine_flush(e), 0, "fill: flush");
	tap_eq_u64(dg_ifd_unmap_all(&k), 0, "fill: the kernel holds nothing afterwards");
	tap_check(dg_balanced(e), "fill: stats balance after the flush");
	dg_ifd_fini(&k);
	dme_engine_close(e);
	for (int i = 0; i < nr; i++)
		munmap(f[i].va, SZ_32M);
out_fd:
	close(fd);
}

/* ---- the IOVA window (IOAS_ALLOW_IOVAS) at the top of the aperture -------- */

static void scenario_window(void)
{
	struct dme_config c;
	struct dme_engine *e;
	struct dme_iova_range r[4];
	uint64_t align, iova[9] = {0};
	int err, ok8 = 0, inside = 0;

	dme_config_init(&c);
	c.backend = DME_BACKEND_IOMMUFD;
	c.nr_devices = 1;
	snprintf(c.devices[0], sizeof(c.devices[0]), "%s", dev.bdf);
	c.allow_iovas_set = true;
	c.allow_iova_start = APERTURE_LAST + 1 - 8 * SZ_32M;
	c.allow_iova_last = APERTURE_LAST + SZ_32M; /* past the aperture */
	dg_log_reset();
	e = open_engine(&c, &err);
	tap_check(e == NULL && err < 0,
		  "window: an IOVA window reaching past the aperture fails the open (%d %s)", err,
		  strerror(-err));
	tap_check(dg_log_count(DME_LOG_ERR) > 0, "window: ... with an error message");
	if (e)
		dme_engine_close(e);

	c.allow_iova_last = APERTURE_LAST;
	e = open_engine(&c, &err);
	if (!tap_ret(err, 0, "window: open with the window 0x7ff0000000-0x7fffffffff (256 MiB)"))
		return;
	size_t n = dme_engine_geometry(e, r, 4, &align);
	tap_check(n == 1 && r[0].start == c.allow_iova_start && r[0].last == APERTURE_LAST,
		  "window: the geometry is the window (got %zu, 0x%" PRIx64 "-0x%" PRIx64 ")", n,
		  r[0].start, r[0].last);

	int fd = memfd_create("dme-window", MFD_CLOEXEC | MFD_HUGETLB);
	void *va[9];
	if (fd < 0 || ftruncate(fd, (off_t)SZ_32M) != 0) {
		tap_check(false, "window: a 32 MiB hugetlb memfd: %s", strerror(errno));
		goto out;
	}
	for (int i = 0; i < 9; i++) {
		va[i] = mmap(NULL, SZ_32M, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (va[i] == MAP_FAILED)
			tap_fatal("window: mmap: %s", strerror(errno));
	}
	for (int i = 0; i < 8; i++) {
		if (dme_register(e, va[i], SZ_32M, DME_MAP_RW, &iova[i]) == 0) {
			ok8++;
			inside +=
			    iova[i] >= c.allow_iova_start && iova[i] + SZ_32M - 1 <= APERTURE_LAST;
		}
	}
	tap_check(ok8 == 8 && inside == 8, "window: 8 x 32 MiB fill it, all inside (%d, %d)", ok8,
		  inside);
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	uint64_t calls = st.map_calls;
	dg_log_reset();
	tap_ret(dme_register(e, va[8], SZ_32M, DME_MAP_RW, &iova[8]), -ENOSPC,
		"window: a 9th is -ENOSPC: never an IOVA past 0x7fffffffff");
	dme_engine_stats(e, &st);
	tap_check(st.map_calls == calls && dg_log_count(DME_LOG_ERR) > 0,
		  "window: ... refused by the engine (no kernel call) with a message");
	for (int i = 0; i < 8; i++)
		dme_unregister(e, va[i], SZ_32M);
	tap_ret(dme_engine_flush(e), 0, "window: unregister and flush");
	tap_check(dg_balanced(e), "window: stats balance");
	for (int i = 0; i < 9; i++)
		munmap(va[i], SZ_32M);
	close(fd);
out:
	dme_engine_close(e);
}

/* ---- batches ----------------------------------------------------------------- */

static void scenario_batch(struct dme_engine *e, struct dg_ifd *k)
{
	enum { N = 256 };
	static struct dme_region_req q[N];
	uint8_t *buf = vm_small_alloc(N * SZ_4K);
	struct dme_engine_stats st0, st;
	bool contiguous = true;
	uint64_t base = 0, x;

	if (!buf)
		tap_fatal("batch: mmap 1 MiB");
	for (int i = 0; i < N; i++) {
		int j = (i * 97) % N; /* shuffled order */
		q[i] = (struct dme_region_req){buf + (size_t)j * SZ_4K, SZ_4K, DME_MAP_RW, 0};
	}
	dme_engine_stats(e, &st0);
	if (!tap_ret(dme_register_batch(e, q, N), 0,
		     "batch: 256 VA-contiguous 4 KiB buffers, shuffled"))
		return;
	dme_engine_stats(e, &st);
	tap_eq_u64(st.map_calls - st0.map_calls, 1,
		   "batch: exactly one IOAS_MAP (map_calls delta)");
	base = q[0].iova; /* q[0] is buf + 0 */
	for (int i = 0; i < N; i++) {
		int j = (i * 97) % N;
		contiguous &= q[i].iova == base + (uint64_t)j * SZ_4K;
		contiguous &= dme_vtoiova(e, buf + (size_t)j * SZ_4K, &x) == 0 && x == q[i].iova;
	}
	tap_check(contiguous, "batch: IOVAs contiguous like the VAs and translated");
	tap_check(iova_ok(base, N * SZ_4K), "batch: the run 0x%" PRIx64 " lies inside the geometry",
		  base);
	tap_ret(ioas_unmap(k->ioas, base, SZ_4K, NULL) ? -errno : 0, -ENOENT,
		"batch: IOAS_UNMAP of its first 4 KiB fails ENOENT: the kernel holds one mapping, "
		"not 256");
	kernel_holds(k, buf, base, N * SZ_4K, true, true, "batch");
	bool unreg = true;
	for (int i = 0; i < N; i++)
		unreg &= dme_unregister(e, q[i].va, SZ_4K) == 0;
	tap_check(unreg, "batch: unregister each buffer");
	tap_ret(dme_engine_flush(e), 0, "batch: flush");
	tap_eq_u64(dg_ifd_unmap_all(k), 0, "batch: the kernel holds nothing afterwards");
	tap_check(dg_balanced(e), "batch: stats balance");
	munmap(buf, N * SZ_4K);
}

/* ---- fault injection --------------------------------------------------------- */

static void scenario_inject(struct dme_engine *e, struct dg_ifd *k)
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
			uint64_t fired = dme_fault_ioctl_fired(), x, held;
			bool clean;

			for (int i = 0; i < R; i++) /* every other page: 8 runs, 8 IOAS_MAP */
				q[i] = (struct dme_region_req){buf + 2 * i * SZ_4K, SZ_4K,
							       DME_MAP_RW, 0};
			dg_log_reset();
			dg_log_quiet(true);
			dme_fault_ioctl(IOMMU_IOAS_MAP, (uint64_t)pos, -err);
			int ret = dme_register_batch(e, q, R), first = ret;
			dme_fault_ioctl(0, 0, 0);
			dg_log_quiet(false);
			dme_engine_stats(e, &st);
			held = dg_ifd_unmap_all(k);
			clean = ret == -err && dme_fault_ioctl_fired() == fired + 1 &&
				st.live_mappings == 0 && st.pinned_bytes == 0 && held == 0 &&
				dg_log_count(DME_LOG_ERR) > 0 && dg_balanced(e);
			for (int i = 0; i < R; i++)
				clean &= dme_vtoiova(e, buf + 2 * i * SZ_4K, &x) == -ENOENT;
			/* the same batch goes through afterwards, at IOVAs the kernel takes */
			ret = dme_register_batch(e, q, R);
			clean &= ret == 0;
			for (int i = 0; ret == 0 && i < R; i++) {
				clean &= dg_ifd_mapped(k, q[i].iova, SZ_4K, true) == 0;
				clean &= dme_unregister(e, q[i].va, SZ_4K) == 0;
			}
			clean &=
			    dme_engine_flush(e) == 0 && dg_ifd_unmap_all(k) == 0 && dg_balanced(e);
			if (!clean) {
				bad++;
				tap_diag("inject %s at IOAS_MAP %d: first ret %d, live %" PRIu64
					 " pinned 0x%" PRIx64 ", kernel held 0x%" PRIx64
					 ", retry %d; last message: %s",
					 strerror(err), pos, first, st.live_mappings,
					 st.pinned_bytes, held, ret, dg_log_last());
			}
		}
		tap_eq_u64(
		    (uint64_t)bad, 0,
		    "inject: IOAS_MAP failing with %s at each of the 8 positions of a batch: "
		    "the engine returns it, logs it, the kernel holds nothing, stats balance, "
		    "and the batch then maps",
		    strerror(err));
	}

	/* A failing IOAS_UNMAP keeps the mapping pending, its IOVA quarantined. */
	uint64_t iova = 0, other = 0, x;
	struct dme_engine_stats st;
	tap_ret(dme_register(e, buf, SZ_4K, DME_MAP_RW, &iova), 0, "inject: register one page");
	tap_ret(dme_unregister(e, buf, SZ_4K), 0, "inject: unregister it (idle)");
	dme_fault_ioctl(IOMMU_IOAS_UNMAP, 1, -EINTR);
	tap_ret(dme_engine_flush(e), -EINTR,
		"inject: a flush whose IOAS_UNMAP fails EINTR reports it");
	dme_fault_ioctl(0, 0, 0);
	dme_engine_stats(e, &st);
	tap_check(st.pending_unmaps == 1 && st.live_mappings == 1,
		  "inject: the mapping stays pending");
	tap_check(dme_vtoiova(e, buf, &x) == -ENOENT, "inject: ... and no longer translates");
	tap_ret(dg_ifd_mapped(k, iova, SZ_4K, true), 0, "inject: the kernel still maps it");
	tap_ret(dme_register(e, buf + 2 * SZ_4K, SZ_4K, DME_MAP_RW, &other), 0,
		"inject: a new registration meanwhile maps (no EEXIST from the kernel)");
	tap_check(other != iova, "inject: ... at another IOVA (the pending one is quarantined)");
	tap_check(dg_balanced(e), "inject: stats balance with a pending unmap");
	tap_ret(dme_engine_flush(e), 0, "inject: the next flush succeeds");
	dme_engine_stats(e, &st);
	tap_check(st.pending_unmaps == 0 && st.live_mappings == 1,
		  "inject: nothing pending, one live");
	tap_ret(dg_ifd_free(k, iova, SZ_4K), 0,
		"inject: the kernel no longer maps the pending one");
	tap_ret(dme_unregister(e, buf + 2 * SZ_4K, SZ_4K), 0, "inject: unregister the other");
	tap_ret(dme_engine_flush(e), 0, "inject: flush");
	tap_eq_u64(dg_ifd_unmap_all(k), 0, "inject: the kernel holds nothing afterwards");
	tap_check(dg_balanced(e), "inject: stats balance at the end");
	munmap(buf, 2 * R * SZ_4K);
}

/* ---- real ENOMEM: RLIMIT_MEMLOCK without CAP_IPC_LOCK --------------------- */

struct memlock_result {
	int cap_dropped;
	int big_ret, small_ret, unreg_ret, flush_ret;
	int balanced_after_fail, balanced_end;
	uint64_t live_after_fail, held_after_fail, held_end;
	int translated_after_fail;
	char msg[200];
};


/* The child uses the engine it inherited: same /dev/iommu, same IOAS. */
static void memlock_child(struct dme_engine *e, struct dg_ifd *k, int out)
{
	struct memlock_result r = {0};
	struct rlimit lim = {.rlim_cur = SZ_1M, .rlim_max = SZ_1M};
	struct dme_engine_stats st;
	uint8_t *buf = vm_small_alloc(4 * SZ_1M);
	uint64_t iova, x;

	r.cap_dropped = vm_drop_cap_ipc_lock() == 0;
	if (!buf || setrlimit(RLIMIT_MEMLOCK, &lim) != 0)
		r.big_ret = 1;
	dg_log_reset();
	dg_log_quiet(true);
	if (!r.big_ret)
		r.big_ret = dme_register(e, buf, 4 * SZ_1M, DME_MAP_RW, &iova);
	dg_log_quiet(false);
	snprintf(r.msg, sizeof(r.msg), "%s", dg_log_last());
	dme_engine_stats(e, &st);
	r.live_after_fail = st.live_mappings;
	r.balanced_after_fail = dg_balanced(e);
	r.translated_after_fail = dme_vtoiova(e, buf, &x) == 0;
	r.held_after_fail = dg_ifd_unmap_all(k);
	r.small_ret = dme_register(e, buf, 64 * SZ_4K, DME_MAP_RW, &iova);
	if (!r.small_ret) {
		r.unreg_ret = dme_unregister(e, buf, 64 * SZ_4K);
		r.flush_ret = dme_engine_flush(e);
	}
	r.held_end = dg_ifd_unmap_all(k);
	r.balanced_end = dg_balanced(e);
	if (write(out, &r, sizeof(r)) != sizeof(r))
		_exit(2);
	_exit(0);
}

static void scenario_memlock(struct dme_engine *e, struct dg_ifd *k)
{
	struct memlock_result r;
	int p[2], status = 0;
	pid_t pid;

	if (pipe(p) != 0)
		tap_fatal("memlock: pipe");
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		memlock_child(e, k, p[1]);
	}
	close(p[1]);
	bool got = pid > 0 && read(p[0], &r, sizeof(r)) == sizeof(r);
	close(p[0]);
	if (pid > 0)
		waitpid(pid, &status, 0);
	if (!tap_check(got, "memlock: a child without CAP_IPC_LOCK reported its results"))
		return;
	tap_check(r.cap_dropped, "memlock: the child dropped CAP_IPC_LOCK (capset)");
	tap_ret(
	    r.big_ret, -ENOMEM,
	    "memlock: registering 4 MiB with RLIMIT_MEMLOCK 1 MiB fails -ENOMEM (from the kernel)");
	tap_diag("memlock: dme said: %s", r.msg);
	tap_check(r.live_after_fail == 0 && !r.translated_after_fail && r.held_after_fail == 0 &&
		      r.balanced_after_fail,
		  "memlock: ... and leaves nothing behind (engine: 0 live, no translation; kernel: "
		  "nothing mapped; stats balance)");
	tap_ret(r.small_ret, 0, "memlock: 256 KiB under the limit registers");
	tap_check(r.unreg_ret == 0 && r.flush_ret == 0 && r.held_end == 0 && r.balanced_end,
		  "memlock: ... unregisters and flushes to nothing");
	tap_eq_u64(dg_ifd_unmap_all(k), 0,
		   "memlock: the parent's view of the kernel: nothing held");
	tap_check(dg_balanced(e), "memlock: the parent's engine balances");
}

/* ---- attach and detach behind live registrations ------------------------ */

/*
 * An engine opened with no device: its IOAS reports [0, 2^64-1] and takes
 * maps without pinning. dme_engine_attach() then narrows the allocator to
 * the device's geometry; detach widens it again while the mappings stay.
 */
static void scenario_attach(void)
{
	struct dme_iova_range r[4];
	struct dme_config c;
	struct dme_engine *e = NULL;
	struct dg_ifd k;
	uint8_t *buf = vm_small_alloc(16 * SZ_4K);
	uint64_t align, iova[4] = {0};
	size_t n;

	dme_config_init(&c);
	c.backend = DME_BACKEND_IOMMUFD;
	if (!tap_ret(dme_engine_open(&c, &e), 0, "attach: open an iommufd engine with no device") ||
	    !buf || !tap_ret(dg_ifd_init(e, &k), 0, "attach: probe IOAS"))
		return;
	vm_iommufd = k.fd;
	n = dme_engine_geometry(e, r, 4, &align);
	tap_check(n == 1 && r[0].start == SZ_4K && r[0].last == UINT64_MAX && align == SZ_4K,
		  "attach: no device: [4 KiB, 2^64-1] (page 0 kept out), alignment 4 KiB (got %zu, 0x%" PRIx64
		  "-0x%" PRIx64 ", 0x%" PRIx64 ")",
		  n, r[0].start, r[0].last, align);
	tap_ret(dme_register(e, buf, 4 * SZ_4K, DME_MAP_RW, &iova[0]), 0,
		"attach: register 16 KiB before any device");
	tap_check(iova_ok(iova[0], 4 * SZ_4K), "attach: ... at IOVA 0x%" PRIx64, iova[0]);
	tap_ret(dme_engine_attach(e, dev.bdf), 0, "attach: dme_engine_attach(%s)", dev.bdf);
	n = dme_engine_geometry(e, r, 4, &align);
	tap_check(n == 2 && r[0].last == MSI_START - 1 && r[1].start == MSI_LAST + 1 &&
		      r[1].last == APERTURE_LAST && align == SZ_4K,
		  "attach: the geometry is now the device's two ranges");
	kernel_holds(&k, buf, iova[0], 4 * SZ_4K, true, true, "attach: the earlier registration");
	tap_check(dg_balanced(e), "attach: stats balance");

	/* fill up to the MSI window: the allocator must know the hole now */
	tap_ret(dme_register(e, buf + 8 * SZ_4K, 4 * SZ_4K, DME_MAP_RW, &iova[1]), 0,
		"attach: register another 16 KiB");
	tap_check(iova_ok(iova[1], 4 * SZ_4K),
		  "attach: ... inside the device's geometry (0x%" PRIx64 ")", iova[1]);

	tap_ret(dme_engine_detach(e, dev.bdf), 0, "detach: with two live registrations");
	n = dme_engine_geometry(e, r, 4, &align);
	tap_check(n == 1 && r[0].start == SZ_4K && r[0].last == UINT64_MAX,
		  "detach: the geometry is [4 KiB, 2^64-1] again");
	tap_ret(dg_ifd_mapped(&k, iova[0], 4 * SZ_4K, true), 0,
		"detach: the IOAS still holds the registrations");
	tap_ret(dme_register(e, buf + 4 * SZ_4K, SZ_4K, DME_MAP_RW, &iova[2]), 0,
		"detach: register while detached");
	tap_check(iova_ok(iova[2], SZ_4K),
		  "detach: ... still inside the geometry first seen (0x%" PRIx64 ")", iova[2]);
	tap_ret(dme_engine_attach(e, dev.bdf), 0, "attach: the device again");
	tap_check(dg_ifd_mapped(&k, iova[0], 4 * SZ_4K, true) == 0 &&
		      dg_ifd_mapped(&k, iova[1], 4 * SZ_4K, true) == 0 &&
		      dg_ifd_mapped(&k, iova[2], SZ_4K, true) == 0,
		  "attach: all three registrations are mapped");
	tap_check(dme_unregister(e, buf, 4 * SZ_4K) == 0 &&
		      dme_unregister(e, buf + 8 * SZ_4K, 4 * SZ_4K) == 0 &&
		      dme_unregister(e, buf + 4 * SZ_4K, SZ_4K) == 0 && dme_engine_flush(e) == 0,
		  "attach: unregister and flush");
	tap_eq_u64(dg_ifd_unmap_all(&k), 0, "attach: the kernel holds nothing afterwards");
	tap_check(dg_balanced(e), "attach: stats balance at the end");
	dg_ifd_fini(&k);
	dme_engine_close(e);
	munmap(buf, 16 * SZ_4K);
}

/* ---- memory the kernel refuses to pin -------------------------------------- */

static void scenario_bad_memory(struct dme_engine *e, struct dg_ifd *k)
{
	uint8_t *ro =
	    mmap(NULL, 4 * SZ_4K, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	uint8_t *gone =
	    mmap(NULL, 4 * SZ_4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t iova = 0, x;
	int ret;

	if (ro == MAP_FAILED || gone == MAP_FAILED)
		tap_fatal("bad memory: mmap");
	munmap(gone, 4 * SZ_4K);
	dg_log_reset();
	ret = dme_register(e, ro, 4 * SZ_4K, DME_MAP_RW, &iova);
	tap_check(ret < 0,
		  "bad memory: registering read-only memory for device writes fails (%d %s)", ret,
		  strerror(-ret));
	tap_diag("bad memory: dme said: %s", dg_log_last());
	tap_check(dme_vtoiova(e, ro, &x) == -ENOENT && dg_ifd_unmap_all(k) == 0 && dg_balanced(e),
		  "bad memory: ... and leaves nothing behind");
	tap_ret(dme_register(e, ro, 4 * SZ_4K, DME_MAP_READ, &iova), 0,
		"bad memory: the same memory registers read-only");
	tap_ret(dg_ifd_mapped(k, iova, 4 * SZ_4K, false), 0,
		"bad memory: ... and the kernel maps it");
	tap_ret(dme_unregister(e, ro, 4 * SZ_4K), 0, "bad memory: unregister it");
	ret = dme_register(e, gone, 4 * SZ_4K, DME_MAP_RW, &iova);
	tap_check(ret < 0, "bad memory: registering unmapped memory fails (%d %s)", ret,
		  strerror(-ret));
	tap_ret(dme_engine_flush(e), 0, "bad memory: flush");
	tap_check(dg_ifd_unmap_all(k) == 0 && dg_balanced(e), "bad memory: nothing left behind");
	munmap(ro, 4 * SZ_4K);
}

/* ---- open errors -------------------------------------------------------------- */

static void scenario_open_errors(void)
{
	struct dme_config c;
	struct dme_engine *e = NULL, *e2 = NULL;
	uint8_t *buf = vm_small_alloc(SZ_4K);
	uint64_t iova;
	int ret;

	/* DME_BACKEND=auto with a device takes iommufd; a second engine on the
	 * same device while the first holds it fails without disturbing it */
	dme_config_init(&c);
	c.nr_devices = 1;
	snprintf(c.devices[0], sizeof(c.devices[0]), "%s", dev.bdf);
	if (tap_ret(dme_engine_open(&c, &e), 0, "open: DME_BACKEND=auto with %s", dev.bdf)) {
		tap_check(strcmp(dme_engine_backend_name(e), "iommufd") == 0,
			  "open: ... picks iommufd");
		dg_log_reset();
		c.backend = DME_BACKEND_IOMMUFD;
		ret = dme_engine_open(&c, &e2);
		tap_ret(ret, -EBUSY, "open: a second iommufd engine on the same device is -EBUSY");
		tap_diag("open: dme said: %s", dg_log_last());
		tap_check(strstr(dg_log_last(), "in use") != NULL,
			  "open: ... and the message says it is in use");
		if (ret == 0)
			dme_engine_close(e2);
		c.backend = DME_BACKEND_VFIO;
		dg_log_reset();
		ret = dme_engine_open(&c, &e2);
		tap_ret(ret, -EBUSY,
			"open: a vfio engine on the device the iommufd one holds is -EBUSY");
		tap_diag("open: dme said: %s", dg_log_last());
		tap_check(strstr(dg_log_last(), "in use") != NULL,
			  "open: ... and the message says it is in use");
		if (ret == 0)
			dme_engine_close(e2);
		tap_check(dme_register(e, buf, SZ_4K, DME_MAP_RW, &iova) == 0 &&
			      dme_unregister(e, buf, SZ_4K) == 0 && dme_engine_flush(e) == 0 &&
			      dg_balanced(e),
			  "open: the first engine still works");
		dme_engine_close(e);
	}
	c.nr_devices = 0;
	c.backend = DME_BACKEND_AUTO;
	e = NULL;
	dg_log_reset();
	if (tap_ret(dme_engine_open(&c, &e), 0, "open: DME_BACKEND=auto without a device"))
		tap_check(strcmp(dme_engine_backend_name(e), "sim") == 0 &&
			      dg_log_count(DME_LOG_INFO) > 0,
			  "open: ... is the simulator, and says so");
	dme_engine_close(e);
	munmap(buf, SZ_4K);

	dme_config_init(&c);
	c.backend = DME_BACKEND_IOMMUFD;
	c.nr_devices = 1;
	snprintf(c.devices[0], sizeof(c.devices[0]), "0000:00:1f.7");
	dg_log_reset();
	tap_ret(dme_engine_open(&c, &e), -ENODEV, "open: a device that does not exist is -ENODEV");
	tap_check(strstr(dg_log_last(), "0000:00:1f.7") != NULL,
		  "open: ... and the message names it");
}

/* ---- DMA memory (memfd hugepages) and sharing with a sibling IOAS ---------- */

static void scenario_dma_share(struct dme_engine *e, struct dg_ifd *k)
{
	struct dme_dma_mem d;
	struct dme_engine *s2 = NULL;
	struct dg_ifd k2;
	uint64_t iova2 = 0;

	if (!tap_ret(dme_dma_alloc(e, 4 * SZ_2M, DME_MAP_RW, &d), 0,
		     "dma: dme_dma_alloc 8 MiB"))
		return;
	tap_diag("dma: %zu KiB pages, fd %d, VA %p IOVA 0x%" PRIx64, d.page_size >> 10,
		 d.mem->fd, d.va, d.iova);
	tap_check(d.page_size == SZ_2M, "dma: backed by 2 MiB hugepages");
	tap_check(d.iova % SZ_2M == (uintptr_t)d.va % SZ_2M, "dma: IOVA congruent to the VA mod 2 MiB");
	tap_ret(dg_ifd_mapped(k, d.iova, d.len, true), 0,
		"dma: the kernel maps all of it writable (memfd: MAP_FILE where the kernel has it, else by VA)");

	if (!tap_ret(dme_engine_open_sibling(e, &s2), 0, "share: a sibling IOAS in the same iommufd"))
		goto out;
	if (!tap_ret(dg_ifd_init(s2, &k2), 0, "share: probe beside the sibling")) {
		dme_engine_close(s2);
		goto out;
	}
	tap_check(k2.fd != k->fd && k2.ioas != k->ioas, "share: its own IOAS (id %u)", k2.ioas);
	tap_ret(dme_share(e, s2, d.va, d.len, DME_MAP_READ, &iova2), 0,
		"share: IOAS_COPY 8 MiB read-only into the sibling");
	tap_ret(dg_ifd_mapped(&k2, iova2, d.len, false), 0, "share: the sibling IOAS maps all of it");
	/* (an IOAS_COPY probe cannot see the IOPTE's write bit: the kernel
	 * checks the shared pages, which are writable; read-only sharing is
	 * checked in the unit tier, where the sim's device writes through it) */
	tap_check(dg_balanced(s2), "share: the sibling's stats balance");
	tap_ret(dme_unregister(s2, d.va, d.len), 0, "share: unregister in the sibling");
	tap_ret(dme_engine_flush(s2), 0, "share: flush the sibling (IOAS_UNMAP)");
	tap_ret(dg_ifd_mapped(&k2, iova2, SZ_4K, false), -ENOENT, "share: gone from the sibling");
	tap_ret(dg_ifd_mapped(k, d.iova, d.len, true), 0, "share: still mapped in the first IOAS");
	dg_ifd_fini(&k2);
	dme_engine_close(s2);
out:
	{
		uint64_t iova = d.iova;
		tap_ret(dme_dma_free(e, &d), 0, "dma: dme_dma_free");
		tap_ret(dg_ifd_mapped(k, iova, SZ_4K, false), -ENOENT, "dma: unmapped after free");
	}
	tap_check(dg_balanced(e), "dma: stats balance");
}

int main(void)
{
	struct dme_engine *e;
	struct dg_ifd k;
	int err;

	tap_init("engine-iommufd");
	dg_log_install(DME_LOG_INFO);
	dev = vm_first_vfio_nvme();

	e = open_engine(NULL, &err);
	if (!tap_ret(err, 0, "open: dme_engine_open(iommufd, %s)", dev.bdf))
		tap_fatal("engine on iommufd");
	tap_check(strcmp(dme_engine_backend_name(e), "iommufd") == 0,
		  "open: the backend is iommufd");
	if (!tap_ret(dg_ifd_init(e, &k), 0, "open: a probe IOAS beside the engine's"))
		tap_fatal("probe IOAS");
	vm_iommufd = k.fd;
	tap_eq_u64(dg_ifd_unmap_all(&k), 0, "open: the engine's IOAS starts empty");

	check_geometry(e, &k);
	scenario_anon(e, &k);
	scenario_huge(e, &k);
	scenario_dma_share(e, &k);
	scenario_batch(e, &k);
	scenario_inject(e, &k);
	scenario_memlock(e, &k);
	scenario_bad_memory(e, &k);
	dg_ifd_fini(&k);
	dme_engine_close(e);

	scenario_fill();
	scenario_window();
	scenario_attach();
	scenario_open_errors();
	return tap_done();
}
