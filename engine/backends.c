/* SPDX-License-Identifier: MIT */
/*
 * backends.c - the backends compiled into dme, in the order
 * DME_BACKEND=auto tries them. The simulator always comes last: it is what
 * an embedding program gets when no IOMMU interface is reachable.
 */
#include <stddef.h>

#include "backend.h"

const struct be_ops *const be_all[] = {
	&be_iommufd_ops,
	&be_vfio_ops,
	&be_noiommu_ops,
	&be_sim_ops,
	NULL,
};
