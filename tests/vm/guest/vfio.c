/* SPDX-License-Identifier: MIT */
#include "vfio.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

void vfio_open(const struct vm_nvme *dev, struct vfio_ctx *ctx)
{
	struct vfio_group_status st = { .argsz = sizeof(st) };

	ctx->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (ctx->container < 0)
		tap_fatal("open /dev/vfio/vfio: %s", strerror(errno));
	tap_check(true, "open /dev/vfio/vfio");
	tap_eq_u64((uint64_t)ioctl(ctx->container, VFIO_GET_API_VERSION), VFIO_API_VERSION,
		   "VFIO_GET_API_VERSION is VFIO_API_VERSION (0)");
	tap_eq_u64((uint64_t)ioctl(ctx->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 1,
		   "CHECK_EXTENSION(TYPE1v2) is 1");

	ctx->group = open(dev->group, O_RDWR | O_CLOEXEC);
	if (ctx->group < 0)
		tap_fatal("open group %s of %s: %s", dev->group, dev->bdf, strerror(errno));
	tap_check(true, "open the group %s of %s", dev->group, dev->bdf);
	tap_ok_rc(ioctl(ctx->group, VFIO_GROUP_GET_STATUS, &st), "VFIO_GROUP_GET_STATUS");
	tap_check(st.flags & VFIO_GROUP_FLAGS_VIABLE, "the group is viable");
	if (!tap_ok_rc(ioctl(ctx->group, VFIO_GROUP_SET_CONTAINER, &ctx->container),
		       "VFIO_GROUP_SET_CONTAINER"))
		tap_fatal("group joined the container");
	if (!tap_ok_rc(ioctl(ctx->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU),
		       "VFIO_SET_IOMMU(TYPE1v2)"))
		tap_fatal("container has a type1 IOMMU");
	ctx->device = ioctl(ctx->group, VFIO_GROUP_GET_DEVICE_FD, dev->bdf);
	if (ctx->device < 0)
		tap_fatal("VFIO_GROUP_GET_DEVICE_FD(%s): %s", dev->bdf, strerror(errno));
	tap_check(true, "VFIO_GROUP_GET_DEVICE_FD(%s)", dev->bdf);
}

int vfio_geometry(const struct vfio_ctx *ctx, struct vfio_geometry *geo)
{
	size_t sz = sizeof(struct vfio_iommu_type1_info);
	struct vfio_iommu_type1_info *info = NULL;

	memset(geo, 0, sizeof(*geo));
	for (int tries = 0; tries < 4; tries++) {
		free(info);
		info = calloc(1, sz);
		if (!info)
			return -1;
		info->argsz = (uint32_t)sz;
		if (ioctl(ctx->container, VFIO_IOMMU_GET_INFO, info) != 0) {
			free(info);
			return -1;
		}
		if (info->argsz <= sz)
			break;
		sz = info->argsz;
	}
	geo->pgsizes = info->iova_pgsizes;
	if ((info->flags & VFIO_IOMMU_INFO_CAPS) && info->cap_offset) {
		uint32_t off = info->cap_offset;
		for (int guard = 0; off && off + sizeof(struct vfio_info_cap_header) <= sz && guard < 32;
		     guard++) {
			struct vfio_info_cap_header *h = (void *)((char *)info + off);
			if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
				struct vfio_iommu_type1_info_cap_iova_range *r = (void *)h;
				geo->nr_ranges = r->nr_iovas;
				for (uint32_t i = 0; i < r->nr_iovas && i < 8; i++) {
					geo->range[i].start = r->iova_ranges[i].start;
					geo->range[i].end = r->iova_ranges[i].end;
				}
			} else if (h->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
				geo->has_avail = true;
				geo->avail = ((struct vfio_iommu_type1_info_dma_avail *)h)->avail;
			}
			off = h->next;
		}
	}
	free(info);
	return 0;
}

int vfio_map(const struct vfio_ctx *ctx, void *va, uint64_t len, uint64_t iova)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)va,
		.iova = iova,
		.size = len,
	};

	return ioctl(ctx->container, VFIO_IOMMU_MAP_DMA, &m);
}

int vfio_unmap(const struct vfio_ctx *ctx, uint64_t iova, uint64_t len, uint32_t flags,
	       uint64_t *unmapped)
{
	struct vfio_iommu_type1_dma_unmap u = {
		.argsz = sizeof(u),
		.flags = flags,
		.iova = iova,
		.size = len,
	};
	int rc = ioctl(ctx->container, VFIO_IOMMU_UNMAP_DMA, &u);

	if (unmapped)
		*unmapped = rc == 0 ? u.size : 0;
	return rc;
}

long vfio_dma_avail(const struct vfio_ctx *ctx)
{
	struct vfio_geometry g;

	if (vfio_geometry(ctx, &g) != 0 || !g.has_avail)
		return -1;
	return g.avail;
}

long vfio_dma_entry_limit(void)
{
	return vm_read_long("/sys/module/vfio_iommu_type1/parameters/dma_entry_limit", -1);
}

void vfio_close(struct vfio_ctx *ctx)
{
	close(ctx->device);
	close(ctx->group);
	close(ctx->container);
}
