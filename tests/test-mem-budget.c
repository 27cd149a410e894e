/* SPDX-License-Identifier: MIT */
/*
 * test-mem-budget: the memlock budget is decided by capability, not uid. As
 * root (CAP_IPC_LOCK) it is unlimited; a child that drops CAP_IPC_LOCK and
 * lowers RLIMIT_MEMLOCK is refused with a message that says how much is
 * needed and how to raise the limit, and dme_mem_alloc() leaves nothing
 * behind.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <dme/mem.h>

#include "logcap.h"
#include "memtest.h"
#include "tap.h"

#define LIMIT (1ull << 20)

static void limited_child(struct child_results *cr, void *arg)
{
	(void)arg;
	char msg[400];
	struct rlimit rl = {LIMIT, LIMIT};

	logcap_install();
	if (drop_cap(CAP_IPC_LOCK) || setrlimit(RLIMIT_MEMLOCK, &rl)) {
		child_ok(cr, 0, "drop CAP_IPC_LOCK and lower RLIMIT_MEMLOCK", strerror(errno));
		return;
	}
	struct dme_mem_budget b;
	int ret = dme_mem_budget(&b);
	snprintf(msg, sizeof(msg), "ret %d cap %d unlimited %d limit %" PRIu64 " avail %" PRIu64,
		 ret, b.cap_ipc_lock, b.unlimited, b.limit, b.avail);
	child_ok(cr,
		 !ret && !b.cap_ipc_lock && !b.unlimited && b.limit == LIMIT && b.hard == LIMIT &&
		     b.avail == LIMIT - b.locked,
		 "budget: 1 MiB, no capability", msg);

	logcap_reset();
	ret = dme_mem_budget_check(64ull << 20);
	snprintf(msg, sizeof(msg), "ret %d: %.380s", ret, logcap.last);
	child_ok(cr, ret == -ENOMEM, "64 MiB over a 1 MiB limit: -ENOMEM", msg);
	child_ok(cr,
		 strstr(logcap.last, "pinning 64 MiB") && strstr(logcap.last, "RLIMIT_MEMLOCK") &&
		     strstr(logcap.last, "limit is 1 MiB") && strstr(logcap.last, "ulimit -l") &&
		     strstr(logcap.last, "CAP_IPC_LOCK"),
		 "the message says how much, the limit and how to raise it", logcap.last);
	child_ok(cr, dme_mem_budget_check(LIMIT / 2) == 0, "half the limit fits", NULL);

	struct dme_mem_stats a, s;
	struct dme_mem_params p;
	struct dme_mem *m = NULL;
	dme_mem_stats(&a);
	dme_mem_params_init(&p, 64ull << 20);
	p.hugepage = DME_HUGEPAGE_NONE;
	logcap_reset();
	ret = dme_mem_alloc(&p, &m);
	dme_mem_stats(&s);
	snprintf(msg, sizeof(msg), "ret %d: %.380s", ret, logcap.all);
	child_ok(cr, ret == -ENOMEM && !m && strstr(logcap.all, "RLIMIT_MEMLOCK"),
		 "dme_mem_alloc over budget: refused, with the reason", msg);
	child_ok(cr,
		 s.failures == a.failures + 1 &&
		     s.live_bytes[DME_MEM_SRC_4K] == a.live_bytes[DME_MEM_SRC_4K],
		 "dme_mem_alloc over budget: failure counted, nothing left allocated", NULL);

	/* under the limit, mlock works and is charged */
	dme_mem_params_init(&p, 256 << 10);
	p.hugepage = DME_HUGEPAGE_NONE;
	p.mlock = true;
	ret = dme_mem_alloc(&p, &m);
	child_ok(cr, !ret && m && m->locked, "256 KiB mlocked under the limit", NULL);
	ret = dme_mem_budget(&b);
	if (MLOCK_IS_REAL)
		child_ok(cr, !ret && b.locked >= (256 << 10) && b.avail == LIMIT - b.locked,
			 "the locked memory is charged to the budget", NULL);
	dme_mem_free(m);
}

static void infinite_child(struct child_results *cr, void *arg)
{
	(void)arg;
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
	struct dme_mem_budget b;
	if (setrlimit(RLIMIT_MEMLOCK, &rl)) {
		child_skip(cr, "an infinite limit is unlimited without the capability",
			   "cannot raise RLIMIT_MEMLOCK to infinity (no CAP_SYS_RESOURCE)");
		return;
	}
	if (drop_cap(CAP_IPC_LOCK)) {
		child_ok(cr, 0, "drop CAP_IPC_LOCK", strerror(errno));
		return;
	}
	child_ok(cr, !dme_mem_budget(&b) && b.unlimited && !b.cap_ipc_lock && b.limit == UINT64_MAX,
		 "an infinite limit is unlimited without the capability", NULL);
	child_ok(cr, dme_mem_budget_check(1ull << 40) == 0, "1 TiB passes the check", NULL);
}

int main(void)
{
	struct dme_mem_budget b;
	logcap_install();
	ok_eq(dme_mem_budget(&b), 0, "budget: read");
	ok_eq(b.cap_ipc_lock, has_cap(CAP_IPC_LOCK), "budget: capability read with capget");
	if (!has_cap(CAP_IPC_LOCK)) {
		tap_skip("it needs a process that can drop CAP_IPC_LOCK and "
			 "still raise RLIMIT_MEMLOCK (root)",
			 "budget: refusal path");
		return tap_done();
	}
	ok(b.unlimited && b.avail == UINT64_MAX, "budget: CAP_IPC_LOCK means unlimited");
	struct rlimit old, low = {LIMIT, LIMIT};
	getrlimit(RLIMIT_MEMLOCK, &old);
	/* root keeps CAP_IPC_LOCK: a low rlimit alone does not stop it */
	ok(!setrlimit(RLIMIT_MEMLOCK, &low) && dme_mem_budget_check(1ull << 30) == 0,
	   "budget: a 1 MiB limit does not stop CAP_IPC_LOCK");
	setrlimit(RLIMIT_MEMLOCK, &old);
	run_in_child("no CAP_IPC_LOCK, 1 MiB limit", limited_child, NULL);
	run_in_child("no CAP_IPC_LOCK, infinite limit", infinite_child, NULL);
	return tap_done();
}
