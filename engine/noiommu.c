/* SPDX-License-Identifier: MIT */
/*
 * noiommu.c - the no-IOMMU backend: IOVA = physical address.
 *
 * For hosts without an IOMMU (vfio's unsafe no-IOMMU mode, or a driver that
 * programs physical addresses). Nothing is mapped: the device sees physical
 * memory. The engine gives each run the IOVA of its physical address (it
 * reads /proc/self/pagemap, which needs CAP_SYS_ADMIN) and accepts only
 * hugetlb memory, whose pages never move; map() re-checks that every page of
 * a request still sits where its IOVA says. unmap() has nothing to undo.
 *
 * State is owned by the engine's map lock (backend.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <dme/mem.h>

#include "backend.h"
#include "compiler.h"
#include "log_internal.h"

#define PA_BITS 52

struct noiommu {
	char devs[DME_MAX_DEVICES][DME_DEVICE_NAME_MAX];
	unsigned nr_devs;
};

#define UNSAFE_MODE "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode"

static int nio_probe(const struct dme_config *cfg, char *why, size_t len)
{
	/* never chosen by DME_BACKEND=auto unless the host runs vfio without an
	 * IOMMU on purpose; asked for by name, it is always there */
	if (cfg->backend != DME_BACKEND_AUTO)
		return 0;
	FILE *f = fopen(UNSAFE_MODE, "r");
	if (!f) {
		snprintf(why, len, "vfio is not loaded (no %s)", UNSAFE_MODE);
		return -ENODEV;
	}
	int c = fgetc(f);
	fclose(f);
	if (c == 'Y')
		return 0;
	snprintf(why, len, "vfio's unsafe no-IOMMU mode is off (%s)", UNSAFE_MODE);
	return -ENODEV;
}

static int nio_open(const struct dme_config *cfg, void **out)
{
	/* can this process see physical addresses at all? */
	uint8_t *probe = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (probe == MAP_FAILED)
		return -ENOMEM;
	probe[0] = 1;
	uint64_t pa;
	int ret = dme_mem_pa(probe, &pa);
	munmap(probe, 4096);
	if (ret) {
		dme_err("noiommu: physical addresses are not readable (%s)%s", strerror(-ret),
			ret == -EPERM ? ": the process needs CAP_SYS_ADMIN" : "");
		return ret;
	}
	struct noiommu *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (unsigned i = 0; i < cfg->nr_devices && i < DME_MAX_DEVICES; i++)
		snprintf(b->devs[b->nr_devs++], DME_DEVICE_NAME_MAX, "%s", cfg->devices[i]);
	*out = b;
	return 0;
}

static int nio_geometry(void *be, struct be_geometry *g)
{
	(void)be;
	memset(g, 0, sizeof(*g));
	g->ranges[0] = (struct dme_iova_range){0, (1ull << PA_BITS) - 1};
	g->nr_ranges = 1;
	g->alignment = 4096;
	g->needs_pa = true;
	g->ready = true;
	return 0;
}

static int check_pa(const struct be_map *m)
{
	uint64_t n = m->len / 4096, done = 0, pa[512];
	while (done < n) {
		uint64_t k = n - done < 512 ? n - done : 512;
		int ret = dme_mem_pa_array((void *)(uintptr_t)(m->va + done * 4096), k, 4096, pa);
		if (ret)
			return ret;
		for (uint64_t i = 0; i < k; i++)
			if (pa[i] != m->iova + (done + i) * 4096)
				return -EFAULT;
		done += k;
	}
	return 0;
}

static int nio_map(void *be, const struct be_map *reqs, size_t n, size_t *done)
{
	(void)be;
	for (size_t i = 0; i < n; i++) {
		int ret = check_pa(&reqs[i]);
		if (ret) {
			dme_err("noiommu: va 0x%" PRIx64 " len 0x%" PRIx64 " is not at physical 0x%" PRIx64 " (%s)",
				reqs[i].va, reqs[i].len, reqs[i].iova, strerror(-ret));
			*done = i;
			return ret;
		}
	}
	*done = n;
	return 0;
}

static int nio_unmap(void *be, const struct be_unmap *reqs, size_t n, size_t *done)
{
	(void)be;
	(void)reqs;
	*done = n;
	return 0;
}

static int nio_attach(void *be, const char *dev)
{
	struct noiommu *b = be;
	if (b->nr_devs == DME_MAX_DEVICES)
		return -ENOSPC;
	snprintf(b->devs[b->nr_devs++], DME_DEVICE_NAME_MAX, "%s", dev);
	return 0;
}

static int nio_detach(void *be, const char *dev)
{
	struct noiommu *b = be;
	for (unsigned i = 0; i < b->nr_devs; i++)
		if (!strcmp(b->devs[i], dev)) {
			memcpy(b->devs[i], b->devs[--b->nr_devs], DME_DEVICE_NAME_MAX);
			return 0;
		}
	dme_err("noiommu: %s is not attached", dev);
	return -ENOENT;
}

static int nio_va_to_pa(void *be, uint64_t va, uint64_t *pa)
{
	(void)be;
	return dme_mem_pa((void *)(uintptr_t)va, pa);
}

static void nio_close(void *be)
{
	free(be);
}

const struct be_ops be_noiommu_ops = {
	.name = "noiommu",
	.probe = nio_probe,
	.open = nio_open,
	.geometry = nio_geometry,
	.map = nio_map,
	.unmap = nio_unmap,
	.attach = nio_attach,
	.detach = nio_detach,
	.va_to_pa = nio_va_to_pa,
	.close = nio_close,
};
