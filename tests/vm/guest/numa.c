/* SPDX-License-Identifier: MIT */
/*
 * Guest check of the two-node shape: an NVMe controller behind a pxb-pcie
 * host bridge on node 1 must say so in sysfs, and memory bound to node 1
 * must land there (that is what dme's per-node pools rely on). Raw syscalls,
 * no libnuma in the guest. Ends with a hugepage on node 1 mapped for DMA by
 * the node-1 device through iommufd.
 */
#include "ioas.h"
#include "vmtest.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/iommufd.h>
#include <linux/mempolicy.h>
#include <linux/vfio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NPAGES 16
#define MAXNODE (8 * sizeof(unsigned long) + 1)

static long sys_mbind(void *addr, size_t len, int mode, const unsigned long *mask)
{
	return syscall(SYS_mbind, addr, len, mode, mask, MAXNODE, 0);
}

static long sys_set_mempolicy(int mode, const unsigned long *mask)
{
	return syscall(SYS_set_mempolicy, mode, mask, mask ? MAXNODE : 0);
}


static void *anon(size_t len, int flags)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void check_on_node(void *p, int n, size_t pgsz, int want, const char *what)
{
	int got = vm_pages_node(p, n, pgsz);

	tap_check(got == want, "%s: move_pages reports all %d pages on node %d (got %d)", what, n,
		  want, got);
}

/* The node-1 device maps node-1 memory, the way dme would. */
static void dma_map_on_node1(const struct vm_nvme *dev, void *huge)
{
	int devfd = open(dev->cdev, O_RDWR | O_CLOEXEC);
	uint64_t unmapped;
	uint32_t ioas;

	if (iommufd_open() < 0 || devfd < 0) {
		tap_check(false, "open /dev/iommu and %s: %s", dev->cdev, strerror(errno));
		goto out;
	}
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = vm_iommufd };
	if (!tap_ok_rc(ioctl(devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind) || ioas_alloc(&ioas),
		       "node-1 device: BIND_IOMMUFD + IOAS_ALLOC"))
		goto out;
	struct vfio_device_attach_iommufd_pt att = { .argsz = sizeof(att), .pt_id = ioas };
	if (!tap_ok_rc(ioctl(devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &att),
		       "node-1 device: ATTACH_IOMMUFD_PT"))
		goto out;
	tap_ok_rc(ioas_map_fixed(ioas, huge, SZ_2M, 0x40000000ull),
		  "node-1 device: IOAS_MAP of the node-1 hugepage at 0x40000000");
	tap_ok_rc(ioas_unmap(ioas, 0x40000000ull, SZ_2M, &unmapped), "node-1 device: IOAS_UNMAP");
	tap_eq_u64(unmapped, SZ_2M, "node-1 device: ... returns 2 MiB");
out:
	if (devfd >= 0)
		close(devfd);
	if (vm_iommufd >= 0)
		close(vm_iommufd);
}

int main(void)
{
	struct vm_nvme devs[VM_MAX_NVME], *far = NULL;
	unsigned long node0 = 1ul << 0, node1 = 1ul << 1;
	char buf[64];
	int n, behind_pxb = 0;

	tap_init("numa");
	tap_check(vm_read_str("/sys/devices/system/node/online", buf, sizeof(buf)) == 0 &&
			  strcmp(buf, "0-1") == 0,
		  "two NUMA nodes online (0-1), got '%s'", buf);
	tap_check(vm_read_str("/sys/devices/system/node/node1/cpulist", buf, sizeof(buf)) == 0 &&
			  strcmp(buf, "1") == 0,
		  "node 1 holds CPU 1, got '%s'", buf);

	n = vm_find_nvme(devs, VM_MAX_NVME);
	for (int i = 0; i < n; i++) {
		tap_diag("nvme %s driver=%s bridge=%s numa_node=%d", devs[i].bdf, devs[i].driver,
			 devs[i].host_bridge, devs[i].numa_node);
		if (strcmp(devs[i].host_bridge, "pci0000:00") != 0) {
			behind_pxb++;
			far = &devs[i];
		}
	}
	tap_eq_u64((uint64_t)n, 2, "two NVMe controllers present");
	if (!tap_eq_u64((uint64_t)behind_pxb, 1, "exactly one sits behind a second host bridge"))
		tap_fatal("NVMe controller behind pxb-pcie found");
	tap_check(strcmp(far->host_bridge, "pci0000:40") == 0,
		  "its host bridge is the pxb-pcie (bus_nr=64 -> pci0000:40), got %s", far->host_bridge);
	tap_eq_u64((uint64_t)(int64_t)far->numa_node, 1, "its sysfs numa_node is 1");
	tap_check(strcmp(far->driver, "vfio-pci") == 0 && far->cdev[0],
		  "it is bound to vfio-pci with a cdev (%s)", far->cdev);

	/* mbind */
	size_t len = NPAGES * SZ_4K;
	void *p1 = anon(len, 0), *p0 = anon(len, 0);
	if (!p1 || !p0)
		tap_fatal("mmap %zu bytes", len);
	madvise(p1, len, MADV_NOHUGEPAGE);
	madvise(p0, len, MADV_NOHUGEPAGE);
	tap_ok_rc((int)sys_mbind(p1, len, MPOL_BIND, &node1), "mbind(MPOL_BIND, node 1)");
	tap_ok_rc((int)sys_mbind(p0, len, MPOL_BIND, &node0), "mbind(MPOL_BIND, node 0)");
	memset(p1, 1, len);
	memset(p0, 1, len);
	check_on_node(p1, NPAGES, SZ_4K, 1, "mbind node 1");
	check_on_node(p0, NPAGES, SZ_4K, 0, "mbind node 0");

	/* set_mempolicy applies to later faults of this thread. */
	tap_ok_rc((int)sys_set_mempolicy(MPOL_BIND, &node1), "set_mempolicy(MPOL_BIND, node 1)");
	void *p2 = anon(len, 0);
	if (p2) {
		madvise(p2, len, MADV_NOHUGEPAGE);
		memset(p2, 2, len);
		check_on_node(p2, NPAGES, SZ_4K, 1, "set_mempolicy node 1");
	}
	tap_ok_rc((int)sys_set_mempolicy(MPOL_DEFAULT, NULL), "set_mempolicy(MPOL_DEFAULT)");

	/* Hugepages: the boot-time pool is spread over both nodes. */
	long h1 = vm_read_long("/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages", 0);
	tap_check(h1 > 0, "node 1 has 2 MiB hugepages reserved (%ld)", h1);
	void *hp = anon(2 * SZ_2M, MAP_HUGETLB);
	if (!tap_check(hp != NULL, "mmap 2 hugepages"))
		return tap_done();
	tap_ok_rc((int)sys_mbind(hp, 2 * SZ_2M, MPOL_BIND, &node1), "mbind the hugepages to node 1");
	memset(hp, 3, 2 * SZ_2M);
	check_on_node(hp, 2, SZ_2M, 1, "hugetlb mbind node 1");

	dma_map_on_node1(far, hp);

	munmap(hp, 2 * SZ_2M);
	munmap(p0, len);
	munmap(p1, len);
	if (p2)
		munmap(p2, len);
	return tap_done();
}
