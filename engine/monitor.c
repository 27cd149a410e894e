/* SPDX-License-Identifier: MIT */
/*
 * monitor.c - the memory monitor (see monitor.h for the design).
 *
 * Locking. m->lock guards the queue; the reader thread holds it from the
 * read() of a batch of events until they are queued. m->state is read
 * without the lock by monitor_pending(): STATE_READING is set before the
 * read() and cleared after the queue is updated, STATE_QUEUED while the queue
 * is not empty. Because the kernel lets the munmap()ing thread go only once
 * its event has been read, any monitor_pending() that starts after that
 * munmap() returned sees one of the two bits (both are sequentially
 * consistent atomics).
 *
 * A watched range whose pages were dropped is unregistered from the
 * userfaultfd at once, so a later fault on it is an ordinary fault. A
 * missing-page fault the thread sees anyway is the first touch of a page
 * that was never populated: it gets a zero page, as without the monitor
 * (UFFDIO_ZEROPAGE); only where that is impossible (hugetlb) is the page
 * reported as changed, unregistered and the faulting thread woken.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log_internal.h"
#include "monitor.h"

enum { STATE_READING = 1, STATE_QUEUED = 2 };

struct mrange {
	uint64_t va, len;
};

#define QUEUE_MAX 1024 /* ranges queued between two drains */

struct monitor {
	int uffd;
	int stopfd;	/* eventfd: close() asks the thread to end */
	bool user_only; /* UFFD_USER_MODE_ONLY: kernel faults cannot be handled */
	pthread_t thread;
	_Atomic unsigned state;
	pthread_mutex_t lock; /* guards q, nq, overflow */
	struct mrange q[QUEUE_MAX];
	size_t nq;
	bool overflow; /* a range could not be queued: drain reports everything */
};

/* The reader thread never allocates or logs: either could munmap or
 * madvise watched memory (an allocator trimming its arena, a log hook) and
 * wait for an event only this thread can read. A full queue sets overflow,
 * and the next drain treats everything as changed. */
static void queue_push(struct monitor *m, uint64_t va, uint64_t len)
{
	if (m->nq == QUEUE_MAX) {
		m->overflow = true;
		return;
	}
	m->q[m->nq++] = (struct mrange){va, len};
}

/* Stop watching [va, va+len); the range may cover pages of any size. */
static void uffd_unregister(struct monitor *m, uint64_t va, uint64_t len)
{
	struct uffdio_range r = {va, len};
	if (!ioctl(m->uffd, UFFDIO_UNREGISTER, &r) || errno != EINVAL)
		return;
	/* a hugetlb range must be aligned to its page size */
	for (uint64_t ps = 2ull << 20; ps <= 1ull << 30; ps <<= 9) {
		r.start = va & ~(ps - 1);
		r.len = ((va + len + ps - 1) & ~(ps - 1)) - r.start;
		if (!ioctl(m->uffd, UFFDIO_UNREGISTER, &r))
			return;
	}
}

static void handle(struct monitor *m, const struct uffd_msg *msg)
{
	switch (msg->event) {
	case UFFD_EVENT_PAGEFAULT: {
		/* Pages dropped while watched come with a REMOVE event and are
		 * unregistered at once, so a missing page here was never
		 * populated: the first touch of fresh memory. Resolve it the way
		 * the kernel would (a zero page; a write then copies it) and
		 * report nothing. Where that cannot be done (hugetlb) the range
		 * is reported as changed and left to ordinary faults. */
		uint64_t a = msg->arg.pagefault.address & ~4095ull;
		struct uffdio_zeropage z = {.range = {a, 4096}};
		if (!ioctl(m->uffd, UFFDIO_ZEROPAGE, &z) || errno == EEXIST)
			break;
		queue_push(m, a, 4096);
		uffd_unregister(m, a, 4096);
		struct uffdio_range r = {a, 4096};
		ioctl(m->uffd, UFFDIO_WAKE, &r);
		break;
	}
	case UFFD_EVENT_REMOVE:
		queue_push(m, msg->arg.remove.start, msg->arg.remove.end - msg->arg.remove.start);
		uffd_unregister(m, msg->arg.remove.start,
				msg->arg.remove.end - msg->arg.remove.start);
		break;
	case UFFD_EVENT_UNMAP:
		queue_push(m, msg->arg.remove.start, msg->arg.remove.end - msg->arg.remove.start);
		break;
	case UFFD_EVENT_REMAP:
		/* the registration moved with the pages: drop it at the new place */
		queue_push(m, msg->arg.remap.from, msg->arg.remap.len);
		uffd_unregister(m, msg->arg.remap.to, msg->arg.remap.len);
		break;
	default:
		break;
	}
}

static void *monitor_thread(void *arg)
{
	struct monitor *m = arg;
	struct pollfd pf[2] = {{m->uffd, POLLIN, 0}, {m->stopfd, POLLIN, 0}};
	for (;;) {
		if (poll(pf, 2, -1) < 0)
			continue; /* EINTR: never leave watched ranges unread */
		if (pf[1].revents)
			return NULL;
		atomic_fetch_or(&m->state, STATE_READING);
		pthread_mutex_lock(&m->lock);
		struct uffd_msg msg[16];
		ssize_t n;
		while ((n = read(m->uffd, msg, sizeof(msg))) > 0)
			for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++)
				handle(m, &msg[i]);
		if (m->nq || m->overflow)
			atomic_fetch_or(&m->state, STATE_QUEUED);
		pthread_mutex_unlock(&m->lock);
		atomic_fetch_and(&m->state, ~(unsigned)STATE_READING);
	}
}

int monitor_open(struct monitor **out)
{
	struct monitor *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (m->uffd < 0 && (errno == EPERM || errno == EACCES)) {
		m->uffd =
		    (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
		m->user_only = true;
	}
	int ret;
	if (m->uffd < 0) {
		ret = errno == ENOSYS ? -EOPNOTSUPP : -errno;
		dme_info("monitor: no userfaultfd (%s)", strerror(errno));
		goto err_free;
	}
	struct uffdio_api api = {.api = UFFD_API,
				 .features = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE |
					     UFFD_FEATURE_EVENT_REMAP};
	if (ioctl(m->uffd, UFFDIO_API, &api)) {
		ret = errno == EINVAL ? -EOPNOTSUPP : -errno;
		dme_info("monitor: userfaultfd lacks the unmap/remove/remap events (%s)",
			 strerror(errno));
		goto err_close;
	}
	m->stopfd = eventfd(0, EFD_CLOEXEC);
	if (m->stopfd < 0) {
		ret = -errno;
		goto err_close;
	}
	pthread_mutex_init(&m->lock, NULL);
	ret = -pthread_create(&m->thread, NULL, monitor_thread, m);
	if (ret) {
		dme_info("monitor: no thread (%s)", strerror(-ret));
		pthread_mutex_destroy(&m->lock);
		close(m->stopfd);
		goto err_close;
	}
	*out = m;
	return 0;
err_close:
	close(m->uffd);
err_free:
	free(m);
	return ret;
}

void monitor_close(struct monitor *m)
{
	if (!m)
		return;
	uint64_t one = 1;
	if (write(m->stopfd, &one, sizeof(one)) != sizeof(one))
		dme_err("monitor: cannot stop the reader thread (%s)", strerror(errno));
	pthread_join(m->thread, NULL);
	close(m->stopfd);
	close(m->uffd); /* the kernel drops every registration of this uffd */
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* With only user-mode faults handled, a kernel access (read(2) into the
 * buffer) to a missing page would fail: watch only fully present ranges. */
static bool all_present(uint64_t va, uint64_t len)
{
	unsigned char vec[256];
	for (uint64_t a = va; a < va + len;) {
		uint64_t n = (va + len - a) / 4096;
		if (n > sizeof(vec))
			n = sizeof(vec);
		if (mincore((void *)(uintptr_t)a, n * 4096, vec))
			return false;
		for (uint64_t i = 0; i < n; i++)
			if (!(vec[i] & 1))
				return false;
		a += n * 4096;
	}
	return true;
}

int monitor_watch(struct monitor *m, uint64_t va, uint64_t len)
{
	/* with only user-mode faults handled, a kernel access (read(2) into
	 * the buffer) to a missing page would fail: watch only present ranges */
	if (m->user_only && !all_present(va, len))
		return -EFAULT;
	struct uffdio_register r = {.range = {va, len}, .mode = UFFDIO_REGISTER_MODE_MISSING};
	if (ioctl(m->uffd, UFFDIO_REGISTER, &r))
		return -errno;
	return 0;
}

void monitor_unwatch(struct monitor *m, uint64_t va, uint64_t len)
{
	uffd_unregister(m, va, len);
}

bool monitor_pending(struct monitor *m)
{
	return atomic_load(&m->state) != 0;
}

void monitor_drain(struct monitor *m, void (*fn)(void *arg, uint64_t va, uint64_t len), void *arg)
{
	if (!monitor_pending(m))
		return;
	pthread_mutex_lock(&m->lock);
	struct mrange q[QUEUE_MAX]; /* 16 KiB: the engine's thread, not the reader */
	size_t n = m->nq;
	bool overflow = m->overflow;
	memcpy(q, m->q, n * sizeof(q[0]));
	m->nq = 0;
	m->overflow = false;
	atomic_fetch_and(&m->state, ~(unsigned)STATE_QUEUED);
	pthread_mutex_unlock(&m->lock);
	if (overflow)
		fn(arg, 0, UINT64_MAX);
	for (size_t i = 0; i < n; i++)
		fn(arg, q[i].va, q[i].len);
}

const char *monitor_mode(const struct monitor *m)
{
	return m->user_only ? "userfaultfd (user-mode faults only)" : "userfaultfd";
}
