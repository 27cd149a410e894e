/* SPDX-License-Identifier: MIT */
/* iommufd IOAS helpers shared by the guest programs (one /dev/iommu each). */
#ifndef DME_VM_IOAS_H
#define DME_VM_IOAS_H

#include <linux/iommufd.h>
#include <stdint.h>

#define IOAS_MAP_RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)
#define IOAS_MAP_FIXED_RW (IOMMU_IOAS_MAP_FIXED_IOVA | IOAS_MAP_RW)

/* The /dev/iommu the helpers below use; -1 until iommufd_open(). */
extern int vm_iommufd;

/* Opens /dev/iommu into vm_iommufd; returns it or -1 (errno set). */
int iommufd_open(void);
int ioas_alloc(uint32_t *id);
/* *iova is the requested IOVA and, on success, the one the kernel used. */
int ioas_map(uint32_t ioas, uint32_t flags, void *va, uint64_t len, uint64_t *iova);
/* Read/write map at a fixed IOVA. */
int ioas_map_fixed(uint32_t ioas, void *va, uint64_t len, uint64_t iova);
/* *unmapped (may be NULL) gets the length the kernel reports, 0 on error. */
int ioas_unmap(uint32_t ioas, uint64_t iova, uint64_t len, uint64_t *unmapped);
int iommufd_destroy(uint32_t id);
/* Fills r[] (up to max) and returns the kernel's count, or -1. */
int ioas_iova_ranges(uint32_t ioas, struct iommu_iova_range *r, uint32_t max, uint64_t *align);

#endif
