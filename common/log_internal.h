/* SPDX-License-Identifier: MIT */
/*
 * log_internal.h - how library code emits messages. dme_log() formats only
 * when the level is enabled, so a disabled debug message costs one load.
 * Never call from a fast path.
 */
#ifndef DME_LOG_INTERNAL_H
#define DME_LOG_INTERNAL_H

#include <dme/log.h>

void dme_log_msg(enum dme_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * dme_log_apply_level() - the most verbose level delivered from now on, for
 * whichever hook is installed. The config module calls it when it reads
 * DME_LOG_LEVEL; dme_log_set_hook() sets hook and level together.
 */
void dme_log_apply_level(enum dme_log_level level);

#define dme_err(...) dme_log_msg(DME_LOG_ERR, __VA_ARGS__)
#define dme_warn(...) dme_log_msg(DME_LOG_WARN, __VA_ARGS__)
#define dme_info(...) dme_log_msg(DME_LOG_INFO, __VA_ARGS__)
#define dme_dbg(...) dme_log_msg(DME_LOG_DEBUG, __VA_ARGS__)

#endif
