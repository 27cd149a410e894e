/* SPDX-License-Identifier: MIT */
/* VFIO type1 container helpers shared by the vfio guest programs. */
#ifndef DME_VM_VFIO_H
#define DME_VM_VFIO_H

#include "vmtest.h"

struct vfio_ctx {
	int container;
	int group;
	int device;
};

/* What VFIO_IOMMU_GET_INFO and its capability chain report. */
struct vfio_geometry {
	uint64_t pgsizes;
	uint32_t nr_ranges;
	struct {
		uint64_t start, end;
	} range[8];
	bool has_avail;
	uint32_t avail;
};

/*
 * Opens the container and the device's group, sets TYPE1v2 and opens the
 * device; each step is a TAP check, a failed prerequisite exits via tap_fatal.
 */
void vfio_open(const struct vm_nvme *dev, struct vfio_ctx *ctx);
/* VFIO_IOMMU_GET_INFO, growing argsz until the capability chain fits. */
int vfio_geometry(const struct vfio_ctx *ctx, struct vfio_geometry *geo);
int vfio_map(const struct vfio_ctx *ctx, void *va, uint64_t len, uint64_t iova);
/* Returns the ioctl result; *unmapped gets the size the kernel reports. */
int vfio_unmap(const struct vfio_ctx *ctx, uint64_t iova, uint64_t len, uint32_t flags,
	       uint64_t *unmapped);
/* Current DMA_AVAIL, or -1. */
long vfio_dma_avail(const struct vfio_ctx *ctx);
/* /sys/module/vfio_iommu_type1/parameters/dma_entry_limit, or -1. */
long vfio_dma_entry_limit(void);
void vfio_close(struct vfio_ctx *ctx);

#endif
