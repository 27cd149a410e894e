/* SPDX-License-Identifier: MIT */
/*
 * Guest check of the legacy VFIO type1 container path (dme's "vfio" backend)
 * with the NVMe controller behind QEMU's emulated VT-d (aw-bits 39).
 */
#include "vfio.h"

#include <errno.h>
#include <linux/vfio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define MSI_START 0xfee00000ull
#define APERTURE_LAST 0x7fffffffffull
#define IOVA_A 0x40000000ull
#define IOVA_B 0x80000000ull
#define DEFAULT_LIMIT 65535

int main(void)
{
	struct vfio_geometry geo;
	struct vfio_ctx v;
	uint64_t unmapped;
	uint8_t *huge;

	tap_init("vfio-type1");
	struct vm_nvme dev = vm_first_vfio_nvme();
	vfio_open(&dev, &v);

	/* What the device fd gives: a PCI device with QEMU's NVMe ids. */
	struct vfio_device_info di = { .argsz = sizeof(di) };
	if (tap_ok_rc(ioctl(v.device, VFIO_DEVICE_GET_INFO, &di), "VFIO_DEVICE_GET_INFO")) {
		tap_check(di.flags & VFIO_DEVICE_FLAGS_PCI, "the device is a PCI device");
		tap_check(di.num_regions >= VFIO_PCI_NUM_REGIONS, "it has >= %d regions (%u)",
			  VFIO_PCI_NUM_REGIONS, di.num_regions);
	}
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	uint16_t ids[2] = { 0, 0 };
	if (tap_ok_rc(ioctl(v.device, VFIO_DEVICE_GET_REGION_INFO, &ri), "GET_REGION_INFO(config)")) {
		tap_check(pread(v.device, ids, sizeof(ids), (off_t)ri.offset) == sizeof(ids) &&
				  ids[0] == 0x1b36 && ids[1] == 0x0010,
			  "config space reads vendor:device 1b36:0010 (QEMU NVMe), got %04x:%04x",
			  ids[0], ids[1]);
	}

	/* Geometry through the capability chain. */
	if (!tap_ok_rc(vfio_geometry(&v, &geo), "VFIO_IOMMU_GET_INFO with its capability chain"))
		tap_fatal("container geometry");
	tap_diag("iova_pgsizes 0x%llx", (unsigned long long)geo.pgsizes);
	tap_check(geo.pgsizes & 0x1000, "iova_pgsizes includes 4 KiB");
	tap_eq_u64(geo.nr_ranges, 2, "IOVA_RANGE capability: 2 ranges");
	tap_check(geo.range[0].start == 0 && geo.range[0].end == 0xfedfffffull,
		  "range 0 is 0x0-0xfedfffff (got 0x%llx-0x%llx)",
		  (unsigned long long)geo.range[0].start, (unsigned long long)geo.range[0].end);
	tap_check(geo.range[1].start == 0xfef00000ull && geo.range[1].end == APERTURE_LAST,
		  "range 1 is 0xfef00000-0x7fffffffff (got 0x%llx-0x%llx)",
		  (unsigned long long)geo.range[1].start, (unsigned long long)geo.range[1].end);
	tap_check(geo.has_avail, "DMA_AVAIL capability present");
	tap_eq_u64(geo.avail, DEFAULT_LIMIT, "DMA_AVAIL is 65535 (default dma_entry_limit)");
	tap_eq_u64((uint64_t)vfio_dma_entry_limit(), DEFAULT_LIMIT,
		   "vfio_iommu_type1.dma_entry_limit parameter is 65535");

	huge = vm_huge_alloc(4 * SZ_2M);
	if (!huge)
		tap_fatal("mmap 4 hugepages (2 MiB): %s", strerror(errno));

	tap_ok_rc(vfio_map(&v, huge, SZ_2M, IOVA_A), "MAP_DMA 2 MiB hugepage at 0x40000000");
	tap_eq_u64((uint64_t)vfio_dma_avail(&v), DEFAULT_LIMIT - 1, "DMA_AVAIL drops to 65534");
	tap_errno(vfio_map(&v, huge + SZ_2M, SZ_2M, IOVA_A + SZ_1M), EEXIST,
		  "MAP_DMA overlapping it fails EEXIST");
	tap_errno(vfio_map(&v, huge + SZ_2M, SZ_4K, MSI_START), EINVAL,
		  "MAP_DMA inside the MSI window fails EINVAL");
	tap_errno(vfio_map(&v, huge + SZ_2M, SZ_2M, APERTURE_LAST + 1), EINVAL,
		  "MAP_DMA above the 39-bit aperture fails EINVAL");
	tap_errno(vfio_map(&v, huge + SZ_2M, SZ_2M, IOVA_B + 0x800), EINVAL,
		  "MAP_DMA at an IOVA not aligned to 4 KiB fails EINVAL");

	tap_errno(vfio_unmap(&v, IOVA_A + SZ_4K, SZ_4K, 0, NULL), EINVAL,
		  "UNMAP_DMA cutting the mapping fails EINVAL (type1v2)");
	tap_ok_rc(vfio_unmap(&v, 0x60000000ull, SZ_2M, 0, &unmapped),
		  "UNMAP_DMA where nothing is mapped succeeds");
	tap_eq_u64(unmapped, 0, "... and reports size 0");
	tap_ok_rc(vfio_unmap(&v, IOVA_A, SZ_2M, 0, &unmapped), "UNMAP_DMA of the mapping");
	tap_eq_u64(unmapped, SZ_2M, "... reports size 0x200000");
	tap_eq_u64((uint64_t)vfio_dma_avail(&v), DEFAULT_LIMIT, "DMA_AVAIL is back to 65535");

	/* Three entries, one UNMAP_DMA with FLAG_ALL. */
	tap_ok_rc(vfio_map(&v, huge, SZ_2M, IOVA_A) || vfio_map(&v, huge + SZ_2M, SZ_2M, IOVA_B) ||
			  vfio_map(&v, huge + 2 * SZ_2M, 2 * SZ_2M, 0x100000000ull),
		  "MAP_DMA three mappings (2 + 2 + 4 MiB)");
	tap_eq_u64((uint64_t)vfio_dma_avail(&v), DEFAULT_LIMIT - 3, "DMA_AVAIL is 65532");
	tap_ok_rc(vfio_unmap(&v, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, &unmapped),
		  "UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_ALL");
	tap_eq_u64(unmapped, 4 * SZ_2M, "... reports 8 MiB");
	tap_eq_u64((uint64_t)vfio_dma_avail(&v), DEFAULT_LIMIT, "DMA_AVAIL is back to 65535");

	munmap(huge, 4 * SZ_2M);
	vfio_close(&v);
	return tap_done();
}
