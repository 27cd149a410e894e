/* SPDX-License-Identifier: MIT */
/*
 * Guest check with the kernel's iommufd mock domain (CONFIG_IOMMUFD_TEST):
 * MD_CHECK_MAP compares the IO page table with the user pages, MD_CHECK_REFS
 * the pin counts. iommufd_test.h is not uapi and changes between kernel
 * versions, so this program is compiled against the header of the very
 * kernel tree the guest runs (tests/vm/build-kernel.sh exports it).
 */
#include "ioas.h"
#include "vmtest.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/iommufd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "guest-kernel.h"
#include "iommufd_test.h"

#define APERTURE_START 0x1000000ull
#define APERTURE_LAST 0x7fffffffull
#define IOVA_A APERTURE_START
#define IOVA_COPY 0x2000000ull
#define IOVA_HUGE 0x4000000ull

static int test_cmd(struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return ioctl(vm_iommufd, IOMMU_TEST_CMD, c);
}

static int mock_domain(uint32_t ioas, struct iommu_test_cmd *out)
{
	memset(out, 0, sizeof(*out));
	out->op = IOMMU_TEST_OP_MOCK_DOMAIN;
	out->id = ioas;
	return test_cmd(out);
}

static int check_map(uint32_t hwpt, uint64_t iova, uint64_t len, const void *p)
{
	struct iommu_test_cmd c = {
		.op = IOMMU_TEST_OP_MD_CHECK_MAP,
		.id = hwpt,
		.check_map = { .iova = iova, .length = len, .uptr = (uintptr_t)p },
	};

	return test_cmd(&c);
}

static int check_refs(const void *p, uint64_t len, uint32_t refs)
{
	struct iommu_test_cmd c = {
		.op = IOMMU_TEST_OP_MD_CHECK_REFS,
		.check_refs = { .length = len, .uptr = (uintptr_t)p, .refs = refs },
	};

	return test_cmd(&c);
}

int main(void)
{
	struct iommu_test_cmd md, md2;
	struct iommu_iova_range r[4];
	uint32_t ioas, ioas2;
	uint64_t unmapped;
	struct utsname u;
	uint8_t *buf, *huge;

	tap_init("mock");
	uname(&u);
	tap_diag("built against kernel tree %s, running %s", DME_VM_KERNEL_KEY, u.release);
	tap_check(strncmp(DME_VM_KERNEL_KEY, u.release, strlen(u.release)) == 0 &&
			  DME_VM_KERNEL_KEY[strlen(u.release)] == '-',
		  "iommufd_test.h comes from the running kernel's tree (%s)", u.release);

	iommufd_open();
	if (vm_iommufd < 0)
		tap_fatal("open /dev/iommu: %s", strerror(errno));
	if (!tap_ok_rc(ioas_alloc(&ioas), "IOAS_ALLOC"))
		tap_fatal("IOAS for the mock domain");
	if (!tap_ok_rc(mock_domain(ioas, &md), "IOMMU_TEST_CMD MOCK_DOMAIN on a fresh IOAS")) {
		if (access("/sys/class/iommu/dmar0", F_OK) == 0)
			tap_diag("a VT-d IOMMU is present: on 6.12 the mock device then gets the "
				 "Intel ops and no IOMMU; boot this program in the 'mock' shape");
		tap_fatal("mock domain (needs CONFIG_IOMMUFD_TEST and no other IOMMU driver)");
	}
	tap_check(md.mock_domain.out_stdev_id && md.mock_domain.out_hwpt_id &&
			  md.mock_domain.out_idev_id,
		  "MOCK_DOMAIN returns stdev/hwpt/idev ids (%u/%u/%u)", md.mock_domain.out_stdev_id,
		  md.mock_domain.out_hwpt_id, md.mock_domain.out_idev_id);
	uint32_t hwpt = md.mock_domain.out_hwpt_id;

	struct iommu_ioas_iova_ranges q = {
		.size = sizeof(q), .ioas_id = ioas, .num_iovas = 4, .allowed_iovas = (uintptr_t)r,
	};
	if (tap_ok_rc(ioctl(vm_iommufd, IOMMU_IOAS_IOVA_RANGES, &q), "IOVA_RANGES with the mock domain")) {
		tap_check(q.num_iovas == 1 && r[0].start == APERTURE_START && r[0].last == APERTURE_LAST,
			  "one range 0x1000000-0x7fffffff (got %u, first 0x%llx-0x%llx)", q.num_iovas,
			  (unsigned long long)r[0].start, (unsigned long long)r[0].last);
		tap_eq_u64(q.out_iova_alignment, 0x800, "alignment 0x800 (2 KiB mock IO pages)");
	}

	buf = vm_small_alloc(SZ_1M);
	huge = vm_huge_alloc(SZ_2M);
	if (!buf || !huge)
		tap_fatal("allocate 1 MiB of 4 KiB pages and one 2 MiB hugepage");
	tap_ok_rc(check_refs(buf, SZ_1M, 0), "MD_CHECK_REFS 0 before any map");

	tap_errno(ioas_map_fixed(ioas, buf, SZ_1M, APERTURE_START - SZ_1M), EINVAL,
		  "IOAS_MAP below the mock aperture fails EINVAL");
	tap_errno(ioas_map_fixed(ioas, buf, SZ_1M, APERTURE_LAST + 1), EINVAL,
		  "IOAS_MAP above the mock aperture fails EINVAL");
	tap_ok_rc(ioas_map_fixed(ioas, buf, SZ_1M, IOVA_A), "IOAS_MAP 1 MiB at 0x1000000");
	tap_ok_rc(check_map(hwpt, IOVA_A, SZ_1M, buf), "MD_CHECK_MAP with the right user pointer");
	tap_errno(check_map(hwpt, IOVA_A, SZ_1M, buf + SZ_4K), EINVAL,
		  "MD_CHECK_MAP with the pointer shifted by 4 KiB fails EINVAL");
	tap_errno(check_map(hwpt, IOVA_A + SZ_1M, SZ_4K, buf), EINVAL,
		  "MD_CHECK_MAP past the mapping fails EINVAL");
	tap_ok_rc(check_refs(buf, SZ_1M, 1), "MD_CHECK_REFS 1 while mapped");
	tap_errno(check_refs(buf, SZ_1M, 2), EIO, "MD_CHECK_REFS 2 fails EIO (it really counts)");

	/* A second IOAS with its own mock domain. */
	if (tap_ok_rc(ioas_alloc(&ioas2), "IOAS_ALLOC a second IOAS") &&
	    tap_ok_rc(mock_domain(ioas2, &md2), "MOCK_DOMAIN on it")) {
		uint32_t hwpt2 = md2.mock_domain.out_hwpt_id;
		struct iommu_ioas_copy c = {
			.size = sizeof(c),
			.flags = IOAS_MAP_FIXED_RW,
			.dst_ioas_id = ioas2,
			.src_ioas_id = ioas,
			.length = SZ_1M,
			.dst_iova = IOVA_COPY,
			.src_iova = IOVA_A,
		};
		tap_ok_rc(ioctl(vm_iommufd, IOMMU_IOAS_COPY, &c), "IOAS_COPY the 1 MiB into it");
		tap_ok_rc(check_map(hwpt2, IOVA_COPY, SZ_1M, buf),
			  "MD_CHECK_MAP: the copy maps the same pages");
		tap_ok_rc(check_refs(buf, SZ_1M, 1), "MD_CHECK_REFS still 1: the copy shares the pin");
		tap_ok_rc(ioas_map_fixed(ioas2, buf, SZ_1M, IOVA_A), "IOAS_MAP the same memory again in IOAS 2");
		tap_ok_rc(check_refs(buf, SZ_1M, 2), "MD_CHECK_REFS 2: a second IOAS_MAP pins again");
		tap_ok_rc(ioas_unmap(ioas2, 0, UINT64_MAX, &unmapped), "IOAS_UNMAP all of IOAS 2");
		tap_eq_u64(unmapped, 2 * SZ_1M, "... returns 2 MiB");
		tap_ok_rc(check_refs(buf, SZ_1M, 1), "MD_CHECK_REFS back to 1");
		tap_errno(iommufd_destroy(ioas2), EBUSY, "DESTROY of IOAS 2 with the mock device attached fails EBUSY");
		tap_ok_rc(iommufd_destroy(md2.mock_domain.out_stdev_id), "DESTROY the second mock device");
		tap_ok_rc(iommufd_destroy(ioas2), "DESTROY IOAS 2");
	}

	tap_ok_rc(ioas_unmap(ioas, IOVA_A, SZ_1M, &unmapped), "IOAS_UNMAP the 1 MiB");
	tap_eq_u64(unmapped, SZ_1M, "... returns 1 MiB");
	tap_ok_rc(check_refs(buf, SZ_1M, 0), "MD_CHECK_REFS 0 after unmap");
	tap_errno(check_map(hwpt, IOVA_A, SZ_1M, buf), EINVAL, "MD_CHECK_MAP fails EINVAL after unmap");

	/* Hugepage-backed: the page table must hold every 2 KiB piece of it. */
	tap_ok_rc(ioas_map_fixed(ioas, huge, SZ_2M, IOVA_HUGE), "IOAS_MAP a 2 MiB hugepage at 0x4000000");
	tap_ok_rc(check_map(hwpt, IOVA_HUGE, SZ_2M, huge), "MD_CHECK_MAP of the hugepage");
	tap_errno(check_map(hwpt, IOVA_HUGE + SZ_4K, SZ_4K, huge), EINVAL,
		  "MD_CHECK_MAP with a mismatched offset inside it fails EINVAL");
	tap_ok_rc(ioas_unmap(ioas, IOVA_HUGE, SZ_2M, &unmapped), "IOAS_UNMAP the hugepage");
	tap_eq_u64(unmapped, SZ_2M, "... returns 2 MiB");

	tap_ok_rc(iommufd_destroy(md.mock_domain.out_stdev_id), "DESTROY the mock device");
	tap_ok_rc(iommufd_destroy(ioas), "DESTROY the IOAS");
	munmap(buf, SZ_1M);
	munmap(huge, SZ_2M);
	close(vm_iommufd);
	return tap_done();
}
