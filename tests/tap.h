/* SPDX-License-Identifier: MIT */
/*
 * tap.h - a tiny TAP producer for dme's test programs.
 *
 * ok(cond, name...) prints "ok N - name" or "not ok N - name"; the plan is
 * printed by tap_done(), whose return value is the program's exit status
 * (non-zero when any check failed). tap_skip(why, name...) reports one check
 * that cannot run here as "ok N - name # SKIP why", which TAP consumers (and
 * .ci/count.py) count as skipped, never as passed; tap_skip_all() skips a
 * whole program.
 * Single-threaded use only: checks run on the main thread.
 */
#ifndef DME_TAP_H
#define DME_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed;

__attribute__((format(printf, 2, 3))) static inline int ok(int cond, const char *fmt, ...)
{
	va_list ap;
	tap_n++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		tap_failed++;
	return cond;
}

__attribute__((format(printf, 1, 2))) static inline void diag(const char *fmt, ...)
{
	va_list ap;
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* Same argument order as the vm guests' tap_skip(): the reason, then the name. */
__attribute__((format(printf, 2, 3))) static inline void tap_skip(const char *reason,
								  const char *fmt, ...)
{
	va_list ap;
	tap_n++;
	printf("ok %d - ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" # SKIP %s\n", reason);
	fflush(stdout);
}

/* Checks an int expression against an expected value and reports both. */
#define ok_eq(got, want, ...)                                                                   \
	do {                                                                                     \
		long long _g = (long long)(got), _w = (long long)(want);                         \
		if (!ok(_g == _w, __VA_ARGS__))                                                  \
			diag("  got %lld (0x%llx), want %lld (0x%llx)", _g, (unsigned long long)_g, \
			     _w, (unsigned long long)_w);                                        \
	} while (0)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	fflush(stdout);
	return tap_failed ? 1 : 0;
}

static inline void tap_skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	fflush(stdout);
	exit(0);
}

#endif
