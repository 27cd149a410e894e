/* SPDX-License-Identifier: MIT */
/*
 * internal.h - engine entry points for dme's own tests (linked statically),
 * never exported: tests that drive the kernel beside the engine (the
 * iommufd mock domain, the VM tier's probes of what the kernel really
 * holds) need the backend state and a geometry refresh.
 */
#ifndef DME_ENGINE_INTERNAL_H
#define DME_ENGINE_INTERNAL_H

#include <stdint.h>

struct dme_engine;

/* The backend state of @e (for an iommufd engine: see dme_iommufd_ids()). */
void *dme__engine_backend(struct dme_engine *e);

/* Query the geometry again and apply it, as after an attach (for a domain
 * attached behind the engine's back). 0 or -EADDRINUSE, as attach. */
int dme__engine_refresh(struct dme_engine *e);

/* /dev/iommu descriptor and IOAS id of an iommufd backend state. */
int dme_iommufd_ids(void *be, int *fd, uint32_t *ioas);

/* The /dev/vfio/vfio container descriptor of a vfio backend state (tests
 * read DMA_AVAIL and probe mappings through it). */
int dme_vfio_container(void *be);

#endif
