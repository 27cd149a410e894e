/* SPDX-License-Identifier: MIT */
/*
 * backends.c - the backends compiled into dme, in the order
 * DME_BACKEND=auto tries them, and what their probes share. The simulator
 * always comes last: it is what an embedding program gets when it names no
 * device.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

const struct be_ops *const be_all[] = {
	&be_iommufd_ops,
	&be_vfio_ops,
	&be_noiommu_ops,
	&be_sim_ops,
	NULL,
};

int be_probe_node(const char *path, const char *absent_hint, char *why, size_t len)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	int err = errno;
	int absent = err == ENOENT || err == ENODEV || err == ENXIO;
	snprintf(why, len, "%s: %s%s", path, strerror(err), absent ? absent_hint : "");
	return absent ? -ENODEV : -err;
}
