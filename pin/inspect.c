/* SPDX-License-Identifier: MIT */
/*
 * inspect.c - memory the caller already owns: validation for registration
 * (/proc/self/smaps + PAGEMAP_SCAN) and physical addresses for the no-IOMMU
 * mode (/proc/self/pagemap).
 *
 * Validation walks the VMAs of smaps in address order and requires them to
 * cover the range without a gap, readable (and writable when the device will
 * write), and not VM_IO/VM_PFNMAP. The page size of a hugetlb VMA is its
 * KernelPageSize; inside other VMAs, PMD-mapped THP regions found by
 * PAGEMAP_SCAN are 2 MiB, everything else 4 KiB. The answer is a snapshot:
 * another thread may change the mappings right after. Thread-safe; no state.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compiler.h"
#include "log_internal.h"
#include "pin.h"

struct vma {
	uint64_t start, end;
	char perms[8];
	char path[64]; /* enough to tell "/memfd:" from the rest */
	uint64_t kernel_page;
	bool dontfork, io, hugetlb;
};

struct walk {
	uint64_t at, end; /* next byte to account for; end of the range */
	bool write;
	struct dme_mem_segment *segs;
	size_t nr, cap;
	/* for the THP scan callback */
	struct dme_mem_segment tmpl;
	uint64_t cursor;
	int err;
};

static int push(struct walk *w, const struct dme_mem_segment *s)
{
	if (!s->len)
		return 0;
	if (w->nr) {
		struct dme_mem_segment *l = &w->segs[w->nr - 1];
		if (l->va + l->len == s->va && l->page_size == s->page_size &&
		    l->source == s->source && l->writable == s->writable &&
		    l->dontfork == s->dontfork) {
			l->len += s->len;
			return 0;
		}
	}
	if (w->nr == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 8;
		struct dme_mem_segment *n = realloc(w->segs, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		w->segs = n;
		w->cap = cap;
	}
	w->segs[w->nr++] = *s;
	return 0;
}

/* PAGEMAP_SCAN callback: a huge region inside the part being split. */
static void thp_region(void *ctx, uint64_t start, uint64_t end)
{
	struct walk *w = ctx;
	struct dme_mem_segment s = w->tmpl;
	if (w->err)
		return;
	s.va = w->cursor;
	s.len = start - w->cursor;
	w->err = push(w, &s); /* 4 KiB part before the huge region */
	s.va = start;
	s.len = end - start;
	s.page_size = SZ_2M;
	s.source = DME_MEM_SRC_THP;
	if (!w->err)
		w->err = push(w, &s);
	w->cursor = end;
}

/* Accounts for the part of @v inside the range; 1 when the range is done. */
static int visit(struct walk *w, const struct vma *v)
{
	if (v->end <= w->at)
		return 0;
	if (v->start > w->at) {
		dme_err("memory [%#" PRIx64 ", %#" PRIx64 ") is not mapped", w->at,
			v->start < w->end ? v->start : w->end);
		return -EFAULT;
	}
	uint64_t end = v->end < w->end ? v->end : w->end;
	if (v->perms[0] != 'r') {
		dme_err("memory at %#" PRIx64 " is mapped without read access (%s); a device "
			"cannot use it",
			w->at, v->perms);
		return -EFAULT;
	}
	if (w->write && v->perms[1] != 'w') {
		dme_err("memory [%#" PRIx64 ", %#" PRIx64 ") is read-only (%s) but the device "
			"is to write it",
			w->at, end, v->perms);
		return -EACCES;
	}
	if (v->io) {
		dme_err("memory at %#" PRIx64 " is an I/O mapping (VM_IO/VM_PFNMAP) and cannot be "
			"pinned",
			w->at);
		return -EFAULT;
	}
	struct dme_mem_segment s = {
	    .va = w->at,
	    .len = end - w->at,
	    .page_size = pin_base_page(),
	    .source = DME_MEM_SRC_4K,
	    .writable = v->perms[1] == 'w',
	    .dontfork = v->dontfork,
	};
	int ret;
	if (v->hugetlb || v->kernel_page > pin_base_page()) {
		s.page_size = v->kernel_page;
		s.source = !strncmp(v->path, "/memfd:", 7) ? DME_MEM_SRC_HUGETLB_MEMFD
							   : DME_MEM_SRC_HUGETLBFS;
		ret = push(w, &s);
	} else {
		uint64_t huge;
		w->tmpl = s;
		w->cursor = s.va;
		w->err = 0;
		ret = pin_huge_scan(s.va, s.len, &huge, thp_region, w);
		if (ret == -EOPNOTSUPP) { /* before Linux 6.7: say 4 KiB, the safe answer */
			w->cursor = s.va;
			ret = 0;
		}
		ret = ret ? ret : w->err;
		if (!ret) {
			s.va = w->cursor; /* the 4 KiB tail after the last huge region */
			s.len = end - w->cursor;
			ret = push(w, &s);
		}
	}
	if (ret)
		return ret;
	w->at = end;
	return end == w->end;
}

static bool is_header(const char *line)
{
	/* VMA lines start with a lower-case hex address; field names are capitalised */
	return (line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f');
}

static void parse_header(const char *line, struct vma *v)
{
	int n = 0;
	memset(v, 0, sizeof(*v));
	if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %*x %*s %*u %n", &v->start, &v->end, v->perms,
		   &n) < 3)
		return;
	if (n > 0) {
		snprintf(v->path, sizeof(v->path), "%s", line + n);
		v->path[strcspn(v->path, "\n")] = 0;
	}
	v->kernel_page = pin_base_page();
}

static void parse_flags(const char *line, struct vma *v)
{
	/* "VmFlags: rd wr mr mw me dc ac sd ht" */
	v->dontfork = pin_vmflag(line, "dc");
	v->io = pin_vmflag(line, "io") || pin_vmflag(line, "pf");
	v->hugetlb = pin_vmflag(line, "ht");
}

static int walk_smaps(struct walk *w)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char *line = NULL;
	size_t cap = 0;
	struct vma v;
	bool have = false;
	uint64_t kb;
	int ret = 0;

	if (!f) {
		ret = -errno;
		dme_err("cannot open /proc/self/smaps: %s", strerror(-ret));
		return ret;
	}
	while (!ret && getline(&line, &cap, f) > 0) {
		if (is_header(line)) {
			if (have)
				ret = visit(w, &v);
			parse_header(line, &v);
			have = true;
		} else if (have && sscanf(line, "KernelPageSize: %" SCNu64 " kB", &kb) == 1) {
			v.kernel_page = kb << 10;
		} else if (have && !strncmp(line, "VmFlags:", 8)) {
			parse_flags(line, &v);
		}
	}
	if (!ret && have)
		ret = visit(w, &v);
	free(line);
	fclose(f);
	if (ret == 0 && w->at < w->end) {
		dme_err("memory [%#" PRIx64 ", %#" PRIx64 ") is not mapped", w->at, w->end);
		ret = -EFAULT;
	}
	return ret < 0 ? ret : 0;
}

DME_EXPORT int dme_mem_inspect(const void *va, size_t len, bool write,
			       struct dme_mem_segment **segs, size_t *nr)
{
	uint64_t start = (uintptr_t)va, pg = pin_base_page();
	struct walk w = {.at = start, .end = start + len, .write = write};

	if (!segs || !nr)
		return -EINVAL;
	if (!len) {
		dme_err("caller memory at %p: zero length", va);
		return -EINVAL;
	}
	if ((start | len) & (pg - 1)) {
		dme_err("caller memory [%p, +%#zx) is not aligned to the %" PRIu64
			"-byte page size",
			va, len, pg);
		return -EINVAL;
	}
	if (w.end < start || !w.end) {
		dme_err("caller memory [%p, +%#zx) wraps around the address space", va, len);
		return -EINVAL;
	}
	int ret = walk_smaps(&w);
	if (ret) {
		free(w.segs);
		return ret;
	}
	*segs = w.segs;
	*nr = w.nr;
	return 0;
}

#define PM_PRESENT (1ull << 63)
#define PM_PFN_MASK ((1ull << 55) - 1)
#define PA_CHUNK 512

DME_EXPORT int dme_mem_pa_array(const void *va, size_t n, size_t stride, uint64_t *pa)
{
	uint64_t start = (uintptr_t)va, pg = pin_base_page(), e[PA_CHUNK];
	int ret = 0;

	if (!n || !pa)
		return -EINVAL;
	if (n == 1)
		stride = 0;
	if (n > 1 && (!stride || (n - 1) > (UINT64_MAX - start) / stride)) {
		dme_err("physical addresses: %zu addresses %zu bytes apart from %p wrap around", n,
			stride, va);
		return -EINVAL;
	}
	if (!pin_has_cap(CAP_SYS_ADMIN)) {
		dme_err("reading physical addresses from /proc/self/pagemap needs CAP_SYS_ADMIN "
			"(the kernel hides frame numbers otherwise); run privileged or use an "
			"IOMMU backend");
		return -EPERM;
	}
	uint64_t *tmp = malloc(n * sizeof(*tmp));
	if (!tmp)
		return -ENOMEM;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		dme_err("cannot open /proc/self/pagemap: %s", strerror(-ret));
		goto out_free;
	}
	for (size_t i = 0; i < n;) {
		/* one pread per chunk when the addresses are consecutive pages */
		size_t cnt = stride == pg ? (n - i < PA_CHUNK ? n - i : PA_CHUNK) : 1;
		uint64_t a = start + i * stride;
		size_t want = cnt * sizeof(uint64_t);
		ssize_t got = pread(fd, e, want, (off_t)(a / pg * sizeof(uint64_t)));
		if (got != (ssize_t)want) {
			ret = got < 0 ? -errno : -EIO;
			dme_err("reading /proc/self/pagemap at %#" PRIx64 " failed: %s", a,
				strerror(-ret));
			goto out_close;
		}
		for (size_t k = 0; k < cnt; k++, a += stride) {
			if (!(e[k] & PM_PRESENT)) {
				dme_err("page at %#" PRIx64 " is not present (never touched, or "
					"swapped out): prefault and lock it before asking its "
					"physical address",
					a);
				ret = -EFAULT;
				goto out_close;
			}
			if (!(e[k] & PM_PFN_MASK)) {
				dme_err("/proc/self/pagemap hides the frame number of %#" PRIx64
					" (CAP_SYS_ADMIN missing in this namespace?)",
					a);
				ret = -EPERM;
				goto out_close;
			}
			tmp[i + k] = (e[k] & PM_PFN_MASK) * pg + a % pg;
		}
		i += cnt;
	}
	memcpy(pa, tmp, n * sizeof(*tmp));
out_close:
	close(fd);
out_free:
	free(tmp);
	return ret;
}

DME_EXPORT int dme_mem_pa(const void *va, uint64_t *pa)
{
	return dme_mem_pa_array(va, 1, 0, pa);
}
