/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the guest programs that drive dme's engine (engine_*.c) on the
 * real kernel: dme's log routed into the TAP stream as diagnostics and
 * counted, the engine's own invariants, and probes that ask the kernel what
 * the engine's IOAS really holds, independently of what the engine believes.
 *
 * The iommufd probes work on the engine's own /dev/iommu and IOAS (taken
 * from the backend state through engine/internal.h) plus one private probe
 * IOAS with no device:
 *   - "mapped": IOAS_COPY of [iova, +len) into the probe IOAS succeeds only
 *     when every byte is covered by the engine IOAS's mappings; the copy is
 *     unmapped again at once. Non-destructive.
 *   - "free": IOAS_COPY of each page fails ENOENT only where nothing is
 *     mapped. Non-destructive.
 *   - "exact": IOAS_UNMAP of exactly [iova, +len) must return len, after
 *     which the range is mapped again at the same IOVA from the same VA, so
 *     the engine's state stays true. Destructive for a moment.
 *   - "unmap all": IOAS_UNMAP(0, ~0) returns what the IOAS held; the engine
 *     uses it only where it believes nothing is mapped (then 0 is the answer
 *     and nothing is destroyed).
 */
#ifndef DME_VM_DMEGUEST_H
#define DME_VM_DMEGUEST_H

#include <stdbool.h>
#include <stdint.h>

#include <dme/engine.h>
#include <dme/log.h>

/* ---- the log hook ------------------------------------------------------- */

/* Routes dme's messages up to @level to stdout as "# dme <level>: <msg>"
 * and counts them per level. */
void dg_log_install(enum dme_log_level level);
/* Clears the counters and the last message. */
void dg_log_reset(void);
/* Messages at @level since the last reset. */
int dg_log_count(enum dme_log_level level);
/* The last message (any level), "" if none. */
const char *dg_log_last(void);
/* Stop echoing messages (still counted): for loops that fail on purpose. */
void dg_log_quiet(bool quiet);

/* ---- engine invariants ---------------------------------------------------- */

/* maps - unmaps == live, pinned == registry, dme_engine_check() == 0. */
bool dg_balanced(struct dme_engine *e);
/* Prints the engine's counters as a TAP diagnostic. */
void dg_stats_diag(struct dme_engine *e, const char *when);

/* ---- iommufd: what the engine's IOAS holds ------------------------------ */

struct dg_ifd {
	int fd;		/* the engine's /dev/iommu */
	uint32_t ioas;	/* the engine's IOAS */
	uint32_t probe; /* a private IOAS (no device) for IOAS_COPY probes */
};

/* Finds the engine's fd and IOAS and allocates the probe IOAS. 0 or -errno. */
int dg_ifd_init(struct dme_engine *e, struct dg_ifd *k);
/* Destroys the probe IOAS. */
void dg_ifd_fini(struct dg_ifd *k);
/* 0 when every byte of [iova, +len) is mapped, with write permission if
 * @write; -errno of IOAS_COPY otherwise (ENOENT: a hole; EPERM: read-only). */
int dg_ifd_mapped(struct dg_ifd *k, uint64_t iova, uint64_t len, bool write);
/* 0 when no page of [iova, +len) is mapped (len: a few pages, one IOAS_COPY
 * per page); -EEXIST when one is. */
int dg_ifd_free(struct dg_ifd *k, uint64_t iova, uint64_t len);
/* IOAS_UNMAP of exactly [iova, +len): *got is the length the kernel
 * removed (0 on error); the range is then mapped again from @va. Returns 0,
 * or -errno of the unmap (nothing removed) or of the restoring map. */
int dg_ifd_exact(struct dg_ifd *k, const void *va, uint64_t iova, uint64_t len, bool write,
		 uint64_t *got);
/* IOAS_UNMAP(0, ~0) of the engine IOAS: bytes removed, or (uint64_t)-errno. */
uint64_t dg_ifd_unmap_all(struct dg_ifd *k);

#endif
