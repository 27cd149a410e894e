/* SPDX-License-Identifier: MIT */
/* devname.c - see devname.h. Reads sysfs only. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devname.h"
#include "log_internal.h"

int dev_pci_addr(const char *dev, char *out, size_t len)
{
	unsigned d = 0, b, s, f;
	char tail;
	if (sscanf(dev, "%x:%x:%x.%x%c", &d, &b, &s, &f, &tail) == 4 ||
	    (d = 0, sscanf(dev, "%x:%x.%x%c", &b, &s, &f, &tail) == 3)) {
		if (d > 0xffff || b > 0xff || s > 0x1f || f > 7)
			return -EINVAL;
		snprintf(out, len, "%04x:%02x:%02x.%x", d, b, s, f);
		return 0;
	}
	return -EINVAL;
}

int dev_cdev_path(const char *dev, char *out, size_t len)
{
	char bdf[32], path[PATH_MAX];
	if (!strncmp(dev, "/dev/vfio/devices/", 18)) {
		if (access(dev, F_OK))
			return -ENOENT;
		snprintf(out, len, "%s", dev);
		return 0;
	}
	if (dev_pci_addr(dev, bdf, sizeof(bdf)))
		return -EINVAL;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", bdf);
	DIR *d = opendir(path);
	if (!d)
		return -ENOENT;
	struct dirent *e;
	int ret = -ENOENT;
	while ((e = readdir(d))) {
		if (!strncmp(e->d_name, "vfio", 4)) {
			snprintf(out, len, "/dev/vfio/devices/%s", e->d_name);
			ret = 0;
			break;
		}
	}
	closedir(d);
	return ret;
}

int dev_group(const char *dev, int *group)
{
	char bdf[32], path[PATH_MAX], link[PATH_MAX];
	if (dev_pci_addr(dev, bdf, sizeof(bdf)))
		return -EINVAL;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -ENOENT;
	link[n] = 0;
	const char *slash = strrchr(link, '/');
	*group = atoi(slash ? slash + 1 : link);
	return 0;
}
