/* SPDX-License-Identifier: MIT */
/*
 * test-mem-vma: dme_mem_vma_check() - would the kernel pin this memory? -
 * on both of its sources (the PROCMAP_QUERY ioctl and, forced, the parse of
 * /proc/self/maps): every kind of memory the kernel refuses or accepts, for
 * a device that writes and one that only reads, the message of each
 * refusal, the page size, bad arguments, a fork()ed child (its own address
 * space, not the parent's) and a caller that closed the kept fd. Finally the
 * answers are compared with the kernel's own pin: io_uring's buffer
 * registration (pin_user_pages with FOLL_WRITE | FOLL_LONGTERM) and
 * process_vm_readv() (a pin without FOLL_WRITE).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/io_uring.h>
#include <linux/magic.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <dme/mem.h>

#include "../pin/pin.h" /* pin_vma_force_text(), pin_vma_mode() */
#include "logcap.h"
#include "memtest.h"
#include "tap.h"

#define PG 4096ull

static void *map(size_t len, int prot)
{
	void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* ---- the kinds of memory ------------------------------------------------------ */

/* A fixture is made right before every check: a hole must still be a hole. */
struct fix {
	const char *name;
	void *(*make)(size_t *len);
	int want_w, want_r;  /* a device that writes / that only reads */
	uint64_t bad_off;    /* offset of the first refused byte */
	const char *why;     /* what the refusal message must say */
	const char *skipped; /* why the fixture does not exist here, or NULL */
};

static void *mk_rw(size_t *len)
{
	static void *p;
	*len = 2 * PG;
	return p ? p : (p = map(2 * PG, PROT_READ | PROT_WRITE));
}

static void *mk_null(size_t *len)
{
	*len = PG;
	return NULL;
}

static void *mk_hole(size_t *len)
{
	void *p = map(PG, PROT_READ | PROT_WRITE);
	munmap(p, PG);
	*len = PG;
	return p;
}

static void *mk_straddle(size_t *len)
{
	char *p = map(2 * PG, PROT_READ | PROT_WRITE);
	munmap(p + PG, PG);
	*len = 2 * PG;
	return p;
}

static void *mk_none(size_t *len)
{
	static void *p;
	*len = PG;
	return p ? p : (p = map(PG, PROT_NONE));
}

static void *mk_ro(size_t *len)
{
	static void *p;
	*len = PG;
	return p ? p : (p = map(PG, PROT_READ));
}

static void *mk_wo(size_t *len)
{
	static void *p;
	*len = PG;
	return p ? p : (p = map(PG, PROT_WRITE));
}

static void *mk_rw_then_ro(size_t *len)
{
	static char *p;
	*len = 2 * PG;
	if (!p && (p = map(2 * PG, PROT_READ | PROT_WRITE)))
		mprotect(p + PG, PG, PROT_READ); /* two VMAs */
	return p;
}

static char vvar_name[32] = "[vvar]";

static void *mk_special(size_t *len)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	uint64_t start = 0;
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, vvar_name))
			sscanf(line, "%" SCNx64, &start);
	if (f)
		fclose(f);
	*len = PG;
	return (void *)(uintptr_t)start;
}

static void *mk_vsyscall(size_t *len)
{
	strcpy(vvar_name, "[vsyscall]");
	void *p = mk_special(len);
	strcpy(vvar_name, "[vvar]");
	return p;
}

/* A file that keeps its name while mapped (a VMA of an unlinked file says
 * "(deleted)"); removed at exit. */
static char file_path[PATH_MAX];

static void remove_file(void)
{
	unlink(file_path);
}

static void *file_map(const char *dir, int flags, void **cache)
{
	if (*cache)
		return *cache;
	if (!file_path[0]) {
		snprintf(file_path, sizeof(file_path), "%s/dme-test-vma-%d", dir, (int)getpid());
		atexit(remove_file);
	}
	int fd = open(file_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	void *p = NULL;
	if (fd >= 0 && !ftruncate(fd, PG)) {
		p = mmap(NULL, PG, PROT_READ | PROT_WRITE, flags, fd, 0);
		p = p == MAP_FAILED ? NULL : p;
	}
	if (fd >= 0)
		close(fd);
	return *cache = p;
}

/* A directory on a filesystem that tracks dirty pages (not tmpfs), or NULL. */
static const char *disk_dir(void)
{
	static const char *const dirs[] = {"/var/tmp", "/tmp", "."};
	struct statfs sf;
	for (size_t i = 0; i < ARRAY_LEN(dirs); i++)
		if (!statfs(dirs[i], &sf) && sf.f_type != TMPFS_MAGIC && sf.f_type != RAMFS_MAGIC &&
		    sf.f_type != OVERLAYFS_SUPER_MAGIC && !access(dirs[i], W_OK))
			return dirs[i];
	return NULL;
}

static void *mk_shared_file(size_t *len)
{
	static void *p;
	*len = PG;
	return disk_dir() ? file_map(disk_dir(), MAP_SHARED, &p) : NULL;
}

static void *mk_private_file(size_t *len)
{
	static void *p;
	*len = PG;
	return disk_dir() ? file_map(disk_dir(), MAP_PRIVATE, &p) : NULL;
}

static void *mk_memfd(size_t *len)
{
	static void *p;
	*len = PG;
	if (!p) {
		int fd = memfd_create("dme-test", MFD_CLOEXEC);
		if (fd >= 0 && !ftruncate(fd, PG))
			p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		p = p == MAP_FAILED ? NULL : p;
		if (fd >= 0)
			close(fd);
	}
	return p;
}

static void *mk_devzero(size_t *len)
{
	static void *p;
	*len = PG;
	if (!p) {
		int fd = open("/dev/zero", O_RDWR | O_CLOEXEC);
		if (fd >= 0)
			p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		p = p == MAP_FAILED ? NULL : p;
		if (fd >= 0)
			close(fd);
	}
	return p;
}

static void *mk_secret(size_t *len)
{
	static void *p;
	*len = PG;
#ifdef SYS_memfd_secret
	if (!p) {
		int fd = (int)syscall(SYS_memfd_secret, 0);
		if (fd >= 0 && !ftruncate(fd, PG))
			p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		p = p == MAP_FAILED ? NULL : p;
		if (fd >= 0)
			close(fd);
	}
#endif
	return p;
}

/* A perf ring buffer: an anon_inode mapping with VM_IO | VM_PFNMAP (smaps says). */
static void *mk_perf(size_t *len)
{
	static void *p;
	*len = PG;
	if (!p) {
		struct perf_event_attr a = {.type = PERF_TYPE_SOFTWARE,
					    .size = sizeof(a),
					    .config = PERF_COUNT_SW_DUMMY,
					    .disabled = 1};
		int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
		if (fd >= 0)
			p = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		p = p == MAP_FAILED ? NULL : p;
		if (fd >= 0)
			close(fd);
	}
	return p;
}

/* An io_uring ring: an anon_inode mapping of ordinary pages (smaps says). */
static void *mk_uring(size_t *len)
{
	static void *p;
	*len = PG;
	if (!p) {
		struct io_uring_params up = {0};
		int fd = (int)syscall(SYS_io_uring_setup, 4, &up);
		if (fd >= 0)
			p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
				 IORING_OFF_SQ_RING);
		p = p == MAP_FAILED ? NULL : p;
		if (fd >= 0)
			close(fd);
	}
	return p;
}

static void *mk_hugetlb(size_t *len)
{
	static void *p;
	*len = MT_2M;
	if (!p) {
		int fd = memfd_create("dme-test-huge", MFD_CLOEXEC | MFD_HUGETLB);
		if (fd >= 0 && !ftruncate(fd, MT_2M))
			p = mmap(NULL, MT_2M, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		p = p == MAP_FAILED ? NULL : p;
		if (fd >= 0)
			close(fd);
	}
	return p;
}

static struct fix fixes[] = {
    {"anonymous read-write memory", mk_rw, 0, 0, 0, NULL, NULL},
    {"NULL", mk_null, -EFAULT, -EFAULT, 0, "not mapped", NULL},
    {"a hole (mmap then munmap)", mk_hole, -EFAULT, -EFAULT, 0, "not mapped", NULL},
    {"a mapped page then a hole", mk_straddle, -EFAULT, -EFAULT, PG, "not mapped", NULL},
    {"PROT_NONE", mk_none, -EFAULT, -EFAULT, 0, "(---p)", NULL},
    {"PROT_READ", mk_ro, -EFAULT, 0, 0, "not writable", NULL},
    {"PROT_WRITE only", mk_wo, 0, -EFAULT, 0, "not readable", NULL},
    {"a read-write VMA then a read-only one", mk_rw_then_ro, -EFAULT, 0, PG, "not writable", NULL},
    {"[vvar]", mk_special, -EFAULT, -EFAULT, 0, "VM_IO/VM_PFNMAP", NULL},
    {"[vsyscall]", mk_vsyscall, -EFAULT, -EFAULT, 0, "", NULL},
    {"a shared mapping of a file on disk", mk_shared_file, -EFAULT, 0, 0, "dirty pages", NULL},
    {"a private mapping of a file on disk", mk_private_file, 0, 0, 0, NULL, NULL},
    {"a shared memfd", mk_memfd, 0, 0, 0, NULL, NULL},
    {"a private mapping of /dev/zero (asks smaps)", mk_devzero, 0, 0, 0, NULL, NULL},
    {"a perf ring buffer (VM_PFNMAP, asks smaps)", mk_perf, -EFAULT, -EFAULT, 0, "VM_IO/VM_PFNMAP",
     NULL},
    {"an io_uring ring (asks smaps)", mk_uring, 0, 0, 0, NULL, NULL},
    {"secret memory (memfd_secret)", mk_secret, -EFAULT, -EFAULT, 0, "secret", NULL},
    {"a 2 MiB hugetlb memfd", mk_hugetlb, 0, 0, 0, NULL, NULL},
};

static void find_fixtures(void)
{
	size_t len;
	for (size_t i = 0; i < ARRAY_LEN(fixes); i++) {
		struct fix *f = &fixes[i];
		if (f->make == mk_null || f->make(&len))
			continue;
		f->skipped = f->make == mk_special    ? "no [vvar] in /proc/self/maps"
			     : f->make == mk_vsyscall ? "no [vsyscall] (vsyscall=none)"
			     : f->make == mk_secret   ? "memfd_secret unavailable"
			     : f->make == mk_perf     ? "perf_event_open refused"
			     : f->make == mk_uring    ? "io_uring unavailable"
			     : f->make == mk_hugetlb  ? "no free 2 MiB hugetlb page"
			     : f->make == mk_shared_file || f->make == mk_private_file
				 ? "no writable directory on a disk filesystem"
				 : "could not be made";
	}
}

/* ---- the checks ------------------------------------------------------------------ */

static void check_fix(const struct fix *f, bool write, const char *mode)
{
	int want = write ? f->want_w : f->want_r;
	const char *dir = write ? "a device that writes" : "a device that only reads";
	if (f->skipped) {
		ok(1, "%s: %s for %s # SKIP %s", mode, f->name, dir, f->skipped);
		return;
	}
	size_t len;
	uint64_t va = (uintptr_t)f->make(&len), ps = 1;
	logcap_reset();
	int got = dme_mem_vma_check((void *)(uintptr_t)va, len, write, &ps);
	if (!want) {
		ok(got == 0 && logcap.count[DME_LOG_ERR] == 0 && ps != 1,
		   "%s: %s is accepted for %s", mode, f->name, dir);
		if (got)
			diag("  got %d: %s", got, logcap.last);
		return;
	}
	char at[40];
	snprintf(at, sizeof(at), "[%#" PRIx64 ",", va + f->bad_off);
	ok(got == want && ps == 1 && strstr(logcap.last, at) && strstr(logcap.last, f->why),
	   "%s: %s is %s for %s, the message names %s and says '%s'", mode, f->name,
	   strerror(-want), dir, at, f->why);
	if (got != want || !strstr(logcap.last, at) || !strstr(logcap.last, f->why))
		diag("  got %d: %s", got, logcap.last);
}

static void test_source(const char *mode, bool text, bool have_ioctl)
{
	pin_vma_force_text(text);
	for (size_t i = 0; i < ARRAY_LEN(fixes); i++) {
		check_fix(&fixes[i], true, mode);
		check_fix(&fixes[i], false, mode);
	}

	size_t len;
	uint64_t ps = 1;
	void *rw = mk_rw(&len);
	dme_mem_vma_check(rw, len, true, &ps);
	ok_eq(pin_vma_mode(), text || !have_ioctl ? PIN_VMA_TEXT : PIN_VMA_IOCTL,
	      "%s: the check used that source", mode);
	ok_eq(ps, text || !have_ioctl ? 0 : PG, "%s: the page size of 4 KiB memory is %s", mode,
	      text ? "unknown (0)" : "4 KiB");
	void *huge = mk_hugetlb(&len);
	if (huge && !text && have_ioctl) {
		ps = 1;
		dme_mem_vma_check(huge, len, true, &ps);
		ok_eq(ps, MT_2M, "%s: the page size of a hugetlb VMA is 2 MiB", mode);
	} else if (!text) {
		ok(1, "%s: hugetlb page size # SKIP %s", mode,
		   huge ? "no PROCMAP_QUERY" : "no free 2 MiB hugetlb page");
	}
	ok_eq(dme_mem_vma_check(rw, 0, false, NULL), -EINVAL, "%s: a zero length is -EINVAL", mode);
	ok_eq(dme_mem_vma_check((void *)(uintptr_t)(UINT64_MAX - PG + 1), 2 * PG, false, NULL),
	      -EINVAL, "%s: a range that wraps is -EINVAL", mode);
	pin_vma_force_text(false);
}

/* ---- fork and a closed fd -------------------------------------------------------- */

static void child_own_space(struct child_results *cr, void *arg)
{
	(void)arg;
	size_t len;
	void *mine = map(PG, PROT_READ | PROT_WRITE); /* not in the parent */
	int r1 = dme_mem_vma_check(mine, PG, true, NULL);
	child_ok(cr, r1 == 0, "the child's new mapping is accepted in the child",
		 r1 ? "refused: the child asked about its parent's address space" : "");
	void *rw = mk_rw(&len);
	munmap(rw, len); /* still mapped in the parent */
	int r2 = dme_mem_vma_check(rw, len, true, NULL);
	child_ok(cr, r2 == -EFAULT, "memory the child unmapped is refused in the child",
		 r2 ? "" : "accepted: the child asked about its parent's address space");
}

/* The fd the module keeps: the one of ours that reads /proc/<pid>/maps. */
static int kept_fd(void)
{
	char want[64], link[PATH_MAX], path[300];
	snprintf(want, sizeof(want), "/proc/%d/maps", (int)getpid());
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int fd = -1;
	while (d && (de = readdir(d))) {
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		if (n > 0 && (link[n] = 0, !strcmp(link, want)))
			fd = atoi(de->d_name);
	}
	if (d)
		closedir(d);
	return fd;
}

static void test_fork_and_fd(bool have_ioctl)
{
	size_t len;
	void *rw = mk_rw(&len);
	dme_mem_vma_check(rw, len, true, NULL); /* the parent's fd is open now */
	run_in_child("fork", child_own_space, NULL);
	ok_eq(dme_mem_vma_check(rw, len, true, NULL), 0,
	      "fork: the parent's memory is still accepted in the parent");

	int fd = have_ioctl ? kept_fd() : -1;
	if (fd < 0) {
		ok(1, "a closed kept fd # SKIP %s", have_ioctl ? "not found" : "no PROCMAP_QUERY");
		return;
	}
	close(fd);				   /* a caller closing every fd it does not know */
	int devnull = open("/dev/null", O_RDONLY); /* likely reuses the number */
	ok(dme_mem_vma_check(rw, len, true, NULL) == 0 && pin_vma_mode() == PIN_VMA_IOCTL,
	   "the kept fd closed (its number reused by /dev/null): the module opens another and "
	   "stays on PROCMAP_QUERY");
	void *hole = mk_hole(&len);
	ok_eq(dme_mem_vma_check(hole, len, true, NULL), -EFAULT,
	      "after reopening it still refuses a hole");
	if (devnull >= 0)
		close(devnull);
}

/* ---- the kernel's own answer ------------------------------------------------------ */

/* io_uring's fixed buffers: pin_user_pages(FOLL_WRITE | FOLL_LONGTERM). */
static int ring = -1;

static int kernel_pin_write(void *va, size_t len)
{
	struct iovec v = {va, len};
	if (syscall(SYS_io_uring_register, ring, IORING_REGISTER_BUFFERS, &v, 1))
		return -errno;
	syscall(SYS_io_uring_register, ring, IORING_UNREGISTER_BUFFERS, NULL, 0);
	return 0;
}

/* process_vm_readv(): pin_user_pages_remote() without FOLL_WRITE. */
static int kernel_pin_read(void *va, size_t len)
{
	static char buf[2 << 20];
	struct iovec l = {buf, len}, r = {va, len};
	ssize_t n = process_vm_readv(getpid(), &l, 1, &r, 1, 0);
	return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EFAULT;
}

static void test_kernel_agrees(void)
{
	struct io_uring_params p = {0};
	ring = (int)syscall(SYS_io_uring_setup, 1, &p);
	for (size_t i = 0; i < ARRAY_LEN(fixes); i++) {
		const struct fix *f = &fixes[i];
		for (int w = 1; w >= 0; w--) {
			const char *dir =
			    w ? "writes (io_uring buffer)" : "reads (process_vm_readv)";
			if (f->skipped || (w && ring < 0)) {
				ok(1, "kernel: %s, a device that %s # SKIP %s", f->name, dir,
				   f->skipped ? f->skipped : "io_uring unavailable");
				continue;
			}
			size_t len;
			void *va = f->make(&len);
			int mine = dme_mem_vma_check(va, len, w, NULL);
			va = f->make(&len);
			int kernel = w ? kernel_pin_write(va, len) : kernel_pin_read(va, len);
			if (kernel == -ENOMEM || kernel == -EPERM) {
				ok(1, "kernel: %s, a device that %s # SKIP the kernel said %s",
				   f->name, dir, strerror(-kernel));
				continue;
			}
			ok(mine == kernel, "kernel: %s, a device that %s: the same answer (%d)",
			   f->name, dir, kernel);
			if (mine != kernel)
				diag("  dme_mem_vma_check %d, the kernel's pin %d", mine, kernel);
		}
	}
	if (ring >= 0)
		close(ring);
}

int main(void)
{
	logcap_install();
	find_fixtures();
	size_t len;
	void *rw = mk_rw(&len);
	dme_mem_vma_check(rw, len, true, NULL);
	bool have_ioctl = pin_vma_mode() == PIN_VMA_IOCTL;
	if (!have_ioctl)
		diag("PROCMAP_QUERY is unavailable (kernel before 6.11 or old headers): both "
		     "passes parse /proc/self/maps");
	test_source("PROCMAP_QUERY", false, have_ioctl);
	test_source("/proc/self/maps", true, have_ioctl);
	test_fork_and_fd(have_ioctl);
	test_kernel_agrees();
	return tap_done();
}
