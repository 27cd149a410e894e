/* SPDX-License-Identifier: MIT */
/*
 * iommufd.c - the iommufd backend: one IOAS in /dev/iommu, devices through
 * their VFIO cdevs (BIND_IOMMUFD + ATTACH_IOMMUFD_PT).
 *
 * dme allocates every IOVA itself, so IOAS_MAP always carries FIXED_IOVA.
 * Features are probed, never assumed: IOAS_MAP_FILE (6.13) is tried once on
 * the first fd-backed request and remembered as absent on ENOTTY/EOPNOTSUPP
 * (the request then falls back to IOAS_MAP of the VA). The geometry is read
 * with IOAS_IOVA_RANGES, growing the array on EMSGSIZE, after every
 * attach and detach (the engine calls geometry() then).
 * IOAS_UNMAP must cover whole mappings; the unmapped length the kernel
 * reports is checked against the request (-EIO on a mismatch).
 *
 * State is owned by the engine's map lock (backend.h); no locking here.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/vfio.h>

#include "backend.h"
#include "compiler.h"
#include "devname.h"
#include "internal.h"
#include "ioctl.h"
#include "log_internal.h"

#ifndef IOMMU_IOAS_MAP_FILE
/* Linux 6.13 uapi; the build headers may be older. */
struct iommu_ioas_map_file {
	uint32_t size;
	uint32_t flags;
	uint32_t ioas_id;
	int32_t fd;
	uint64_t start;
	uint64_t length;
	uint64_t iova;
};
#define IOMMU_IOAS_MAP_FILE _IO(IOMMUFD_TYPE, 0x8f)
#endif
_Static_assert(sizeof(struct iommu_ioas_map_file) == 40, "IOAS_MAP_FILE layout");
_Static_assert(sizeof(struct iommu_ioas_map) == 40, "IOAS_MAP layout");
_Static_assert(sizeof(struct iommu_ioas_unmap) == 24, "IOAS_UNMAP layout");
_Static_assert(sizeof(struct iommu_ioas_copy) == 40, "IOAS_COPY layout");

#define IOMMUFD_MAX_DEVS DME_MAX_DEVICES

struct ifd_dev {
	char name[DME_DEVICE_NAME_MAX];
	int fd;
	uint32_t devid;
};

struct ifd {
	int fd;		/* /dev/iommu */
	uint32_t ioas;
	int map_file;	/* 1 works, 0 absent, -1 not probed yet */
	struct ifd_dev devs[IOMMUFD_MAX_DEVS];
	unsigned nr_devs;
};

static int ifd_attach(void *be, const char *dev);
static void ifd_close(void *be);

static int ifd_probe(const struct dme_config *cfg, char *why, size_t len)
{
	(void)cfg;
	return be_probe_node("/dev/iommu", " (a kernel without CONFIG_IOMMUFD, or iommufd not loaded)",
			     why, len);
}

static int ifd_open(const struct dme_config *cfg, void **out)
{
	struct ifd *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->map_file = -1;
	b->fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (b->fd < 0) {
		int ret = -errno;
		dme_err("iommufd: cannot open /dev/iommu: %s", strerror(errno));
		free(b);
		return ret;
	}
	struct iommu_ioas_alloc a = {.size = sizeof(a)};
	int ret = be_ioctl(b->fd, IOMMU_IOAS_ALLOC, &a);
	if (ret) {
		dme_err("iommufd: IOAS_ALLOC failed: %s", strerror(-ret));
		goto err;
	}
	b->ioas = a.out_ioas_id;
	/* huge IO pages are the default; say so explicitly, and tolerate a
	 * kernel without the option */
	struct iommu_option o = {.size = sizeof(o), .option_id = IOMMU_OPTION_HUGE_PAGES,
				 .op = IOMMU_OPTION_OP_SET, .object_id = b->ioas, .val64 = 1};
	ret = be_ioctl(b->fd, IOMMU_OPTION, &o);
	if (ret && ret != -ENOTTY && ret != -EOPNOTSUPP && ret != -ENOENT)
		dme_warn("iommufd: OPTION HUGE_PAGES: %s", strerror(-ret));
	if (cfg->allow_iovas_set) {
		struct iommu_iova_range r = {cfg->allow_iova_start, cfg->allow_iova_last};
		struct iommu_ioas_allow_iovas w = {.size = sizeof(w), .ioas_id = b->ioas,
						   .num_iovas = 1, .allowed_iovas = (uintptr_t)&r};
		ret = be_ioctl(b->fd, IOMMU_IOAS_ALLOW_IOVAS, &w);
		if (ret) {
			dme_err("iommufd: IOAS_ALLOW_IOVAS [0x%" PRIx64 ", 0x%" PRIx64 "]: %s",
				cfg->allow_iova_start, cfg->allow_iova_last, strerror(-ret));
			goto err;
		}
	}
	for (unsigned i = 0; i < cfg->nr_devices; i++) {
		ret = ifd_attach(b, cfg->devices[i]);
		if (ret)
			goto err;
	}
	*out = b;
	return 0;
err:
	ifd_close(b);
	return ret;
}

static int ifd_sibling(void *be, const struct dme_config *cfg, void **out)
{
	struct ifd *b = be, *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->map_file = b->map_file;
	/* the same iommufd context: IOAS_COPY works between the two */
	n->fd = fcntl(b->fd, F_DUPFD_CLOEXEC, 0);
	if (n->fd < 0) {
		int ret = -errno;
		free(n);
		return ret;
	}
	struct iommu_ioas_alloc a = {.size = sizeof(a)};
	int ret = be_ioctl(n->fd, IOMMU_IOAS_ALLOC, &a);
	if (ret) {
		dme_err("iommufd: IOAS_ALLOC for a second address space: %s", strerror(-ret));
		close(n->fd);
		free(n);
		return ret;
	}
	n->ioas = a.out_ioas_id;
	(void)cfg;
	*out = n;
	return 0;
}

static int ifd_geometry(void *be, struct be_geometry *g)
{
	struct ifd *b = be;
	struct iommu_iova_range r[BE_MAX_RANGES];
	struct iommu_ioas_iova_ranges q = {.size = sizeof(q), .ioas_id = b->ioas,
					   .num_iovas = BE_MAX_RANGES,
					   .allowed_iovas = (uintptr_t)r};
	int ret = be_ioctl(b->fd, IOMMU_IOAS_IOVA_RANGES, &q);
	if (ret == -EMSGSIZE) {
		dme_err("iommufd: the IOAS has %u allowed ranges, dme handles %d", q.num_iovas,
			BE_MAX_RANGES);
		return -E2BIG;
	}
	if (ret) {
		dme_err("iommufd: IOAS_IOVA_RANGES failed: %s", strerror(-ret));
		return ret;
	}
	memset(g, 0, sizeof(*g));
	for (unsigned i = 0; i < q.num_iovas; i++)
		g->ranges[i] = (struct dme_iova_range){r[i].start, r[i].last};
	g->nr_ranges = q.num_iovas;
	g->alignment = q.out_iova_alignment ? q.out_iova_alignment : 1;
	/* dme maps whole pages whatever the kernel's minimum */
	if (g->alignment < 4096)
		g->alignment = 4096;
	g->has_copy = true;
	g->has_map_file = b->map_file != 0;
	g->ready = true;	/* an IOAS takes maps before any device is attached */
	return 0;
}

static int map_one(struct ifd *b, const struct be_map *m)
{
	uint32_t flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 (m->prot & BE_PROT_WRITE ? IOMMU_IOAS_MAP_WRITEABLE : 0);
	int ret;
	if (m->fd >= 0 && b->map_file != 0) {
		struct iommu_ioas_map_file f = {.size = sizeof(f), .flags = flags,
						.ioas_id = b->ioas, .fd = m->fd,
						.start = m->fd_off, .length = m->len,
						.iova = m->iova};
		ret = be_ioctl(b->fd, IOMMU_IOAS_MAP_FILE, &f);
		if (ret != -ENOTTY && ret != -EOPNOTSUPP) {
			b->map_file = 1;
			return ret;
		}
		b->map_file = 0;
		dme_info("iommufd: this kernel has no IOAS_MAP_FILE; mapping memfd memory by address");
	}
	struct iommu_ioas_map a = {.size = sizeof(a), .flags = flags, .ioas_id = b->ioas,
				   .user_va = m->va, .length = m->len, .iova = m->iova};
	return be_ioctl(b->fd, IOMMU_IOAS_MAP, &a);
}

static int ifd_map(void *be, const struct be_map *reqs, size_t n, size_t *done)
{
	struct ifd *b = be;
	for (size_t i = 0; i < n; i++) {
		int ret = map_one(b, &reqs[i]);
		if (ret) {
			dme_err("iommufd: IOAS_MAP va 0x%" PRIx64 " len 0x%" PRIx64 " at IOVA 0x%" PRIx64 " in IOAS %u: %s",
				reqs[i].va, reqs[i].len, reqs[i].iova, b->ioas, strerror(-ret));
			*done = i;
			return ret;
		}
	}
	*done = n;
	return 0;
}

static int ifd_unmap(void *be, const struct be_unmap *reqs, size_t n, size_t *done)
{
	struct ifd *b = be;
	for (size_t i = 0; i < n; i++) {
		struct iommu_ioas_unmap u = {.size = sizeof(u), .ioas_id = b->ioas,
					     .iova = reqs[i].iova, .length = reqs[i].len};
		int ret = be_ioctl(b->fd, IOMMU_IOAS_UNMAP, &u);
		if (!ret && u.length != reqs[i].len) {
			dme_err("iommufd: IOAS_UNMAP at IOVA 0x%" PRIx64 " removed 0x%llx bytes, not 0x%" PRIx64,
				reqs[i].iova, (unsigned long long)u.length, reqs[i].len);
			ret = -EIO;
		}
		if (ret) {
			if (ret != -EIO)
				dme_err("iommufd: IOAS_UNMAP IOVA 0x%" PRIx64 " len 0x%" PRIx64 ": %s",
					reqs[i].iova, reqs[i].len, strerror(-ret));
			*done = i;
			return ret;
		}
	}
	*done = n;
	return 0;
}

static int ifd_copy(void *be, void *dst, uint64_t src_iova, uint64_t dst_iova, uint64_t len,
		    unsigned prot)
{
	struct ifd *b = be, *d = dst;
	struct iommu_ioas_copy c = {
		.size = sizeof(c),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 (prot & BE_PROT_WRITE ? IOMMU_IOAS_MAP_WRITEABLE : 0),
		.dst_ioas_id = d->ioas, .src_ioas_id = b->ioas,
		.length = len, .dst_iova = dst_iova, .src_iova = src_iova};
	int ret = be_ioctl(b->fd, IOMMU_IOAS_COPY, &c);
	if (ret)
		dme_err("iommufd: IOAS_COPY 0x%" PRIx64 " bytes from IOAS %u to %u: %s", len,
			b->ioas, d->ioas, strerror(-ret));
	return ret;
}

static int ifd_attach(void *be, const char *dev)
{
	struct ifd *b = be;
	char path[256];
	if (b->nr_devs == IOMMUFD_MAX_DEVS)
		return -ENOSPC;
	int ret = dev_cdev_path(dev, path, sizeof(path));
	if (ret) {
		dme_err("iommufd: %s has no VFIO cdev (is it bound to vfio-pci? CONFIG_VFIO_DEVICE_CDEV?)",
			dev);
		return -ENODEV;
	}
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		dme_err("iommufd: open %s: %s", path, strerror(errno));
		return ret;
	}
	struct vfio_device_bind_iommufd bind = {.argsz = sizeof(bind), .iommufd = b->fd};
	ret = be_ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	if (ret == -EINVAL || ret == -EBUSY) {
		/* well-formed request: the kernel says EINVAL when the device is
		 * already open through another cdev fd, EBUSY when its group is */
		dme_err("iommufd: %s (%s) is in use: another engine or process has the device or its VFIO group open (BIND_IOMMUFD: %s)",
			dev, path, strerror(-ret));
		ret = -EBUSY;
		goto err_close;
	}
	if (ret) {
		dme_err("iommufd: BIND_IOMMUFD %s: %s", path, strerror(-ret));
		goto err_close;
	}
	struct vfio_device_attach_iommufd_pt at = {.argsz = sizeof(at), .pt_id = b->ioas};
	ret = be_ioctl(fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
	if (ret) {
		dme_err("iommufd: ATTACH_IOMMUFD_PT %s to IOAS %u: %s", path, b->ioas,
			strerror(-ret));
		goto err_close;
	}
	struct ifd_dev *d = &b->devs[b->nr_devs++];
	snprintf(d->name, sizeof(d->name), "%s", dev);
	d->fd = fd;
	d->devid = bind.out_devid;
	return 0;
err_close:
	close(fd);	/* closing the cdev unbinds it */
	return ret;
}

static int ifd_detach(void *be, const char *dev)
{
	struct ifd *b = be;
	for (unsigned i = 0; i < b->nr_devs; i++) {
		if (strcmp(b->devs[i].name, dev))
			continue;
		struct vfio_device_detach_iommufd_pt dt = {.argsz = sizeof(dt)};
		int ret = be_ioctl(b->devs[i].fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt);
		if (ret) {
			dme_err("iommufd: DETACH_IOMMUFD_PT %s: %s", dev, strerror(-ret));
			return ret;
		}
		close(b->devs[i].fd);
		b->devs[i] = b->devs[--b->nr_devs];
		return 0;
	}
	dme_err("iommufd: %s is not attached", dev);
	return -ENOENT;
}

static void ifd_close(void *be)
{
	struct ifd *b = be;
	for (unsigned i = 0; i < b->nr_devs; i++)
		close(b->devs[i].fd);
	if (b->ioas) {
		struct iommu_destroy d = {.size = sizeof(d), .id = b->ioas};
		be_ioctl(b->fd, IOMMU_DESTROY, &d);
	}
	close(b->fd);
	free(b);
}

/* For tests that drive IOMMU_TEST_CMD against the same IOAS (internal.h). */
int dme_iommufd_ids(void *be, int *fd, uint32_t *ioas)
{
	struct ifd *b = be;
	*fd = b->fd;
	*ioas = b->ioas;
	return 0;
}

const struct be_ops be_iommufd_ops = {
	.name = "iommufd",
	.probe = ifd_probe,
	.open = ifd_open,
	.geometry = ifd_geometry,
	.map = ifd_map,
	.unmap = ifd_unmap,
	.copy = ifd_copy,
	.sibling = ifd_sibling,
	.attach = ifd_attach,
	.detach = ifd_detach,
	.close = ifd_close,
};
