/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - dme_mem_alloc(): choosing a memory source by policy and walking
 * down the fallback chain  1 GiB hugetlb -> 2 MiB hugetlb -> THP -> 4 KiB.
 *
 * Each step either succeeds, reports itself unavailable (the loop then logs a
 * warning naming the reason and the next step, and records the fallback), or
 * fails hard (bad params, memlock budget, mbind/mlock errors): then nothing
 * of the attempt survives and the caller gets one clear error. A hugetlb step
 * tries memfd_create() first and a hugetlbfs mount second.
 *
 * Order inside a step matters: the budget is checked before anything is made
 * resident; mbind() and MADV_HUGEPAGE come before the first fault so pages are
 * born right; MADV_DONTFORK before prefault; placement is verified last.
 * No state of its own besides the counters in stats.c; thread-safe.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "compiler.h"
#include "log_internal.h"
#include "pin.h"

#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

enum step { STEP_1G, STEP_2M, STEP_THP, STEP_4K };

static const char *const step_names[] = {"1 GiB hugetlb pages", "2 MiB hugetlb pages",
					 "transparent huge pages", "4 KiB pages"};

#define UNAVAILABLE 1 /* a step's "try the next one" */

struct alloc_ctx {
	const struct dme_mem_params *p;
	struct pin_place pl;
	struct dme_mem *m;
	enum dme_mem_fallback why; /* reason, when a step returns UNAVAILABLE */
	char msg[400];		   /* its explanation */
	bool touched;		   /* prefault fell back to touching */
};

__attribute__((format(printf, 3, 4))) static int
unavailable(struct alloc_ctx *c, enum dme_mem_fallback why, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	c->why = why;
	return UNAVAILABLE;
}

static const char *node_str(const struct pin_place *pl, char *buf, size_t len)
{
	if (pl->interleave)
		snprintf(buf, len, "interleaved");
	else
		snprintf(buf, len, "node %d", pl->node);
	return buf;
}

/* Places, fork-protects and prefaults a fresh mapping (not yet faulted). */
static int make_resident(struct alloc_ctx *c, void *va, size_t len, size_t page_size)
{
	int ret = pin_place_apply(va, len, &c->pl);
	if (ret)
		return ret;
	if (madvise(va, len, MADV_DONTFORK)) {
		ret = -errno;
		dme_err("madvise(%p, %zu, MADV_DONTFORK) failed: %s", va, len, strerror(-ret));
		return ret;
	}
	return pin_populate(va, len, page_size, c->p->populate_threads,
			    c->p->flags & DME_MEM_F_TOUCH, &c->touched);
}

static int open_hugetlbfs_file(size_t page_size, char *dir, size_t dlen)
{
	int ret = pin_hugetlbfs_dir(page_size, dir, dlen);
	if (ret)
		return ret;
	char path[4200];
	snprintf(path, sizeof(path), "%s/dme-dma.XXXXXX", dir);
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path); /* the fd keeps the file; nothing is left behind on exit */
	return fd;
}

static int try_hugetlb(struct alloc_ctx *c, size_t page_size)
{
	const struct dme_mem_params *p = c->p;
	char sz[32], nd[32], dir[4096] = "";
	uint64_t avail, len;
	enum dme_mem_source src = DME_MEM_SRC_HUGETLB_MEMFD;
	int fd = -1, ret;

	pin_fmt_size(page_size, sz, sizeof(sz));
	node_str(&c->pl, nd, sizeof(nd));
	if (!align_up_checked(p->len, page_size, &len) || len > SIZE_MAX)
		return -EINVAL;
	uint64_t need = len / page_size;
	ret = dme_mem_hugepages_free(page_size, c->pl.interleave ? -1 : c->pl.node, &avail);
	if (ret == -ENOENT)
		return unavailable(c, DME_MEM_FB_HUGETLB_SHORT,
				   "this kernel has no %s hugetlb pool", sz);
	if (ret)
		return unavailable(c, DME_MEM_FB_HUGETLB_SHORT,
				   "cannot read the %s hugetlb pool: %s", sz, strerror(-ret));
	if (avail < need)
		return unavailable(c, DME_MEM_FB_HUGETLB_SHORT,
				   "%" PRIu64 " free %s hugetlb pages on %s, %" PRIu64 " needed "
				   "(reserve more: hugeadm --pool-pages-min %s:+%" PRIu64 ", or "
				   "nr_hugepages under /sys/devices/system/node/)",
				   avail, sz, nd, need, page_size >= SZ_1G ? "1G" : "2M",
				   need - avail);
	ret = dme_mem_budget_check(len);
	if (ret)
		return ret;

	if (!(p->flags & DME_MEM_F_NO_MEMFD)) {
		unsigned flags =
		    MFD_CLOEXEC | MFD_HUGETLB | (ilog2_u64(page_size) << MFD_HUGE_SHIFT);
		fd = memfd_create("dme-dma", flags);
		if (fd < 0) {
			ret = errno;
			pin_note_fallback(c->m, DME_MEM_FB_MEMFD_REFUSED);
			dme_warn("DMA memory: memfd_create(MFD_HUGETLB, %s) failed: %s; trying a "
				 "hugetlbfs mount",
				 sz, strerror(ret));
		}
	}
	if (fd < 0) {
		src = DME_MEM_SRC_HUGETLBFS;
		fd = open_hugetlbfs_file(page_size, dir, sizeof(dir));
		if (fd == -ENOENT || fd == -EACCES)
			return unavailable(c, DME_MEM_FB_HUGETLB_FAILED,
					   "no %shugetlbfs mount with pagesize=%s in /proc/mounts "
					   "(create one: hugeadm --create-mounts)",
					   fd == -EACCES ? "writable " : "", sz);
		if (fd < 0)
			return unavailable(c, DME_MEM_FB_HUGETLB_FAILED,
					   "cannot create a file on the %s hugetlbfs mount %s: %s",
					   sz, dir, strerror(-fd));
	}
	if (ftruncate(fd, (off_t)len)) {
		ret = errno;
		close(fd);
		return unavailable(c, DME_MEM_FB_HUGETLB_FAILED, "ftruncate of the %s %s file: %s",
				   sz, dme_mem_source_name(src), strerror(ret));
	}
	/* shared, so the pages the engine pins through the fd are these */
	void *va = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (va == MAP_FAILED) {
		ret = errno;
		close(fd);
		return unavailable(c, DME_MEM_FB_HUGETLB_FAILED,
				   "mmap of %" PRIu64 " %s hugetlb pages failed: %s (taken by "
				   "another process meanwhile?)",
				   need, sz, strerror(ret));
	}
	ret = make_resident(c, va, len, page_size);
	if (ret == -ENOMEM || ret == -EFAULT || ret == -EHWPOISON) {
		munmap(va, len);
		close(fd);
		return unavailable(c, DME_MEM_FB_HUGETLB_FAILED,
				   "prefaulting %" PRIu64 " %s hugetlb pages on %s failed: %s",
				   need, sz, nd, strerror(-ret));
	}
	if (ret)
		goto err_unmap;
	c->m->va = va;
	c->m->len = len;
	c->m->page_size = page_size;
	c->m->source = src;
	c->m->fd = fd;
	c->m->fd_offset = 0;
	return 0;
err_unmap:
	munmap(va, len);
	close(fd);
	return ret;
}

/* Maps @len bytes of anonymous memory aligned to @align; logs on failure. */
static int map_anon_aligned(size_t len, size_t align, void **out)
{
	size_t extra = align > pin_base_page() ? align : 0;
	char a[32];
	char *raw =
	    mmap(NULL, len + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		int err = errno;
		dme_err("mmap of %s anonymous memory failed: %s", pin_fmt_size(len, a, sizeof(a)),
			strerror(err));
		return -err;
	}
	char *va = raw + (align_down((uintptr_t)raw + align - 1, align) - (uintptr_t)raw);
	if (va > raw)
		munmap(raw, (size_t)(va - raw));
	if (raw + extra > va)
		munmap(va + len, (size_t)(raw + extra - va));
	*out = va;
	return 0;
}

static int try_thp(struct alloc_ctx *c)
{
	const struct dme_mem_params *p = c->p;
	uint64_t len, huge = 0;
	char a[32], b[32];
	int ret;

	enum thp_mode mode = pin_thp_mode();
	if (mode == THP_NEVER || mode == THP_ABSENT || mode == THP_PROCESS_OFF)
		return unavailable(c, DME_MEM_FB_THP_DISABLED, "transparent huge pages are %s",
				   mode == THP_NEVER	? "disabled (/sys/kernel/mm/"
							  "transparent_hugepage/enabled is never)"
				   : mode == THP_ABSENT ? "not built into this kernel"
							: "disabled for this process "
							  "(prctl PR_SET_THP_DISABLE)");
	if (!align_up_checked(p->len, SZ_2M, &len) || len > SIZE_MAX - SZ_2M)
		return -EINVAL;
	ret = dme_mem_budget_check(len);
	if (ret)
		return ret;
	void *va;
	ret = map_anon_aligned(len, SZ_2M, &va);
	if (ret)
		return ret;
	if (madvise(va, len, MADV_HUGEPAGE)) {
		ret = errno;
		munmap(va, len);
		return unavailable(c, DME_MEM_FB_THP_DISABLED, "madvise(MADV_HUGEPAGE) failed: %s",
				   strerror(ret));
	}
	ret = make_resident(c, va, len, SZ_2M);
	if (ret) {
		if (ret == -ENOMEM || ret == -EFAULT)
			dme_err("prefaulting %s of THP memory failed: %s",
				pin_fmt_size(len, a, sizeof(a)), strerror(-ret));
		goto err_unmap;
	}
	c->m->va = va;
	c->m->len = len;
	c->m->source = DME_MEM_SRC_THP;
	c->m->page_size = SZ_2M;

	ret = pin_huge_scan((uintptr_t)va, len, &huge, NULL, NULL);
	if (!ret && huge < len) {
		/* synchronous collapse (Linux 6.1+); its result is what the rescan sees */
		(void)madvise(va, len, MADV_COLLAPSE);
		ret = pin_huge_scan((uintptr_t)va, len, &huge, NULL, NULL);
	}
	if (ret == -EOPNOTSUPP) {
		c->m->page_size = pin_base_page();
		pin_note_fallback(c->m, DME_MEM_FB_THP_PARTIAL);
		dme_warn("DMA memory at %p: cannot verify its THP backing (PAGEMAP_SCAN needs "
			 "Linux 6.7); reporting 4 KiB pages",
			 va);
	} else if (ret) {
		dme_err("PAGEMAP_SCAN of THP memory at %p failed: %s", va, strerror(-ret));
		goto err_unmap;
	} else if (huge < len) {
		c->m->page_size = pin_base_page();
		pin_note_fallback(c->m, DME_MEM_FB_THP_PARTIAL);
		dme_warn("DMA memory at %p: only %s of %s is backed by 2 MiB pages (memory "
			 "fragmented, or THP defrag off); reporting 4 KiB pages",
			 va, pin_fmt_size(huge, a, sizeof(a)), pin_fmt_size(len, b, sizeof(b)));
	}
	return 0;
err_unmap:
	munmap(va, len);
	c->m->va = NULL;
	return ret;
}

static int try_4k(struct alloc_ctx *c)
{
	size_t pg = pin_base_page();
	uint64_t len;
	char a[32];

	if (!align_up_checked(c->p->len, pg, &len) || len > SIZE_MAX - pg)
		return -EINVAL;
	int ret = dme_mem_budget_check(len);
	if (ret)
		return ret;
	void *va;
	ret = map_anon_aligned(len, pg, &va);
	if (ret)
		return ret;
	ret = make_resident(c, va, len, pg);
	if (ret) {
		if (ret == -ENOMEM || ret == -EFAULT)
			dme_err("prefaulting %s of 4 KiB pages failed: %s",
				pin_fmt_size(len, a, sizeof(a)), strerror(-ret));
		munmap(va, len);
		return ret;
	}
	c->m->va = va;
	c->m->len = len;
	c->m->page_size = pg;
	c->m->source = DME_MEM_SRC_4K;
	return 0;
}

static int try_step(struct alloc_ctx *c, enum step s)
{
	switch (s) {
	case STEP_1G:
		return try_hugetlb(c, SZ_1G);
	case STEP_2M:
		return try_hugetlb(c, SZ_2M);
	case STEP_THP:
		return try_thp(c);
	case STEP_4K:
		break;
	}
	return try_4k(c);
}

static enum step first_step(enum dme_hugepage_pref pref)
{
	switch (pref) {
	case DME_HUGEPAGE_AUTO:
	case DME_HUGEPAGE_1G:
		return STEP_1G;
	case DME_HUGEPAGE_2M:
		return STEP_2M;
	case DME_HUGEPAGE_THP:
		return STEP_THP;
	case DME_HUGEPAGE_NONE:
		break;
	}
	return STEP_4K;
}

/* auto takes 1 GiB pages only when rounding up wastes at most 1/8 of the request */
static bool auto_wants_1g(size_t len)
{
	uint64_t r;
	return align_up_checked(len, SZ_1G, &r) && (r - len) <= len / 8;
}

static int check_params(const struct dme_mem_params *p)
{
	if (!p->len) {
		dme_err("DMA memory: zero length");
		return -EINVAL;
	}
	if (p->len > SIZE_MAX - SZ_1G) {
		dme_err("DMA memory: length %zu is too large", p->len);
		return -EINVAL;
	}
	if ((unsigned)p->hugepage > DME_HUGEPAGE_NONE) {
		dme_err("DMA memory: unknown hugepage preference %d", (int)p->hugepage);
		return -EINVAL;
	}
	if (p->populate_threads > 64) {
		dme_err("DMA memory: %u prefault threads asked, at most 64", p->populate_threads);
		return -EINVAL;
	}
	if (p->flags & ~DME_MEM_F_ALL) {
		dme_err("DMA memory: unknown flags %#x", p->flags & ~DME_MEM_F_ALL);
		return -EINVAL;
	}
	return 0;
}

DME_EXPORT int dme_mem_alloc(const struct dme_mem_params *p, struct dme_mem **out)
{
	struct alloc_ctx c = {.p = p};
	char sz[32], nd[32];
	int ret;

	if (!p || !out) {
		ret = -EINVAL;
		goto err;
	}
	ret = check_params(p);
	if (ret)
		goto err;
	c.m = calloc(1, sizeof(*c.m));
	if (!c.m) {
		ret = -ENOMEM;
		goto err;
	}
	c.m->fd = -1;
	c.m->node_actual = -1;
	ret = pin_place_resolve(p, c.m, &c.pl);
	if (ret)
		goto err_free;
	c.m->node_wanted = c.pl.interleave ? -1 : c.pl.node;
	pin_fmt_size(p->len, sz, sizeof(sz));
	node_str(&c.pl, nd, sizeof(nd));

	for (enum step s = first_step(p->hugepage);; s++) {
		if (s == STEP_1G && p->hugepage == DME_HUGEPAGE_AUTO && !auto_wants_1g(p->len))
			continue;
		c.touched = false;
		ret = try_step(&c, s);
		if (ret <= 0)
			break;
		if (s == STEP_4K) { /* the last step never reports UNAVAILABLE; be safe */
			ret = -ENOMEM;
			goto err_free;
		}
		/* UNAVAILABLE: say why, then take the next step (s < STEP_4K here) */
		if (p->flags & DME_MEM_F_STRICT) {
			dme_err("DMA memory (%s, %s): %s; not falling back (strict)", sz, nd,
				c.msg);
			ret = -ENOMEM;
			goto err_free;
		}
		if (s == STEP_1G && p->hugepage == DME_HUGEPAGE_AUTO &&
		    c.why == DME_MEM_FB_HUGETLB_SHORT) {
			/* auto choosing between hugetlb sizes is policy, not a fallback */
			dme_info("DMA memory (%s, %s): %s; auto uses 2 MiB pages", sz, nd, c.msg);
			continue;
		}
		pin_note_fallback(c.m, c.why);
		dme_warn("DMA memory (%s, %s): %s; falling back to %s", sz, nd, c.msg,
			 step_names[s + 1]);
	}
	if (ret)
		goto err_free;

	struct dme_mem *m = c.m;
	if (c.touched) {
		pin_note_fallback(m, DME_MEM_FB_POPULATE_TOUCH);
		if (p->flags & DME_MEM_F_TOUCH)
			dme_info("DMA memory at %p: prefaulted by touching each page (asked)",
				 m->va);
		else
			dme_warn("DMA memory at %p: the kernel refused MADV_POPULATE_WRITE (needs "
				 "Linux 5.14); prefaulted by touching each page",
				 m->va);
	}
	if (p->mlock) {
		if (mlock(m->va, m->len)) {
			ret = -errno;
			dme_err("mlock of %s of DMA memory at %p failed: %s",
				pin_fmt_size(m->len, sz, sizeof(sz)), m->va, strerror(-ret));
			goto err_unmap;
		}
		m->locked = true;
	}
	if (p->flags & DME_MEM_F_NO_VERIFY)
		m->node_actual = -1;
	else if (pin_place_single_node(&c.pl))
		m->node_actual = c.pl.node; /* one memory node: nowhere else to land */
	else
		pin_place_verify(m, &c.pl);
	pin_stat_alloc(m);
	char pg[32];
	dme_dbg("DMA memory: %s in %s pages (%s) at %p, %s, fd %d",
		pin_fmt_size(m->len, sz, sizeof(sz)), pin_fmt_size(m->page_size, pg, sizeof(pg)),
		dme_mem_source_name(m->source), m->va, nd, m->fd);
	*out = m;
	return 0;
err_unmap:
	munmap(c.m->va, c.m->len);
	if (c.m->fd >= 0)
		close(c.m->fd);
err_free:
	free(c.m);
err:
	pin_stat_failure();
	return ret;
}

DME_EXPORT void dme_mem_free(struct dme_mem *m)
{
	if (!m)
		return;
	munmap(m->va, m->len);
	if (m->fd >= 0)
		close(m->fd);
	pin_stat_free(m);
	free(m);
}

DME_EXPORT void dme_mem_params_init(struct dme_mem_params *p, size_t len)
{
	memset(p, 0, sizeof(*p));
	p->len = len;
	p->hugepage = DME_HUGEPAGE_AUTO;
	p->numa = DME_NUMA_LOCAL;
	p->node = -1;
}

DME_EXPORT int dme_mem_params_from_config(struct dme_mem_params *p, const struct dme_config *cfg,
					  size_t len)
{
	struct dme_mem_params r;
	dme_mem_params_init(&r, len);
	r.hugepage = cfg->hugepage;
	r.numa = cfg->numa;
	r.mlock = cfg->mlock;
	if (cfg->numa == DME_NUMA_NODE) {
		r.node = cfg->numa_node;
	} else if (cfg->numa == DME_NUMA_DEVICE && cfg->nr_devices) {
		int ret = dme_pci_numa_node(cfg->devices[0], &r.node);
		if (ret)
			return ret;
	}
	*p = r;
	return 0;
}
