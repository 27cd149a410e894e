/* SPDX-License-Identifier: MIT */
/*
 * pin.h - what the files of pin/ share (internal; never included outside pin/).
 *
 * pin/ owns where DMA memory comes from and how it is made resident. It reads
 * /proc and /sys, calls mmap/madvise/mbind/mlock, and never issues an IOMMU
 * ioctl nor includes an engine/ header. Helpers here return negative errno
 * and log only where the caller could not add better context.
 */
#ifndef DME_PIN_H
#define DME_PIN_H

/* Internal symbols carry the dmei_ prefix in the library (libdme.a links
 * beside other libraries' own avl_*, tree_*...); the code uses the short
 * names. */
#define pin_base_page dmei_pin_base_page
#define pin_fmt_size dmei_pin_fmt_size
#define pin_has_cap dmei_pin_has_cap
#define pin_huge_scan dmei_pin_huge_scan
#define pin_hugetlbfs_dir dmei_pin_hugetlbfs_dir
#define pin_note_fallback dmei_pin_note_fallback
#define pin_place_apply dmei_pin_place_apply
#define pin_place_resolve dmei_pin_place_resolve
#define pin_place_single_node dmei_pin_place_single_node
#define pin_place_verify dmei_pin_place_verify
#define pin_populate dmei_pin_populate
#define pin_read_int dmei_pin_read_int
#define pin_read_text dmei_pin_read_text
#define pin_read_u64 dmei_pin_read_u64
#define pin_stat_alloc dmei_pin_stat_alloc
#define pin_stat_failure dmei_pin_stat_failure
#define pin_stat_free dmei_pin_stat_free
#define pin_thp_mode dmei_pin_thp_mode
#define pin_vma_force_text dmei_pin_vma_force_text
#define pin_vma_mode dmei_pin_vma_mode
#define pin_vmflag dmei_pin_vmflag

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dme/mem.h>

#define SZ_4K 0x1000ull
#define SZ_2M 0x200000ull
#define SZ_1G 0x40000000ull

/* --- util.c ---------------------------------------------------------- */

/* Reads a small text file into @buf (NUL-terminated, trailing newline cut). */
int pin_read_text(const char *path, char *buf, size_t len);
/* Reads one integer from a sysfs/proc file. */
int pin_read_u64(const char *path, uint64_t *out);
int pin_read_int(const char *path, int *out);
/* Does the effective capability set hold @cap (CAP_*)? capget(2), no libcap. */
bool pin_has_cap(unsigned cap);
/* "4 KiB", "2 MiB", "1 GiB", "1536 MiB": exact when it divides, else rounded up. */
const char *pin_fmt_size(uint64_t bytes, char *buf, size_t len);
/* The base page size of this machine. */
size_t pin_base_page(void);
/* Does a "VmFlags: rd wr ..." line of smaps hold the two-letter @flag? */
bool pin_vmflag(const char *line, const char *flag);

/* --- stats.c --------------------------------------------------------- */

/* Records fallback @fb on @m and in the process-wide counters. */
void pin_note_fallback(struct dme_mem *m, enum dme_mem_fallback fb);
void pin_stat_alloc(const struct dme_mem *m);
void pin_stat_free(const struct dme_mem *m);
void pin_stat_failure(void);

/* --- hugepages.c ----------------------------------------------------- */

enum thp_mode { THP_ALWAYS, THP_MADVISE, THP_NEVER, THP_ABSENT, THP_PROCESS_OFF };

/* THP setting of the kernel (/sys/kernel/mm/transparent_hugepage/enabled),
 * or THP_PROCESS_OFF when prctl(PR_SET_THP_DISABLE) turned it off for us. */
enum thp_mode pin_thp_mode(void);
/* Finds a writable hugetlbfs mount of @page_size in /proc/self/mounts. */
int pin_hugetlbfs_dir(size_t page_size, char *dir, size_t len);
/* Bytes of [va, va+len) mapped by huge pages (PMD THP or hugetlb) right now;
 * -EOPNOTSUPP when the kernel lacks PAGEMAP_SCAN. @regions, when not NULL,
 * is called for each huge region in address order. */
int pin_huge_scan(uint64_t va, uint64_t len, uint64_t *huge_bytes,
		  void (*region)(void *ctx, uint64_t start, uint64_t end), void *ctx);

/* --- numa.c ---------------------------------------------------------- */

/* How an allocation is to be placed. */
struct pin_place {
	int node;	 /* wanted node, -1 none */
	bool interleave; /* MPOL_INTERLEAVE over every memory node */
	bool bind;	 /* MPOL_BIND rather than MPOL_PREFERRED */
	bool apply;	 /* false when the kernel has no NUMA support */
};

/* Resolves @p's policy into @pl; notes NODE_UNKNOWN / NUMA_UNAVAILABLE on @m. */
int pin_place_resolve(const struct dme_mem_params *p, struct dme_mem *m, struct pin_place *pl);
/* Applies @pl to [va, va+len) before it is faulted in. */
int pin_place_apply(void *va, size_t len, const struct pin_place *pl);
/* True when every page must land on pl->node: one memory node, no interleave. */
bool pin_place_single_node(const struct pin_place *pl);
/* Queries where the pages of @m landed; sets node_actual / pages_misplaced
 * and notes MISPLACED. */
void pin_place_verify(struct dme_mem *m, const struct pin_place *pl);

/* --- resident.c ------------------------------------------------------ */

/* Prefaults [va, va+len) for writing with @threads threads (0: auto); on a
 * kernel without MADV_POPULATE_WRITE (or with @touch) writes one byte per
 * @page_size. Sets *touched when it fell back to touching. */
int pin_populate(void *va, size_t len, size_t page_size, unsigned threads, bool touch,
		 bool *touched);

/* --- vma.c ---------------------------------------------------------- */

#define PIN_VMA_IOCTL 1 /* dme_mem_vma_check() asks PROCMAP_QUERY */
#define PIN_VMA_TEXT 2	/* dme_mem_vma_check() parses /proc/self/maps */

/* Tests: make dme_mem_vma_check() parse /proc/self/maps even when
 * PROCMAP_QUERY works. */
void pin_vma_force_text(bool on);
/* The source the last dme_mem_vma_check() used: PIN_VMA_*, 0 before any. */
int pin_vma_mode(void);

#endif
