/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the guest programs of dme's VM tier (tests/vm/guest/).
 * They run as PID 1's children inside the QEMU guest, print TAP on stdout
 * (the guest's ttyS1) and are linked statically.
 */
#ifndef DME_VMTEST_H
#define DME_VMTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- TAP ---------------------------------------------------------------- */

/* Makes stdout unbuffered and remembers the program name for diagnostics. */
void tap_init(const char *prog);
/* Prints "ok N - desc" or "not ok N - desc"; returns cond. */
bool tap_check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "ok N - desc # SKIP reason". */
void tap_skip(const char *reason, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "# text". */
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the trailing plan; returns the exit status (0 when nothing failed). */
int tap_done(void);
/* Records a failed prerequisite, prints the plan so far and exits 1. */
_Noreturn void tap_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* rc must be 0; otherwise the errno is shown. */
bool tap_ok_rc(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* rc must be -1 with errno == want. */
bool tap_errno(int rc, int want, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* ret (a dme-style return: 0 or a negative errno) must be want (0 or -E). */
bool tap_ret(int ret, int want, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prints "not ok N - desc # TODO reason" (or "ok ... # TODO" when cond holds):
 * a known gap that must not fail the run. */
bool tap_todo(bool cond, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* got == want, shown in hex when they differ. */
bool tap_eq_u64(uint64_t got, uint64_t want, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- sysfs and devices -------------------------------------------------- */

#define VM_MAX_NVME 8
#define VM_NVME_CLASS "0x010802"

struct vm_nvme {
	char bdf[16];       /* 0000:00:03.0 */
	char driver[32];    /* bound driver, "" if none */
	char cdev[64];      /* /dev/vfio/devices/vfioN, "" if none */
	char group[64];     /* /dev/vfio/N, "" if none */
	char host_bridge[32]; /* pci0000:00 — the root bus the device hangs off */
	int numa_node;
};

/* Reads a sysfs file into buf without the trailing newline; -1 on error. */
int vm_read_str(const char *path, char *buf, size_t len);
/* Reads a number (any base strtol accepts); dflt on error. */
long vm_read_long(const char *path, long dflt);
/* Finds PCI functions of class NVMe, sorted by BDF. Returns the count. */
int vm_find_nvme(struct vm_nvme *out, int max);
/* The first NVMe controller bound to vfio-pci, or exits through tap_fatal. */
struct vm_nvme vm_first_vfio_nvme(void);

/* ---- memory -------------------------------------------------------------- */

#define SZ_4K 0x1000ull
#define SZ_1M 0x100000ull
#define SZ_2M 0x200000ull

/* The NUMA node every page of [p, +n pages of pgsz) is on, per
 * move_pages(2) in query mode (at most 512 pages are asked): that node,
 * -2000 if they differ, or -errno. */
int vm_pages_node(const void *p, size_t n, size_t pgsz);

/* Drops CAP_IPC_LOCK from this process (memlock limits then apply).
 * 0, or -1 when it is still held afterwards. */
int vm_drop_cap_ipc_lock(void);

/* Populated private anonymous hugetlb (2 MiB) memory, or NULL. */
void *vm_huge_alloc(size_t len);
/* Populated private anonymous 4 KiB-page memory (THP off), or NULL. */
void *vm_small_alloc(size_t len);

#endif
