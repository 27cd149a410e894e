/* SPDX-License-Identifier: MIT */
/*
 * memtest.h - helpers for the pin/ tests: reserving hugetlb pages for the
 * length of a test, running checks in a forked child (whose capabilities or
 * limits were lowered) and reporting them from the parent as TAP lines.
 *
 * Hugepage reservation is additive: a test raises a node's nr_hugepages by
 * what it lacks and lowers it by the same amount afterwards, under an
 * flock() so two test programs never interleave their read-modify-write.
 * It never lowers a pool below what it found.
 */
#ifndef DME_MEMTEST_H
#define DME_MEMTEST_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MT_4K 0x1000ull
#define MT_2M 0x200000ull
#define MT_1G 0x40000000ull

/* --- hugetlb pool -------------------------------------------------------- */

struct hp_res {
	int node;
	uint64_t kb;
	long added; /* pages we added to the node's pool; -1 = reservation failed */
};

static inline int mt_read_u64(const char *path, uint64_t *v)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	int ok_ = fscanf(f, "%" SCNu64, v) == 1;
	fclose(f);
	return ok_ ? 0 : -EINVAL;
}

static inline int mt_write_u64(const char *path, uint64_t v)
{
	FILE *f = fopen(path, "we");
	if (!f)
		return -errno;
	int ret = fprintf(f, "%" PRIu64 "\n", v) > 0 ? 0 : -EIO;
	if (fclose(f))
		ret = -errno;
	return ret;
}

static inline void hp_path(char *buf, size_t len, int node, uint64_t kb, const char *file)
{
	snprintf(buf, len, "/sys/devices/system/node/node%d/hugepages/hugepages-%" PRIu64 "kB/%s",
		 node, kb, file);
}

static inline int hp_lock(void)
{
	int fd = open("/tmp/dme-test-hugepages.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (fd >= 0)
		flock(fd, LOCK_EX);
	return fd;
}

static inline void hp_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* Free pages of @kb on @node as the allocator will count them. */
static inline uint64_t hp_free(int node, uint64_t kb)
{
	char p[200];
	uint64_t nfree = 0, gfree = 0, gresv = 0;
	hp_path(p, sizeof(p), node, kb, "free_hugepages");
	mt_read_u64(p, &nfree);
	snprintf(p, sizeof(p), "/sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB/free_hugepages",
		 kb);
	mt_read_u64(p, &gfree);
	snprintf(p, sizeof(p), "/sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB/resv_hugepages",
		 kb);
	mt_read_u64(p, &gresv);
	uint64_t g = gfree > gresv ? gfree - gresv : 0;
	return nfree < g ? nfree : g;
}

/* Makes at least @need pages of @kb free on @node. False (and diag) when it cannot. */
static inline bool hp_reserve(struct hp_res *r, int node, uint64_t kb, uint64_t need)
{
	char p[200];
	uint64_t nr, nr2;
	r->node = node;
	r->kb = kb;
	r->added = -1;
	int lk = hp_lock();
	uint64_t have = hp_free(node, kb);
	if (have >= need) {
		r->added = 0;
		goto out;
	}
	hp_path(p, sizeof(p), node, kb, "nr_hugepages");
	if (mt_read_u64(p, &nr) || mt_write_u64(p, nr + (need - have)) || mt_read_u64(p, &nr2)) {
		diag("cannot raise %s (need root)", p);
		goto out;
	}
	r->added = (long)(nr2 - nr);
	if (hp_free(node, kb) < need) {
		diag("the kernel found only %ld of %" PRIu64 " %" PRIu64 " kB pages on node %d",
		     r->added, need - have, kb, node);
		mt_write_u64(p, nr);
		r->added = -1;
	}
out:
	hp_unlock(lk);
	return r->added >= 0;
}

static inline void hp_release(struct hp_res *r)
{
	char p[200];
	uint64_t nr;
	if (r->added <= 0)
		return;
	int lk = hp_lock();
	hp_path(p, sizeof(p), r->node, r->kb, "nr_hugepages");
	if (!mt_read_u64(p, &nr))
		mt_write_u64(p, nr >= (uint64_t)r->added ? nr - (uint64_t)r->added : 0);
	hp_unlock(lk);
	r->added = 0;
}

/* --- checks in a child --------------------------------------------------- */

#define CHILD_MAX 48

/* Results a child writes into shared memory; the parent prints them. A
 * skipped check has its reason in diag. */
struct child_results {
	int n;
	struct {
		int pass, skip;
		char name[120];
		char diag[400];
	} r[CHILD_MAX];
};

static inline void child_ok(struct child_results *cr, int pass, const char *name,
			    const char *diag_msg)
{
	if (cr->n == CHILD_MAX)
		return;
	cr->r[cr->n].pass = pass;
	cr->r[cr->n].skip = 0;
	size_t nl = strnlen(name, sizeof(cr->r[0].name) - 1);
	size_t dl = diag_msg ? strnlen(diag_msg, sizeof(cr->r[0].diag) - 1) : 0;
	memcpy(cr->r[cr->n].name, name, nl);
	cr->r[cr->n].name[nl] = 0;
	if (dl)
		memcpy(cr->r[cr->n].diag, diag_msg, dl);
	cr->r[cr->n].diag[dl] = 0;
	cr->n++;
}

/* A check the child cannot run here, reported as a TAP skip with @why. */
static inline void child_skip(struct child_results *cr, const char *name, const char *why)
{
	if (cr->n == CHILD_MAX)
		return;
	child_ok(cr, 1, name, why);
	cr->r[cr->n - 1].skip = 1;
}

/* Runs @fn in a child and reports its checks; one more check for a clean exit. */
static inline void run_in_child(const char *what, void (*fn)(struct child_results *, void *),
				void *arg)
{
	struct child_results *cr =
	    mmap(NULL, sizeof(*cr), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (cr == MAP_FAILED) {
		ok(0, "%s: mmap for results", what);
		return;
	}
	cr->n = 0;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		fn(cr, arg);
		_exit(0);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	for (int i = 0; i < cr->n; i++) {
		if (cr->r[i].skip) {
			tap_skip(cr->r[i].diag, "%s: %s", what, cr->r[i].name);
			continue;
		}
		ok(cr->r[i].pass, "%s: %s", what, cr->r[i].name);
		if (!cr->r[i].pass && cr->r[i].diag[0])
			diag("  %s", cr->r[i].diag);
	}
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: child exited cleanly", what);
	munmap(cr, sizeof(*cr));
}

/* Removes @cap from the effective and permitted sets of this process. */
static inline int drop_cap(unsigned cap)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	if (syscall(SYS_capget, &h, d))
		return -errno;
	d[cap / 32].effective &= ~(1u << (cap % 32));
	d[cap / 32].permitted &= ~(1u << (cap % 32));
	d[cap / 32].inheritable &= ~(1u << (cap % 32));
	if (syscall(SYS_capset, &h, d))
		return -errno;
	return 0;
}

static inline bool has_cap(unsigned cap)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	if (syscall(SYS_capget, &h, d))
		return false;
	return d[cap / 32].effective & (1u << (cap % 32));
}

/* Sanitizers replace mlock() with a no-op: VmLck cannot be checked under them. */
#if defined(__SANITIZE_ADDRESS__)
#define MLOCK_IS_REAL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLOCK_IS_REAL 0
#endif
#endif
#ifndef MLOCK_IS_REAL
#define MLOCK_IS_REAL 1
#endif

/* Bytes of "VmLck:" in /proc/self/status. */
static inline uint64_t vm_locked(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[128];
	uint64_t kb = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %" SCNu64 " kB", &kb) == 1)
			break;
	fclose(f);
	return kb << 10;
}

#endif
