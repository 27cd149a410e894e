/* SPDX-License-Identifier: MIT */
/*
 * Guest check of the type1 mapping-count limit. The guest boots with
 * vfio_iommu_type1.dma_entry_limit=64 on the kernel command line.
 */
#include "vfio.h"

#include <errno.h>
#include <linux/vfio.h>
#include <string.h>
#include <sys/mman.h>

#define LIMIT 64
#define IOVA_BASE 0x10000000ull
/* Every entry gets its own page and a gap, so no two are adjacent. */
#define IOVA_OF(i) (IOVA_BASE + (uint64_t)(i) * 2 * SZ_4K)

int main(void)
{
	struct vfio_ctx v;
	uint64_t unmapped;
	uint8_t *buf;
	int mapped = 0, first_err = 0;

	tap_init("vfio-limit");
	if (!tap_eq_u64((uint64_t)vfio_dma_entry_limit(), LIMIT,
			"vfio_iommu_type1.dma_entry_limit is 64 (from the kernel command line)"))
		tap_fatal("the guest was booted with vfio_iommu_type1.dma_entry_limit=64");
	struct vm_nvme dev = vm_first_vfio_nvme();
	vfio_open(&dev, &v);

	tap_eq_u64((uint64_t)vfio_dma_avail(&v), LIMIT, "DMA_AVAIL starts at 64");
	buf = vm_small_alloc((LIMIT + 1) * SZ_4K);
	if (!buf)
		tap_fatal("mmap %d pages: %s", LIMIT + 1, strerror(errno));

	for (int i = 0; i < LIMIT; i++) {
		if (vfio_map(&v, buf + (uint64_t)i * SZ_4K, SZ_4K, IOVA_OF(i)) == 0)
			mapped++;
		else if (!first_err)
			first_err = errno;
	}
	tap_eq_u64((uint64_t)mapped, LIMIT, "64 separate 4 KiB MAP_DMA calls succeed");
	if (first_err)
		tap_diag("first failure: %s", strerror(first_err));
	tap_eq_u64((uint64_t)vfio_dma_avail(&v), 0, "DMA_AVAIL is 0");
	tap_errno(vfio_map(&v, buf + LIMIT * SZ_4K, SZ_4K, IOVA_OF(LIMIT)), ENOSPC,
		  "the 65th MAP_DMA fails ENOSPC");
	tap_ok_rc(vfio_unmap(&v, IOVA_OF(7), SZ_4K, 0, &unmapped), "UNMAP_DMA of one entry");
	tap_eq_u64((uint64_t)vfio_dma_avail(&v), 1, "DMA_AVAIL is 1");
	tap_ok_rc(vfio_map(&v, buf + LIMIT * SZ_4K, SZ_4K, IOVA_OF(LIMIT)),
		  "MAP_DMA succeeds again after the unmap");
	tap_errno(vfio_map(&v, buf + 7 * SZ_4K, SZ_4K, IOVA_OF(7)), ENOSPC,
		  "and the next one fails ENOSPC again");
	tap_ok_rc(vfio_unmap(&v, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, &unmapped), "UNMAP_DMA all");
	tap_eq_u64(unmapped, LIMIT * SZ_4K, "... reports 64 x 4 KiB");
	tap_eq_u64((uint64_t)vfio_dma_avail(&v), LIMIT, "DMA_AVAIL is back to 64");

	munmap(buf, (LIMIT + 1) * SZ_4K);
	vfio_close(&v);
	return tap_done();
}
