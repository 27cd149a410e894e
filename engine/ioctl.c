/* SPDX-License-Identifier: MIT */
/*
 * ioctl.c - be_ioctl() and its fault injection (see ioctl.h). The armed
 * fault is a few atomics; a disarmed check is one relaxed load.
 */
#include <errno.h>
#include <stdatomic.h>
#include <sys/ioctl.h>

#include "compiler.h"
#include "ioctl.h"

static _Atomic uint64_t fault_nth;	/* 0: disarmed */
static _Atomic unsigned long fault_cmd;
static _Atomic int fault_err;
static _Atomic uint64_t fault_fired;

void dme_fault_ioctl(unsigned long cmd, uint64_t nth, int err)
{
	atomic_store(&fault_cmd, cmd);
	atomic_store(&fault_err, err);
	atomic_store(&fault_nth, nth);
}

uint64_t dme_fault_ioctl_fired(void)
{
	return atomic_load(&fault_fired);
}

static bool fault_hit(unsigned long cmd)
{
	unsigned long want = atomic_load(&fault_cmd);
	if (want && want != cmd)
		return false;
	uint64_t n = atomic_load(&fault_nth);
	while (n) {
		if (atomic_compare_exchange_weak(&fault_nth, &n, n - 1)) {
			if (n == 1) {
				atomic_fetch_add(&fault_fired, 1);
				return true;
			}
			return false;
		}
	}
	return false;
}

int be_ioctl(int fd, unsigned long cmd, void *arg)
{
	if (unlikely(atomic_load_explicit(&fault_nth, memory_order_relaxed)) && fault_hit(cmd))
		return atomic_load(&fault_err);
	/* EINTR is returned, not retried: a map interrupted by a signal is a
	 * failed request the engine unwinds like any other */
	int ret = ioctl(fd, cmd, arg);
	return ret < 0 ? -errno : ret;
}
