/* SPDX-License-Identifier: MIT */
/*
 * test-mem-pagemap: physical addresses for the no-IOMMU mode. Checks them
 * against what must hold (the page offset is kept; a hugetlb page is
 * physically contiguous and naturally aligned), the not-present and bad-input
 * errors, and the refusal without CAP_SYS_ADMIN (in a child that drops it).
 */
#include <errno.h>
#include <stdlib.h>

#include <dme/mem.h>

#include "logcap.h"
#include "memtest.h"
#include "tap.h"

static void test_4k(void)
{
	struct dme_mem_params p;
	struct dme_mem *m = NULL;
	uint64_t pa = 0, pa2 = 0, arr[16];
	dme_mem_params_init(&p, 16 * 4096);
	p.hugepage = DME_HUGEPAGE_NONE;
	if (dme_mem_alloc(&p, &m)) {
		ok(0, "4k: allocated");
		return;
	}
	ok_eq(dme_mem_pa(m->va, &pa), 0, "4k: pa of a prefaulted page");
	ok(pa && !(pa & 4095), "4k: page aligned and not zero (%#" PRIx64 ")", pa);
	ok(!dme_mem_pa((char *)m->va + 0x123, &pa2) && pa2 == pa + 0x123,
	   "4k: the offset inside the page is kept");
	ok_eq(dme_mem_pa_array(m->va, 16, 4096, arr), 0, "4k: array of 16 consecutive pages");
	int same = 1;
	for (int i = 0; i < 16; i++) {
		uint64_t one = 0;
		same &= !dme_mem_pa((char *)m->va + i * 4096, &one) && one == arr[i];
	}
	ok(same, "4k: array agrees with one-by-one lookups");
	ok(!dme_mem_pa_array(m->va, 4, 3 * 4096, arr) &&
	       !dme_mem_pa((char *)m->va + 9 * 4096, &pa) && arr[3] == pa,
	   "4k: a stride other than the page size");
	dme_mem_free(m);
}

static void test_hugetlb(void)
{
	struct hp_res r;
	if (!hp_reserve(&r, 0, 2048, 2)) {
		tap_skip("cannot reserve 2 MiB pages", "2m");
		return;
	}
	struct dme_mem_params p;
	struct dme_mem *m = NULL;
	uint64_t pa[2], sub[512];
	dme_mem_params_init(&p, 4 << 20);
	p.hugepage = DME_HUGEPAGE_2M;
	p.flags = DME_MEM_F_STRICT;
	if (dme_mem_alloc(&p, &m)) {
		ok(0, "2m: allocated");
		hp_release(&r);
		return;
	}
	ok_eq(dme_mem_pa_array(m->va, 2, m->page_size, pa), 0, "2m: one pa per hugepage");
	ok(!(pa[0] & (MT_2M - 1)) && !(pa[1] & (MT_2M - 1)), "2m: hugepages are 2 MiB aligned");
	ok_eq(dme_mem_pa_array(m->va, 512, 4096, sub), 0, "2m: all 512 base pages of one");
	int contiguous = 1;
	for (int i = 0; i < 512; i++)
		contiguous &= sub[i] == pa[0] + (uint64_t)i * 4096;
	ok(contiguous, "2m: a hugepage is physically contiguous");
	dme_mem_free(m);
	hp_release(&r);
}

static void test_errors(void)
{
	uint64_t pa = 0xabcull;
	void *va = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (va == MAP_FAILED) {
		ok(0, "errors: mmap");
		return;
	}
	logcap_reset();
	ok_eq(dme_mem_pa(va, &pa), -EFAULT, "never touched: -EFAULT");
	ok(strstr(logcap.last, "not present") && pa == 0xabcull,
	   "never touched: message says not present, out untouched");
	((char *)va)[0] = 1;
	uint64_t two[2] = {7, 7};
	ok(dme_mem_pa_array(va, 2, 4096, two) == -EFAULT && two[0] == 7,
	   "one page of two absent: -EFAULT, nothing written");
	munmap(va, 2 * 4096);
	ok_eq(dme_mem_pa(va, &pa), -EFAULT, "unmapped: -EFAULT");
	ok_eq(dme_mem_pa_array(&pa, 0, 4096, &pa), -EINVAL, "zero count: -EINVAL");
	ok_eq(dme_mem_pa_array((void *)(uintptr_t)(UINT64_MAX - 4095), 3, 4096, two), -EINVAL,
	      "wrapping range: -EINVAL");
	ok_eq(dme_mem_pa_array(&pa, 2, 0, two), -EINVAL, "zero stride for several: -EINVAL");
	ok_eq(dme_mem_pa_array(&pa, 1, 0, NULL), -EINVAL, "NULL out: -EINVAL");
}

static void no_admin_child(struct child_results *cr, void *arg)
{
	(void)arg;
	uint64_t pa = 5;
	logcap_install();
	if (drop_cap(CAP_SYS_ADMIN)) {
		child_ok(cr, 0, "drop CAP_SYS_ADMIN", strerror(errno));
		return;
	}
	int ret = dme_mem_pa(&pa, &pa);
	child_ok(cr, ret == -EPERM && pa == 5, "-EPERM, out untouched", logcap.last);
	child_ok(cr, strstr(logcap.last, "CAP_SYS_ADMIN") != NULL,
		 "the message names CAP_SYS_ADMIN", logcap.last);
}

int main(void)
{
	logcap_install();
	if (!has_cap(CAP_SYS_ADMIN))
		tap_skip_all("physical addresses need CAP_SYS_ADMIN (run as root)");
	test_4k();
	test_hugetlb();
	test_errors();
	run_in_child("without CAP_SYS_ADMIN", no_admin_child, NULL);
	return tap_done();
}
