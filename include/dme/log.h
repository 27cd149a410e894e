/* SPDX-License-Identifier: MIT */
/*
 * dme/log.h - the log hook: dme never prints on its own.
 *
 * Every message the library produces goes through one process-wide hook.
 * The default hook writes "dme: <level>: <msg>" to stderr. The hook gets
 * the messages at or below one process-wide level: "warn" by default, the
 * level given to dme_log_set_hook(), or DME_LOG_LEVEL once
 * dme_config_apply_env() (which dme_engine_open(NULL, ...) calls) or
 * dme_config_set() has read it; the latest of these wins.
 */
#ifndef DME_LOG_H
#define DME_LOG_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Severity of a log message; lower is more severe. */
enum dme_log_level {
	DME_LOG_NONE = -1,
	DME_LOG_ERR = 0,
	DME_LOG_WARN = 1,
	DME_LOG_INFO = 2,
	DME_LOG_DEBUG = 3,
};

/**
 * dme_log_fn - a log hook.
 * @ctx:   the pointer given to dme_log_set_hook()
 * @level: severity of @msg
 * @msg:   one message, no trailing newline, valid only during the call
 */
typedef void (*dme_log_fn)(void *ctx, enum dme_log_level level, const char *msg);

/**
 * dme_log_set_hook() - route dme's messages to @fn.
 * @fn:    the hook; NULL restores the default stderr hook
 * @ctx:   passed through to @fn
 * @level: the most verbose level delivered (DME_LOG_NONE silences dme)
 *
 * Thread-safe; takes effect for messages issued after it returns.
 */
void dme_log_set_hook(dme_log_fn fn, void *ctx, enum dme_log_level level);

/** dme_log_get_level() - the most verbose level currently delivered. */
enum dme_log_level dme_log_get_level(void);

/** dme_log_level_name() - "err", "warn", "info" or "debug". */
const char *dme_log_level_name(enum dme_log_level level);

#ifdef __cplusplus
}
#endif
#endif
