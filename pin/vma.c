/* SPDX-License-Identifier: MIT */
/*
 * vma.c - would the kernel pin this memory? A per-range VMA query that
 * answers what pin_user_pages(FOLL_LONGTERM [| FOLL_WRITE]) would answer,
 * without pinning anything, for backends that do not pin (the simulator).
 *
 * The rules are those of the kernel's check_vma_flags() (mm/gup.c), in its
 * order, each refusal being -EFAULT as the pin returns it:
 *   - a byte of the range lies in no VMA (a hole, NULL, beyond TASK_SIZE);
 *   - VM_IO / VM_PFNMAP: [vvar], [vvar_vclock], [vsyscall], device and
 *     sysfs mmaps (no struct page to pin);
 *   - secret memory (memfd_secret);
 *   - for a write: a shared writable mapping of a file whose filesystem
 *     tracks dirty pages (ext4, xfs, NFS, FUSE...: Linux 6.5+ refuses long-term
 *     writable pins of those), or a VMA without VM_WRITE;
 *   - for a read only: a VMA without VM_READ (PROT_NONE, write-only).
 * A write needs VM_WRITE but not VM_READ, exactly as in the kernel.
 *
 * Where the VMAs come from. Linux 6.11+ answers PROCMAP_QUERY on
 * /proc/self/maps with one VMA per ioctl (start, end, permissions, page size,
 * file identity and name), O(log n) in the number of VMAs: about one null
 * system call. One fd is opened on first use (O_CLOEXEC) and kept. An fd
 * inherited over fork() still describes the parent's address space, so a
 * pthread_atfork() child handler makes the child open its own (the inherited
 * copy is left alone: the child may have reused its number; a raw clone()
 * without glibc's fork() is not seen). When the kernel lacks the ioctl
 * (ENOTTY/EINVAL), every check parses /proc/self/maps instead, and the page
 * size is then unknown (0).
 *
 * Neither source shows VM_IO/VM_PFNMAP. The special mappings are known by
 * name; plain anonymous memory, memfd/shmem/SysV (files shown "(deleted)")
 * and regular files (stat() matches the VMA's inode, not on sysfs/procfs)
 * cannot carry those flags. For any other VMA (a character device, sysfs,
 * an anon_inode, an unknown [name]) the VmFlags line of its entry in
 * /proc/self/smaps decides: slow, and only for memory nobody should be
 * registering.
 *
 * Not modelled: a shadow stack (CET) VMA, a deleted file on a disk
 * filesystem mapped shared (taken for shmem), fsdax (-EOPNOTSUPP). When in
 * doubt the check accepts: it must never refuse what the kernel would pin.
 *
 * The answer is a snapshot: another thread may change the mappings right
 * after. Thread-safe: the fd is published with one CAS, and concurrent
 * PROCMAP_QUERY calls on one fd are independent in the kernel (each takes
 * the mm's locks on its own).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/fs.h>

#include "compiler.h"
#include "log_internal.h"
#include "pin.h"

/* PROCMAP_QUERY (Linux 6.11) for headers that predate it, such as bookworm's
 * 6.1: the ABI is stable, and whether the kernel has it is found out at run
 * time (-ENOTTY), never by the headers dme happened to be built against. */
#ifndef PROCMAP_QUERY
enum {
	PROCMAP_QUERY_VMA_READABLE = 0x01,
	PROCMAP_QUERY_VMA_WRITABLE = 0x02,
	PROCMAP_QUERY_VMA_EXECUTABLE = 0x04,
	PROCMAP_QUERY_VMA_SHARED = 0x08,
	PROCMAP_QUERY_COVERING_OR_NEXT_VMA = 0x10,
};
struct procmap_query {
	uint64_t size, query_flags, query_addr;
	uint64_t vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
	uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
	uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)
#endif
_Static_assert(sizeof(struct procmap_query) == 104, "PROCMAP_QUERY layout");

#define VMA_R 1u
#define VMA_W 2u
#define VMA_X 4u
#define VMA_SHARED 8u

struct vma_info {
	uint64_t start, end; /* end exclusive */
	unsigned flags;	     /* VMA_* */
	uint64_t page_size;  /* 0: unknown (text source) */
	uint64_t inode;
	unsigned dev_major, dev_minor;
	char name[PATH_MAX]; /* "" for plain anonymous memory */
};

enum vma_mode { MODE_UNKNOWN = 0, MODE_IOCTL, MODE_TEXT };

/* MODE_TEXT once the kernel said it has no PROCMAP_QUERY; never goes back */
static _Atomic int query_mode;
/* tests: always parse /proc/self/maps */
static atomic_bool force_text;

void pin_vma_force_text(bool on)
{
	atomic_store(&force_text, on);
}

int pin_vma_mode(void)
{
	if (atomic_load(&force_text))
		return PIN_VMA_TEXT;
	int m = atomic_load(&query_mode);
	return m == MODE_TEXT ? PIN_VMA_TEXT : m == MODE_IOCTL ? PIN_VMA_IOCTL : 0;
}

/* A VMA source: PROCMAP_QUERY on the shared fd, or one pass over the text. */
struct vma_src {
	bool text;
	bool reopened; /* ioctl: the cached fd was found closed once */
	FILE *f;
	char *line;
	size_t cap;
	bool have; /* text: v holds a parsed line not yet passed */
	struct vma_info v;
};

static void perms_str(unsigned flags, char out[5])
{
	out[0] = flags & VMA_R ? 'r' : '-';
	out[1] = flags & VMA_W ? 'w' : '-';
	out[2] = flags & VMA_X ? 'x' : '-';
	out[3] = flags & VMA_SHARED ? 's' : 'p';
	out[4] = 0;
}

/* ---- the PROCMAP_QUERY source -------------------------------------------- */

/* the fd PROCMAP_QUERY goes to, -1 until the first query (and in a child) */
static _Atomic int maps_fd_cache = -1;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void forget_fd_in_child(void)
{
	atomic_store(&maps_fd_cache, -1);
}

static void watch_fork(void)
{
	pthread_atfork(NULL, NULL, forget_fd_in_child);
}

/* The fd of /proc/self/maps for this process, opened on first use. */
static int maps_fd(void)
{
	int fd = atomic_load_explicit(&maps_fd_cache, memory_order_acquire);
	if (likely(fd >= 0))
		return fd;
	pthread_once(&fork_once, watch_fork);
	fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int ret = -errno;
		dme_err("cannot open /proc/self/maps: %s", strerror(-ret));
		return ret;
	}
	int cur = -1;
	if (atomic_compare_exchange_strong(&maps_fd_cache, &cur, fd))
		return fd;
	close(fd); /* another thread was first */
	return cur;
}

/* Forget a cached fd that the kernel calls bad (someone closed it). */
static void maps_fd_drop(int fd)
{
	atomic_compare_exchange_strong(&maps_fd_cache, &fd, -1);
}

static bool unsupported(int ret)
{
	return ret == -ENOTTY || ret == -EINVAL || ret == -ENOSYS || ret == -EOPNOTSUPP;
}

/* Someone closed our fd (EBADF), perhaps reusing its number for another file
 * (no PROCMAP_QUERY there, where it worked before). */
static bool fd_went_away(int ret)
{
	return ret == -EBADF ||
	       (unsupported(ret) &&
		atomic_load_explicit(&query_mode, memory_order_relaxed) == MODE_IOCTL);
}

/* s->v := the VMA containing @at, else the first above it: 0, -ENOENT when
 * there is none, -ENOTTY when the kernel has no PROCMAP_QUERY, -errno. */
static int ioctl_next(struct vma_src *s, uint64_t at)
{
	struct procmap_query q = {
	    .size = sizeof(q),
	    .query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA,
	    .query_addr = at,
	    .vma_name_size = sizeof(s->v.name),
	    .vma_name_addr = (uintptr_t)s->v.name,
	};
	int fd, ret;
	for (;;) {
		fd = maps_fd();
		if (fd < 0)
			return fd;
		ret = ioctl(fd, PROCMAP_QUERY, &q) ? -errno : 0;
		if (s->reopened || !fd_went_away(ret))
			break;
		/* open ours again, once; the number is not ours: never close it */
		s->reopened = true;
		maps_fd_drop(fd);
	}
	if (unsupported(ret)) {
		dme_dbg("PROCMAP_QUERY unavailable (%s): memory checks parse /proc/self/maps",
			strerror(-ret));
		return -ENOTTY;
	}
	if (ret)
		return ret;
	struct vma_info *v = &s->v;
	v->start = q.vma_start;
	v->end = q.vma_end;
	v->flags = (q.vma_flags & PROCMAP_QUERY_VMA_READABLE ? VMA_R : 0) |
		   (q.vma_flags & PROCMAP_QUERY_VMA_WRITABLE ? VMA_W : 0) |
		   (q.vma_flags & PROCMAP_QUERY_VMA_EXECUTABLE ? VMA_X : 0) |
		   (q.vma_flags & PROCMAP_QUERY_VMA_SHARED ? VMA_SHARED : 0);
	v->page_size = q.vma_page_size;
	v->inode = q.inode;
	v->dev_major = q.dev_major;
	v->dev_minor = q.dev_minor;
	if (!q.vma_name_size)
		v->name[0] = 0;
	return 0;
}

/* ---- the /proc/self/maps text source -------------------------------------- */

/* "7f00-7f10 rw-p 00000000 fe:00 1234     /path" */
static bool parse_maps_line(const char *line, struct vma_info *v)
{
	char perms[8];
	unsigned long long ino;
	int n = 0;
	if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %*x %x:%x %llu %n", &v->start, &v->end, perms,
		   &v->dev_major, &v->dev_minor, &ino, &n) < 6)
		return false;
	v->inode = ino;
	v->flags = (perms[0] == 'r' ? VMA_R : 0) | (perms[1] == 'w' ? VMA_W : 0) |
		   (perms[2] == 'x' ? VMA_X : 0) | (perms[3] == 's' ? VMA_SHARED : 0);
	v->page_size = 0;
	snprintf(v->name, sizeof(v->name), "%s", n > 0 ? line + n : "");
	v->name[strcspn(v->name, "\n")] = 0;
	return true;
}

static int text_next(struct vma_src *s, uint64_t at)
{
	if (!s->f) {
		s->f = fopen("/proc/self/maps", "re");
		if (!s->f) {
			int ret = -errno;
			dme_err("cannot open /proc/self/maps: %s", strerror(-ret));
			return ret;
		}
	}
	for (;;) {
		if (!s->have) {
			errno = 0;
			if (getline(&s->line, &s->cap, s->f) <= 0)
				return errno ? -errno : -ENOENT;
			if (!parse_maps_line(s->line, &s->v))
				continue;
			s->have = true;
		}
		if (s->v.end > at)
			return 0; /* kept: it may also be the answer for the next address */
		s->have = false;
	}
}

/* ---- the walk -------------------------------------------------------------- */

/* s->v := the VMA containing @at, else the first above it; -ENOENT: none. */
static int src_next(struct vma_src *s, uint64_t at)
{
	if (!s->text) {
		int ret = ioctl_next(s, at);
		if (ret != -ENOTTY) {
			if (ret == 0 || ret == -ENOENT)
				atomic_store_explicit(&query_mode, MODE_IOCTL,
						      memory_order_relaxed);
			return ret;
		}
		atomic_store(&query_mode, MODE_TEXT);
		s->text = true; /* the text restarts from the first VMA: no harm */
	}
	return text_next(s, at);
}

/* Does the VmFlags line of @start's entry in /proc/self/smaps hold io or pf? */
static int smaps_io(uint64_t start, bool *io)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char *line = NULL;
	size_t cap = 0;
	bool in = false;
	int ret = -ENOENT;

	if (!f) {
		ret = -errno;
		dme_err("cannot open /proc/self/smaps: %s", strerror(-ret));
		return ret;
	}
	while (getline(&line, &cap, f) > 0) {
		uint64_t s, e;
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " ", &s, &e) == 2) { /* a VMA header */
			if (in)
				break; /* the next VMA: this one had no VmFlags line */
			in = s == start;
		} else if (in && !strncmp(line, "VmFlags:", 8)) {
			*io = pin_vmflag(line, "io") || pin_vmflag(line, "pf");
			ret = 0;
			break;
		}
	}
	free(line);
	fclose(f);
	if (ret)
		dme_err("memory at %#" PRIx64 " changed while it was being checked", start);
	return ret == -ENOENT ? -EFAULT : ret;
}

static bool has_prefix(const char *s, const char *p)
{
	return !strncmp(s, p, strlen(p));
}

static bool has_suffix(const char *s, const char *p)
{
	size_t n = strlen(s), m = strlen(p);
	return n >= m && !strcmp(s + n - m, p);
}

/*
 * Can @v carry VM_IO/VM_PFNMAP? False for plain anonymous memory, shmem-like
 * files (shown "(deleted)") and regular files off sysfs/procfs; then, for a
 * regular file, *fs_type is its filesystem (0 when unknown).
 */
static bool may_be_io(const struct vma_info *v, long *fs_type)
{
	const char *n = v->name;
	*fs_type = 0;
	if (!v->inode) {
		return n[0] && !(!strcmp(n, "[heap]") || !strcmp(n, "[stack]") ||
				 has_prefix(n, "[anon:") || has_prefix(n, "[anon_shmem:"));
	}
	if (n[0] != '/')
		return true; /* anon_inode:[...], or no name */
	if (has_suffix(n, " (deleted)"))
		return false;
	struct stat st;
	struct statfs sf;
	if (stat(n, &st) || st.st_ino != v->inode || major(st.st_dev) != v->dev_major ||
	    minor(st.st_dev) != v->dev_minor || !S_ISREG(st.st_mode) || statfs(n, &sf))
		return true; /* not the file we think it is, or a device */
	if (sf.f_type == SYSFS_MAGIC || sf.f_type == PROC_SUPER_MAGIC)
		return true;
	*fs_type = (long)sf.f_type;
	return false;
}

/* Does a shared writable mapping of a file on @fs_type need dirty tracking
 * (so that the kernel refuses a long-term writable pin)? */
static bool fs_tracks_dirty(long fs_type)
{
	return fs_type && fs_type != TMPFS_MAGIC && fs_type != HUGETLBFS_MAGIC &&
	       fs_type != RAMFS_MAGIC && fs_type != OVERLAYFS_SUPER_MAGIC;
}

/* check_vma_flags() for the part [at, stop) of @v. */
static int vma_refuses(const struct vma_info *v, uint64_t at, uint64_t stop, bool write)
{
	const char *n = v->name;
	char p[5];
	long fs_type = 0;
	bool io = false;
	perms_str(v->flags, p);

	if (!v->inode &&
	    (!strcmp(n, "[vvar]") || !strcmp(n, "[vvar_vclock]") || !strcmp(n, "[vsyscall]"))) {
		io = true;
	} else if (may_be_io(v, &fs_type)) {
		int ret = smaps_io(v->start, &io);
		if (ret)
			return ret;
	}
	if (io) {
		dme_err("memory [%#" PRIx64 ", %#" PRIx64 ") is %s, a VM_IO/VM_PFNMAP mapping "
			"without pages to pin",
			at, stop, n[0] ? n : "a special mapping");
		return -EFAULT;
	}
	if (v->inode && !strcmp(n, "/secretmem (deleted)")) {
		dme_err("memory [%#" PRIx64 ", %#" PRIx64 ") is secret memory (memfd_secret), "
			"which the kernel never pins",
			at, stop);
		return -EFAULT;
	}
	if (write) {
		if ((v->flags & (VMA_SHARED | VMA_W)) == (VMA_SHARED | VMA_W) &&
		    fs_tracks_dirty(fs_type)) {
			dme_err("memory [%#" PRIx64 ", %#" PRIx64
				") is a shared writable mapping of "
				"%s on a filesystem that tracks dirty pages: the kernel refuses "
				"long-term writable pins of it (use a memfd, tmpfs or hugetlbfs, "
				"or a private mapping)",
				at, stop, n);
			return -EFAULT;
		}
		if (!(v->flags & VMA_W)) {
			dme_err("memory [%#" PRIx64 ", %#" PRIx64 ") is not writable (%s) but the "
				"device may write it: register it DME_MAP_READ",
				at, stop, p);
			return -EFAULT;
		}
	} else if (!(v->flags & VMA_R)) {
		dme_err("memory [%#" PRIx64 ", %#" PRIx64 ") is not readable (%s): PROT_NONE "
			"or write-only memory cannot be pinned for a device that only reads",
			at, stop, p);
		return -EFAULT;
	}
	return 0;
}

DME_EXPORT int dme_mem_vma_check(const void *va, size_t len, bool write, uint64_t *page_size)
{
	uint64_t start = (uintptr_t)va, end, at, ps = UINT64_MAX;
	struct vma_src src, *s = &src; /* a PATH_MAX name: not a fast path */
	int ret = 0;

	if (!len) {
		dme_err("memory check at %p: zero length", va);
		return -EINVAL;
	}
	if (__builtin_add_overflow(start, (uint64_t)len, &end)) {
		dme_err("memory check: [%p, +%#zx) wraps around the address space", va, len);
		return -EINVAL;
	}
	memset(s, 0, offsetof(struct vma_src, v));
	s->text = atomic_load(&force_text) ||
		  atomic_load_explicit(&query_mode, memory_order_relaxed) == MODE_TEXT;
	for (at = start; at < end; at = s->v.end) {
		ret = src_next(s, at);
		if (ret && ret != -ENOENT) {
			dme_err("querying the VMA at %#" PRIx64 " failed: %s", at, strerror(-ret));
			goto out;
		}
		if (ret == -ENOENT || s->v.start > at) {
			uint64_t hole_end = ret || s->v.start >= end ? end : s->v.start;
			dme_err("memory [%#" PRIx64 ", %#" PRIx64 ") is not mapped (a hole in the "
				"address space)",
				at, hole_end);
			ret = -EFAULT;
			goto out;
		}
		ret = vma_refuses(&s->v, at, s->v.end < end ? s->v.end : end, write);
		if (ret)
			goto out;
		ps = s->v.page_size < ps ? s->v.page_size : ps;
	}
	if (page_size)
		*page_size = ps;
out:
	free(s->line);
	if (s->f)
		fclose(s->f);
	return ret;
}
