/* SPDX-License-Identifier: MIT */
#include "ioas.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

int vm_iommufd = -1;

int iommufd_open(void)
{
	vm_iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	return vm_iommufd;
}

int ioas_alloc(uint32_t *id)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	int rc = ioctl(vm_iommufd, IOMMU_IOAS_ALLOC, &a);

	*id = a.out_ioas_id;
	return rc;
}

int ioas_map(uint32_t ioas, uint32_t flags, void *va, uint64_t len, uint64_t *iova)
{
	struct iommu_ioas_map m = {
		.size = sizeof(m),
		.flags = flags,
		.ioas_id = ioas,
		.user_va = (uintptr_t)va,
		.length = len,
		.iova = *iova,
	};
	int rc = ioctl(vm_iommufd, IOMMU_IOAS_MAP, &m);

	if (rc == 0)
		*iova = m.iova;
	return rc;
}

int ioas_map_fixed(uint32_t ioas, void *va, uint64_t len, uint64_t iova)
{
	return ioas_map(ioas, IOAS_MAP_FIXED_RW, va, len, &iova);
}

int ioas_unmap(uint32_t ioas, uint64_t iova, uint64_t len, uint64_t *unmapped)
{
	struct iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = ioas, .iova = iova, .length = len };
	int rc = ioctl(vm_iommufd, IOMMU_IOAS_UNMAP, &u);

	if (unmapped)
		*unmapped = rc == 0 ? u.length : 0;
	return rc;
}

int iommufd_destroy(uint32_t id)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = id };

	return ioctl(vm_iommufd, IOMMU_DESTROY, &d);
}

int ioas_iova_ranges(uint32_t ioas, struct iommu_iova_range *r, uint32_t max, uint64_t *align)
{
	struct iommu_ioas_iova_ranges q = {
		.size = sizeof(q),
		.ioas_id = ioas,
		.num_iovas = max,
		.allowed_iovas = (uintptr_t)r,
	};

	if (ioctl(vm_iommufd, IOMMU_IOAS_IOVA_RANGES, &q) != 0)
		return -1;
	*align = q.out_iova_alignment;
	return (int)q.num_iovas;
}
