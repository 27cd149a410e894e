/* SPDX-License-Identifier: MIT */
/*
 * dme/engine.h - the mapping engine: memory in, IOVAs out.
 *
 * An engine owns one IO address space on one backend (iommufd, vfio,
 * noiommu or the built-in simulator) with its devices attached. Callers
 * register memory and get IOVAs; dme_vtoiova() translates any registered
 * pointer without a lock. Requests in a batch that are contiguous in VA get
 * one contiguous IOVA run and one map call. Unregistered mappings stay
 * mapped, idle, so re-registering costs no kernel call; idle mappings are
 * unmapped lazily, in batches, under a budget. An IOVA goes back to the
 * allocator only after the unmap call that removed it has returned.
 *
 * All functions are thread-safe; dme_vtoiova() and dme_iovatov() never
 * block. Errors are negative errno values; a failed call leaves no partial
 * state. Failures to open, register, map or share come with a message
 * through the log hook; the lookups' -ENOENT does not (they never log), nor
 * do most -ENOMEM returns.
 */
#ifndef DME_ENGINE_H
#define DME_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <dme/config.h>
#include <dme/iova.h>

#ifdef __cplusplus
extern "C" {
#endif

struct dme_engine;
struct dme_sim;
struct dme_sim_params;

#define DME_MAP_READ 0x1u  /* the device may read the memory (always implied) */
#define DME_MAP_WRITE 0x2u /* the device may write the memory */
#define DME_MAP_RW (DME_MAP_READ | DME_MAP_WRITE)

/** struct dme_region_req - one buffer of a batch registration. */
struct dme_region_req {
	void *va;	/* page aligned */
	size_t len;	/* page multiple, > 0 */
	unsigned flags; /* DME_MAP_READ (transmit buffers) or DME_MAP_RW */
	uint64_t iova;	/* out: the IOVA of va */
};

struct dme_mem;

/** struct dme_dma_mem - DMA memory from dme_dma_alloc(), mapped for the devices. */
struct dme_dma_mem {
	void *va;	  /* page aligned */
	size_t len;	  /* bytes (the request rounded up to the page size) */
	uint64_t iova;	  /* IOVA of va; IOVA == VA modulo page_size. Contiguous over
			   * len, except on the noiommu backend (IOVA = physical
			   * address): there only within each page */
	size_t page_size; /* backing page size */
	int node;	  /* NUMA node of every page, -1 if mixed or unchecked */
	struct dme_mem *mem; /* the allocation (dme/mem.h): source, fd, fallbacks */
};

/** struct dme_engine_stats - counters; the invariants tests assert are noted. */
struct dme_engine_stats {
	uint64_t map_calls;	  /* map requests issued to the backend (one kernel call each) */
	uint64_t unmap_calls;	  /* mappings removed by unmap requests (one kernel call may
				   * remove several mappings adjacent in IOVA) */
	uint64_t bytes_mapped;	  /* cumulative */
	uint64_t live_mappings;	  /* == map_calls - unmap_calls */
	uint64_t mapped_bytes;	  /* bytes currently mapped (active + idle + pending) */
	uint64_t pinned_bytes;	  /* == registry total: bytes of every mapping still held */
	uint64_t registry_bytes;  /* sum of the lengths of regions in the registry + pending */
	uint64_t active_mappings; /* mappings with a registration */
	uint64_t idle_mappings;	  /* unregistered, still mapped, in the LRU */
	uint64_t pending_unmaps;  /* evicted, waiting for their batched unmap */
	uint64_t cache_hits;	  /* registrations served by an existing mapping */
	uint64_t evictions;	  /* idle mappings given up under the budget */
	uint64_t replays;	  /* mappings issued again after an attach */
	uint64_t faults;	  /* device faults seen (simulator) */
	uint64_t meta_bytes;	  /* memory dme holds to describe the mappings:
				   * translation table + registry */
};

/**
 * dme_engine_open() - open a backend and build its IO address space.
 * @cfg: configuration (NULL: defaults overridden by DME_* variables)
 * @out: on success, the engine
 *
 * DME_BACKEND=auto tries iommufd, vfio and noiommu with the configured
 * devices. With no device configured it opens the simulator, saying so at
 * info level; a configured device is never left for the simulator: when no
 * backend can open it, the call fails with an error message naming the
 * device and each backend's reason.
 *
 * Return: 0, -EINVAL (bad config), -ENODEV (the asked-for backend is not
 * available here; under auto: no backend's interface is, or the device does
 * not exist), -EBUSY (a device is in use by another engine or process),
 * -ENOMEM, or the backend's error (under auto: the first that is not
 * -ENODEV).
 */
int dme_engine_open(const struct dme_config *cfg, struct dme_engine **out);

/**
 * dme_engine_open_sim() - open an engine on a simulator with custom geometry.
 * @cfg:    configuration (NULL: defaults and DME_* variables); its backend
 *          field is ignored
 * @params: the simulator's geometry, width and entry limit (dme/sim.h)
 * @out:    on success, the engine
 *
 * For tests and benchmarks that need another IO address space shape, such
 * as a type1-like map-entry limit.
 *
 * Return: as dme_engine_open().
 */
int dme_engine_open_sim(const struct dme_config *cfg, const struct dme_sim_params *params,
			struct dme_engine **out);

/**
 * dme_engine_open_sibling() - a second IO address space beside @src.
 * @src: an open engine
 * @out: on success, the new engine (no devices; attach them with
 *       dme_engine_attach())
 *
 * On iommufd the sibling is another IOAS in the same /dev/iommu, so
 * dme_share() can give it @src's pinned pages without pinning them again.
 *
 * Return: 0, -EOPNOTSUPP (vfio and noiommu cannot share), or an error.
 */
int dme_engine_open_sibling(struct dme_engine *src, struct dme_engine **out);

/**
 * dme_share() - map memory registered in @src into sibling @dst (IOAS_COPY).
 * @src:   the engine where [@va, @va + @len) is registered (active or idle)
 * @dst:   a sibling from dme_engine_open_sibling()
 * @va:    page aligned
 * @len:   page multiple
 * @flags: DME_MAP_READ or DME_MAP_RW (at most what @src has)
 * @iova:  on success, the IOVA in @dst
 *
 * The pages are not pinned or charged again. The range behaves like a
 * registration in @dst (dme_unregister(@dst, ...) drops it); @src must keep
 * it registered while @dst uses it.
 *
 * Return: 0, -ENOENT (not mapped in @src), -EBUSY (a registration of @dst
 * overlaps it; idle mappings of @dst give way), -ENOSPC, -EINVAL (bad range
 * or flags, or @dst is not a sibling of @src), or the backend's error.
 */
int dme_share(struct dme_engine *src, struct dme_engine *dst, void *va, size_t len,
	      unsigned flags, uint64_t *iova);

/**
 * dme_engine_close() - unmap everything and free the engine.
 * @e: the engine, or NULL
 */
void dme_engine_close(struct dme_engine *e);

/** dme_engine_backend_name() - "iommufd", "vfio", "noiommu" or "sim". */
const char *dme_engine_backend_name(const struct dme_engine *e);

/**
 * dme_engine_backends() - the backends built into this library.
 *
 * In the order DME_BACKEND=auto tries them for a configured device, the
 * simulator last; the names are those DME_BACKEND accepts. A backend is
 * listed when it is compiled in, whether or not this host can open it.
 *
 * Return: a static NULL-terminated array of names, e.g. {"iommufd", "vfio",
 * "noiommu", "sim", NULL}.
 */
const char *const *dme_engine_backends(void);

/**
 * dme_register() - make [@va, @va + @len) reachable by the devices.
 * @e:     the engine
 * @va:    page aligned start
 * @len:   page multiple, > 0
 * @flags: DME_MAP_READ or DME_MAP_RW
 * @iova:  on success, the IOVA of @va
 *
 * A range inside an existing mapping with the same or wider permissions
 * takes a reference on it and costs no kernel call, when dme knows that
 * mapping still reaches the memory: DMA memory, a range inside a live
 * registration, or a range the memory monitor watches (docs/engine.md,
 * "What the cache guarantees"). Idle mappings it overlaps are replaced.
 * The memory must stay mapped until the registration is dropped.
 *
 * Return: 0, -EINVAL (bad range or flags), -EFAULT (memory the kernel would
 * not pin: a hole, no access, read-only memory for a device that writes),
 * -EBUSY (overlaps a mapping in use without being inside it, or needs wider
 * permissions), -ENOSPC (no IOVA space or map-entry budget left, even after
 * evicting every idle mapping), or the backend's error. On failure nothing
 * changes.
 */
int dme_register(struct dme_engine *e, void *va, size_t len, unsigned flags, uint64_t *iova);

/**
 * dme_register_batch() - register @n buffers at once, all or nothing.
 * @e:    the engine
 * @reqs: the buffers; each gets its IOVA in ->iova on success
 * @n:    number of buffers
 *
 * Buffers contiguous in VA (any order in @reqs) with equal flags share one
 * IOVA run and one map call. On failure nothing stays mapped or referenced.
 *
 * Return: as dme_register().
 */
int dme_register_batch(struct dme_engine *e, struct dme_region_req *reqs, size_t n);

/**
 * dme_dma_alloc() - allocate DMA memory and map it.
 * @e:     the engine
 * @len:   bytes, > 0
 * @flags: DME_MAP_READ or DME_MAP_RW
 * @out:   filled on success
 *
 * Memory comes from pin/ per the engine's DME_HUGEPAGE / DME_NUMA / DME_MLOCK
 * (hugepages on the device's node by default; every fallback logged); its
 * IOVA is congruent to its VA modulo the page size, and memfd-backed memory
 * is mapped by file where the kernel can (IOAS_MAP_FILE).
 *
 * Return: 0, or an error from dme_mem_alloc() or dme_register().
 */
int dme_dma_alloc(struct dme_engine *e, size_t len, unsigned flags, struct dme_dma_mem *out);

/**
 * dme_dma_free() - unmap DMA memory now and give it back.
 * @e: the engine
 * @d: from dme_dma_alloc(); zeroed on success
 *
 * @d is checked against the engine's record of its live allocations; the
 * memory is unmapped whatever registrations lie inside it.
 *
 * Return: 0; -ENOENT (@d is not a live allocation of this engine: freed
 * already, a stale copy, or another engine's) or -EINVAL (its length or IOVA
 * was changed), both with nothing touched; or the unmap error (the memory is
 * then kept, still mapped).
 */
int dme_dma_free(struct dme_engine *e, struct dme_dma_mem *d);

/**
 * dme_unregister() - drop one registration of [@va, @va + @len).
 * @e:   the engine
 * @va:  exactly as registered
 * @len: exactly as registered
 *
 * Drops one registration of exactly this range (a sub-range, a longer range
 * or the union of two registrations is not one). When it was the mapping's
 * last, the mapping stays (idle) until the budget or dme_engine_flush()
 * evicts it if it is DMA memory or watched by the memory monitor; a mapping
 * of caller memory nothing watches goes to the pending unmaps at once.
 *
 * Return: 0, -EINVAL (with a message) when no registration has exactly this
 * range; nothing changes then.
 */
int dme_unregister(struct dme_engine *e, void *va, size_t len);

/**
 * dme_engine_flush() - unmap every idle mapping now and wait for it.
 * @e: the engine
 *
 * Return: 0, or the backend's unmap error (the mappings stay pending and
 * their IOVAs quarantined; a later flush retries).
 */
int dme_engine_flush(struct dme_engine *e);

/**
 * dme_vtoiova() - the IOVA of a registered virtual address.
 * @e:    the engine
 * @va:   any byte of a registered range
 * @iova: on success, its IOVA
 *
 * Lock-free, no system call: a few dependent loads.
 *
 * Return: 0, -ENOENT when @va is not registered.
 */
int dme_vtoiova(const struct dme_engine *e, const void *va, uint64_t *iova);

/**
 * dme_iovatov() - the virtual address behind a mapped IOVA.
 * @e:    the engine
 * @iova: any byte of a registered range
 * @va:   on success, the address
 *
 * Lock-free, O(1): the translation table's reverse radix.
 *
 * Return: 0, -ENOENT.
 */
int dme_iovatov(const struct dme_engine *e, uint64_t iova, void **va);

/**
 * dme_engine_attach() - attach another device to the engine's address space.
 * @e:   the engine
 * @dev: PCI address or cdev path
 *
 * The geometry is queried again and fed to the IOVA allocator; if the
 * device's reserved regions collide with live mappings the attach is undone.
 *
 * Return: 0, -EADDRINUSE (conflict with live mappings), or the backend's error.
 */
int dme_engine_attach(struct dme_engine *e, const char *dev);

/**
 * dme_engine_detach() - detach a device.
 * @e:   the engine
 * @dev: as attached
 *
 * Return: 0, -ENOENT, or the backend's error.
 */
int dme_engine_detach(struct dme_engine *e, const char *dev);

/**
 * dme_engine_geometry() - the IO address space as the engine uses it.
 * @e:      the engine
 * @ranges: filled with up to @max allowed ranges
 * @max:    capacity of @ranges
 * @align:  set to the IOVA alignment
 *
 * Return: the number of allowed ranges.
 */
size_t dme_engine_geometry(struct dme_engine *e, struct dme_iova_range *ranges, size_t max,
			   uint64_t *align);

/** dme_engine_stats() - a snapshot of @e's counters. */
void dme_engine_stats(struct dme_engine *e, struct dme_engine_stats *st);

/**
 * dme_engine_sim() - the simulator behind @e, for its device API.
 * @e: the engine
 *
 * Return: the simulator, or NULL when @e runs on another backend.
 */
struct dme_sim *dme_engine_sim(struct dme_engine *e);

/**
 * dme_engine_cache_monitor() - how the engine watches caller memory.
 * @e: an open engine
 *
 * A mapping of caller memory stays cached after its last dme_unregister()
 * (IDLE) only while a memory monitor watches its VA range, so a later
 * munmap(), mremap() or MADV_DONTNEED/FREE/REMOVE of it is seen before the
 * mapping could be handed out again. DMA memory from dme_dma_alloc() is
 * dme's own and is always cached.
 *
 * Return: "userfaultfd" or "userfaultfd (user-mode faults only)", or NULL
 * when no monitor runs (DME_CACHE_MONITOR=0, no userfaultfd in the kernel,
 * or a fork()ed child): caller memory is then unmapped once unregistered.
 */
const char *dme_engine_cache_monitor(const struct dme_engine *e);

/**
 * dme_engine_check() - verify the engine's invariants (tests, debugging).
 * @e: the engine
 *
 * Checks that the registry, the translation table, the IOVA allocator and
 * the counters agree. Return: 0 or -EUCLEAN with a message.
 */
int dme_engine_check(struct dme_engine *e);

#ifdef __cplusplus
}
#endif
#endif
