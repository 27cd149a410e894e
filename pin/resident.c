/* SPDX-License-Identifier: MIT */
/*
 * resident.c - making DMA memory resident: batched prefault and the memlock
 * budget that pinning must fit in.
 *
 * Prefault uses MADV_POPULATE_WRITE (Linux 5.14+) over large batches, so a
 * gigabyte costs a handful of system calls; a kernel that does not know the
 * advice (EINVAL) gets one written byte per page instead. The kernel clears
 * each new page with ordinary stores, about 60% of a streaming memset, so
 * large ranges are split on page boundaries over short-lived helper threads
 * (blocked signals; joined before returning) that claim 16 MiB chunks from
 * a shared cursor: clearing is then bound by memory bandwidth rather than one
 * core, and a helper that gets no CPU delays the call by one chunk at most. Budget: the kernel
 * charges pinned pages to RLIMIT_MEMLOCK unless the task has CAP_IPC_LOCK, so that is what we
 * check, by capability (capget), never by uid. Thread-safe; no state.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "compiler.h"
#include "log_internal.h"
#include "pin.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define POPULATE_BATCH (256ull << 20) /* bytes per madvise alone: large, yet interruptible */
#define POPULATE_CHUNK (16ull << 20)  /* bytes threads claim at a time when sharing */
#define POPULATE_MIN_PER_THREAD (32ull << 20) /* below this a helper costs more than it saves */
#define POPULATE_AUTO_MAX 8		      /* helper threads "auto" starts at most */
#define POPULATE_MAX 64			      /* hard cap on threads for one call */

/*
 * The work of one pin_populate() call. Threads claim chunks from @next until
 * it passes @len, so a helper that gets no CPU holds up at most the chunk it
 * claimed: the caller does the rest itself.
 */
struct pop_work {
	char *va;
	size_t len, page_size, chunk;
	size_t next;  /* atomic: offset of the next unclaimed chunk */
	bool touch;   /* atomic: prefault by touching (asked, or the kernel refused) */
	bool touched; /* atomic: someone touched */
	int ret;      /* atomic: first hard error; stops everyone */
};

static void touch(char *va, size_t len, size_t page_size)
{
	/* fresh memory reads as zero, so writing zero changes nothing but residency */
	for (size_t off = 0; off < len; off += page_size)
		((volatile char *)va)[off] = 0;
}

/* Prefaults [va, va+len); 0, or -errno for a hard error. */
static int populate_chunk(struct pop_work *w, char *va, size_t len)
{
	while (!__atomic_load_n(&w->touch, __ATOMIC_RELAXED)) {
		if (madvise(va, len, MADV_POPULATE_WRITE) == 0)
			return 0;
		int err = errno;
		if (err == EINTR || err == EAGAIN)
			continue;
		if (err != EINVAL) /* ENOMEM / EFAULT / EHWPOISON: the pages could not be had */
			return -err;
		__atomic_store_n(&w->touch, true, __ATOMIC_RELAXED); /* kernel before 5.14 */
	}
	touch(va, len, w->page_size);
	__atomic_store_n(&w->touched, true, __ATOMIC_RELAXED);
	return 0;
}

static void *populate_worker(void *arg)
{
	struct pop_work *w = arg;
	for (;;) {
		size_t off = __atomic_fetch_add(&w->next, w->chunk, __ATOMIC_RELAXED);
		if (off >= w->len || __atomic_load_n(&w->ret, __ATOMIC_RELAXED))
			break;
		size_t n = w->len - off < w->chunk ? w->len - off : w->chunk;
		int ret = populate_chunk(w, w->va + off, n);
		if (ret) {
			int zero = 0;
			__atomic_compare_exchange_n(&w->ret, &zero, ret, false, __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED);
			break;
		}
	}
	return NULL;
}

static unsigned auto_threads(size_t len)
{
	cpu_set_t set;
	unsigned cpus = 1;
	if (!sched_getaffinity(0, sizeof(set), &set))
		cpus = (unsigned)CPU_COUNT(&set);
	uint64_t by_size = len / POPULATE_MIN_PER_THREAD;
	unsigned n = cpus < POPULATE_AUTO_MAX ? cpus : POPULATE_AUTO_MAX;
	return by_size < n ? (unsigned)(by_size ? by_size : 1) : n;
}

int pin_populate(void *va, size_t len, size_t page_size, unsigned threads, bool force_touch,
		 bool *touched)
{
	pthread_t tid[POPULATE_MAX];
	unsigned started = 0;
	sigset_t all, old;
	unsigned nt = threads ? threads : auto_threads(len);
	struct pop_work w = {.va = va, .len = len, .page_size = page_size, .touch = force_touch};

	if (nt > POPULATE_MAX)
		nt = POPULATE_MAX;
	uint64_t chunk = nt > 1 ? POPULATE_CHUNK : POPULATE_BATCH;
	w.chunk = (size_t)(chunk > page_size ? align_down(chunk, page_size) : page_size);
	if (nt > 1 && len <= w.chunk)
		nt = 1;
	/* helpers start with every signal blocked: signals stay the caller's business */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (started + 1 < nt && !pthread_create(&tid[started], NULL, populate_worker, &w))
		started++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	populate_worker(&w); /* the caller works too, and alone if no helper started */
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	*touched |= w.touched;
	return w.ret;
}

static int read_locked(uint64_t *bytes)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[128];
	uint64_t kb, sum = 0;
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmLck: %" SCNu64 " kB", &kb) == 1 ||
		    sscanf(line, "VmPin: %" SCNu64 " kB", &kb) == 1)
			sum += kb << 10;
	}
	fclose(f);
	*bytes = sum;
	return 0;
}

static uint64_t rlim_bytes(rlim_t v)
{
	return v == RLIM_INFINITY ? UINT64_MAX : (uint64_t)v;
}

DME_EXPORT int dme_mem_budget(struct dme_mem_budget *out)
{
	struct dme_mem_budget b = {0};
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl))
		return -errno;
	int ret = read_locked(&b.locked);
	if (ret)
		return ret;
	b.cap_ipc_lock = pin_has_cap(CAP_IPC_LOCK);
	b.limit = rlim_bytes(rl.rlim_cur);
	b.hard = rlim_bytes(rl.rlim_max);
	b.unlimited = b.cap_ipc_lock || b.limit == UINT64_MAX;
	b.avail = b.unlimited ? UINT64_MAX : b.limit > b.locked ? b.limit - b.locked : 0;
	*out = b;
	return 0;
}

DME_EXPORT int dme_mem_budget_check(uint64_t bytes)
{
	struct dme_mem_budget b;
	char need[32], lim[32], locked[80], hard[32], want[32], sz[32];

	int ret = dme_mem_budget(&b);
	if (ret) {
		dme_err("cannot read the memlock budget: %s", strerror(-ret));
		return ret;
	}
	if (b.unlimited || bytes <= b.avail)
		return 0;
	uint64_t total = b.locked + bytes < b.locked ? UINT64_MAX : b.locked + bytes;
	pin_fmt_size(bytes, need, sizeof(need));
	pin_fmt_size(b.limit, lim, sizeof(lim));
	pin_fmt_size(total, want, sizeof(want));
	locked[0] = 0;
	if (b.locked)
		snprintf(locked, sizeof(locked), " and %s is already locked by this process",
			 pin_fmt_size(b.locked, sz, sizeof(sz)));
	if (b.hard == UINT64_MAX)
		snprintf(hard, sizeof(hard), "unlimited");
	else
		pin_fmt_size(b.hard, hard, sizeof(hard));
	dme_err("pinning %s of DMA memory needs RLIMIT_MEMLOCK >= %s, but the limit is %s "
		"(hard limit %s)%s; raise it (`ulimit -l %" PRIu64 "` in KiB, LimitMEMLOCK= in a "
		"systemd unit, memlock in /etc/security/limits.conf) or grant CAP_IPC_LOCK",
		need, want, lim, hard, locked, (total + 1023) >> 10);
	return -ENOMEM;
}
