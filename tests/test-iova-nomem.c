/* SPDX-License-Identifier: MIT */
/*
 * test-iova-nomem: allocation failures in the IOVA allocator come back as
 * -ENOMEM, change nothing and leak nothing. This program replaces malloc,
 * calloc, realloc and free (glibc's __libc_* do the work) so it can fail
 * the nth allocation and count what is still allocated; sanitizers replace
 * them too, so under a sanitizer the program skips.
 */
#include <errno.h>
#include <stddef.h>

#include <dme/iova.h>

#include "logcap.h"
#include "tap.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                    \
    __has_feature(memory_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

#ifndef UNDER_SANITIZER
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

/* Counting is on between fail_arm() and fail_disarm(), on the main thread only. */
static long fail_at, calls, live;
static int armed;

static int fail_now(void)
{
	if (!armed)
		return 0;
	return ++calls == fail_at;
}

void *malloc(size_t n)
{
	if (fail_now())
		return NULL;
	void *p = __libc_malloc(n);
	live += armed && p;
	return p;
}

void *calloc(size_t n, size_t size)
{
	if (fail_now())
		return NULL;
	void *p = __libc_calloc(n, size);
	live += armed && p;
	return p;
}

void *realloc(void *old, size_t n)
{
	if (fail_now())
		return NULL;
	void *p = __libc_realloc(old, n);
	live += armed && p && !old;
	return p;
}

void free(void *p)
{
	live -= armed && p;
	__libc_free(p);
}

static void fail_arm(long nth)
{
	fail_at = nth;
	calls = 0;
	live = 0;
	armed = 1;
}

static void fail_disarm(void)
{
	armed = 0;
}

static const struct dme_iova_range vtd[] = {
	{0, 0xfedfffff},
	{0xfef00000, 0x7fffffffff},
};

/* Fail each allocation of dme_iova_space_create() in turn, then none. */
static void test_create(void)
{
	struct dme_iova_geometry g = {vtd, 2, 0x1000};
	long nth, wrong = 0, leaked = 0, touched = 0, kept = 0;
	int ret = -ENOMEM;
	for (nth = 1; nth < 1000 && ret; nth++) {
		struct dme_iova_space *s = NULL;
		fail_arm(nth);
		ret = dme_iova_space_create(&g, NULL, &s);
		if (ret == -ENOMEM) {
			leaked += live != 0;
			touched += s != NULL;
		} else if (ret) {
			wrong++;
			diag("  failing allocation %ld: %d", nth, ret);
		} else {
			kept = live;
			dme_iova_space_destroy(s);
		}
		fail_disarm();
	}
	ok(ret == 0 && nth > 2, "create: succeeds once no allocation fails (%ld allocations)",
	   nth - 2);
	ok_eq(wrong, 0, "create: every failed allocation is -ENOMEM, never -EINVAL");
	ok_eq(leaked, 0, "create: a failed create frees what it allocated");
	ok_eq(touched, 0, "create: the out parameter is untouched on failure");
	ok(kept > 0 && live == 0, "create: destroy frees all %ld allocations of a space", kept);
}

int main(void)
{
	logcap_install();
	test_create();
	return tap_done();
}
#else
int main(void)
{
	tap_skip_all("a sanitizer owns malloc: no allocation failures can be injected");
}
#endif
