/* SPDX-License-Identifier: MIT */
/*
 * engine_faults: every ioctl the iommufd and vfio backends issue on their
 * open, geometry, attach, detach and copy paths, made to fail once on the
 * real kernel through dme_fault_ioctl(). Each failure must come back as a
 * clear error (negative errno, a message through the log hook), leak no
 * file descriptor, and leave dme usable: the same call succeeds next time.
 * (Map and unmap failures at every batch position are engine-iommufd's and
 * engine-vfio's.)
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <linux/iommufd.h>
#include <linux/vfio.h>

#include <dme/engine.h>

#include "dmeguest.h"
#include "ioctl.h"
#include "vmtest.h"

static struct vm_nvme dev;

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void cfg_for(struct dme_config *c, enum dme_backend_kind kind, bool window)
{
	dme_config_init(c);
	c->backend = kind;
	c->nr_devices = 1;
	snprintf(c->devices[0], sizeof(c->devices[0]), "%s", dev.bdf);
	if (window) {
		c->allow_iovas_set = true;
		c->allow_iova_start = 0x100000;
		c->allow_iova_last = 0xfedfffff;
	}
}

struct op {
	const char *name;
	unsigned long cmd;
	bool window;	/* needs DME_ALLOW_IOVAS to be issued */
};

/* Open fails once per ioctl of the open path, then works again. */
static void open_path(enum dme_backend_kind kind, const char *bname, const struct op *ops,
		      size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct dme_config c;
		struct dme_engine *e = NULL;
		cfg_for(&c, kind, ops[i].window);
		int fds = open_fds();
		uint64_t fired = dme_fault_ioctl_fired();
		dg_log_reset();
		dme_fault_ioctl(ops[i].cmd, 1, -EIO);
		int ret = dme_engine_open(&c, &e);
		dme_fault_ioctl(0, 0, 0);
		bool hit = dme_fault_ioctl_fired() == fired + 1;
		tap_check(hit && ret < 0 && !e && dg_log_count(DME_LOG_ERR) > 0,
			  "%s: %s failing makes open fail cleanly (%d: %s)", bname, ops[i].name,
			  ret, dg_log_last());
		tap_eq_u64((uint64_t)open_fds(), (uint64_t)fds, "%s: %s: no descriptor leaked",
			   bname, ops[i].name);
		ret = dme_engine_open(&c, &e);
		tap_ret(ret, 0, "%s: after %s failed, open works", bname, ops[i].name);
		if (!ret)
			dme_engine_close(e);
	}
}

static void iommufd_paths(void)
{
	static const struct op ops[] = {
		{"IOAS_ALLOC", IOMMU_IOAS_ALLOC, false},
		{"IOAS_ALLOW_IOVAS", IOMMU_IOAS_ALLOW_IOVAS, true},
		{"BIND_IOMMUFD", VFIO_DEVICE_BIND_IOMMUFD, false},
		{"ATTACH_IOMMUFD_PT", VFIO_DEVICE_ATTACH_IOMMUFD_PT, false},
		{"IOAS_IOVA_RANGES", IOMMU_IOAS_IOVA_RANGES, false},
	};
	open_path(DME_BACKEND_IOMMUFD, "iommufd", ops, sizeof(ops) / sizeof(ops[0]));

	/* OPTION HUGE_PAGES failing is a warning, not a failure */
	struct dme_config c;
	struct dme_engine *e = NULL;
	cfg_for(&c, DME_BACKEND_IOMMUFD, false);
	dg_log_reset();
	dme_fault_ioctl(IOMMU_OPTION, 1, -EIO);
	int ret = dme_engine_open(&c, &e);
	dme_fault_ioctl(0, 0, 0);
	tap_check(ret == 0 && dg_log_count(DME_LOG_WARN) > 0,
		  "iommufd: OPTION HUGE_PAGES failing is reported as a warning, open succeeds");
	if (ret)
		return;

	/* detach and attach after open */
	dme_fault_ioctl(VFIO_DEVICE_DETACH_IOMMUFD_PT, 1, -EIO);
	ret = dme_engine_detach(e, dev.bdf);
	dme_fault_ioctl(0, 0, 0);
	tap_ret(ret, -EIO, "iommufd: DETACH_IOMMUFD_PT failing is returned");
	tap_ret(dme_engine_detach(e, dev.bdf), 0, "iommufd: then the detach works");
	dme_fault_ioctl(VFIO_DEVICE_ATTACH_IOMMUFD_PT, 1, -EIO);
	ret = dme_engine_attach(e, dev.bdf);
	dme_fault_ioctl(0, 0, 0);
	tap_ret(ret, -EIO, "iommufd: ATTACH_IOMMUFD_PT failing on a re-attach is returned");
	dme_fault_ioctl(IOMMU_IOAS_IOVA_RANGES, 1, -EIO);
	ret = dme_engine_attach(e, dev.bdf);
	dme_fault_ioctl(0, 0, 0);
	tap_ret(ret, -EIO, "iommufd: IOVA_RANGES failing after an attach undoes the attach");
	tap_ret(dme_engine_attach(e, dev.bdf), 0, "iommufd: then the attach works");

	/* IOAS_COPY failing in dme_share leaves the sibling empty */
	struct dme_engine *s2 = NULL;
	void *buf = vm_small_alloc(4 * SZ_4K);
	uint64_t iova, iova2;
	if (buf && !dme_register(e, buf, 4 * SZ_4K, DME_MAP_RW, &iova) &&
	    tap_ret(dme_engine_open_sibling(e, &s2), 0, "iommufd: a sibling IOAS")) {
		dme_fault_ioctl(IOMMU_IOAS_COPY, 1, -ENOMEM);
		ret = dme_share(e, s2, buf, 4 * SZ_4K, DME_MAP_READ, &iova2);
		dme_fault_ioctl(0, 0, 0);
		struct dme_engine_stats st;
		dme_engine_stats(s2, &st);
		tap_check(ret == -ENOMEM && st.live_mappings == 0 && dg_balanced(s2),
			  "iommufd: IOAS_COPY failing leaves the sibling empty (%d)", ret);
		tap_ret(dme_share(e, s2, buf, 4 * SZ_4K, DME_MAP_READ, &iova2), 0,
			"iommufd: then the share works");
		dme_engine_close(s2);
		dme_fault_ioctl(IOMMU_IOAS_ALLOC, 1, -ENOMEM);
		ret = dme_engine_open_sibling(e, &s2);
		dme_fault_ioctl(0, 0, 0);
		tap_ret(ret, -ENOMEM, "iommufd: IOAS_ALLOC failing for a sibling is returned");
	}
	tap_check(dg_balanced(e), "iommufd: the engine balances after all of it");
	dme_engine_close(e);
}

static void vfio_paths(void)
{
	static const struct op ops[] = {
		{"GET_API_VERSION", VFIO_GET_API_VERSION, false},
		{"CHECK_EXTENSION", VFIO_CHECK_EXTENSION, false},
		{"GROUP_GET_STATUS", VFIO_GROUP_GET_STATUS, false},
		{"GROUP_SET_CONTAINER", VFIO_GROUP_SET_CONTAINER, false},
		{"SET_IOMMU", VFIO_SET_IOMMU, false},
		{"IOMMU_GET_INFO", VFIO_IOMMU_GET_INFO, false},
	};
	open_path(DME_BACKEND_VFIO, "vfio", ops, sizeof(ops) / sizeof(ops[0]));
}

int main(void)
{
	tap_init("engine-faults");
	dg_log_install(DME_LOG_WARN);
	dev = vm_first_vfio_nvme();
	iommufd_paths();
	vfio_paths();
	return tap_done();
}
