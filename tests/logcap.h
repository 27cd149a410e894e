/* SPDX-License-Identifier: MIT */
/*
 * logcap.h - a log hook for tests: captures the last message and counts
 * messages per level, so tests assert that errors are reported.
 */
#ifndef DME_LOGCAP_H
#define DME_LOGCAP_H

#include <string.h>

#include <dme/log.h>

struct logcap {
	int count[4];
	char last[512];
};

static struct logcap logcap;

static inline void logcap_hook(void *ctx, enum dme_log_level lvl, const char *msg)
{
	struct logcap *c = ctx;
	if (lvl >= 0 && lvl < 4)
		c->count[lvl]++;
	strncpy(c->last, msg, sizeof(c->last) - 1);
	c->last[sizeof(c->last) - 1] = 0;
}

static inline void logcap_install(void)
{
	memset(&logcap, 0, sizeof(logcap));
	dme_log_set_hook(logcap_hook, &logcap, DME_LOG_DEBUG);
}

static inline void logcap_reset(void)
{
	memset(&logcap, 0, sizeof(logcap));
}

#endif
