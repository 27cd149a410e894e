/* SPDX-License-Identifier: MIT */
/*
 * log.c - the process-wide log hook.
 *
 * The hook, its context and the level live in one struct swapped under a
 * mutex; readers take the mutex too (logging is never on a fast path), so a
 * message is always delivered to a consistent (fn, ctx) pair.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "log_internal.h"

static void stderr_hook(void *ctx, enum dme_log_level level, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "dme: %s: %s\n", dme_log_level_name(level), msg);
}

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static dme_log_fn log_fn = stderr_hook;
static void *log_ctx;
static enum dme_log_level log_level = DME_LOG_WARN;

DME_EXPORT const char *dme_log_level_name(enum dme_log_level level)
{
	switch (level) {
	case DME_LOG_NONE:
		return "none";
	case DME_LOG_ERR:
		return "err";
	case DME_LOG_WARN:
		return "warn";
	case DME_LOG_INFO:
		return "info";
	case DME_LOG_DEBUG:
		return "debug";
	}
	return "?";
}

/* fork() in another thread while a message is being delivered must not
 * leave the child with this lock held: hold it across fork(). Registered at
 * load, before any engine's handlers, so it is taken after theirs (engine
 * locks are held while logging, never the other way round). */
static void log_fork_prepare(void)
{
	pthread_mutex_lock(&log_lock);
}

static void log_fork_done(void)
{
	pthread_mutex_unlock(&log_lock);
}

__attribute__((constructor)) static void log_atfork(void)
{
	pthread_atfork(log_fork_prepare, log_fork_done, log_fork_done);
}

DME_EXPORT void dme_log_set_hook(dme_log_fn fn, void *ctx, enum dme_log_level level)
{
	pthread_mutex_lock(&log_lock);
	log_fn = fn ? fn : stderr_hook;
	log_ctx = fn ? ctx : NULL;
	log_level = level;
	pthread_mutex_unlock(&log_lock);
}

void dme_log_apply_level(enum dme_log_level level)
{
	pthread_mutex_lock(&log_lock);
	log_level = level;
	pthread_mutex_unlock(&log_lock);
}

DME_EXPORT enum dme_log_level dme_log_get_level(void)
{
	pthread_mutex_lock(&log_lock);
	enum dme_log_level l = log_level;
	pthread_mutex_unlock(&log_lock);
	return l;
}

void dme_log_msg(enum dme_log_level level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	pthread_mutex_lock(&log_lock);
	if (level > log_level) {
		pthread_mutex_unlock(&log_lock);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_fn(log_ctx, level, buf);
	pthread_mutex_unlock(&log_lock);
}
