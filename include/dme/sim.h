/* SPDX-License-Identifier: MIT */
/*
 * dme/sim.h - the in-process IOMMU ("sim" backend) and the tiny device that
 * does DMA through it.
 *
 * A sim instance is an IO address space with a real multi-level IO page
 * table shaped like VT-d second-level tables (512 entries a level, 3 levels
 * for a 39-bit address width, 4 for 48, 5 for 57; leaves of 4 KiB, 2 MiB and
 * 1 GiB; R/W bits per entry). The "physical address" an entry holds is the
 * process virtual address of the memory, so the device below reads and
 * writes process memory through the table exactly as a DMA engine would
 * through an IOMMU: an access to an unmapped IOVA, or of a kind the entry
 * does not permit, is a recorded fault and never touches memory.
 *
 * Map and unmap follow iommufd's IOAS_MAP / IOAS_UNMAP errors (the ones the
 * vm tier's guest/iommufd.c checks on the real kernel, docs/vm-tier.md), and
 * failures can be injected at any request, so the engine's unwinding can be
 * tested at every position of a batch:
 *
 *   map     -EINVAL: prot neither R nor W (or unknown bits), zero length,
 *                    IOVA or length not aligned to the alignment, VA not
 *                    4 KiB aligned, range not inside one allowed range
 *                    (reserved hole, beyond the aperture)
 *           -EOVERFLOW: IOVA + length wraps
 *           -EFAULT: the VA range is not memory the kernel would pin
 *                    (dme_mem_vma_check(): a hole or NULL, PROT_NONE, a
 *                    read-only VMA mapped with WRITE, [vvar] and other
 *                    VM_IO/VM_PFNMAP mappings, secret memory), or lies
 *                    beyond 2^57; checked after the IOVA (last), as
 *                    IOAS_MAP pins after placing the area
 *           -EEXIST: overlaps a mapping (checked before the limit)
 *           -ENOSPC: max_entries mappings exist
 *   unmap   one request removes one or more whole, adjacent mappings that
 *           tile [iova, iova + len) exactly; a range that cuts a mapping,
 *           contains a gap or covers nothing is -ENOENT and changes nothing
 *           (the kernel would unmap the whole mappings inside a gappy range
 *           and report fewer bytes, which the iommufd backend turns into
 *           -EIO); iova 0 with length UINT64_MAX unmaps everything;
 *           zero length -EINVAL, wrap -EOVERFLOW
 *   copy    like IOAS_COPY: any gap-free sub-range of mappings (-ENOENT
 *           otherwise); a writable copy of a read-only mapping is -EPERM;
 *           the destination gets one mapping per source mapping touched,
 *           checked like map; all or nothing
 *   attach  records the name; twice is -EBUSY; detach of an unknown name
 *           is -ENOENT. The geometry does not change with attach.
 *   fd / fd_off of a map request are ignored: the VA is authoritative.
 *
 * Memory: table pages are never freed while the sim is open (a walker may be
 * inside them); an emptied table stays in its slot, and one replaced by a
 * large leaf goes on a retired list freed by dme_sim_close().
 *
 * The handle: dme_sim_open() (and the engine, through the sim backend's ops
 * table) returns a `void *` that is a `struct dme_sim *`; every function here
 * takes it.
 *
 * Threads: map/unmap/copy/attach/detach/inject and close must be serialized
 * by the caller (the engine holds its map lock). The device functions
 * (dme_sim_dma_*, dme_sim_translate, dme_sim_walk, dme_sim_faults) may run on
 * other threads concurrently with map and unmap, like a real device: a DMA
 * racing an unmap of the same IOVA either completes or faults.
 */
#ifndef DME_SIM_H
#define DME_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dme/iova.h>

#ifdef __cplusplus
extern "C" {
#endif

struct dme_sim;

#define DME_SIM_PROT_READ 1u  /* the device may read the memory (== BE_PROT_READ) */
#define DME_SIM_PROT_WRITE 2u /* the device may write the memory (== BE_PROT_WRITE) */

#define DME_SIM_MAX_LEVELS 5  /* page-table levels for a 57-bit address width */
#define DME_SIM_MAX_RANGES 16 /* allowed IOVA ranges a sim can be given */

/** struct dme_sim_params - geometry and limits of a sim; zero fields take defaults. */
struct dme_sim_params {
	unsigned addr_width;  /* 39 (default, 3 levels), 48 (4 levels) or 57 (5 levels) */
	uint64_t max_entries; /* live mappings allowed (type1's dma_entry_limit); 0 = unlimited */
	uint64_t alignment;   /* IOVA/length granule, a power of two >= 4 KiB; default 4 KiB */
	const struct dme_iova_range *ranges; /* allowed ranges (copied); NULL: VT-d like,
					      * [0, 0xfedfffff] and [0xfef00000, 2^aw - 1] */
	size_t nr_ranges;
	unsigned fault_log;	/* faults kept for dme_sim_faults(); default 64 */
	bool no_large_pages;	/* use 4 KiB leaves only (an IOMMU without superpages) */
	bool needs_attach;	/* like a type1 container: nothing can be mapped
				 * until a device is attached (geometry not ready) */
	/* a region every attached device reserves (an RMRR, a device MSI
	 * window): unusable while at least one device is attached; len 0 = none */
	struct dme_iova_range attach_reserved;
	bool has_attach_reserved;
};

/** enum dme_sim_op - an operation whose failure can be injected. */
enum dme_sim_op {
	DME_SIM_OP_MAP = 0,
	DME_SIM_OP_UNMAP,
	DME_SIM_OP_COPY,
	DME_SIM_OP_ATTACH,
	DME_SIM_OP_DETACH,
	DME_SIM_NR_OPS,
};

/** enum dme_sim_access - what the device tried to do. */
enum dme_sim_access {
	DME_SIM_ACCESS_READ = 1,  /* the device read memory (a DMA to the device) */
	DME_SIM_ACCESS_WRITE = 2, /* the device wrote memory */
};

/** enum dme_sim_fault_reason - why an access faulted. */
enum dme_sim_fault_reason {
	DME_SIM_FAULT_NOT_PRESENT = 1, /* no entry maps the IOVA */
	DME_SIM_FAULT_READ_ONLY,       /* write through an entry without W */
	DME_SIM_FAULT_WRITE_ONLY,      /* read through an entry without R */
	DME_SIM_FAULT_ADDRESS,	       /* IOVA beyond the address width */
	DME_SIM_FAULT_BAD_VA,	       /* the entry's memory is gone from the process */
};

/** struct dme_sim_fault - one recorded DMA fault. */
struct dme_sim_fault {
	uint64_t iova; /* first faulting byte */
	enum dme_sim_access access;
	enum dme_sim_fault_reason reason;
};

/** struct dme_sim_walk - what the page table says about one IOVA. */
struct dme_sim_walk {
	uint64_t va;	    /* process address the IOVA translates to */
	unsigned prot;	    /* DME_SIM_PROT_* of the leaf entry */
	unsigned level;	    /* level of the leaf: 1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB */
	uint64_t page_size; /* bytes covered by the leaf */
};

/** struct dme_sim_stats - counters; exact when no device access runs concurrently. */
struct dme_sim_stats {
	uint64_t map_calls, unmap_calls, copy_calls, attach_calls, detach_calls;
	uint64_t map_requests, unmap_requests; /* requests attempted, all calls */
	uint64_t failed_requests;	       /* map/unmap/copy requests that failed */
	uint64_t mappings_created;	       /* areas created by map and copy */
	uint64_t mappings_removed;	       /* areas removed by unmap */
	uint64_t live_mappings;		       /* created - removed */
	uint64_t bytes_mapped;		       /* total bytes ever mapped (map and copy) */
	uint64_t bytes_unmapped;	       /* total bytes ever unmapped */
	uint64_t live_bytes;		       /* bytes mapped now */
	/* live leaf entries by level: [1] 4 KiB PTEs, [2] 2 MiB, [3] 1 GiB */
	uint64_t leaf_entries[DME_SIM_MAX_LEVELS + 1];
	/* table pages by level ([levels] is the root); empty tables stay attached */
	uint64_t tables[DME_SIM_MAX_LEVELS + 1];
	uint64_t retired_tables; /* empty tables replaced by a large leaf, freed at close */
	uint64_t faults;	 /* DMA faults, including those the log dropped */
	uint64_t dma_reads, dma_writes, dma_bytes; /* device accesses that completed */
	uint64_t injected;			   /* injected failures that fired */
	unsigned levels, addr_width;
};

/**
 * dme_sim_open() - create a sim IO address space with a custom geometry.
 * @params: geometry and limits, or NULL for the defaults (39-bit VT-d like)
 * @be:     on success, the handle (a struct dme_sim *, usable as the sim
 *          backend's state with its ops table)
 *
 * Return: 0, -EINVAL for an unsupported address width, a non-power-of-two
 * alignment or ranges that are unsorted, overlapping, misaligned or beyond
 * the address width, -ENOMEM.
 */
int dme_sim_open(const struct dme_sim_params *params, void **be);

/**
 * dme_sim_close() - free a sim and every mapping it holds.
 * @sim: the sim, or NULL. No device access may be running.
 */
void dme_sim_close(struct dme_sim *sim);

/**
 * dme_sim_dma_read() - the device reads memory: @len bytes at @iova into @buf.
 * @sim:  the sim
 * @iova: first IOVA
 * @buf:  destination in the device
 * @len:  bytes; may cross pages and mappings
 *
 * Pages are transferred in order; at the first page that faults the fault is
 * recorded and nothing of that page is copied (earlier pages have been, as a
 * real DMA would have).
 *
 * Return: 0, -EFAULT on a fault (see dme_sim_faults()), -EINVAL when
 * @iova + @len wraps.
 */
int dme_sim_dma_read(struct dme_sim *sim, uint64_t iova, void *buf, size_t len);

/**
 * dme_sim_dma_write() - the device writes memory: @len bytes from @buf at @iova.
 * @sim:  the sim
 * @iova: first IOVA
 * @buf:  source in the device
 * @len:  bytes; may cross pages and mappings
 *
 * Same fault rules as dme_sim_dma_read(); a write through a read-only entry
 * faults with DME_SIM_FAULT_READ_ONLY.
 *
 * Return: 0, -EFAULT on a fault, -EINVAL when @iova + @len wraps.
 */
int dme_sim_dma_write(struct dme_sim *sim, uint64_t iova, const void *buf, size_t len);

/**
 * dme_sim_faults() - read (and optionally clear) the fault log.
 * @sim:   the sim
 * @out:   filled with up to @max faults, oldest first (may be NULL if @max is 0)
 * @max:   capacity of @out
 * @clear: empty the log afterwards
 *
 * The log keeps the most recent faults (params.fault_log); the total count,
 * dropped ones included, is in dme_sim_stats().faults.
 *
 * Return: the number of faults in the log (may exceed @max).
 */
size_t dme_sim_faults(struct dme_sim *sim, struct dme_sim_fault *out, size_t max, bool clear);

/**
 * dme_sim_translate() - walk the IO page table for one IOVA.
 * @sim:  the sim
 * @iova: the IOVA
 * @va:   on success, the process address it maps to
 * @prot: on success, DME_SIM_PROT_* of the entry (may be NULL)
 *
 * Return: 0, or -ENOENT when nothing maps @iova (no fault is recorded).
 */
int dme_sim_translate(struct dme_sim *sim, uint64_t iova, uint64_t *va, unsigned *prot);

/**
 * dme_sim_walk() - like dme_sim_translate(), also reporting the leaf's level.
 * @sim:  the sim
 * @iova: the IOVA
 * @w:    on success, the translation and the leaf entry's size
 *
 * Return: 0 or -ENOENT.
 */
int dme_sim_walk(struct dme_sim *sim, uint64_t iova, struct dme_sim_walk *w);

/**
 * dme_sim_inject() - make the @nth request of @op from now fail with @err.
 * @sim: the sim
 * @op:  DME_SIM_OP_*
 * @nth: 1-based count of requests, across calls and inside batches (a map
 *       batch of 8 is 8 requests; copy, attach and detach are one request
 *       a call); 0 disarms
 * @err: a negative errno, e.g. -ENOMEM
 *
 * The failing request has no effect, so a map batch that fails at request k
 * reports *done == k with requests before it mapped, exactly as for a real
 * error. One-shot: the injection disarms once it fires. Replaces any pending
 * request injection for @op. A copy counts on the source sim (the one whose
 * ops are called), attach and detach on the sim they are called on.
 *
 * Return: 0, or -EINVAL for a bad @op or an @err that is not a negative errno.
 */
int dme_sim_inject(struct dme_sim *sim, enum dme_sim_op op, uint64_t nth, int err);

/**
 * dme_sim_inject_call() - make the @nth call of @op from now fail with @err.
 * @sim: the sim
 * @op:  DME_SIM_OP_*
 * @nth: 1-based count of calls; 0 disarms
 * @err: a negative errno
 *
 * The call fails before doing anything (a batch reports *done == 0).
 * One-shot, like dme_sim_inject().
 *
 * Return: 0 or -EINVAL.
 */
int dme_sim_inject_call(struct dme_sim *sim, enum dme_sim_op op, uint64_t nth, int err);

/**
 * dme_sim_inject_clear() - disarm every pending injection.
 * @sim: the sim
 */
void dme_sim_inject_clear(struct dme_sim *sim);

/**
 * dme_sim_stats() - a snapshot of @sim's counters.
 * @sim: the sim
 * @st:  filled on return
 */
void dme_sim_stats(struct dme_sim *sim, struct dme_sim_stats *st);

/**
 * dme_sim_devices() - the devices attached now, in attach order.
 * @sim:   the sim
 * @names: filled with up to @max names, valid until the next detach or close
 * @max:   capacity of @names
 *
 * Return: the number of attached devices (may exceed @max).
 */
size_t dme_sim_devices(struct dme_sim *sim, const char **names, size_t max);

/**
 * dme_sim_check() - verify the page table against the mappings (tests).
 * @sim: the sim
 *
 * Every mapped page must translate to its VA with its permissions, no leaf
 * may exist outside a mapping, and the per-level counters must match the
 * table. Walks everything: not for hot paths.
 *
 * Return: 0, or -EUCLEAN with a message naming the first broken invariant.
 */
int dme_sim_check(struct dme_sim *sim);

/** dme_sim_fault_reason_name() - "not-present", "read-only", ... for messages. */
const char *dme_sim_fault_reason_name(enum dme_sim_fault_reason reason);

#ifdef __cplusplus
}
#endif
#endif
