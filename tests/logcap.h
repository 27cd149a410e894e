/* SPDX-License-Identifier: MIT */
/*
 * logcap.h - a log hook for tests: captures the last message, every message
 * (newline-separated, truncated at the buffer size) and counts messages per
 * level, so tests assert that errors and fallbacks are reported.
 */
#ifndef DME_LOGCAP_H
#define DME_LOGCAP_H

#include <stdio.h>
#include <string.h>

#include <dme/log.h>

struct logcap {
	int count[4];
	char last[512];
	char all[8192];
	size_t all_len;
};

static struct logcap logcap;

static inline void logcap_hook(void *ctx, enum dme_log_level lvl, const char *msg)
{
	struct logcap *c = ctx;
	if (lvl >= 0 && lvl < 4)
		c->count[lvl]++;
	strncpy(c->last, msg, sizeof(c->last) - 1);
	c->last[sizeof(c->last) - 1] = 0;
	if (c->all_len < sizeof(c->all) - 1) {
		int n = snprintf(c->all + c->all_len, sizeof(c->all) - c->all_len, "%s\n", msg);
		c->all_len += n > 0 ? (size_t)n : 0;
		if (c->all_len > sizeof(c->all) - 1)
			c->all_len = sizeof(c->all) - 1;
	}
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
