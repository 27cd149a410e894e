/* SPDX-License-Identifier: MIT */
/*
 * monitor.h - the memory monitor: tells the engine when caller memory that
 * it keeps mapped was unmapped, remapped or had its pages dropped (internal).
 *
 * A mapping cache that outlives a registration is only safe if it learns
 * that the VA range changed before it hands the mapping out again. The
 * monitor registers such ranges with a userfaultfd (missing mode) and asks
 * for the UNMAP, REMOVE and REMAP events; a thread reads them and queues the
 * ranges. The kernel lets munmap()/madvise()/mremap() return only after the
 * event was read, and the thread marks itself "reading" before it reads, so
 * a registration that starts after such a call returned always finds the
 * range in the queue (monitor_drain()). The queue is drained by the engine
 * under its own lock; the monitor never takes the engine lock, so a thread
 * blocked on a userfault inside a backend call can always be released.
 */
#ifndef DME_ENGINE_MONITOR_H
#define DME_ENGINE_MONITOR_H

/* Internal symbols carry the dmei_ prefix in the library (libdme.a links
 * beside other libraries' own avl_*, tree_*...); the code uses the short
 * names. */
#define monitor_close dmei_monitor_close
#define monitor_drain dmei_monitor_drain
#define monitor_mode dmei_monitor_mode
#define monitor_open dmei_monitor_open
#define monitor_pending dmei_monitor_pending
#define monitor_unwatch dmei_monitor_unwatch
#define monitor_watch dmei_monitor_watch

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct monitor;

/**
 * monitor_open() - start a monitor (a userfaultfd and its reader thread).
 * @out: on success, the monitor
 *
 * Return: 0, -EOPNOTSUPP (no userfaultfd or no events), -EPERM, or another
 * error; the reason is logged at info level.
 */
int monitor_open(struct monitor **out);

/** monitor_close() - stop the thread, drop every watched range. */
void monitor_close(struct monitor *m);

/**
 * monitor_watch() - report changes to [va, va+len) from now on.
 *
 * Return: 0, or a negative errno when the range cannot be watched (a hole,
 * a file mapping userfaultfd does not support, another userfaultfd, pages
 * not present when only user-mode faults can be handled).
 */
int monitor_watch(struct monitor *m, uint64_t va, uint64_t len);

/** monitor_unwatch() - stop reporting [va, va+len) (errors are ignored). */
void monitor_unwatch(struct monitor *m, uint64_t va, uint64_t len);

/** monitor_pending() - anything to drain? One load, no lock: the hit path. */
bool monitor_pending(struct monitor *m);

/**
 * monitor_drain() - hand every reported range to @fn, then forget them.
 * When the queue overflowed, @fn gets [0, UINT64_MAX) once.
 */
void monitor_drain(struct monitor *m, void (*fn)(void *arg, uint64_t va, uint64_t len), void *arg);

/** monitor_mode() - "userfaultfd" or "userfaultfd (user-mode faults only)". */
const char *monitor_mode(const struct monitor *m);

#endif
