/* SPDX-License-Identifier: MIT */
/*
 * test-mem-inspect: validating caller memory for registration. Each bad
 * input has its own error; good memory is split into segments by backing
 * page size (4 KiB, THP, hugetlb) and attributes, in address order.
 */
#include <errno.h>
#include <stdlib.h>

#include <dme/mem.h>

#include "logcap.h"
#include "memtest.h"
#include "tap.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static struct dme_mem_segment *segs;
static size_t nsegs;

static int inspect(void *va, size_t len, bool write)
{
	free(segs);
	segs = NULL;
	nsegs = 0;
	return dme_mem_inspect(va, len, write, &segs, &nsegs);
}

/* A reserved, inaccessible window to carve fixed mappings out of. */
static char *reserve(size_t len, size_t align)
{
	char *raw =
	    mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	return (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
}

static void test_bad_inputs(void)
{
	char *va = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct dme_mem_segment *s = (void *)0x1;
	size_t n = 99;
	logcap_reset();
	ok_eq(dme_mem_inspect(va + 1, 4096, true, &s, &n), -EINVAL, "unaligned va: -EINVAL");
	ok(strstr(logcap.last, "not aligned") && s == (void *)0x1 && n == 99,
	   "unaligned va: message, outs untouched");
	ok_eq(dme_mem_inspect(va, 4095, true, &s, &n), -EINVAL, "unaligned length: -EINVAL");
	ok_eq(dme_mem_inspect(va, 0, true, &s, &n), -EINVAL, "zero length: -EINVAL");
	logcap_reset();
	ok_eq(dme_mem_inspect((void *)(uintptr_t)(UINT64_MAX - 0xfff), 0x2000, true, &s, &n),
	      -EINVAL, "overflowing length: -EINVAL");
	ok(strstr(logcap.last, "wraps") != NULL, "overflowing length: message says it wraps");
	ok_eq(dme_mem_inspect(va, SIZE_MAX & ~(size_t)4095, true, &s, &n), -EINVAL,
	      "huge length: -EINVAL");
	ok_eq(dme_mem_inspect(va, 4096, true, NULL, &n), -EINVAL, "NULL segs: -EINVAL");

	/* a hole in the middle */
	munmap(va + 2 * 4096, 4096);
	logcap_reset();
	ok_eq(dme_mem_inspect(va, 4 * 4096, false, &s, &n), -EFAULT, "hole: -EFAULT");
	char want[64];
	snprintf(want, sizeof(want), "%#" PRIxPTR, (uintptr_t)(va + 2 * 4096));
	ok(strstr(logcap.last, want) && strstr(logcap.last, "not mapped"),
	   "hole: message names the first unmapped address %s", want);
	ok(s == (void *)0x1 && n == 99, "hole: outs untouched");
	ok_eq(dme_mem_inspect(va + 3 * 4096, 4096, false, &s, &n), 0,
	      "the page after the hole is fine");
	free(s);
	/* read-only */
	mprotect(va, 4096, PROT_READ);
	logcap_reset();
	ok_eq(inspect(va, 2 * 4096, true), -EACCES, "read-only for write: -EACCES");
	ok(strstr(logcap.last, "read-only") != NULL, "read-only for write: message says so");
	ok_eq(inspect(va, 2 * 4096, false), 0, "read-only for read: fine");
	ok(nsegs == 2 && !segs[0].writable && segs[1].writable,
	   "read-only for read: two segments, writability reported");
	mprotect(va, 4096, PROT_NONE);
	ok_eq(inspect(va, 4096, false), -EFAULT, "PROT_NONE: -EFAULT");
	munmap(va, 4 * 4096);
	ok_eq(inspect(va, 4096, false), -EFAULT, "unmapped entirely: -EFAULT");
}

static void test_4k_and_dontfork(void)
{
	size_t len = 16 * 4096;
	char *va = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ok_eq(inspect(va, len, true), 0, "4k: inspected");
	ok(nsegs == 1 && segs[0].va == (uintptr_t)va && segs[0].len == len &&
	       segs[0].page_size == 4096 && segs[0].source == DME_MEM_SRC_4K && segs[0].writable &&
	       !segs[0].dontfork,
	   "4k: one writable 4 KiB segment, no DONTFORK");
	madvise(va + 8 * 4096, 8 * 4096, MADV_DONTFORK);
	ok(!inspect(va, len, true) && nsegs == 2 && !segs[0].dontfork && segs[1].dontfork &&
	       segs[1].va == (uintptr_t)(va + 8 * 4096),
	   "4k: DONTFORK half reported as its own segment");
	munmap(va, len);
}

static void test_thp(void)
{
	char *va = reserve(8 << 20, MT_2M);
	if (!va || mmap(va, 8 << 20, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) {
		ok(0, "thp: mmap");
		return;
	}
	madvise(va, 8 << 20, MADV_NOHUGEPAGE);
	madvise(va + (2 << 20), 4 << 20, MADV_HUGEPAGE);
	if (madvise(va, 8 << 20, MADV_POPULATE_WRITE))
		memset(va, 1, 8 << 20);
	ok_eq(inspect(va, 8 << 20, true), 0, "thp: inspected");
	size_t huge = 0;
	for (size_t i = 0; i < nsegs; i++)
		if (segs[i].source == DME_MEM_SRC_THP && segs[i].page_size == MT_2M)
			huge += segs[i].len;
	if (huge == 0) {
		tap_skip("no THP was handed out (THP off, memory fragmented or no PAGEMAP_SCAN)",
			 "thp: 4 KiB | 4 MiB of THP | 4 KiB, in order");
	} else {
		ok(nsegs == 3 && segs[0].page_size == 4096 && segs[1].page_size == MT_2M &&
		       segs[1].va == (uintptr_t)(va + (2 << 20)) && segs[1].len == (4u << 20) &&
		       segs[2].page_size == 4096,
		   "thp: 4 KiB | 4 MiB of THP | 4 KiB, in order");
	}
	munmap(va, 8 << 20);
}

static void test_hugetlb_mixed(void)
{
	struct hp_res r;
	if (!hp_reserve(&r, 0, 2048, 1)) {
		tap_skip("cannot reserve a 2 MiB page", "hugetlb");
		return;
	}
	/* [ 2 MiB of 4 KiB rw | one 2 MiB hugetlb memfd page | 2 MiB read-only ] */
	char *va = reserve(6 << 20, MT_2M);
	int fd = memfd_create("t", MFD_CLOEXEC | MFD_HUGETLB | (21u << 26));
	bool mapped = va && fd >= 0 && !ftruncate(fd, MT_2M) &&
		      mmap(va, MT_2M, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED &&
		      mmap(va + MT_2M, MT_2M, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
			   0) != MAP_FAILED &&
		      mmap(va + 2 * MT_2M, MT_2M, PROT_READ,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED;
	ok(mapped, "hugetlb: three adjacent mappings");
	if (!mapped)
		goto out;
	ok_eq(inspect(va, 2 * MT_2M, true), 0, "hugetlb: 4k + hugetlb inspected");
	ok(nsegs == 2 && segs[0].page_size == 4096 && segs[1].page_size == MT_2M &&
	       segs[1].source == DME_MEM_SRC_HUGETLB_MEMFD && segs[1].va == (uintptr_t)(va + MT_2M),
	   "hugetlb: second segment is the 2 MiB memfd page");
	ok_eq(inspect(va + MT_2M + 4096, 8192, true), 0, "hugetlb: a part inside the hugepage");
	ok(nsegs == 1 && segs[0].page_size == MT_2M, "hugetlb: part reports 2 MiB backing");
	ok_eq(inspect(va, 3 * MT_2M, true), -EACCES, "hugetlb: with the read-only tail for write");
	ok(!inspect(va, 3 * MT_2M, false) && nsegs == 3 && !segs[2].writable,
	   "hugetlb: with the read-only tail for read: three segments");
out:
	if (va)
		munmap(va, 6 << 20);
	if (fd >= 0)
		close(fd);
	hp_release(&r);
}

static void test_dme_memory(void)
{
	struct dme_mem_params p;
	struct dme_mem *m = NULL;
	dme_mem_params_init(&p, 4 << 20);
	p.hugepage = DME_HUGEPAGE_NONE;
	if (dme_mem_alloc(&p, &m)) {
		ok(0, "dme memory: allocated");
		return;
	}
	ok(!inspect(m->va, m->len, true) && nsegs == 1 && segs[0].dontfork &&
	       segs[0].page_size == m->page_size,
	   "dme memory: one DONTFORK segment at its page size");
	dme_mem_free(m);
}

int main(void)
{
	logcap_install();
	test_bad_inputs();
	test_4k_and_dontfork();
	test_thp();
	test_hugetlb_mixed();
	test_dme_memory();
	free(segs);
	return tap_done();
}
