/* SPDX-License-Identifier: MIT */
/*
 * test-mem-fork: DMA memory is MADV_DONTFORK for every source, so a forked
 * child cannot write the parent's DMA pages (the write faults in the child),
 * and the parent's contents stay what it wrote. A control mapping without
 * DONTFORK shows the test would catch the leak.
 */
#include <errno.h>
#include <stdlib.h>

#include <dme/mem.h>

#include "logcap.h"
#include "memtest.h"
#include "tap.h"

#define CHILD_FAULTED 42
#define CHILD_WROTE 7

static void on_segv(int sig)
{
	(void)sig;
	_exit(CHILD_FAULTED);
}

/* Forks a child that writes 0x5a over [va, va+len); returns its exit code. */
static int child_writes(void *va, size_t len)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGSEGV, on_segv);
		signal(SIGBUS, on_segv);
		memset(va, 0x5a, len);
		_exit(CHILD_WROTE);
	}
	int status = 0;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static bool all_bytes(const void *va, size_t len, unsigned char v)
{
	const unsigned char *p = va;
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

static void check_source(const char *what, enum dme_hugepage_pref hp, size_t len)
{
	struct dme_mem_params p;
	struct dme_mem *m = NULL;
	dme_mem_params_init(&p, len);
	p.hugepage = hp;
	p.flags = hp == DME_HUGEPAGE_2M ? DME_MEM_F_STRICT : 0;
	int ret = dme_mem_alloc(&p, &m);
	ok_eq(ret, 0, "%s: allocated", what);
	if (!m)
		return;
	memset(m->va, 0xa5, m->len);
	ok_eq(child_writes(m->va, m->len), CHILD_FAULTED, "%s: the child cannot touch the pages",
	      what);
	ok(all_bytes(m->va, m->len, 0xa5), "%s: the parent's contents are intact", what);

	struct dme_mem_segment *s = NULL;
	size_t n = 0;
	ok(!dme_mem_inspect(m->va, m->len, true, &s, &n) && n == 1 && s[0].dontfork,
	   "%s: inspect reports MADV_DONTFORK", what);
	free(s);
	dme_mem_free(m);
}

/* The control: a shared mapping that does not say DONTFORK leaks child writes. */
static void control_without_dontfork(void)
{
	size_t len = 64 << 10;
	void *va = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (va == MAP_FAILED) {
		ok(0, "control: mmap");
		return;
	}
	memset(va, 0xa5, len);
	ok_eq(child_writes(va, len), CHILD_WROTE, "control: a child writes a shared mapping");
	ok(all_bytes(va, len, 0x5a), "control: and the parent sees it (what DONTFORK prevents)");
	munmap(va, len);
}

int main(void)
{
	struct hp_res r;
	logcap_install();
	control_without_dontfork();
	check_source("4k", DME_HUGEPAGE_NONE, 1 << 20);
	check_source("thp", DME_HUGEPAGE_THP, 4 << 20);
	if (hp_reserve(&r, 0, 2048, 2)) {
		check_source("hugetlb 2m", DME_HUGEPAGE_2M, 4 << 20);
		hp_release(&r);
	} else {
		tap_skip("cannot reserve 2 MiB pages", "hugetlb 2m");
	}
	return tap_done();
}
