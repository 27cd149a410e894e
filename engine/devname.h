/* SPDX-License-Identifier: MIT */
/*
 * devname.h - resolving a device name from DME_DEVICE: a PCI address
 * ("0000:00:03.0", or "00:03.0" for domain 0) or a path under /dev/vfio.
 */
#ifndef DME_ENGINE_DEVNAME_H
#define DME_ENGINE_DEVNAME_H

/* Internal symbols carry the dmei_ prefix in the library (libdme.a links
 * beside other libraries' own avl_*, tree_*...); the code uses the short
 * names. */
#define dev_cdev_path dmei_dev_cdev_path
#define dev_group dmei_dev_group
#define dev_pci_addr dmei_dev_pci_addr

#include <stddef.h>

/* The VFIO cdev (/dev/vfio/devices/vfioN) of @dev. 0 or -ENOENT. */
int dev_cdev_path(const char *dev, char *out, size_t len);
/* The IOMMU group number of @dev (a PCI address). 0 or -ENOENT. */
int dev_group(const char *dev, int *group);
/* The canonical PCI address of @dev in @out, or -EINVAL when it is not one. */
int dev_pci_addr(const char *dev, char *out, size_t len);

#endif
