/* SPDX-License-Identifier: MIT */
/*
 * test-mem-alloc: every memory source of dme_mem_alloc() and every fallback
 * between them, with the warning and the counter each fallback must leave.
 * Reserves the hugetlb pages it needs (as root) and gives them back.
 */
#include <dirent.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <dme/mem.h>

#include "logcap.h"
#include "memtest.h"
#include "tap.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static struct dme_mem_params params(size_t len, enum dme_hugepage_pref hp)
{
	struct dme_mem_params p;
	dme_mem_params_init(&p, len);
	p.hugepage = hp;
	p.numa = DME_NUMA_NODE;
	p.node = 0;
	return p;
}

static bool all_zero(const void *va, size_t len)
{
	const unsigned char *p = va;
	for (size_t i = 0; i < len; i += 4096)
		if (p[i] || p[i + 4095])
			return false;
	return true;
}

static bool thp_enabled(void)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return !strstr(buf, "[never]");
}

static void test_bad_params(void)
{
	struct dme_mem *m = (struct dme_mem *)0x1;
	struct dme_mem_stats a, b;
	dme_mem_stats(&a);
	struct dme_mem_params p = params(0, DME_HUGEPAGE_NONE);
	logcap_reset();
	ok_eq(dme_mem_alloc(&p, &m), -EINVAL, "zero length refused");
	ok(strstr(logcap.last, "zero length") != NULL, "zero length: message says so");
	p = params((size_t)-1, DME_HUGEPAGE_NONE);
	ok_eq(dme_mem_alloc(&p, &m), -EINVAL, "overflowing length refused");
	p = params(4096, (enum dme_hugepage_pref)17);
	ok_eq(dme_mem_alloc(&p, &m), -EINVAL, "unknown hugepage preference refused");
	p = params(4096, DME_HUGEPAGE_NONE);
	p.flags = 1u << 30;
	ok_eq(dme_mem_alloc(&p, &m), -EINVAL, "unknown flag refused");
	ok_eq(dme_mem_alloc(NULL, &m), -EINVAL, "NULL params refused");
	p = params(4096, DME_HUGEPAGE_NONE);
	ok_eq(dme_mem_alloc(&p, NULL), -EINVAL, "NULL out refused");
	ok(m == (struct dme_mem *)0x1, "out parameter untouched on error");
	dme_mem_stats(&b);
	ok_eq(b.failures - a.failures, 6, "every failed call counted");
	dme_mem_free(NULL);
}

static void test_4k(void)
{
	struct dme_mem_stats a, b;
	struct dme_mem *m = NULL;
	dme_mem_stats(&a);
	struct dme_mem_params p = params(10000, DME_HUGEPAGE_NONE);
	logcap_reset();
	ok_eq(dme_mem_alloc(&p, &m), 0, "4k: allocated");
	if (!m)
		return;
	ok(m->source == DME_MEM_SRC_4K && m->page_size == 4096, "4k: source 4k, 4 KiB pages");
	ok_eq(m->len, 12288, "4k: length rounded up to pages");
	ok(!((uintptr_t)m->va & 4095), "4k: va page aligned");
	ok(m->fd == -1 && m->fd_offset == 0, "4k: no fd");
	ok(m->fallbacks == 0 && logcap.count[DME_LOG_WARN] == 0, "4k: no fallback, no warning");
	ok(m->node_wanted == 0 && m->node_actual == 0 && m->pages_misplaced == 0,
	   "4k: placed on node 0 and verified");
	ok(all_zero(m->va, m->len), "4k: memory reads as zero");
	memset(m->va, 0x5a, m->len);
	ok(!m->locked, "4k: not locked unless asked");
	dme_mem_stats(&b);
	ok_eq(b.allocs[DME_MEM_SRC_4K] - a.allocs[DME_MEM_SRC_4K], 1, "4k: counted");
	ok_eq(b.live_bytes[DME_MEM_SRC_4K] - a.live_bytes[DME_MEM_SRC_4K], 12288,
	      "4k: live bytes counted");
	dme_mem_free(m);
	dme_mem_stats(&b);
	ok(b.live_bytes[DME_MEM_SRC_4K] == a.live_bytes[DME_MEM_SRC_4K] &&
	       b.frees[DME_MEM_SRC_4K] == a.frees[DME_MEM_SRC_4K] + 1,
	   "4k: free balances the stats");
}

static void test_thp(void)
{
	struct dme_mem *m = NULL;
	struct dme_mem_params p = params(3 << 20, DME_HUGEPAGE_THP);
	logcap_reset();
	ok_eq(dme_mem_alloc(&p, &m), 0, "thp: allocated");
	if (!m)
		return;
	if (!thp_enabled()) {
		ok(m->source == DME_MEM_SRC_4K &&
		       (m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_THP_DISABLED)),
		   "thp: disabled THP falls back to 4k, reported");
		dme_mem_free(m);
		return;
	}
	ok(m->source == DME_MEM_SRC_THP, "thp: source thp");
	ok_eq(m->len, 4 << 20, "thp: length rounded up to 2 MiB");
	ok(!((uintptr_t)m->va & (MT_2M - 1)), "thp: va 2 MiB aligned");
	ok(m->fd == -1, "thp: no fd");
	if (m->page_size == MT_2M) {
		ok(!(m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_THP_PARTIAL)), "thp: fully huge");
	} else {
		ok(m->page_size == 4096 &&
		       (m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_THP_PARTIAL)) &&
		       strstr(logcap.all, "2 MiB pages"),
		   "thp: partial backing reported as 4 KiB with a warning");
	}
	struct dme_mem_segment *s = NULL;
	size_t n = 0;
	ok_eq(dme_mem_inspect(m->va, m->len, true, &s, &n), 0, "thp: inspect");
	ok(n >= 1 && s[0].page_size == m->page_size &&
	       s[0].source == (m->page_size == MT_2M ? DME_MEM_SRC_THP : DME_MEM_SRC_4K),
	   "thp: inspect agrees on the page size");
	free(s);
	ok(all_zero(m->va, m->len), "thp: memory reads as zero");
	dme_mem_free(m);
}

static void thp_off_child(struct child_results *cr, void *arg)
{
	(void)arg;
	char msg[400];
	struct dme_mem *m = NULL;
	struct dme_mem_params p = params(4 << 20, DME_HUGEPAGE_THP);
	logcap_install();
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) {
		child_skip(cr, "4 KiB pages instead", "prctl(PR_SET_THP_DISABLE) refused");
		return;
	}
	int ret = dme_mem_alloc(&p, &m);
	snprintf(msg, sizeof(msg), "ret %d, messages: %.360s", ret, logcap.all);
	child_ok(cr, !ret && m && m->source == DME_MEM_SRC_4K && m->page_size == 4096,
		 "4 KiB pages instead", msg);
	child_ok(cr,
		 m && (m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_THP_DISABLED)) &&
		     strstr(logcap.all, "PR_SET_THP_DISABLE") &&
		     strstr(logcap.all, "falling back to 4 KiB pages"),
		 "thp_disabled recorded, the warning says why", msg);
	dme_mem_free(m);
}

static void check_hugetlb_fd(struct dme_mem *m, const char *what)
{
	struct stat st;
	ok(m->fd >= 0 && !fstat(m->fd, &st) && (uint64_t)st.st_size >= m->fd_offset + m->len,
	   "%s: fd covers [offset, offset + len)", what);
	/* a second mapping of the fd sees what was written through va: the engine can
	 * hand the kernel (fd, offset) instead of the address */
	memset(m->va, 0x3c, 4096);
	void *alias = mmap(NULL, m->len, PROT_READ, MAP_SHARED, m->fd, (off_t)m->fd_offset);
	ok(alias != MAP_FAILED && ((unsigned char *)alias)[4095] == 0x3c,
	   "%s: fd + offset alias the same pages", what);
	if (alias != MAP_FAILED)
		munmap(alias, m->len);
}

static void test_2m_memfd(void)
{
	struct hp_res r;
	if (!hp_reserve(&r, 0, 2048, 3)) {
		tap_skip("cannot reserve 3 hugepages of 2 MiB", "2m");
		return;
	}
	struct dme_mem_stats a, b;
	struct dme_mem *m = NULL;
	dme_mem_stats(&a);
	struct dme_mem_params p = params(5 << 20, DME_HUGEPAGE_2M);
	logcap_reset();
	ok_eq(dme_mem_alloc(&p, &m), 0, "2m: allocated");
	if (m) {
		ok(m->source == DME_MEM_SRC_HUGETLB_MEMFD && m->page_size == MT_2M,
		   "2m: hugetlb memfd, 2 MiB pages");
		ok_eq(m->len, 6 << 20, "2m: length rounded up to 2 MiB");
		ok(!((uintptr_t)m->va & (MT_2M - 1)), "2m: va 2 MiB aligned");
		ok(m->fallbacks == 0 && logcap.count[DME_LOG_WARN] == 0, "2m: no fallback");
		ok(m->node_actual == 0, "2m: on node 0");
		ok(all_zero(m->va, m->len), "2m: memory reads as zero");
		check_hugetlb_fd(m, "2m");
		dme_mem_stats(&b);
		ok_eq(b.allocs[DME_MEM_SRC_HUGETLB_MEMFD] - a.allocs[DME_MEM_SRC_HUGETLB_MEMFD], 1,
		      "2m: counted as hugetlb-memfd");
		dme_mem_free(m);
	}
	hp_release(&r);
}

/* Ask for more 2 MiB pages than are free: the documented, reported fallback. */
static void test_2m_short_fallback(void)
{
	uint64_t free2m = hp_free(0, 2048);
	size_t len = (size_t)(free2m + 4) * MT_2M;
	struct dme_mem_stats a, b;
	struct dme_mem *m = NULL;

	dme_mem_stats(&a);
	struct dme_mem_params p = params(len, DME_HUGEPAGE_2M);
	logcap_reset();
	ok_eq(dme_mem_alloc(&p, &m), 0, "2m short: allocated anyway");
	if (!m)
		return;
	ok(m->source == (thp_enabled() ? DME_MEM_SRC_THP : DME_MEM_SRC_4K),
	   "2m short: fell back to %s", thp_enabled() ? "THP" : "4k");
	ok(m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_HUGETLB_SHORT),
	   "2m short: hugetlb_short recorded on the allocation");
	dme_mem_stats(&b);
	ok_eq(b.fallbacks[DME_MEM_FB_HUGETLB_SHORT] - a.fallbacks[DME_MEM_FB_HUGETLB_SHORT], 1,
	      "2m short: hugetlb_short counted");
	ok(logcap.count[DME_LOG_WARN] >= 1 && strstr(logcap.all, "free 2 MiB hugetlb pages") &&
	       strstr(logcap.all, "falling back to"),
	   "2m short: a warning says how many pages were free and where it fell back");
	if (!strstr(logcap.all, "falling back to"))
		diag("  messages: %s", logcap.all);
	dme_mem_free(m);

	/* strict: the same request fails instead, with the reason */
	p.flags = DME_MEM_F_STRICT;
	m = NULL;
	logcap_reset();
	ok_eq(dme_mem_alloc(&p, &m), -ENOMEM, "2m short strict: -ENOMEM");
	ok(m == NULL && strstr(logcap.last, "not falling back"), "2m short strict: says why");
}

/* DME_HUGEPAGE=auto on a machine with no free hugetlb pages. */
static void test_auto_no_hugepages(void)
{
	struct dme_mem_stats a, b;
	struct dme_mem *m = NULL;
	uint64_t free2m = hp_free(0, 2048);
	/* more than are free: with none reserved, any size will do */
	size_t len = free2m ? (size_t)(free2m + 1) * MT_2M : 4 << 20;

	dme_mem_stats(&a);
	struct dme_mem_params p = params(len, DME_HUGEPAGE_AUTO);
	logcap_reset();
	ok_eq(dme_mem_alloc(&p, &m), 0, "auto, no free hugepages (%" PRIu64 " free): allocated",
	      free2m);
	if (!m)
		return;
	ok(m->source == DME_MEM_SRC_THP || m->source == DME_MEM_SRC_4K,
	   "auto, no free hugepages: THP or 4k");
	dme_mem_stats(&b);
	ok(b.fallbacks[DME_MEM_FB_HUGETLB_SHORT] == a.fallbacks[DME_MEM_FB_HUGETLB_SHORT] + 1 &&
	       (m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_HUGETLB_SHORT)),
	   "auto, no free hugepages: fallback counted and recorded");
	ok(strstr(logcap.all, "hugetlb pages on node 0") && logcap.count[DME_LOG_WARN] >= 1,
	   "auto, no free hugepages: warned");
	dme_mem_free(m);
}

static void test_1g(void)
{
	struct hp_res r1, r2;
	if (!hp_reserve(&r1, 0, 1048576, 1)) {
		tap_skip("cannot reserve a 1 GiB page", "1g");
		return;
	}
	struct dme_mem *m = NULL;
	struct dme_mem_params p = params(MT_1G, DME_HUGEPAGE_1G);
	logcap_reset();
	ok_eq(dme_mem_alloc(&p, &m), 0, "1g: allocated");
	if (m) {
		ok(m->source == DME_MEM_SRC_HUGETLB_MEMFD && m->page_size == MT_1G &&
		       !((uintptr_t)m->va & (MT_1G - 1)),
		   "1g: one 1 GiB page, aligned");
		ok(m->fallbacks == 0, "1g: no fallback");
		check_hugetlb_fd(m, "1g");
		dme_mem_free(m);
	}
	/* auto picks the largest size with free pages when it fits the request */
	p = params(MT_1G - (64 << 20), DME_HUGEPAGE_AUTO);
	m = NULL;
	ok_eq(dme_mem_alloc(&p, &m), 0, "1g auto: allocated 960 MiB");
	ok(m && m->page_size == MT_1G && m->fallbacks == 0, "1g auto: 960 MiB gets the 1 GiB page");
	dme_mem_free(m);
	/* ...but not for a small request, where it would waste most of the page */
	if (hp_reserve(&r2, 0, 2048, 2)) {
		p = params(4 << 20, DME_HUGEPAGE_AUTO);
		m = NULL;
		logcap_reset();
		ok_eq(dme_mem_alloc(&p, &m), 0, "1g auto small: allocated 4 MiB");
		ok(m && m->page_size == MT_2M && m->fallbacks == 0 &&
		       logcap.count[DME_LOG_WARN] == 0,
		   "1g auto small: 4 MiB gets 2 MiB pages, no fallback");
		dme_mem_free(m);
		hp_release(&r2);
	}
	hp_release(&r1);
}

/* An explicit 1G wish with no 1 GiB page free steps down to 2 MiB, reported. */
static void test_1g_short_to_2m(void)
{
	struct hp_res r;
	if (hp_free(0, 1048576) > 0) {
		tap_skip("a 1 GiB page is free on this machine", "1g short");
		return;
	}
	if (!hp_reserve(&r, 0, 2048, 2)) {
		tap_skip("cannot reserve 2 MiB pages", "1g short");
		return;
	}
	struct dme_mem *m = NULL;
	struct dme_mem_params p = params(4 << 20, DME_HUGEPAGE_1G);
	logcap_reset();
	ok_eq(dme_mem_alloc(&p, &m), 0, "1g short: allocated");
	ok(m && m->page_size == MT_2M && m->source == DME_MEM_SRC_HUGETLB_MEMFD &&
	       (m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_HUGETLB_SHORT)),
	   "1g short: 2 MiB pages, hugetlb_short recorded");
	ok(strstr(logcap.all, "falling back to 2 MiB hugetlb pages") != NULL,
	   "1g short: warning names the next step");
	dme_mem_free(m);
	hp_release(&r);
}

static void test_touch_and_mlock(void)
{
	struct dme_mem *m = NULL;
	struct dme_mem_params p = params(1 << 20, DME_HUGEPAGE_NONE);
	p.flags = DME_MEM_F_TOUCH;
	ok_eq(dme_mem_alloc(&p, &m), 0, "touch: allocated");
	if (m) {
		unsigned char vec[256];
		int resident = !mincore(m->va, m->len, vec);
		for (size_t i = 0; resident && i < m->len / 4096; i++)
			resident = vec[i] & 1;
		ok(resident, "touch: every page resident");
		ok(m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_POPULATE_TOUCH),
		   "touch: populate_touch recorded");
		dme_mem_free(m);
	}

	uint64_t before = vm_locked();
	p = params(2 << 20, DME_HUGEPAGE_NONE);
	p.mlock = true;
	m = NULL;
	ok_eq(dme_mem_alloc(&p, &m), 0, "mlock: allocated");
	ok(m && m->locked, "mlock: reported locked");
	if (MLOCK_IS_REAL) {
		ok_eq(vm_locked() - before, 2 << 20, "mlock: VmLck grew by the length");
		dme_mem_free(m);
		ok_eq(vm_locked(), before, "mlock: free unlocks");
	} else {
		tap_skip("the sanitizer makes mlock a no-op", "mlock: VmLck checks");
		dme_mem_free(m);
	}
}

static bool all_resident(const struct dme_mem *m)
{
	size_t n = m->len / 4096;
	unsigned char *vec = malloc(n);
	bool res = vec && !mincore(m->va, m->len, vec);
	for (size_t i = 0; res && i < n; i++)
		res = vec[i] & 1;
	free(vec);
	return res;
}

/* Prefault split over threads: every page resident, none skipped. */
static void test_populate_threads(void)
{
	for (int touch = 0; touch < 2; touch++) {
		struct dme_mem *m = NULL;
		struct dme_mem_params p = params((256 << 20) + 4096 * 3, DME_HUGEPAGE_NONE);
		p.populate_threads = 4;
		p.flags = touch ? DME_MEM_F_TOUCH : 0;
		ok_eq(dme_mem_alloc(&p, &m), 0, "4 threads%s: allocated",
		      touch ? ", touching" : "");
		ok(m && all_resident(m) && all_zero(m->va, m->len),
		   "4 threads%s: every page resident and zero", touch ? ", touching" : "");
		dme_mem_free(m);
	}
	struct dme_mem *m = NULL;
	struct dme_mem_params p = params(4096, DME_HUGEPAGE_NONE);
	p.populate_threads = 65;
	ok(dme_mem_alloc(&p, &m) == -EINVAL && !m, "65 prefault threads: -EINVAL");
}

/* --- hugetlbfs route and kernel refusals, in a child ---------------------- */

static int dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static bool mount_private_hugetlbfs(char *dir)
{
	strcpy(dir, "/tmp/dme-hugetlbfs.XXXXXX");
	if (unshare(CLONE_NEWNS) || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    !mkdtemp(dir))
		return false;
	if (mount("none", dir, "hugetlbfs", 0, "pagesize=2M")) {
		rmdir(dir);
		return false;
	}
	return true;
}

static bool mounts_have_hugetlbfs(void)
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/mounts", "re");
	while (f && fgets(line, sizeof(line), f))
		found |= strstr(line, " hugetlbfs ") != NULL;
	if (f)
		fclose(f);
	return found;
}

static void hugetlbfs_child(struct child_results *cr, void *arg)
{
	(void)arg;
	char dir[64], msg[400];
	struct dme_mem *m = NULL;
	struct dme_mem_params p = params(4 << 20, DME_HUGEPAGE_2M);
	p.flags = DME_MEM_F_NO_MEMFD;

	logcap_install();
	if (unshare(CLONE_NEWNS) == 0 && mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
	    !mounts_have_hugetlbfs()) {
		logcap_reset();
		int ret = dme_mem_alloc(&p, &m);
		snprintf(msg, sizeof(msg), "ret %d, messages: %.360s", ret, logcap.all);
		child_ok(cr,
			 !ret && m && m->source != DME_MEM_SRC_HUGETLBFS &&
			     (m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_HUGETLB_FAILED)) &&
			     strstr(logcap.all, "hugeadm --create-mounts"),
			 "no mount: falls back, says how to create one", msg);
		dme_mem_free(m);
	}
	if (!mount_private_hugetlbfs(dir)) {
		child_skip(cr, "allocated through the mount", "cannot mount hugetlbfs privately");
		return;
	}
	m = NULL;
	logcap_reset();
	int ret = dme_mem_alloc(&p, &m);
	snprintf(msg, sizeof(msg), "ret %d, messages: %.360s", ret, logcap.all);
	child_ok(cr, ret == 0 && m, "allocated through the mount", msg);
	if (m) {
		child_ok(cr,
			 m->source == DME_MEM_SRC_HUGETLBFS && m->page_size == MT_2M &&
			     m->fd >= 0 && m->fallbacks == 0,
			 "source hugetlbfs, 2 MiB, with an fd", NULL);
		child_ok(cr, dir_entries(dir) == 0, "file unlinked at once", NULL);
		dme_mem_free(m);
	}

	/* memfd_create refused and MADV_POPULATE_WRITE unknown, as on an old or
	 * sandboxed kernel: seccomp makes the kernel answer so */
#if defined(__x86_64__)
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_memfd_create, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 3),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MADV_POPULATE_WRITE, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = (unsigned short)ARRAY_LEN(f), .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0)) {
		child_skip(cr, "memfd refused: hugetlbfs used", "cannot install a seccomp filter");
		goto out;
	}
	struct dme_mem_stats a, b;
	dme_mem_stats(&a);
	p.flags = 0;
	m = NULL;
	logcap_reset();
	ret = dme_mem_alloc(&p, &m);
	snprintf(msg, sizeof(msg), "ret %d, messages: %.360s", ret, logcap.all);
	child_ok(cr, ret == 0 && m && m->source == DME_MEM_SRC_HUGETLBFS,
		 "memfd refused: hugetlbfs used", msg);
	if (m) {
		child_ok(cr,
			 (m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_MEMFD_REFUSED)) &&
			     strstr(logcap.all, "memfd_create(MFD_HUGETLB"),
			 "memfd refused: recorded and warned", msg);
		child_ok(cr,
			 (m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_POPULATE_TOUCH)) &&
			     strstr(logcap.all, "refused MADV_POPULATE_WRITE"),
			 "populate refused: touched instead, recorded and warned", msg);
		dme_mem_stats(&b);
		child_ok(cr,
			 b.fallbacks[DME_MEM_FB_MEMFD_REFUSED] ==
				 a.fallbacks[DME_MEM_FB_MEMFD_REFUSED] + 1 &&
			     b.fallbacks[DME_MEM_FB_POPULATE_TOUCH] ==
				 a.fallbacks[DME_MEM_FB_POPULATE_TOUCH] + 1,
			 "both fallbacks counted", NULL);
		child_ok(cr, all_zero(m->va, m->len), "touched memory reads as zero", NULL);
		dme_mem_free(m);
	}
out:
#endif
	umount2(dir, MNT_DETACH);
	rmdir(dir);
}

static void test_hugetlbfs_route(void)
{
	struct hp_res r;
	if (!hp_reserve(&r, 0, 2048, 2)) {
		tap_skip("cannot reserve 2 MiB pages", "hugetlbfs");
		return;
	}
	run_in_child("hugetlbfs", hugetlbfs_child, NULL);
	hp_release(&r);
}

int main(void)
{
	logcap_install();
	test_bad_params();
	test_4k();
	test_thp();
	run_in_child("thp off for the process", thp_off_child, NULL);
	test_auto_no_hugepages();
	test_2m_short_fallback();
	test_2m_memfd();
	test_1g_short_to_2m();
	test_1g();
	test_touch_and_mlock();
	test_populate_threads();
	test_hugetlbfs_route();
	return tap_done();
}
