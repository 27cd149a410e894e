/* SPDX-License-Identifier: MIT */
/*
 * vfio.c - the VFIO type1v2 container backend (the legacy interface).
 *
 * One container (/dev/vfio/vfio); each device's IOMMU group is added to it;
 * the IOMMU model is set when the first group arrives, so until then the
 * backend is not ready and the engine records maps to replay them. The
 * geometry comes from VFIO_IOMMU_GET_INFO's capability chain (IOVA_RANGE,
 * DMA_AVAIL); max_entries is DMA_AVAIL plus the mappings this backend holds,
 * i.e. the container's dma_entry_limit. UNMAP_DMA reports the bytes it
 * removed; a mismatch is an error (-EIO).
 *
 * State is owned by the engine's map lock (backend.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "backend.h"
#include "compiler.h"
#include "devname.h"
#include "internal.h"
#include "ioctl.h"
#include "log_internal.h"

struct vgroup {
	int nr, fd;
	unsigned users;	/* attached devices in this group */
};

struct vdev {
	char name[DME_DEVICE_NAME_MAX];
	int group;
};

struct vfio {
	int container;
	bool iommu_set;
	struct vgroup groups[DME_MAX_DEVICES];
	unsigned nr_groups;
	struct vdev devs[DME_MAX_DEVICES];
	unsigned nr_devs;
	uint64_t live;	/* mappings held */
};

static int vfio_attach(void *be, const char *dev);
static void vfio_close(void *be);

static int vfio_probe(const struct dme_config *cfg, char *why, size_t len)
{
	(void)cfg;
	return be_probe_node("/dev/vfio/vfio", " (a kernel without VFIO, or vfio not loaded)", why,
			     len);
}

static int vfio_open(const struct dme_config *cfg, void **out)
{
	struct vfio *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (b->container < 0) {
		int ret = -errno;
		dme_err("vfio: cannot open /dev/vfio/vfio: %s", strerror(errno));
		free(b);
		return ret;
	}
	int ret = be_ioctl(b->container, VFIO_GET_API_VERSION, NULL);
	if (ret < 0) {
		dme_err("vfio: GET_API_VERSION: %s", strerror(-ret));
		goto err;
	}
	if (ret != VFIO_API_VERSION) {
		dme_err("vfio: API version %d, dme speaks %d", ret, VFIO_API_VERSION);
		ret = -EPROTO;
		goto err;
	}
	ret = be_ioctl(b->container, VFIO_CHECK_EXTENSION, (void *)(uintptr_t)VFIO_TYPE1v2_IOMMU);
	if (ret < 0) {
		dme_err("vfio: CHECK_EXTENSION(TYPE1v2): %s", strerror(-ret));
		goto err;
	}
	if (ret == 0) {
		dme_err("vfio: the container has no type1v2 IOMMU (vfio_iommu_type1 not loaded?)");
		ret = -EOPNOTSUPP;
		goto err;
	}
	for (unsigned i = 0; i < cfg->nr_devices; i++) {
		ret = vfio_attach(b, cfg->devices[i]);
		if (ret)
			goto err;
	}
	*out = b;
	return 0;
err:
	vfio_close(b);
	return ret;
}

static int vfio_geometry(void *be, struct be_geometry *g)
{
	struct vfio *b = be;
	memset(g, 0, sizeof(*g));
	if (!b->iommu_set) {
		/* nothing is known before the first group: a wide window */
		g->ranges[0] = (struct dme_iova_range){0, (1ull << 48) - 1};
		g->nr_ranges = 1;
		g->alignment = 4096;
		g->ready = false;
		return 0;
	}
	uint32_t argsz = sizeof(struct vfio_iommu_type1_info);
	struct vfio_iommu_type1_info *info = NULL;
	int ret;
	for (;;) {
		struct vfio_iommu_type1_info *n = realloc(info, argsz);
		if (!n) {
			free(info);
			return -ENOMEM;
		}
		info = n;
		memset(info, 0, argsz);
		info->argsz = argsz;
		ret = be_ioctl(b->container, VFIO_IOMMU_GET_INFO, info);
		if (ret) {
			dme_err("vfio: IOMMU_GET_INFO: %s", strerror(-ret));
			free(info);
			return ret;
		}
		if (info->argsz <= argsz)
			break;
		argsz = info->argsz;	/* the capability chain needs more room */
	}
	g->alignment = 4096;
	if (info->flags & VFIO_IOMMU_INFO_PGSIZES) {
		g->pgsize_bitmap = info->iova_pgsizes;
		if (info->iova_pgsizes)
			g->alignment = info->iova_pgsizes & -info->iova_pgsizes;
	}
	uint64_t avail = 0;
	bool have_ranges = false;
	if (info->flags & VFIO_IOMMU_INFO_CAPS) {
		for (uint32_t off = info->cap_offset; off && off + sizeof(struct vfio_info_cap_header) <= argsz;) {
			struct vfio_info_cap_header *h = (void *)((char *)info + off);
			if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
				struct vfio_iommu_type1_info_cap_iova_range *c = (void *)h;
				for (uint32_t i = 0; i < c->nr_iovas && g->nr_ranges < BE_MAX_RANGES; i++)
					g->ranges[g->nr_ranges++] = (struct dme_iova_range){
						c->iova_ranges[i].start, c->iova_ranges[i].end};
				have_ranges = true;
			} else if (h->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
				avail = ((struct vfio_iommu_type1_info_dma_avail *)h)->avail;
			}
			if (h->next <= off)
				break;
			off = h->next;
		}
	}
	free(info);
	if (!have_ranges) {
		g->ranges[0] = (struct dme_iova_range){0, UINT64_MAX};
		g->nr_ranges = 1;
	}
	g->max_entries = avail ? avail + b->live : 0;
	g->max_entries_src = "the container's dma_entry_limit (vfio_iommu_type1.dma_entry_limit)";
	g->ready = true;
	return 0;
}

static int vfio_map(void *be, const struct be_map *reqs, size_t n, size_t *done)
{
	struct vfio *b = be;
	for (size_t i = 0; i < n; i++) {
		struct vfio_iommu_type1_dma_map m = {
			.argsz = sizeof(m),
			.flags = VFIO_DMA_MAP_FLAG_READ |
				 (reqs[i].prot & BE_PROT_WRITE ? VFIO_DMA_MAP_FLAG_WRITE : 0),
			.vaddr = reqs[i].va, .iova = reqs[i].iova, .size = reqs[i].len};
		int ret = be_ioctl(b->container, VFIO_IOMMU_MAP_DMA, &m);
		if (ret) {
			dme_err("vfio: MAP_DMA va 0x%" PRIx64 " len 0x%" PRIx64 " at IOVA 0x%" PRIx64 ": %s%s",
				reqs[i].va, reqs[i].len, reqs[i].iova, strerror(-ret),
				ret == -ENOSPC ? " (the container's dma_entry_limit is reached)" : "");
			*done = i;
			return ret;
		}
		b->live++;
	}
	*done = n;
	return 0;
}

static int vfio_unmap(void *be, const struct be_unmap *reqs, size_t n, size_t *done)
{
	struct vfio *b = be;
	for (size_t i = 0; i < n; i++) {
		struct vfio_iommu_type1_dma_unmap u = {.argsz = sizeof(u), .iova = reqs[i].iova,
						       .size = reqs[i].len};
		int ret = be_ioctl(b->container, VFIO_IOMMU_UNMAP_DMA, &u);
		if (!ret && u.size != reqs[i].len) {
			dme_err("vfio: UNMAP_DMA at IOVA 0x%" PRIx64 " removed 0x%llx bytes, not 0x%" PRIx64,
				reqs[i].iova, (unsigned long long)u.size, reqs[i].len);
			ret = -EIO;
			if (u.size)
				b->live--;
		} else if (ret) {
			dme_err("vfio: UNMAP_DMA IOVA 0x%" PRIx64 " len 0x%" PRIx64 ": %s", reqs[i].iova,
				reqs[i].len, strerror(-ret));
		}
		if (ret) {
			*done = i;
			return ret;
		}
		b->live -= reqs[i].nr_maps ? reqs[i].nr_maps : 1;
	}
	*done = n;
	return 0;
}

static int vfio_attach(void *be, const char *dev)
{
	struct vfio *b = be;
	int nr, ret = dev_group(dev, &nr);
	if (ret) {
		dme_err("vfio: %s has no IOMMU group (is it a PCI device behind an IOMMU?)", dev);
		return -ENODEV;
	}
	if (b->nr_devs == DME_MAX_DEVICES)
		return -ENOSPC;
	struct vgroup *g = NULL;
	for (unsigned i = 0; i < b->nr_groups; i++)
		if (b->groups[i].nr == nr)
			g = &b->groups[i];
	if (!g) {
		char path[64];
		snprintf(path, sizeof(path), "/dev/vfio/%d", nr);
		int fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			ret = -errno;
			if (ret == -EBUSY)
				dme_err("vfio: %s: its group %s is in use: a VFIO group opens once, and another engine or process (or an iommufd cdev user) holds it",
					dev, path);
			else
				dme_err("vfio: open %s: %s (bind %s to vfio-pci)", path, strerror(errno), dev);
			return ret;
		}
		struct vfio_group_status st = {.argsz = sizeof(st)};
		ret = be_ioctl(fd, VFIO_GROUP_GET_STATUS, &st);
		if (!ret && !(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
			dme_err("vfio: group %d is not viable: bind every device in it to vfio-pci", nr);
			ret = -EBUSY;
		}
		if (!ret)
			ret = be_ioctl(fd, VFIO_GROUP_SET_CONTAINER, &b->container);
		if (!ret && !b->iommu_set) {
			ret = be_ioctl(b->container, VFIO_SET_IOMMU, (void *)(uintptr_t)VFIO_TYPE1v2_IOMMU);
			if (!ret)
				b->iommu_set = true;
			else
				be_ioctl(fd, VFIO_GROUP_UNSET_CONTAINER, NULL);
		}
		if (ret) {
			dme_err("vfio: adding group %d to the container: %s", nr, strerror(-ret));
			close(fd);
			return ret;
		}
		g = &b->groups[b->nr_groups++];
		*g = (struct vgroup){nr, fd, 0};
	}
	g->users++;
	struct vdev *d = &b->devs[b->nr_devs++];
	snprintf(d->name, sizeof(d->name), "%s", dev);
	d->group = nr;
	return 0;
}

static int vfio_detach(void *be, const char *dev)
{
	struct vfio *b = be;
	for (unsigned i = 0; i < b->nr_devs; i++) {
		if (strcmp(b->devs[i].name, dev))
			continue;
		for (unsigned k = 0; k < b->nr_groups; k++) {
			struct vgroup *g = &b->groups[k];
			if (g->nr != b->devs[i].group)
				continue;
			if (g->users == 1 && b->nr_groups == 1 && b->live) {
				dme_err("vfio: detaching %s would drop the container's %" PRIu64 " mappings; unregister and flush first",
					dev, b->live);
				return -EBUSY;
			}
			if (--g->users == 0) {
				be_ioctl(g->fd, VFIO_GROUP_UNSET_CONTAINER, NULL);
				close(g->fd);
				b->groups[k] = b->groups[--b->nr_groups];
				if (!b->nr_groups)
					b->iommu_set = false;
			}
			break;
		}
		b->devs[i] = b->devs[--b->nr_devs];
		return 0;
	}
	dme_err("vfio: %s is not attached", dev);
	return -ENOENT;
}

static void vfio_close(void *be)
{
	struct vfio *b = be;
	for (unsigned i = 0; i < b->nr_groups; i++) {
		be_ioctl(b->groups[i].fd, VFIO_GROUP_UNSET_CONTAINER, NULL);
		close(b->groups[i].fd);
	}
	close(b->container);
	free(b);
}

/* For the VM tier's probes of the container (internal.h). */
int dme_vfio_container(void *be)
{
	return ((struct vfio *)be)->container;
}

const struct be_ops be_vfio_ops = {
	.name = "vfio",
	.probe = vfio_probe,
	.open = vfio_open,
	.geometry = vfio_geometry,
	.map = vfio_map,
	.unmap = vfio_unmap,
	.attach = vfio_attach,
	.detach = vfio_detach,
	.close = vfio_close,
};
