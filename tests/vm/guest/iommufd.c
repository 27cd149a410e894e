/* SPDX-License-Identifier: MIT */
/*
 * Guest check of the iommufd path dme drives: /dev/iommu + the VFIO cdev of
 * an NVMe controller behind QEMU's emulated VT-d (aw-bits 39).
 */
#include "ioas.h"
#include "vmtest.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef IOMMU_IOAS_MAP_FILE
/* Linux 6.13; the 6.12 uapi header does not have it. */
struct iommu_ioas_map_file {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__s32 fd;
	__aligned_u64 start;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP_FILE _IO(IOMMUFD_TYPE, 0x8f)
#endif
_Static_assert(sizeof(struct iommu_ioas_map_file) == 40, "iommu_ioas_map_file ABI");

/* QEMU intel-iommu, aw-bits=39: everything below 2^39 except the MSI window. */
#define MSI_START 0xfee00000ull
#define MSI_LAST 0xfeefffffull
#define APERTURE_LAST 0x7fffffffffull

#define IOVA_A 0x40000000ull   /* 1 GiB */
#define IOVA_B 0x80000000ull   /* 2 GiB */
#define IOVA_DST 0x10000000ull /* in the second IOAS */
#define IOVA_CHILD 0x50000000ull

/* ---- the RLIMIT_MEMLOCK check runs in a child without CAP_IPC_LOCK ---- */

struct memlock_result {
	int cap_dropped;   /* CAP_IPC_LOCK gone from the effective set */
	int low_rc, low_errno;
	int high_rc, high_errno;
	uint64_t unmapped;
};


static void memlock_child(uint32_t ioas, int out_fd)
{
	struct memlock_result r = { 0 };
	struct rlimit low = { .rlim_cur = 64 * 1024, .rlim_max = 64 * SZ_1M };
	struct rlimit high = { .rlim_cur = 64 * SZ_1M, .rlim_max = 64 * SZ_1M };
	void *buf = vm_small_alloc(SZ_1M);

	r.cap_dropped = vm_drop_cap_ipc_lock() == 0;
	if (buf && setrlimit(RLIMIT_MEMLOCK, &low) == 0) {
		r.low_rc = ioas_map_fixed(ioas, buf, SZ_1M, IOVA_CHILD);
		r.low_errno = errno;
		if (r.low_rc == 0)
			ioas_unmap(ioas, IOVA_CHILD, SZ_1M, NULL);
	} else {
		r.low_rc = -2;
	}
	if (buf && setrlimit(RLIMIT_MEMLOCK, &high) == 0) {
		r.high_rc = ioas_map_fixed(ioas, buf, SZ_1M, IOVA_CHILD);
		r.high_errno = errno;
		if (r.high_rc == 0)
			ioas_unmap(ioas, IOVA_CHILD, SZ_1M, &r.unmapped);
	} else {
		r.high_rc = -2;
	}
	if (write(out_fd, &r, sizeof(r)) != sizeof(r))
		_exit(2);
	_exit(0);
}

static void check_memlock(uint32_t ioas)
{
	struct memlock_result r;
	int p[2], status = 0;
	pid_t pid;

	if (pipe(p) != 0) {
		tap_check(false, "memlock: pipe");
		return;
	}
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		memlock_child(ioas, p[1]);
	}
	close(p[1]);
	if (pid < 0 || read(p[0], &r, sizeof(r)) != sizeof(r)) {
		close(p[0]);
		if (pid > 0)
			waitpid(pid, &status, 0);
		tap_check(false, "memlock: child without CAP_IPC_LOCK reported its results");
		return;
	}
	close(p[0]);
	waitpid(pid, &status, 0);

	tap_check(r.cap_dropped, "memlock: child dropped CAP_IPC_LOCK (capset)");
	errno = r.low_errno;
	tap_errno(r.low_rc, ENOMEM,
		  "memlock: IOAS_MAP of 1 MiB with RLIMIT_MEMLOCK 64 KiB and no CAP_IPC_LOCK fails ENOMEM");
	errno = r.high_errno;
	tap_ok_rc(r.high_rc, "memlock: the same IOAS_MAP succeeds once RLIMIT_MEMLOCK is 64 MiB");
	tap_eq_u64(r.unmapped, SZ_1M, "memlock: its IOAS_UNMAP returns 1 MiB");
}

/* ---- main ---------------------------------------------------------------- */

int main(void)
{
	struct iommu_iova_range r[4];
	uint64_t align, iova, unmapped;
	uint32_t ioas, ioas2;
	int n, devfd;
	uint8_t *huge;

	tap_init("iommufd");
	struct vm_nvme dev = vm_first_vfio_nvme();

	iommufd_open();
	if (vm_iommufd < 0)
		tap_fatal("open /dev/iommu: %s", strerror(errno));
	tap_check(true, "open /dev/iommu");

	if (!tap_ok_rc(ioas_alloc(&ioas), "IOAS_ALLOC") || ioas == 0)
		tap_fatal("IOAS_ALLOC returned a usable id");
	n = ioas_iova_ranges(ioas, r, 4, &align);
	tap_check(n == 1 && r[0].start == 0 && r[0].last == UINT64_MAX && align == 1,
		  "fresh IOAS: IOVA_RANGES is [0, 2^64-1] with alignment 1");

	devfd = open(dev.cdev, O_RDWR | O_CLOEXEC);
	if (devfd < 0)
		tap_fatal("open %s (cdev of %s): %s", dev.cdev, dev.bdf, strerror(errno));
	tap_check(true, "open the NVMe cdev %s (%s)", dev.cdev, dev.bdf);

	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = vm_iommufd };
	if (!tap_ok_rc(ioctl(devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind), "VFIO_DEVICE_BIND_IOMMUFD"))
		tap_fatal("device bound to iommufd");
	tap_check(bind.out_devid != 0, "BIND_IOMMUFD returns a non-zero device id (%u)",
		  bind.out_devid);

	struct vfio_device_attach_iommufd_pt att = { .argsz = sizeof(att), .pt_id = ioas };
	if (!tap_ok_rc(ioctl(devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &att),
		       "VFIO_DEVICE_ATTACH_IOMMUFD_PT to the IOAS"))
		tap_fatal("device attached to the IOAS");
	tap_diag("attached: pt_id out = %u (automatic hwpt)", att.pt_id);

	/* GET_HW_INFO: the VT-d registers dme reads the geometry from. */
	struct iommu_hw_info_vtd vtd = { 0 };
	struct iommu_hw_info hw = {
		.size = sizeof(hw),
		.dev_id = bind.out_devid,
		.data_len = sizeof(vtd),
		.data_uptr = (uintptr_t)&vtd,
	};
	if (tap_ok_rc(ioctl(vm_iommufd, IOMMU_GET_HW_INFO, &hw), "GET_HW_INFO")) {
		tap_eq_u64(hw.out_data_type, IOMMU_HW_INFO_TYPE_INTEL_VTD,
			   "GET_HW_INFO reports an Intel VT-d IOMMU");
		tap_diag("VT-d cap_reg 0x%llx ecap_reg 0x%llx", (unsigned long long)vtd.cap_reg,
			 (unsigned long long)vtd.ecap_reg);
		tap_eq_u64(((vtd.cap_reg >> 16) & 0x3f) + 1, 39,
			   "VT-d cap_reg MGAW is 39 bits (aw-bits=39)");
	}

	/* Geometry after attach. */
	struct iommu_ioas_iova_ranges q0 = { .size = sizeof(q0), .ioas_id = ioas, .num_iovas = 0 };
	tap_errno(ioctl(vm_iommufd, IOMMU_IOAS_IOVA_RANGES, &q0), EMSGSIZE,
		  "IOVA_RANGES with no room fails EMSGSIZE");
	tap_eq_u64(q0.num_iovas, 2, "... and reports the 2 ranges it needs");
	memset(r, 0, sizeof(r));
	n = ioas_iova_ranges(ioas, r, 4, &align);
	tap_eq_u64((uint64_t)n, 2, "IOVA_RANGES after attach: 2 ranges");
	tap_check(r[0].start == 0 && r[0].last == MSI_START - 1,
		  "range 0 is 0x0-0xfedfffff (got 0x%llx-0x%llx)", (unsigned long long)r[0].start,
		  (unsigned long long)r[0].last);
	tap_check(r[1].start == MSI_LAST + 1 && r[1].last == APERTURE_LAST,
		  "range 1 is 0xfef00000-0x7fffffffff (got 0x%llx-0x%llx)",
		  (unsigned long long)r[1].start, (unsigned long long)r[1].last);
	tap_eq_u64(align, 0x1000, "IOVA alignment is 0x1000");

	/* Hugepage-backed maps at fixed IOVAs. */
	huge = vm_huge_alloc(4 * SZ_2M);
	if (!huge)
		tap_fatal("mmap 4 hugepages (2 MiB): %s", strerror(errno));
	tap_check(true, "4 x 2 MiB hugepages mapped and populated");

	tap_ok_rc(ioas_map_fixed(ioas, huge, SZ_2M, IOVA_A), "IOAS_MAP FIXED_IOVA 2 MiB hugepage at 0x40000000");
	iova = IOVA_A + SZ_1M;
	tap_errno(ioas_map(ioas, IOAS_MAP_FIXED_RW, huge + SZ_2M, SZ_2M, &iova), EEXIST,
		  "IOAS_MAP overlapping the mapping (0x40100000) fails EEXIST");
	tap_errno(ioas_map_fixed(ioas, huge + SZ_2M, SZ_2M, IOVA_A), EEXIST,
		  "IOAS_MAP at the same IOVA fails EEXIST");
	tap_errno(ioas_map_fixed(ioas, huge + SZ_2M, SZ_4K, MSI_START), EINVAL,
		  "IOAS_MAP of 4 KiB inside the MSI window (0xfee00000) fails EINVAL");
	tap_errno(ioas_map_fixed(ioas, huge + SZ_2M, SZ_2M, MSI_START - SZ_1M), EINVAL,
		  "IOAS_MAP straddling into the MSI window fails EINVAL");
	tap_errno(ioas_map_fixed(ioas, huge + SZ_2M, SZ_2M, APERTURE_LAST + 1), EINVAL,
		  "IOAS_MAP above the 39-bit aperture fails EINVAL");
	tap_errno(ioas_map_fixed(ioas, huge + SZ_2M, SZ_2M, IOVA_B + 0x800), EINVAL,
		  "IOAS_MAP at an IOVA not aligned to 0x1000 fails EINVAL");
	tap_errno(ioas_map_fixed(ioas, huge + SZ_2M, 0, IOVA_B), EINVAL,
		  "IOAS_MAP of length 0 fails EINVAL");

	/* Automatic IOVA: the kernel picks; it must avoid the reserved window. */
	iova = 0;
	if (tap_ok_rc(ioas_map(ioas, IOAS_MAP_RW, huge + SZ_2M, SZ_2M, &iova),
		      "IOAS_MAP without FIXED_IOVA picks an IOVA")) {
		tap_diag("automatic IOVA 0x%llx", (unsigned long long)iova);
		tap_check(iova % SZ_2M == 0 && iova + SZ_2M - 1 <= APERTURE_LAST &&
				  (iova + SZ_2M - 1 < MSI_START || iova > MSI_LAST) &&
				  (iova + SZ_2M <= IOVA_A || iova >= IOVA_A + SZ_2M),
			  "automatic IOVA is 2 MiB aligned, inside the ranges, off the first mapping");
		tap_ok_rc(ioas_unmap(ioas, iova, SZ_2M, &unmapped), "IOAS_UNMAP of the automatic IOVA");
	}

	/* Unmap rules. */
	tap_errno(ioas_unmap(ioas, IOVA_A, SZ_4K, NULL), ENOENT,
		  "IOAS_UNMAP cutting the 2 MiB mapping (first 4 KiB) fails ENOENT");
	tap_errno(ioas_unmap(ioas, IOVA_A + SZ_1M, SZ_2M, NULL), ENOENT,
		  "IOAS_UNMAP covering only its second half fails ENOENT");
	tap_errno(ioas_unmap(ioas, 0x60000000ull, SZ_2M, NULL), ENOENT,
		  "IOAS_UNMAP where nothing is mapped fails ENOENT");

	/* IOAS_COPY into a second IOAS (no device attached). */
	if (tap_ok_rc(ioas_alloc(&ioas2), "IOAS_ALLOC a second IOAS")) {
		struct iommu_ioas_copy c = {
			.size = sizeof(c),
			.flags = IOAS_MAP_FIXED_RW,
			.dst_ioas_id = ioas2,
			.src_ioas_id = ioas,
			.length = SZ_2M,
			.dst_iova = IOVA_DST,
			.src_iova = IOVA_A,
		};
		tap_ok_rc(ioctl(vm_iommufd, IOMMU_IOAS_COPY, &c),
			  "IOAS_COPY 2 MiB from 0x40000000 to 0x10000000 in the second IOAS");
		c.src_iova = IOVA_A + SZ_2M;
		c.dst_iova = IOVA_DST + 4 * SZ_2M;
		tap_errno(ioctl(vm_iommufd, IOMMU_IOAS_COPY, &c), ENOENT,
			  "IOAS_COPY of an unmapped source range fails ENOENT");
		c.src_iova = IOVA_A;
		c.dst_iova = IOVA_DST;
		tap_errno(ioctl(vm_iommufd, IOMMU_IOAS_COPY, &c), EEXIST,
			  "IOAS_COPY onto the copy fails EEXIST");
		tap_ok_rc(ioas_unmap(ioas2, IOVA_DST, SZ_2M, &unmapped), "IOAS_UNMAP of the copy");
		tap_eq_u64(unmapped, SZ_2M, "... returns 2 MiB unmapped");
		tap_ok_rc(iommufd_destroy(ioas2), "DESTROY the second IOAS");
	}

	tap_ok_rc(ioas_unmap(ioas, IOVA_A, SZ_2M, &unmapped), "IOAS_UNMAP of the 2 MiB mapping");
	tap_eq_u64(unmapped, SZ_2M, "IOAS_UNMAP returns the unmapped length 0x200000");

	/* One unmap spanning several mappings returns their total. */
	tap_ok_rc(ioas_map_fixed(ioas, huge, SZ_2M, IOVA_B) ||
			  ioas_map_fixed(ioas, huge + SZ_2M, 2 * SZ_2M, IOVA_B + SZ_2M),
		  "IOAS_MAP 2 MiB + 4 MiB at adjacent IOVAs from 0x80000000");
	tap_ok_rc(ioas_unmap(ioas, IOVA_B, 3 * SZ_2M, &unmapped), "IOAS_UNMAP of both in one call");
	tap_eq_u64(unmapped, 3 * SZ_2M, "... returns 6 MiB unmapped");

	/* iova 0, length 2^64-1 unmaps everything. */
	tap_ok_rc(ioas_map_fixed(ioas, huge, SZ_2M, IOVA_A) ||
			  ioas_map_fixed(ioas, huge + SZ_2M, SZ_2M, 0x100000000ull),
		  "IOAS_MAP 2 MiB below and above 4 GiB");
	tap_ok_rc(ioas_unmap(ioas, 0, UINT64_MAX, &unmapped), "IOAS_UNMAP all (iova 0, length ~0)");
	tap_eq_u64(unmapped, 2 * SZ_2M, "... returns 4 MiB unmapped");

	/* IOAS_MAP_FILE arrived in 6.13. */
	int mfd = memfd_create("dme-vm", MFD_CLOEXEC | MFD_HUGETLB);
	if (mfd >= 0 && ftruncate(mfd, (off_t)SZ_2M) == 0) {
		struct iommu_ioas_map_file mf = {
			.size = sizeof(mf),
			.flags = IOAS_MAP_FIXED_RW,
			.ioas_id = ioas,
			.fd = mfd,
			.start = 0,
			.length = SZ_2M,
			.iova = IOVA_B,
		};
		int rc = ioctl(vm_iommufd, IOMMU_IOAS_MAP_FILE, &mf);
		if (rc == -1 && errno == ENOTTY) {
			tap_skip("kernel has no IOAS_MAP_FILE (ENOTTY; it arrived in 6.13)",
				 "IOAS_MAP_FILE of a 2 MiB hugetlb memfd");
		} else if (tap_ok_rc(rc, "IOAS_MAP_FILE of a 2 MiB hugetlb memfd")) {
			tap_ok_rc(ioas_unmap(ioas, IOVA_B, SZ_2M, &unmapped),
				  "IOAS_UNMAP of the MAP_FILE mapping");
		}
	} else {
		tap_check(false, "memfd_create(MFD_HUGETLB) + ftruncate 2 MiB: %s", strerror(errno));
	}
	if (mfd >= 0)
		close(mfd);

	check_memlock(ioas);

	/* Teardown order: an attached IOAS cannot be destroyed. */
	tap_errno(iommufd_destroy(ioas), EBUSY, "DESTROY of the IOAS while the device is attached fails EBUSY");
	struct vfio_device_detach_iommufd_pt det = { .argsz = sizeof(det) };
	tap_ok_rc(ioctl(devfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &det), "VFIO_DEVICE_DETACH_IOMMUFD_PT");
	n = ioas_iova_ranges(ioas, r, 4, &align);
	tap_check(n == 1 && r[0].start == 0 && r[0].last == UINT64_MAX && align == 1,
		  "after detach IOVA_RANGES is [0, 2^64-1] with alignment 1 again");
	tap_ok_rc(iommufd_destroy(ioas), "DESTROY of the detached IOAS");
	close(devfd);
	close(vm_iommufd);
	munmap(huge, 4 * SZ_2M);
	return tap_done();
}
