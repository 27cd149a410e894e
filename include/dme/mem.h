/* SPDX-License-Identifier: MIT */
/*
 * dme/mem.h - DMA memory: where it comes from and how it is made resident.
 *
 * dme_mem_alloc() returns memory backed by hugetlb pages (a memfd, else a file
 * on a hugetlbfs mount), transparent huge pages (THP) or plain 4 KiB pages,
 * chosen by policy (DME_HUGEPAGE); placed on a NUMA node (DME_NUMA); prefaulted
 * in large batches; kept out of fork() children (MADV_DONTFORK); optionally
 * mlocked (DME_MLOCK). Each step away from what was asked is a *fallback*: it
 * is logged as a warning, counted in dme_mem_stats() and recorded in the
 * allocation's @fallbacks. Nothing falls back silently.
 *
 * Memory the caller already owns is validated by dme_mem_inspect(), which
 * also reports the backing page size of each part. Physical addresses for the
 * no-IOMMU mode come from dme_mem_pa_array().
 *
 * This layer never talks to an IOMMU: the engine maps what it returns (a
 * memfd-backed allocation carries its fd and offset for IOAS_MAP_FILE).
 *
 * All functions are thread-safe. Errors are negative errno values, most with
 * a message through the log hook (not: NULL pointers, a malformed PCI
 * address, most -ENOMEM); out parameters are written only on success.
 */
#ifndef DME_MEM_H
#define DME_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dme/config.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Where the pages of an allocation or a caller's segment come from. */
enum dme_mem_source {
	DME_MEM_SRC_HUGETLB_MEMFD = 0, /* memfd_create(MFD_HUGETLB | MFD_HUGE_*) */
	DME_MEM_SRC_HUGETLBFS,	       /* an unlinked file on a hugetlbfs mount */
	DME_MEM_SRC_THP,	       /* 2 MiB-aligned anonymous memory, MADV_HUGEPAGE */
	DME_MEM_SRC_4K,		       /* plain base pages */
	DME_MEM_SRC_COUNT,
};

/**
 * enum dme_mem_fallback - why an allocation did not get exactly what it asked.
 *
 * Each is a bit index: dme_mem::fallbacks holds DME_MEM_FB_BIT(reason) for
 * every fallback one allocation took, and dme_mem_stats::fallbacks counts them
 * process-wide.
 */
enum dme_mem_fallback {
	DME_MEM_FB_HUGETLB_SHORT = 0, /* too few free hugetlb pages of the size on the node */
	DME_MEM_FB_HUGETLB_FAILED,    /* hugetlb mmap/prefault failed though pages looked free */
	DME_MEM_FB_MEMFD_REFUSED,     /* memfd_create(MFD_HUGETLB) refused: hugetlbfs tried */
	DME_MEM_FB_THP_DISABLED,      /* THP is "never": 4 KiB pages used */
	DME_MEM_FB_THP_PARTIAL,	      /* part of a THP range is backed by 4 KiB pages */
	DME_MEM_FB_POPULATE_TOUCH,    /* MADV_POPULATE_WRITE refused: prefaulted by touching */
	DME_MEM_FB_NODE_UNKNOWN,      /* device node unknown on a multi-node host: local node */
	DME_MEM_FB_NUMA_UNAVAILABLE,  /* the kernel has no NUMA support: placement skipped */
	DME_MEM_FB_MISPLACED,	      /* some pages landed on another node than wanted */
	DME_MEM_FB_COUNT,
};

#define DME_MEM_FB_BIT(fb) (1u << (fb))

/* dme_mem_params::flags */
#define DME_MEM_F_STRICT (1u << 0)    /* never fall back to another source: fail instead */
#define DME_MEM_F_NUMA_BIND (1u << 1) /* MPOL_BIND the node instead of MPOL_PREFERRED */
#define DME_MEM_F_NO_MEMFD (1u << 2)  /* hugetlb only through a hugetlbfs mount */
#define DME_MEM_F_TOUCH (1u << 3)     /* prefault by touching each page (pre-5.14 path) */
#define DME_MEM_F_NO_VERIFY (1u << 4) /* skip the placement check after prefault */
#define DME_MEM_F_ALL 0x1fu

/** struct dme_mem_params - what dme_mem_alloc() is asked for. */
struct dme_mem_params {
	size_t len;			 /* bytes, > 0; rounded up to the backing page size */
	enum dme_hugepage_pref hugepage; /* DME_HUGEPAGE */
	enum dme_numa_policy numa;	 /* DME_NUMA */
	int node;	/* DME_NUMA_NODE: that node; DME_NUMA_DEVICE: the device's node or -1 */
	bool mlock;	/* DME_MLOCK: mlock() after prefault */
	unsigned flags; /* DME_MEM_F_* */
	/* threads that prefault (at most 64): 0 = auto, one per CPU the caller may
	 * run on (at most 8, each with at least 32 MiB); 1 = the calling thread only */
	unsigned populate_threads;
};

/**
 * struct dme_mem - one allocation. Read-only for the caller; valid until
 * dme_mem_free().
 */
struct dme_mem {
	void *va;		    /* aligned to page_size */
	size_t len;		    /* mapped bytes: the request rounded up to page_size */
	size_t page_size;	    /* backing page size guaranteed over [va, va+len) */
	enum dme_mem_source source; /* where the pages came from */
	int fd;			    /* hugetlb memfd or hugetlbfs file; -1 for anonymous */
	uint64_t fd_offset;	    /* offset of va in fd (for IOAS_MAP_FILE) */
	int node_wanted;	    /* -1 when no single node was wanted (interleave) */
	int node_actual;	    /* node of every verified page; -1 mixed or not verified */
	uint64_t pages_misplaced;   /* backing pages found off node_wanted */
	uint32_t fallbacks;	    /* DME_MEM_FB_BIT() of each fallback taken */
	bool locked;		    /* mlock()ed */
};

/**
 * dme_mem_params_init() - defaults: auto page size, local node, no mlock.
 * @p:   the params to fill
 * @len: bytes wanted
 */
void dme_mem_params_init(struct dme_mem_params *p, size_t len);

/**
 * dme_mem_params_from_config() - params as DME_HUGEPAGE/DME_NUMA/DME_MLOCK say.
 * @p:   the params to fill
 * @cfg: the engine's config; with DME_NUMA=device the node of cfg->devices[0]
 *       is looked up in sysfs (-1 when there is no device or it is unknown)
 * @len: bytes wanted
 *
 * Return: 0, or an error of dme_pci_numa_node() for a bad or absent device.
 */
int dme_mem_params_from_config(struct dme_mem_params *p, const struct dme_config *cfg, size_t len);

/**
 * dme_mem_alloc() - allocate DMA memory, resident, placed and fork-safe.
 * @p:   what to allocate
 * @out: on success, the allocation; release it with dme_mem_free()
 *
 * Tries the sources @p->hugepage allows, largest page first: auto takes the
 * largest hugetlb size with enough free pages on the wanted node (1 GiB only
 * when rounding wastes at most 1/8 of @p->len), then THP, then 4 KiB pages.
 * Every step down is a reported fallback unless it is auto's own choice
 * between hugetlb sizes. Checks the memlock budget (dme_mem_budget_check())
 * for the rounded length before making anything resident, applies
 * MADV_DONTFORK, prefaults with MADV_POPULATE_WRITE (split over helper
 * threads for large lengths, see @populate_threads), mlocks if asked and
 * verifies the NUMA placement with move_pages() (not needed, so skipped, on
 * a host with a single memory node). The memory reads as zero.
 *
 * Return: 0; -EINVAL for bad params or a node that does not exist; -ENOMEM
 * when no allowed source worked (with DME_MEM_F_STRICT: when the wanted one
 * did not) or the memlock budget is too small; another -errno from the
 * kernel. Nothing is left allocated on error.
 */
int dme_mem_alloc(const struct dme_mem_params *p, struct dme_mem **out);

/**
 * dme_mem_free() - unmap and release an allocation (its fd is closed).
 * @m: the allocation, or NULL. The engine must have unmapped it from every
 *     IOMMU first.
 */
void dme_mem_free(struct dme_mem *m);

/** dme_mem_source_name() - "hugetlb-memfd", "hugetlbfs", "thp" or "4k". */
const char *dme_mem_source_name(enum dme_mem_source src);

/** dme_mem_fallback_name() - a short stable name, e.g. "hugetlb_short". */
const char *dme_mem_fallback_name(enum dme_mem_fallback fb);

/** struct dme_mem_stats - process-wide counters since start. */
struct dme_mem_stats {
	uint64_t allocs[DME_MEM_SRC_COUNT];	/* successful dme_mem_alloc() by source */
	uint64_t frees[DME_MEM_SRC_COUNT];	/* dme_mem_free() by source */
	uint64_t live_bytes[DME_MEM_SRC_COUNT]; /* allocated and not yet freed */
	uint64_t failures;			/* dme_mem_alloc() calls that failed */
	uint64_t fallbacks[DME_MEM_FB_COUNT];	/* times each fallback was taken */
	uint64_t pages_misplaced;		/* sum of dme_mem::pages_misplaced */
};

/**
 * dme_mem_stats() - snapshot of the counters (each read atomically).
 * @out: filled
 */
void dme_mem_stats(struct dme_mem_stats *out);

/**
 * dme_mem_hugepages_free() - hugetlb pages of a size free for a new mapping.
 * @page_size: 2 MiB, 1 GiB or another size the kernel offers
 * @node:      a NUMA node, or -1 for the whole machine
 * @free:      on success, free pages (the node's free pages capped by the
 *             machine's free minus reserved)
 *
 * Return: 0, -EINVAL for a size that is not a power of two above 4 KiB,
 * -ENOENT when the kernel has no pool of that size (or no such node).
 */
int dme_mem_hugepages_free(size_t page_size, int node, uint64_t *free);

/** struct dme_mem_segment - a part of caller memory with uniform backing. */
struct dme_mem_segment {
	uint64_t va;		    /* first byte */
	uint64_t len;		    /* bytes */
	uint64_t page_size;	    /* backing page size: 4 KiB, 2 MiB (hugetlb or THP), 1 GiB */
	enum dme_mem_source source; /* hugetlb-memfd, hugetlbfs, thp or 4k */
	bool writable;		    /* the mapping is writable */
	bool dontfork;		    /* MADV_DONTFORK is set */
};

/**
 * dme_mem_inspect() - validate caller memory for registration.
 * @va:    start, page aligned
 * @len:   bytes, a non-zero multiple of the page size; @va + @len must not wrap
 * @write: the device will write, so every part must be writable
 * @segs:  on success, a malloc()ed array of segments in address order
 *         (adjacent parts with equal attributes merged); free() it
 * @nr:    on success, the number of segments
 *
 * Every byte must be mapped readable, and not be an I/O (VM_IO / VM_PFNMAP)
 * mapping. The page size comes from the mapping (hugetlb) and, for other
 * memory, from PAGEMAP_SCAN (Linux 6.7+): a part is reported as THP only
 * where a 2 MiB page is present now, so fault memory in before inspecting it.
 * Without PAGEMAP_SCAN non-hugetlb memory is reported as 4 KiB.
 *
 * Return: 0; -EINVAL for misalignment, a zero length or a wrapping range;
 * -EFAULT when part of the range is unmapped, not readable or an I/O
 * mapping; -EACCES when @write and part is read-only; -ENOMEM.
 */
int dme_mem_inspect(const void *va, size_t len, bool write, struct dme_mem_segment **segs,
		    size_t *nr);

/**
 * dme_mem_vma_check() - would the kernel pin this memory for a device?
 * @va:        first byte
 * @len:       bytes, > 0; @va + @len must not wrap
 * @write:     the device may write (the pin asks FOLL_WRITE)
 * @page_size: on success, when not NULL: the smallest VMA page size over
 *             the range (the hugetlb size; THP is not a VMA property, so
 *             4 KiB there), or 0 when unknown (no PROCMAP_QUERY)
 *
 * Answers what pin_user_pages(FOLL_LONGTERM) would, without pinning: every
 * byte must lie in a VMA; no VM_IO/VM_PFNMAP mapping ([vvar], [vvar_vclock],
 * [vsyscall], device and sysfs mmaps) nor secret memory; with @write every
 * VMA must be writable (and a shared file mapping must not need dirty
 * tracking: ext4, xfs, NFS...), without @write readable. One PROCMAP_QUERY
 * ioctl on /proc/self/maps per VMA (Linux 6.11+; an fd is kept open), else a
 * pass over /proc/self/maps. Much cheaper than dme_mem_inspect(), which also
 * reports THP; a snapshot, like it.
 *
 * Return: 0; -EFAULT (as the kernel's pin) for a hole, a missing permission,
 * an I/O or secret mapping, with a message naming the range and the reason;
 * -EINVAL for a zero length or a wrapping range; -ENOMEM; another -errno
 * when /proc/self/maps cannot be read.
 */
int dme_mem_vma_check(const void *va, size_t len, bool write, uint64_t *page_size);

/**
 * dme_mem_pa_array() - physical addresses from /proc/self/pagemap.
 * @va:     first address
 * @n:      number of addresses, > 0
 * @stride: bytes between addresses (e.g. the backing page size); ignored when @n is 1
 * @pa:     on success, @n physical addresses (@va + i * @stride)
 *
 * For the no-IOMMU mode: the pages must be present and should be pinned
 * hugetlb pages (only those keep their physical address).
 *
 * Return: 0; -EPERM without CAP_SYS_ADMIN (the kernel hides frame numbers);
 * -EFAULT when a page is not present (never touched, or swapped out);
 * -EINVAL for @n == 0 or a wrapping range; another -errno from reading pagemap.
 */
int dme_mem_pa_array(const void *va, size_t n, size_t stride, uint64_t *pa);

/**
 * dme_mem_pa() - physical address of one byte; see dme_mem_pa_array().
 * @va: the address
 * @pa: on success, its physical address
 *
 * Return: as dme_mem_pa_array().
 */
int dme_mem_pa(const void *va, uint64_t *pa);

/** struct dme_mem_budget - how much more this process may pin or lock. */
struct dme_mem_budget {
	bool unlimited;	   /* CAP_IPC_LOCK, or RLIMIT_MEMLOCK is infinity */
	bool cap_ipc_lock; /* the effective set holds CAP_IPC_LOCK */
	uint64_t limit;	   /* soft RLIMIT_MEMLOCK in bytes; UINT64_MAX = infinity */
	uint64_t hard;	   /* hard RLIMIT_MEMLOCK in bytes; UINT64_MAX = infinity */
	uint64_t locked;   /* this process's VmLck + VmPin now, bytes */
	uint64_t avail;	   /* limit - locked (0 when over); UINT64_MAX when unlimited */
};

/**
 * dme_mem_budget() - read the memlock budget.
 * @out: filled on success
 *
 * Capabilities come from capget(2), the limit from getrlimit(2), the locked
 * amount from /proc/self/status. Memory pinned by an IOMMU and accounted to
 * the user rather than the process (iommufd's default) is not visible here.
 *
 * Return: 0, or -errno when a source cannot be read.
 */
int dme_mem_budget(struct dme_mem_budget *out);

/**
 * dme_mem_budget_check() - may @bytes more be pinned?
 * @bytes: bytes about to be pinned or locked
 *
 * Return: 0, or -ENOMEM with a message that says how much is needed, what
 * the limit is and how to raise it.
 */
int dme_mem_budget_check(uint64_t bytes);

/**
 * dme_pci_numa_node() - NUMA node of a device, from sysfs.
 * @dev:  a PCI address ("0000:00:03.0" or "00:03.0") or a VFIO cdev path
 *        ("/dev/vfio/devices/vfio0")
 * @node: on success, the node, or -1 when the platform does not say
 *
 * Return: 0, -EINVAL for a malformed name, -ENODEV when there is no such
 * device, another -errno when sysfs cannot be read.
 */
int dme_pci_numa_node(const char *dev, int *node);

#ifdef __cplusplus
}
#endif
#endif
