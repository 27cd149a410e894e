/* SPDX-License-Identifier: MIT */
/*
 * backend.h - the ops table every IOMMU backend implements (internal).
 *
 * engine/ core code talks to the kernel (or the simulator) only through these
 * ops; there is no `if (backend == X)` outside a backend's own file. A backend
 * translates batches of requests into as few calls as its interface allows
 * and reports exactly how far a batch got, so the engine can unwind a failed
 * batch to nothing.
 *
 * Conventions: every op returns 0 or a negative errno and logs a message with
 * context through the log hook on failure. Ops are called with the engine's
 * map lock held: a backend needs no locking of its own.
 */
#ifndef DME_ENGINE_BACKEND_H
#define DME_ENGINE_BACKEND_H

/* Internal symbols carry the dmei_ prefix in the library (libdme.a links
 * beside other libraries' own avl_*, tree_*...); the code uses the short
 * names. */
#define be_all dmei_be_all
#define be_iommufd_ops dmei_be_iommufd_ops
#define be_noiommu_ops dmei_be_noiommu_ops
#define be_probe_node dmei_be_probe_node
#define be_sim_ops dmei_be_sim_ops
#define be_vfio_ops dmei_be_vfio_ops

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dme/config.h>
#include <dme/iova.h>

#define BE_PROT_READ 1u	 /* the device may read the memory */
#define BE_PROT_WRITE 2u /* the device may write the memory */

#define BE_MAX_RANGES 64

/** struct be_geometry - the IO address space as the backend sees it now. */
struct be_geometry {
	struct dme_iova_range ranges[BE_MAX_RANGES]; /* allowed, sorted, inclusive */
	size_t nr_ranges;
	uint64_t alignment;    /* IOVA and length granule (power of two) */
	uint64_t max_entries;  /* map entries the backend can hold; 0 = no limit */
	const char *max_entries_src; /* what sets max_entries, for messages (static) */
	uint64_t pgsize_bitmap; /* IO page sizes the hardware can use (0 = unknown) */
	bool has_copy;	       /* copy() works */
	bool has_map_file;     /* map requests may carry an fd (IOAS_MAP_FILE) */
	bool needs_pa;	       /* IOVA must equal the physical address (noiommu) */
	bool ready;	       /* map() works now; false until a device is attached on
				* backends that need one (the engine records maps and
				* replays them on attach) */
};

/** struct be_map - one contiguous run to map: [va, va+len) at iova. */
struct be_map {
	uint64_t va;
	uint64_t iova;
	uint64_t len;
	unsigned prot;	   /* BE_PROT_* */
	int fd;		   /* memfd backing va, or -1 */
	uint64_t fd_off;   /* offset of va in fd */
};

/** struct be_unmap - whole mappings to remove: [iova, iova+len) covers
 * @nr_maps mappings exactly, adjacent in IOVA (0 counts as one). */
struct be_unmap {
	uint64_t iova;
	uint64_t len;
	uint64_t nr_maps;
};

struct be_ops {
	const char *name;
	/* Whether this host offers the interface at all, asked before open():
	 * 0, or -ENODEV when it is absent (or the errno that keeps it from
	 * being used, such as -EACCES) with the reason, for a message, in
	 * @why. Logs nothing: the engine does, at a level that depends on
	 * whether the backend was asked for by name. NULL: always present. */
	int (*probe)(const struct dme_config *cfg, char *why, size_t len);
	/* Open the interface and attach cfg->devices; *be is the backend state. */
	int (*open)(const struct dme_config *cfg, void **be);
	/* Current geometry; re-read after attach/detach. */
	int (*geometry)(void *be, struct be_geometry *geo);
	/* Map reqs[0..n) in order; on failure *done = index of the failed one
	 * (everything before it is mapped), on success *done = n. */
	int (*map)(void *be, const struct be_map *reqs, size_t n, size_t *done);
	/* Unmap reqs[0..n) in order; same *done contract. A kernel that
	 * unmapped a different length than asked is an error (-EIO). */
	int (*unmap)(void *be, const struct be_unmap *reqs, size_t n, size_t *done);
	/* Map [src_iova, +len) of this space at dst_iova of @dst (same
	 * backend kind) sharing the pinned pages; NULL when unsupported. */
	int (*copy)(void *be, void *dst, uint64_t src_iova, uint64_t dst_iova, uint64_t len,
		    unsigned prot);
	/* A second IO address space on the same backend instance, so copy()
	 * can share pinned pages between them (iommufd: another IOAS in the
	 * same /dev/iommu). No devices attached. NULL when unsupported. */
	int (*sibling)(void *be, const struct dme_config *cfg, void **out);
	/* Attach / detach one device (PCI address or cdev path). */
	int (*attach)(void *be, const char *dev);
	int (*detach)(void *be, const char *dev);
	/* Physical address of va (noiommu only; NULL elsewhere). */
	int (*va_to_pa)(void *be, uint64_t va, uint64_t *pa);
	void (*close)(void *be);
};

extern const struct be_ops be_sim_ops;
extern const struct be_ops be_iommufd_ops;
extern const struct be_ops be_vfio_ops;
extern const struct be_ops be_noiommu_ops;

/* Every backend compiled in, in the order DME_BACKEND=auto tries them;
 * NULL-terminated. The simulator is last. */
extern const struct be_ops *const be_all[];

/* A probe() for an interface that is a device node: 0 when @path opens
 * read-write; -ENODEV when it does not exist (@why: the path, the error and
 * @absent_hint), else the open's -errno. */
int be_probe_node(const char *path, const char *absent_hint, char *why, size_t len);

#endif
