/* SPDX-License-Identifier: MIT */
/*
 * test-sim: the sim backend - page-table shape and content for 4K/2M/1G
 * leaves, every map/unmap/copy error with its exact errno, device faults,
 * fault injection at every position of a batch, and a randomized
 * differential test against a simple reference model.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <dme/sim.h>

#include "../engine/backend.h"
#include "logcap.h"
#include "tap.h"

#define K4 0x1000ull
#define M2 0x200000ull
#define G1 0x40000000ull
#define RW (BE_PROT_READ | BE_PROT_WRITE)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static struct dme_sim *mk(const struct dme_sim_params *p)
{
	void *be = NULL;
	if (dme_sim_open(p, &be))
		return NULL;
	return be;
}

static int map1(struct dme_sim *s, uint64_t va, uint64_t iova, uint64_t len, unsigned prot)
{
	struct be_map m = {.va = va, .iova = iova, .len = len, .prot = prot, .fd = -1};
	size_t done = 99;
	int ret = be_sim_ops.map(s, &m, 1, &done);
	if (done != (ret ? 0u : 1u))
		return -1000; /* *done contract broken */
	return ret;
}

static int unmap1(struct dme_sim *s, uint64_t iova, uint64_t len)
{
	struct be_unmap u = {iova, len, 1};
	size_t done = 99;
	int ret = be_sim_ops.unmap(s, &u, 1, &done);
	if (done != (ret ? 0u : 1u))
		return -1000;
	return ret;
}

static void *alloc_aligned(uint64_t align, uint64_t len, void **base)
{
	void *p = mmap(NULL, len + align, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	*base = p;
	return (void *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
}

/* Real, never touched memory for the cases that only care about IOVAs: the
 * sim maps only what the kernel would pin. 1 GiB aligned; the differential
 * test places its VAs anywhere in the first 8 GiB + 8 MiB. */
#define ARENA_LEN (8 * G1 + 16 * M2)
static uint64_t arena;

/* ---- open and geometry ---------------------------------------------------- */

static void test_open_geometry(void)
{
	struct dme_sim *s = mk(NULL);
	struct be_geometry g;
	ok(s != NULL, "open: defaults");
	ok_eq(be_sim_ops.geometry(s, &g), 0, "geometry: succeeds");
	ok(g.nr_ranges == 2 && g.ranges[0].start == 0 && g.ranges[0].last == 0xfedfffff &&
	       g.ranges[1].start == 0xfef00000 && g.ranges[1].last == 0x7fffffffffull,
	   "geometry: VT-d aw-bits 39 ranges around the MSI hole");
	ok(g.alignment == K4 && g.max_entries == 0 && g.has_copy && !g.needs_pa &&
	       g.pgsize_bitmap == (K4 | M2 | G1),
	   "geometry: 4 KiB alignment, no limit, copy, 4K|2M|1G pages");
	struct dme_sim_stats st;
	dme_sim_stats(s, &st);
	ok(st.levels == 3 && st.addr_width == 39 && st.tables[3] == 1,
	   "39-bit: 3 levels, one root");
	ok(be_sim_ops.va_to_pa == NULL && !strcmp(be_sim_ops.name, "sim"), "ops: no va_to_pa");
	dme_sim_close(s);

	struct dme_sim_params p = {.addr_width = 48, .max_entries = 7};
	s = mk(&p);
	be_sim_ops.geometry(s, &g);
	dme_sim_stats(s, &st);
	ok(st.levels == 4 && g.ranges[1].last == 0xffffffffffffull && g.max_entries == 7,
	   "48-bit: 4 levels, aperture to 2^48-1, entry limit reported");
	dme_sim_close(s);

	p = (struct dme_sim_params){.addr_width = 57};
	s = mk(&p);
	dme_sim_stats(s, &st);
	ok_eq(st.levels, 5, "57-bit: 5 levels");
	dme_sim_close(s);

	void *be = (void *)1;
	p = (struct dme_sim_params){.addr_width = 40};
	ok_eq(dme_sim_open(&p, &be), -EINVAL, "open: 40-bit width refused");
	p = (struct dme_sim_params){.alignment = 0x3000};
	ok_eq(dme_sim_open(&p, &be), -EINVAL, "open: non power-of-two alignment refused");
	p = (struct dme_sim_params){.alignment = 0x800};
	ok_eq(dme_sim_open(&p, &be), -EINVAL, "open: alignment below 4 KiB refused");
	struct dme_iova_range bad[] = {{0x10000, 0x1ffff}, {0x18000, 0x2ffff}};
	p = (struct dme_sim_params){.ranges = bad, .nr_ranges = 2};
	ok_eq(dme_sim_open(&p, &be), -EINVAL, "open: overlapping ranges refused");
	struct dme_iova_range big[] = {{0, 1ull << 40}};
	p = (struct dme_sim_params){.ranges = big, .nr_ranges = 1};
	ok_eq(dme_sim_open(&p, &be), -EINVAL, "open: range beyond the address width refused");
	ok(be == (void *)1, "open: out parameter untouched on error");

	struct dme_iova_range adj[] = {{0x10000, 0x1ffff}, {0x20000, 0x2ffff}, {0x40000, 0x4ffff}};
	p = (struct dme_sim_params){.ranges = adj, .nr_ranges = 3, .alignment = 0x10000};
	s = mk(&p);
	be_sim_ops.geometry(s, &g);
	ok(g.nr_ranges == 2 && g.ranges[0].last == 0x2ffff && g.alignment == 0x10000,
	   "custom ranges: adjacent ranges merge, alignment kept");
	ok_eq(map1(s, arena, 0x18000, 0x10000, RW), -EINVAL,
	      "custom alignment: 32K-aligned IOVA refused");
	ok_eq(map1(s, arena, 0x10000, 0x20000, RW), 0,
	      "custom ranges: a mapping may span the seam of adjacent ranges");
	dme_sim_close(s);

	struct dme_config cfg;
	dme_config_init(&cfg);
	cfg.nr_devices = 2;
	strcpy(cfg.devices[0], "0000:00:03.0");
	strcpy(cfg.devices[1], "/dev/vfio/devices/vfio1");
	cfg.allow_iovas_set = true;
	cfg.allow_iova_start = 0x100000;
	cfg.allow_iova_last = 0xffffffffull;
	be = NULL;
	ok_eq(be_sim_ops.open(&cfg, &be), 0, "ops open: with devices and an allowed window");
	const char *names[4];
	ok(dme_sim_devices(be, names, 4) == 2 && !strcmp(names[1], "/dev/vfio/devices/vfio1"),
	   "ops open: config devices are attached in order");
	be_sim_ops.geometry(be, &g);
	ok(g.nr_ranges == 2 && g.ranges[0].start == 0x100000 && g.ranges[1].last == 0xffffffffull,
	   "ops open: DME_ALLOW_IOVAS clips the ranges");
	be_sim_ops.close(be);
}

/* ---- page table: 4K, 2M, 1G ------------------------------------------------ */

static void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)(seed + i * 7 + (i >> 12));
}

static void test_pt_4k(void)
{
	struct dme_sim *s = mk(NULL);
	void *base;
	char *buf = alloc_aligned(K4, 4 * K4, &base);
	fill(buf, 4 * K4, 1);
	uint64_t iova = 0x100000;
	ok_eq(map1(s, (uintptr_t)buf, iova, 4 * K4, RW), 0, "4K: map 16 KiB");
	struct dme_sim_walk w;
	ok(!dme_sim_walk(s, iova + 0x1234, &w) && w.level == 1 && w.page_size == K4 &&
	       w.va == (uintptr_t)buf + 0x1234 && w.prot == RW,
	   "4K: walk finds a 4 KiB leaf with the right VA and R/W");
	char got[4 * K4];
	ok(!dme_sim_dma_read(s, iova, got, sizeof(got)) && !memcmp(got, buf, sizeof(got)),
	   "4K: device reads through the table what the CPU wrote");
	char msg[100] = "hello from the device, across a page boundary";
	ok_eq(dme_sim_dma_write(s, iova + K4 - 10, msg, sizeof(msg)), 0, "4K: device write");
	ok(!memcmp(buf + K4 - 10, msg, sizeof(msg)), "4K: CPU sees the device's bytes");
	struct dme_sim_stats st;
	dme_sim_stats(s, &st);
	ok(st.leaf_entries[1] == 4 && st.leaf_entries[2] == 0 && st.tables[1] == 1 &&
	       st.tables[2] == 1,
	   "4K: 4 level-1 entries in one leaf table");
	ok(st.dma_reads == 1 && st.dma_writes == 1 && st.dma_bytes == 4 * K4 + sizeof(msg),
	   "4K: device counters");
	ok_eq(dme_sim_check(s), 0, "4K: table consistent");
	ok_eq(unmap1(s, iova, 4 * K4), 0, "4K: unmap");
	dme_sim_stats(s, &st);
	ok(st.leaf_entries[1] == 0 && st.live_bytes == 0 && st.live_mappings == 0,
	   "4K: no leaves left");
	ok_eq(dme_sim_translate(s, iova, &(uint64_t){0}, NULL), -ENOENT,
	      "4K: translate after unmap");
	dme_sim_close(s);
	munmap(base, 5 * K4);
}

static void test_pt_2m(void)
{
	struct dme_sim *s = mk(NULL);
	void *base;
	char *buf = alloc_aligned(M2, 2 * M2, &base);
	fill(buf, 2 * M2, 3);
	uint64_t iova = 0x40000000;
	ok_eq(map1(s, (uintptr_t)buf, iova, 2 * M2, RW), 0, "2M: map 4 MiB, 2M-aligned both sides");
	struct dme_sim_stats st;
	dme_sim_stats(s, &st);
	ok(st.leaf_entries[2] == 2 && st.leaf_entries[1] == 0 && st.tables[1] == 0,
	   "2M: two 2 MiB entries, no 4 KiB table");
	struct dme_sim_walk w;
	ok(!dme_sim_walk(s, iova + M2 + 5, &w) && w.level == 2 && w.page_size == M2 &&
	       w.va == (uintptr_t)buf + M2 + 5,
	   "2M: walk finds a 2 MiB leaf");
	char got[8192];
	ok(!dme_sim_dma_read(s, iova + M2 - 4096, got, sizeof(got)) &&
	       !memcmp(got, buf + M2 - 4096, sizeof(got)),
	   "2M: device read across the two 2 MiB leaves");
	ok_eq(unmap1(s, iova, 2 * M2), 0, "2M: unmap");

	/* the same IOVA, VA off by 4 KiB: only 4 KiB leaves fit */
	ok_eq(map1(s, (uintptr_t)buf + K4, iova, M2, RW), 0, "2M: map with VA not 2M-aligned");
	dme_sim_stats(s, &st);
	ok(st.leaf_entries[1] == 512 && st.leaf_entries[2] == 0,
	   "2M: incongruent VA gets 512 4K leaves");
	ok_eq(unmap1(s, iova, M2), 0, "2M: unmap the 4K run");
	/* the emptied 4K table is replaced by a 2 MiB leaf on the next map */
	ok_eq(map1(s, (uintptr_t)buf, iova, M2, RW), 0,
	      "2M: remap 2M-aligned over an emptied table");
	dme_sim_stats(s, &st);
	ok(st.leaf_entries[2] == 1 && st.retired_tables == 1 && st.tables[1] == 0,
	   "2M: the empty 4K table is retired, a 2 MiB leaf takes its place");
	ok_eq(dme_sim_check(s), 0, "2M: table consistent");
	dme_sim_close(s);

	struct dme_sim_params p = {.no_large_pages = true};
	s = mk(&p);
	map1(s, (uintptr_t)buf, iova, M2, RW);
	dme_sim_stats(s, &st);
	ok(st.leaf_entries[1] == 512 && st.leaf_entries[2] == 0, "no_large_pages: 4K leaves only");
	struct be_geometry g;
	be_sim_ops.geometry(s, &g);
	ok_eq(g.pgsize_bitmap, K4, "no_large_pages: geometry reports 4 KiB only");
	dme_sim_close(s);
	munmap(base, 3 * M2);
}

static void test_pt_1g(void)
{
	void *base;
	char *buf = alloc_aligned(G1, G1 + M2 + K4, &base);
	if (!buf) {
		tap_skip("cannot reserve 2 GiB of address space", "1G");
		return;
	}
	struct dme_sim_params p = {.addr_width = 48};
	struct dme_sim *s = mk(&p);
	uint64_t iova = 4 * G1;
	/* only touch a few pages: the rest stays unpopulated */
	strcpy(buf, "first byte of the gigabyte");
	strcpy(buf + G1 - 64, "last bytes");
	strcpy(buf + G1 + M2, "the 4K tail");
	ok_eq(map1(s, (uintptr_t)buf, iova, G1 + M2 + K4, RW), 0, "1G: map 1G + 2M + 4K");
	struct dme_sim_stats st;
	dme_sim_stats(s, &st);
	ok(st.leaf_entries[3] == 1 && st.leaf_entries[2] == 1 && st.leaf_entries[1] == 1,
	   "1G: one entry at each level (1 GiB, 2 MiB, 4 KiB)");
	struct dme_sim_walk w;
	ok(!dme_sim_walk(s, iova + 0x12345678, &w) && w.level == 3 && w.page_size == G1,
	   "1G: walk finds a 1 GiB leaf");
	char got[32];
	ok(!dme_sim_dma_read(s, iova, got, 27) && !strcmp(got, "first byte of the gigabyte"),
	   "1G: device reads the first bytes");
	ok(!dme_sim_dma_read(s, iova + G1 - 64, got, 11) && !strcmp(got, "last bytes"),
	   "1G: device reads the last bytes of the 1 GiB leaf");
	ok(!dme_sim_dma_read(s, iova + G1 + M2, got, 12) && !strcmp(got, "the 4K tail"),
	   "1G: device reads through the 4 KiB tail leaf");
	ok_eq(dme_sim_check(s), 0, "1G: table consistent");
	ok_eq(unmap1(s, iova, G1 + M2 + K4), 0, "1G: unmap");
	dme_sim_stats(s, &st);
	ok(st.leaf_entries[1] + st.leaf_entries[2] + st.leaf_entries[3] == 0, "1G: no leaves left");
	dme_sim_close(s);
	munmap(base, 2 * G1 + M2 + K4);
}

/* ---- errors ------------------------------------------------------------------ */

static void test_map_errors(void)
{
	struct dme_sim_params p = {.max_entries = 3};
	struct dme_sim *s = mk(&p);
	uint64_t va = arena;
	ok_eq(map1(s, va, 0x100000, 0x10000, RW), 0, "errors: a 64K mapping at 1M");
	logcap_reset();
	ok_eq(map1(s, va, 0x100000, 0x10000, RW), -EEXIST, "EEXIST: the same range again");
	ok(logcap.count[DME_LOG_ERR] == 1 && strstr(logcap.last, "overlaps the mapping [0x100000"),
	   "EEXIST: the message names the mapping in the way");
	ok_eq(map1(s, va, 0x108000, K4, RW), -EEXIST, "EEXIST: inside a mapping");
	ok_eq(map1(s, va, 0xff000, 0x2000, RW), -EEXIST, "EEXIST: overlapping its head");
	ok_eq(map1(s, va, 0x10f000, 0x2000, RW), -EEXIST, "EEXIST: overlapping its tail");
	ok_eq(map1(s, va, 0xf0000, 0x30000, RW), -EEXIST, "EEXIST: covering it");
	ok_eq(map1(s, va, 0x200800, K4, RW), -EINVAL, "EINVAL: misaligned IOVA");
	ok_eq(map1(s, va, 0x200000, 0x1800, RW), -EINVAL, "EINVAL: misaligned length");
	ok_eq(map1(s, va + 0x10, 0x200000, K4, RW), -EINVAL, "EINVAL: misaligned VA");
	ok_eq(map1(s, va, 0x200000, 0, RW), -EINVAL, "EINVAL: zero length");
	ok_eq(map1(s, va, 0x200000, K4, 0), -EINVAL, "EINVAL: neither read nor write");
	ok_eq(map1(s, va, 0x200000, K4, 4), -EINVAL, "EINVAL: unknown prot bit");
	ok_eq(map1(s, va, 0xfee00000, K4, RW), -EINVAL, "EINVAL: inside the MSI hole");
	ok_eq(map1(s, va, 0xfedff000, 0x2000, RW), -EINVAL, "EINVAL: straddling into the hole");
	ok_eq(map1(s, va, 0xfeeff000, 0x2000, RW), -EINVAL, "EINVAL: straddling out of the hole");
	ok_eq(map1(s, va, 0x8000000000ull, K4, RW), -EINVAL, "EINVAL: beyond the 39-bit aperture");
	ok_eq(map1(s, va, 0x7ffffff000ull, 0x2000, RW), -EINVAL,
	      "EINVAL: running off the aperture");
	ok_eq(map1(s, va, 0xfffffffffffff000ull, 0x2000, RW), -EOVERFLOW, "EOVERFLOW: IOVA wraps");
	ok_eq(map1(s, 1ull << 57, 0x200000, K4, RW), -EFAULT, "EFAULT: VA beyond any user address");
	ok_eq(map1(s, va, 0xfef00000, K4, RW), 0, "the first page above the hole maps");
	ok_eq(map1(s, va, 0x7ffffff000ull, K4, RW), 0, "the last page of the aperture maps");
	ok_eq(map1(s, va, 0x300000, K4, RW), -ENOSPC, "ENOSPC: entry limit of 3 reached");
	ok_eq(map1(s, va, 0x100000, K4, RW), -EEXIST, "EEXIST is reported before ENOSPC");
	struct dme_sim_stats st;
	dme_sim_stats(s, &st);
	ok(st.live_mappings == 3 && st.live_bytes == 0x12000 && st.mappings_created == 3,
	   "errors: failed maps changed nothing");
	ok_eq(dme_sim_check(s), 0, "errors: table consistent");
	ok_eq(unmap1(s, 0xfef00000, K4), 0, "unmap frees an entry");
	ok_eq(map1(s, va, 0x300000, K4, RW), 0, "below the limit again: map succeeds");
	dme_sim_close(s);
}

static void test_unmap_errors(void)
{
	struct dme_sim *s = mk(NULL);
	uint64_t va = arena;
	map1(s, va, 0x100000, 0x4000, RW);
	map1(s, va + 0x4000, 0x104000, 0x4000, RW);
	map1(s, va, 0x200000, 0x4000, RW);
	ok_eq(unmap1(s, 0x100000, 0x2000), -ENOENT, "ENOENT: unmap cutting a mapping's tail off");
	ok_eq(unmap1(s, 0x101000, 0x3000), -ENOENT, "ENOENT: unmap cutting its head off");
	ok_eq(unmap1(s, 0x101000, 0x1000), -ENOENT, "ENOENT: unmap of its middle");
	ok_eq(unmap1(s, 0x100000, 0x6000), -ENOENT, "ENOENT: unmap of one and a half mappings");
	ok_eq(unmap1(s, 0x300000, 0x1000), -ENOENT, "ENOENT: unmap where nothing is mapped");
	ok_eq(unmap1(s, 0x100000, 0x104000), -ENOENT, "ENOENT: unmap spanning a gap");
	ok_eq(unmap1(s, 0x100000, 0), -EINVAL, "EINVAL: unmap of zero length");
	ok_eq(unmap1(s, 0xfffffffffffff000ull, 0x2000), -EOVERFLOW, "EOVERFLOW: unmap that wraps");
	struct dme_sim_stats st;
	dme_sim_stats(s, &st);
	ok(st.live_mappings == 3 && st.live_bytes == 0xc000, "unmap errors changed nothing");
	ok_eq(unmap1(s, 0x100000, 0x8000), 0, "unmap of two adjacent whole mappings at once");
	ok_eq(unmap1(s, 0x200000, 0x4000), 0, "unmap exactly as mapped");
	ok_eq(unmap1(s, 0x200000, 0x4000), -ENOENT, "ENOENT: unmapping twice");
	map1(s, va, 0x100000, 0x4000, RW);
	map1(s, va, 0x7000000000ull, M2, RW);
	ok_eq(unmap1(s, 0, UINT64_MAX), 0, "iova 0, length UINT64_MAX unmaps everything");
	dme_sim_stats(s, &st);
	ok(st.live_mappings == 0 && st.live_bytes == 0 && st.mappings_removed == 5,
	   "unmap all: nothing left");
	ok_eq(unmap1(s, 0, UINT64_MAX), 0, "unmap all of nothing succeeds");
	ok_eq(dme_sim_check(s), 0, "unmap errors: table consistent");
	dme_sim_close(s);
}

/* ---- copy, attach ----------------------------------------------------------- */

static void test_copy(void)
{
	struct dme_sim *a = mk(NULL), *b = mk(NULL);
	void *base;
	char *buf = alloc_aligned(K4, 8 * K4, &base);
	fill(buf, 8 * K4, 9);
	uintptr_t va = (uintptr_t)buf;
	map1(a, va, 0x100000, 4 * K4, RW);
	map1(a, va + 4 * K4, 0x104000, 4 * K4, BE_PROT_READ);
	ok_eq(be_sim_ops.copy(a, b, 0x101000, 0x500000, 6 * K4, BE_PROT_READ), 0,
	      "copy: a sub-range spanning two mappings to another sim");
	uint64_t got_va;
	unsigned prot;
	ok(!dme_sim_translate(b, 0x500000, &got_va, &prot) && got_va == va + K4 &&
	       prot == BE_PROT_READ,
	   "copy: the destination maps the same memory, with the copy's prot");
	char x[6 * K4];
	ok(!dme_sim_dma_read(b, 0x500000, x, sizeof(x)) && !memcmp(x, buf + K4, sizeof(x)),
	   "copy: the device reads the same bytes through the copy");
	struct dme_sim_stats st;
	dme_sim_stats(b, &st);
	ok_eq(st.live_mappings, 2, "copy: one destination area per source piece");
	ok_eq(be_sim_ops.copy(a, b, 0x100000, 0x600000, 8 * K4, RW), -EPERM,
	      "EPERM: writable copy of a read-only mapping");
	ok_eq(be_sim_ops.copy(a, b, 0x100000, 0x600000, 9 * K4, BE_PROT_READ), -ENOENT,
	      "ENOENT: copy of a range with an unmapped tail");
	ok_eq(be_sim_ops.copy(a, b, 0x200000, 0x600000, K4, BE_PROT_READ), -ENOENT,
	      "ENOENT: copy of nothing");
	ok_eq(be_sim_ops.copy(a, b, 0x100000, 0x501000, K4, BE_PROT_READ), -EEXIST,
	      "EEXIST: copy onto a mapping");
	ok_eq(be_sim_ops.copy(a, b, 0x100000, 0xfee00000, K4, BE_PROT_READ), -EINVAL,
	      "EINVAL: copy into the MSI hole");
	ok_eq(be_sim_ops.copy(a, a, 0x100000, 0x700000, 4 * K4, RW), 0, "copy within one sim");
	ok(!dme_sim_dma_write(a, 0x700000, "via copy", 9) && !strcmp(buf, "via copy"),
	   "copy: a device write through the copy lands in the shared memory");
	ok_eq(unmap1(a, 0x700000, 4 * K4), 0, "copy: the copy unmaps like a mapping");
	ok_eq(unmap1(b, 0x500000, 6 * K4), 0, "copy: both pieces unmap in one request");
	struct be_map m[2] = {{.va = va, .iova = 0x800000, .len = K4, .prot = RW, .fd = -1}};
	size_t done;
	be_sim_ops.map(b, m, 1, &done);
	dme_sim_inject(a, DME_SIM_OP_COPY, 1, -EINTR);
	ok_eq(be_sim_ops.copy(a, b, 0x100000, 0x900000, K4, BE_PROT_READ), -EINTR,
	      "copy: injected -EINTR");
	ok(dme_sim_translate(b, 0x900000, &got_va, NULL) == -ENOENT,
	   "copy: injected failure maps nothing");
	/* all or nothing: the entry limit stops the second piece */
	dme_sim_close(b);
	struct dme_sim_params p = {.max_entries = 1};
	b = mk(&p);
	ok_eq(be_sim_ops.copy(a, b, 0x100000, 0x500000, 8 * K4, BE_PROT_READ), -ENOSPC,
	      "ENOSPC: a copy of two pieces into a sim with room for one");
	dme_sim_stats(b, &st);
	ok_eq(st.live_mappings, 0, "copy: ENOSPC maps nothing");
	ok_eq(dme_sim_check(a) | dme_sim_check(b), 0, "copy: tables consistent");
	dme_sim_close(a);
	dme_sim_close(b);
	munmap(base, 9 * K4);
}

static void test_attach(void)
{
	struct dme_sim *s = mk(NULL);
	ok_eq(be_sim_ops.attach(s, "0000:00:04.0"), 0, "attach a PCI address");
	ok_eq(be_sim_ops.attach(s, "/dev/vfio/devices/vfio0"), 0, "attach a cdev path");
	ok_eq(be_sim_ops.attach(s, "0000:00:04.0"), -EBUSY, "EBUSY: attach twice");
	ok_eq(be_sim_ops.attach(s, ""), -EINVAL, "EINVAL: attach with no name");
	ok_eq(be_sim_ops.detach(s, "0000:00:05.0"), -ENOENT, "ENOENT: detach of an unknown device");
	ok_eq(be_sim_ops.detach(s, "0000:00:04.0"), 0, "detach");
	const char *names[4];
	ok(dme_sim_devices(s, names, 4) == 1 && !strcmp(names[0], "/dev/vfio/devices/vfio0"),
	   "the device list follows attach and detach");
	dme_sim_inject(s, DME_SIM_OP_ATTACH, 2, -ENODEV);
	ok_eq(be_sim_ops.attach(s, "a"), 0, "inject attach: first call passes");
	ok_eq(be_sim_ops.attach(s, "b"), -ENODEV, "inject attach: second call fails as asked");
	ok_eq(dme_sim_devices(s, NULL, 0), 2, "inject attach: the failed device is not recorded");
	dme_sim_inject_call(s, DME_SIM_OP_DETACH, 1, -EIO);
	ok_eq(be_sim_ops.detach(s, "a"), -EIO, "inject detach: fails as asked");
	ok_eq(be_sim_ops.detach(s, "a"), 0, "inject detach: one-shot");
	dme_sim_close(s);
}

/* ---- the VA must be memory the kernel would pin --------------------------------- */

static void test_map_pin_check(void)
{
	struct dme_sim *s = mk(NULL);
	char *ro = mmap(NULL, 3 * K4, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(ro + K4, K4); /* ro, a hole, ro */
	struct dme_sim_stats st;

	logcap_reset();
	ok_eq(map1(s, (uintptr_t)ro + K4, 0x100000, K4, BE_PROT_READ), -EFAULT,
	      "EFAULT: map of a hole");
	ok(strstr(logcap.all, "not mapped") && strstr(logcap.all, "would not pin"),
	   "EFAULT: the message says the VA is not mapped and the kernel would not pin it");
	ok_eq(map1(s, (uintptr_t)ro, 0x100000, K4, RW), -EFAULT,
	      "EFAULT: map of read-only memory for a device that writes");
	ok_eq(map1(s, (uintptr_t)ro, 0x100000, K4, BE_PROT_READ), 0,
	      "read-only memory maps for a device that only reads");
	ok_eq(map1(s, (uintptr_t)ro + K4, 0x100000, K4, BE_PROT_READ), -EEXIST,
	      "the IOVA is checked first: a hole over a mapped IOVA is EEXIST, as IOAS_MAP says");
	struct be_map m[3];
	for (int i = 0; i < 3; i++) /* ro, then the hole, then ro again */
		m[i] = (struct be_map){.va = (uintptr_t)ro + (2 - i) * K4,
				       .iova = 0x200000 + i * K4,
				       .len = K4,
				       .prot = BE_PROT_READ,
				       .fd = -1};
	size_t done = 99;
	ok(be_sim_ops.map(s, m, 3, &done) == -EFAULT && done == 1,
	   "EFAULT: a hole in the middle of a batch stops it there (*done == 1)");
	dme_sim_stats(s, &st);
	ok(st.live_mappings == 2 && dme_sim_check(s) == 0,
	   "EFAULT: refused maps leave nothing behind");
	dme_sim_close(s);
	munmap(ro, 3 * K4);
}

/* ---- device faults ------------------------------------------------------------ */

/* Whether process_vm_readv works on our own pid, probed as the sim does. */
static bool pvm_works(void)
{
	uint64_t src = 0x5eed, dst = 0;
	struct iovec l = {&dst, sizeof(dst)}, r = {&src, sizeof(src)};
	return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == sizeof(dst) && dst == src;
}

static void test_faults(void)
{
	struct dme_sim_params p = {.fault_log = 4};
	struct dme_sim *s = mk(&p);
	void *base;
	char *buf = alloc_aligned(K4, 4 * K4, &base);
	fill(buf, 4 * K4, 5);
	uintptr_t va = (uintptr_t)buf;
	map1(s, va, 0x100000, 2 * K4, RW);
	map1(s, va + 2 * K4, 0x102000, K4, BE_PROT_READ);
	map1(s, va + 3 * K4, 0x103000, K4, BE_PROT_WRITE);
	char x[3 * K4];
	struct dme_sim_fault f[8];
	ok_eq(dme_sim_dma_read(s, 0x200000, x, 16), -EFAULT, "fault: read of an unmapped IOVA");
	ok(dme_sim_faults(s, f, 8, false) == 1 && f[0].iova == 0x200000 &&
	       f[0].access == DME_SIM_ACCESS_READ && f[0].reason == DME_SIM_FAULT_NOT_PRESENT,
	   "fault: recorded with IOVA, access and reason not-present");
	ok_eq(dme_sim_dma_write(s, 0x102010, "x", 1), -EFAULT, "fault: write to a read-only entry");
	ok(dme_sim_faults(s, f, 8, false) == 2 && f[1].iova == 0x102010 &&
	       f[1].access == DME_SIM_ACCESS_WRITE && f[1].reason == DME_SIM_FAULT_READ_ONLY,
	   "fault: recorded as read-only");
	ok(buf[2 * K4 + 0x10] == (char)(5 + (2 * K4 + 0x10) * 7 + 2),
	   "fault: the read-only page is untouched");
	ok_eq(dme_sim_dma_read(s, 0x103000, x, 1), -EFAULT, "fault: read of a write-only entry");
	ok(dme_sim_faults(s, f, 8, true) == 3 && f[2].reason == DME_SIM_FAULT_WRITE_ONLY,
	   "fault: recorded as write-only; log cleared");
	ok_eq(dme_sim_faults(s, f, 8, false), 0, "fault: log empty after clear");

	memset(x, 0x55, sizeof(x));
	ok_eq(dme_sim_dma_write(s, 0x101800, x, 3 * K4), -EFAULT,
	      "fault: write running from R/W into read-only pages");
	ok(!memcmp(buf + 0x1800, x, 0x800) && buf[2 * K4] != 0x55,
	   "fault: bytes before the faulting page were written, none of the faulting page");
	ok(dme_sim_faults(s, f, 8, true) == 1 && f[0].iova == 0x102000,
	   "fault: recorded at the first byte of the faulting page");
	ok_eq(dme_sim_dma_read(s, 0x8000000000ull, x, 1), -EFAULT, "fault: IOVA beyond the width");
	ok(dme_sim_faults(s, f, 8, true) == 1 && f[0].reason == DME_SIM_FAULT_ADDRESS,
	   "fault: recorded as address-width");
	for (int i = 0; i < 6; i++)
		dme_sim_dma_read(s, 0x300000 + i * K4, x, 1);
	ok(dme_sim_faults(s, f, 8, false) == 4 && f[0].iova == 0x302000 && f[3].iova == 0x305000,
	   "fault: the log keeps the most recent faults");
	struct dme_sim_stats st;
	dme_sim_stats(s, &st);
	ok_eq(st.faults, 11, "fault: stats count every fault, dropped ones too");
	ok_eq(dme_sim_dma_read(s, 0xfffffffffffff000ull, x, 0x2000), -EINVAL,
	      "DMA that wraps: EINVAL");
	ok_eq(dme_sim_dma_read(s, 0x100000, x, 0), 0, "DMA of zero bytes succeeds");

	/* memory unmapped from the process while still mapped in the IOMMU: the
	 * sim reads through process_vm_readv when the kernel lets it (without
	 * it, it falls back to memcpy and the read would crash this test) */
	if (pvm_works()) {
		void *gone =
		    mmap(NULL, K4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		map1(s, (uintptr_t)gone, 0x400000, K4, RW);
		munmap(gone, K4);
		dme_sim_faults(s, f, 8, true); /* start from an empty log */
		int r = dme_sim_dma_read(s, 0x400000, x, 8);
		size_t n = dme_sim_faults(s, f, 8, true);
		ok(r == -EFAULT && n == 1 && f[0].iova == 0x400000 &&
		       f[0].reason == DME_SIM_FAULT_BAD_VA,
		   "fault: memory gone from the process is a bad-va fault, not a crash");
		if (r != -EFAULT || n != 1)
			diag("  read returned %d, %zu faults logged", r, n);
	} else {
		tap_skip("process_vm_readv on our own pid is refused here",
			 "fault: memory gone from the process is a bad-va fault");
	}
	ok(!strcmp(dme_sim_fault_reason_name(DME_SIM_FAULT_READ_ONLY), "read-only"),
	   "fault reason names");
	dme_sim_close(s);
	munmap(base, 5 * K4);
}

/* ---- injection at every position of a batch ----------------------------------- */

static const int errs[] = {-ENOMEM, -EFAULT, -ENOSPC, -EEXIST, -ENOENT, -EINTR};

static void batch8(struct be_map *m, struct be_unmap *u)
{
	for (int i = 0; i < 8; i++) {
		m[i] = (struct be_map){.va = arena + i * 0x10000ull,
				       .iova = 0x100000 + i * 0x10000ull,
				       .len = 0x4000 + i * K4,
				       .prot = RW,
				       .fd = -1};
		u[i] = (struct be_unmap){m[i].iova, m[i].len, 1};
	}
}

static bool mapped(struct dme_sim *s, const struct be_map *m)
{
	uint64_t va;
	return !dme_sim_translate(s, m->iova, &va, NULL) && va == m->va &&
	       !dme_sim_translate(s, m->iova + m->len - 1, &va, NULL);
}

static void test_inject_map(void)
{
	struct be_map m[8];
	struct be_unmap u[8];
	batch8(m, u);
	for (size_t e = 0; e < ARRAY_LEN(errs); e++) {
		bool good = true;
		for (int pos = 1; pos <= 8; pos++) {
			struct dme_sim *s = mk(NULL);
			size_t done = 99;
			dme_sim_inject(s, DME_SIM_OP_MAP, (uint64_t)pos, errs[e]);
			int ret = be_sim_ops.map(s, m, 8, &done);
			bool ok1 = ret == errs[e] && done == (size_t)pos - 1;
			for (int i = 0; i < 8; i++)
				ok1 &= mapped(s, &m[i]) == (i < pos - 1);
			struct dme_sim_stats st;
			dme_sim_stats(s, &st);
			ok1 &= st.live_mappings == (uint64_t)pos - 1 && st.injected == 1;
			/* the engine unwinds: unmap what was done, then retry the batch */
			ok1 &= be_sim_ops.unmap(s, u, done, &done) == 0 && done == (size_t)pos - 1;
			ok1 &= be_sim_ops.map(s, m, 8, &done) == 0 && done == 8; /* one-shot */
			ok1 &= dme_sim_check(s) == 0;
			if (!ok1) {
				diag("map %d at position %d: ret %d done %zu", errs[e], pos, ret,
				     done);
				good = false;
			}
			dme_sim_close(s);
		}
		ok(good, "inject map %s at every position of a batch of 8: *done and state right",
		   strerror(-errs[e]));
	}
}

static void test_inject_unmap(void)
{
	struct be_map m[8];
	struct be_unmap u[8];
	batch8(m, u);
	for (size_t e = 0; e < ARRAY_LEN(errs); e++) {
		bool good = true;
		for (int pos = 1; pos <= 8; pos++) {
			struct dme_sim *s = mk(NULL);
			size_t done = 99;
			be_sim_ops.map(s, m, 8, &done);
			dme_sim_inject(s, DME_SIM_OP_UNMAP, (uint64_t)pos, errs[e]);
			int ret = be_sim_ops.unmap(s, u, 8, &done);
			bool ok1 = ret == errs[e] && done == (size_t)pos - 1;
			for (int i = 0; i < 8; i++)
				ok1 &= mapped(s, &m[i]) == (i >= pos - 1);
			ok1 &= be_sim_ops.unmap(s, u + done, 8 - done, &done) == 0 &&
			       done == 8 - (size_t)pos + 1;
			struct dme_sim_stats st;
			dme_sim_stats(s, &st);
			ok1 &= st.live_mappings == 0 && dme_sim_check(s) == 0;
			if (!ok1) {
				diag("unmap %d at position %d: ret %d done %zu", errs[e], pos, ret,
				     done);
				good = false;
			}
			dme_sim_close(s);
		}
		ok(good, "inject unmap %s at every position of a batch of 8: *done and state right",
		   strerror(-errs[e]));
	}
}

static void test_inject_misc(void)
{
	struct be_map m[8];
	struct be_unmap u[8];
	batch8(m, u);
	struct dme_sim *s = mk(NULL);
	size_t done;
	dme_sim_inject(s, DME_SIM_OP_MAP, 11, -ENOMEM);
	ok_eq(be_sim_ops.map(s, m, 4, &done), 0, "inject: requests count across calls (call 1)");
	ok_eq(be_sim_ops.map(s, m + 4, 4, &done), 0,
	      "inject: requests count across calls (call 2)");
	be_sim_ops.unmap(s, u, 8, &done);
	ok(be_sim_ops.map(s, m, 8, &done) == -ENOMEM && done == 2,
	   "inject: the 11th request is the 3rd of the third call");
	be_sim_ops.unmap(s, u, 2, &done);
	dme_sim_inject_call(s, DME_SIM_OP_MAP, 2, -EINTR);
	ok(be_sim_ops.map(s, m, 1, &done) == 0 && done == 1, "inject call: first call passes");
	ok(be_sim_ops.map(s, m + 1, 7, &done) == -EINTR && done == 0,
	   "inject call: the second call fails with *done == 0");
	ok(!mapped(s, &m[1]), "inject call: nothing of the failed call is mapped");
	dme_sim_inject(s, DME_SIM_OP_MAP, 1, -ENOMEM);
	dme_sim_inject_clear(s);
	ok(be_sim_ops.map(s, m + 1, 7, &done) == 0 && done == 7, "inject_clear disarms");
	ok_eq(dme_sim_inject(s, DME_SIM_OP_MAP, 1, 5), -EINVAL, "inject: positive error refused");
	ok_eq(dme_sim_inject(s, DME_SIM_NR_OPS, 1, -EIO), -EINVAL, "inject: unknown op refused");
	ok_eq(dme_sim_inject(s, DME_SIM_OP_MAP, 0, 0), 0, "inject: nth 0 disarms");
	struct dme_sim_stats st;
	dme_sim_stats(s, &st);
	ok(st.map_calls == 6 && st.map_requests == 19 && st.injected == 2 &&
	       st.failed_requests == 1,
	   "stats: calls, requests, injected and failures counted (got %llu %llu %llu %llu)",
	   (unsigned long long)st.map_calls, (unsigned long long)st.map_requests,
	   (unsigned long long)st.injected, (unsigned long long)st.failed_requests);
	ok(st.mappings_created - st.mappings_removed == st.live_mappings && st.live_mappings == 8,
	   "stats: created - removed == live");
	dme_sim_close(s);
}

/* ---- randomized differential test ------------------------------------------------ */

struct ref_area {
	uint64_t iova, last, va;
	unsigned prot;
};

struct ref {
	struct ref_area a[4096];
	size_t n;
	uint64_t max;
};

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

#define WIN_START 0xfc000000ull /* 64 MiB window holding the MSI hole */
#define WIN_PAGES (0x4000000ull / K4)

static bool ref_in_geometry(uint64_t iova, uint64_t last)
{
	return (last <= 0xfedfffffull) || (iova >= 0xfef00000ull && last <= 0x7fffffffffull);
}

static int ref_map(struct ref *r, const struct be_map *m)
{
	uint64_t last = m->iova + m->len - 1;
	if (!m->len || (m->iova | m->len) & (K4 - 1) || !ref_in_geometry(m->iova, last))
		return -EINVAL;
	for (size_t i = 0; i < r->n; i++)
		if (r->a[i].iova <= last && r->a[i].last >= m->iova)
			return -EEXIST;
	if (r->n >= r->max)
		return -ENOSPC;
	r->a[r->n++] = (struct ref_area){m->iova, last, m->va, m->prot};
	return 0;
}

static int ref_unmap(struct ref *r, const struct be_unmap *u)
{
	uint64_t last = u->iova + u->len - 1, covered = 0;
	for (size_t i = 0; i < r->n; i++) {
		if (r->a[i].iova > last || r->a[i].last < u->iova)
			continue;
		if (r->a[i].iova < u->iova || r->a[i].last > last)
			return -ENOENT;
		covered += r->a[i].last - r->a[i].iova + 1;
	}
	if (covered != u->len)
		return -ENOENT;
	for (size_t i = 0; i < r->n;) {
		if (r->a[i].iova >= u->iova && r->a[i].last <= last)
			r->a[i] = r->a[--r->n];
		else
			i++;
	}
	return 0;
}

static bool ref_translate(const struct ref *r, uint64_t iova, uint64_t *va, unsigned *prot)
{
	for (size_t i = 0; i < r->n; i++) {
		if (r->a[i].iova <= iova && iova <= r->a[i].last) {
			*va = r->a[i].va + (iova - r->a[i].iova);
			*prot = r->a[i].prot;
			return true;
		}
	}
	return false;
}

static void random_map(struct be_map *m)
{
	uint64_t pages = 1 + rnd() % (rnd() % 8 ? 16 : 1100);
	uint64_t iova = WIN_START + (rnd() % WIN_PAGES) * K4;
	if (rnd() % 4 == 0)
		iova &= ~(M2 - 1); /* 2 MiB aligned: large leaves when the VA agrees */
	uint64_t va =
	    arena + (rnd() % 4 ? (iova & (M2 - 1)) : (rnd() % 512) * K4) + (rnd() % 4096) * M2;
	*m = (struct be_map){
	    .va = va, .iova = iova, .len = pages * K4, .prot = 1 + (unsigned)(rnd() % 3), .fd = -1};
}

static void random_unmap(struct ref *r, struct be_unmap *u)
{
	unsigned kind = (unsigned)(rnd() % 8);
	if (r->n && kind < 5) { /* an existing mapping, exactly */
		const struct ref_area *a = &r->a[rnd() % r->n];
		*u = (struct be_unmap){a->iova, a->last - a->iova + 1, 1};
		if (kind == 4) /* ... extended to the next area if it is adjacent */
			for (size_t i = 0; i < r->n; i++)
				if (r->a[i].iova == a->last + 1)
					u->len += r->a[i].last - r->a[i].iova + 1;
	} else if (r->n && kind < 7) { /* a cut of an existing mapping */
		const struct ref_area *a = &r->a[rnd() % r->n];
		uint64_t pages = (a->last - a->iova + 1) / K4;
		uint64_t off = rnd() % pages;
		*u = (struct be_unmap){a->iova + off * K4, (1 + rnd() % (pages - off)) * K4, 1};
	} else {
		*u = (struct be_unmap){WIN_START + (rnd() % WIN_PAGES) * K4, (1 + rnd() % 64) * K4, 1};
	}
}

static void test_differential(void)
{
	const unsigned nops = 120000;
	static struct ref r;
	r.n = 0;
	r.max = 256;
	struct dme_sim_params p = {.max_entries = 256};
	struct dme_sim *s = mk(&p);
	unsigned bad_ret = 0, bad_done = 0, bad_xlate = 0, bad_check = 0, samples = 0;
	uint64_t max_2m = 0, max_1g_tables = 0;
	struct dme_sim_stats st;
	uint64_t hits[256] = {0};
	dme_log_set_hook(NULL, NULL, DME_LOG_NONE); /* expected errors galore */
	for (unsigned op = 0; op < nops;) {
		if (rnd() % 2) {
			struct be_map m[4];
			size_t n = 1 + rnd() % 4, done, want_done = n;
			int want = 0;
			for (size_t i = 0; i < n; i++)
				random_map(&m[i]);
			for (size_t i = 0; i < n && !want; i++) {
				want = ref_map(&r, &m[i]);
				if (want)
					want_done = i;
			}
			int got = be_sim_ops.map(s, m, n, &done);
			bad_ret += got != want;
			bad_done += done != want_done;
			hits[-want]++;
			op += (unsigned)n;
		} else {
			struct be_unmap u[2];
			size_t n = 1 + rnd() % 2, done, want_done = n;
			int want = 0;
			for (size_t i = 0; i < n && !want; i++) {
				random_unmap(&r, &u[i]);
				want = ref_unmap(&r, &u[i]);
				if (want)
					want_done = i;
			}
			n = want ? want_done + 1 : n;
			int got = be_sim_ops.unmap(s, u, n, &done);
			bad_ret += got != want;
			bad_done += done != want_done;
			op += (unsigned)n;
		}
		for (int k = 0; k < 4; k++) {
			uint64_t iova = WIN_START + (rnd() % (WIN_PAGES * K4)), va, wva = 0;
			if (r.n && k % 2) { /* half the samples inside a live mapping */
				const struct ref_area *a = &r.a[rnd() % r.n];
				iova = a->iova + rnd() % (a->last - a->iova + 1);
			}
			unsigned prot, wprot = 0;
			bool want = ref_translate(&r, iova, &wva, &wprot);
			int got = dme_sim_translate(s, iova, &va, &prot);
			bad_xlate += want ? (got || va != wva || prot != wprot) : got != -ENOENT;
			samples++;
		}
		if (op % 10000 < 4)
			bad_check += dme_sim_check(s) != 0;
		dme_sim_stats(s, &st);
		max_2m = st.leaf_entries[2] > max_2m ? st.leaf_entries[2] : max_2m;
		max_1g_tables = st.tables[1] > max_1g_tables ? st.tables[1] : max_1g_tables;
	}
	logcap_install();
	diag("differential: %u ops, %u translate samples; map outcomes ok=%llu EINVAL=%llu "
	     "EEXIST=%llu ENOSPC=%llu",
	     nops, samples, (unsigned long long)hits[0], (unsigned long long)hits[EINVAL],
	     (unsigned long long)hits[EEXIST], (unsigned long long)hits[ENOSPC]);
	ok(bad_ret == 0, "differential: every return code matches the model (%u wrong)", bad_ret);
	ok(bad_done == 0, "differential: every *done matches the model (%u wrong)", bad_done);
	ok(bad_xlate == 0, "differential: every sampled translate matches the model (%u wrong)",
	   bad_xlate);
	ok(bad_check == 0 && dme_sim_check(s) == 0, "differential: table consistent throughout");
	dme_sim_stats(s, &st);
	diag("differential: %zu live mappings at the end; at most %llu 2 MiB leaves and %llu "
	     "4K tables at once; %llu tables retired",
	     r.n, (unsigned long long)max_2m, (unsigned long long)max_1g_tables,
	     (unsigned long long)st.retired_tables);
	ok(st.live_mappings == r.n && max_2m > 0 && hits[ENOSPC] > 0,
	   "differential: live mappings agree; 2 MiB leaves and the entry limit were exercised");
	dme_sim_close(s);
}

/* ---- a device racing map/unmap ------------------------------------------------- */

#define DEV_IOVA 0x40000000ull
#define DEV_LEN (4 * M2)

struct devrace {
	struct dme_sim *s;
	const unsigned char *mem;
	atomic_bool stop;
	atomic_uint running;
	atomic_ulong ok_reads, faults, wrong;
};

/* Reads random IOVAs while the main thread maps and unmaps them: every read
 * either returns exactly the memory behind the IOVA or faults. */
static void *device(void *arg)
{
	struct devrace *d = arg;
	uint64_t x = 0x1234567;
	unsigned char buf[64];
	atomic_fetch_add(&d->running, 1);
	while (!atomic_load_explicit(&d->stop, memory_order_relaxed)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t off = x % (DEV_LEN - sizeof(buf));
		int r = dme_sim_dma_read(d->s, DEV_IOVA + off, buf, sizeof(buf));
		if (r == 0) {
			if (memcmp(buf, d->mem + off, sizeof(buf)))
				atomic_fetch_add_explicit(&d->wrong, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&d->ok_reads, 1, memory_order_relaxed);
		} else if (r == -EFAULT) {
			atomic_fetch_add_explicit(&d->faults, 1, memory_order_relaxed);
		} else {
			atomic_fetch_add_explicit(&d->wrong, 1, memory_order_relaxed);
		}
	}
	return NULL;
}

static void test_device_race(void)
{
	static struct devrace d;
	void *base;
	unsigned char *mem = alloc_aligned(M2, DEV_LEN, &base);
	fill(mem, DEV_LEN, 11);
	struct dme_sim_params p = {.fault_log = 8};
	d.s = mk(&p);
	d.mem = mem;
	pthread_t th;
	pthread_create(&th, NULL, device, &d);
	while (atomic_load(&d.running) < 1)
		sched_yield();
	dme_log_set_hook(NULL, NULL, DME_LOG_NONE); /* faults are expected */
	unsigned bad = 0;
	/* at least 20000 rounds, and on until the device has both read good
	 * bytes and faulted (it may get little CPU on a loaded machine);
	 * bounded so a broken device thread still ends the test */
	for (unsigned i = 0; i < 20000 || ((!atomic_load(&d.ok_reads) || !atomic_load(&d.faults)) &&
					   i < 20000000); i++) {
		uint64_t slot = (rnd() % 3) * M2; /* slot 3 comes and goes below */
		if (rnd() % 2) { /* a whole 2 MiB leaf (retiring an emptied 4K table) */
			bad += map1(d.s, (uintptr_t)mem + slot, DEV_IOVA + slot, M2, RW) != 0;
			bad += unmap1(d.s, DEV_IOVA + slot, M2) != 0;
		} else { /* a few 4K pages */
			uint64_t pg = (rnd() % 500) * K4, len = (1 + rnd() % 12) * K4;
			bad += map1(d.s, (uintptr_t)mem + slot + pg, DEV_IOVA + slot + pg, len,
				    RW) != 0;
			bad += unmap1(d.s, DEV_IOVA + slot + pg, len) != 0;
		}
		if (i % 8 == 0) /* something stays mapped for a while */
			map1(d.s, (uintptr_t)mem + 3 * M2, DEV_IOVA + 3 * M2, M2, RW);
		else if (i % 8 == 4)
			unmap1(d.s, DEV_IOVA + 3 * M2, M2);
	}
	atomic_store(&d.stop, true);
	pthread_join(th, NULL);
	logcap_install();
	struct dme_sim_stats st;
	dme_sim_stats(d.s, &st);
	diag("device race: %lu good reads, %lu faults, %llu tables retired",
	     atomic_load(&d.ok_reads), atomic_load(&d.faults), (unsigned long long)st.retired_tables);
	ok(atomic_load(&d.wrong) == 0,
	   "device race: every DMA racing map/unmap read the right bytes or faulted");
	ok(bad == 0 && atomic_load(&d.ok_reads) > 0 && atomic_load(&d.faults) > 0 &&
		   st.retired_tables > 0,
	   "device race: maps, unmaps, good reads, faults and table retirements all happened");
	ok_eq(dme_sim_check(d.s), 0, "device race: table consistent");
	dme_sim_close(d.s);
	munmap(base, DEV_LEN + M2);
}

int main(void)
{
	void *arena_base;
	arena = (uintptr_t)alloc_aligned(G1, ARENA_LEN, &arena_base);
	if (!arena)
		tap_skip_all("cannot reserve 8 GiB of address space");
	logcap_install();
	test_open_geometry();
	test_pt_4k();
	test_pt_2m();
	test_pt_1g();
	test_map_errors();
	test_unmap_errors();
	test_copy();
	test_attach();
	test_map_pin_check();
	test_faults();
	test_inject_map();
	test_inject_unmap();
	test_inject_misc();
	test_differential();
	test_device_race();
	return tap_done();
}
