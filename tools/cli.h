/* SPDX-License-Identifier: MIT */
/*
 * cli.h - shared pieces of the dme command-line tool: the subcommand table,
 * a tiny JSON writer (objects, arrays, strings, numbers; no floats with
 * exponents of more than what printf gives) and the tool's log hook.
 */
#ifndef DME_CLI_H
#define DME_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <dme/log.h>

struct cli_cmd {
	const char *name;
	const char *usage;
	const char *doc;
	int (*run)(int argc, char **argv);
};

int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);	   /* dme-bench's (bench/main.c) */
int cmd_bench_exec(int argc, char **argv); /* dme's `bench`: execs dme-bench */
int cmd_config(int argc, char **argv);
int cmd_demo(int argc, char **argv);

/* JSON writer: tracks whether a comma is needed at each nesting level. */
struct jw {
	FILE *f;
	int depth;
	bool need_comma[32];
};

void jw_begin(struct jw *w, FILE *f);
void jw_obj(struct jw *w, const char *key);	/* key NULL inside arrays / at top */
void jw_obj_end(struct jw *w);
void jw_arr(struct jw *w, const char *key);
void jw_arr_end(struct jw *w);
void jw_str(struct jw *w, const char *key, const char *val);
void jw_u64(struct jw *w, const char *key, uint64_t val);
void jw_i64(struct jw *w, const char *key, int64_t val);
void jw_bool(struct jw *w, const char *key, bool val);
void jw_end(struct jw *w);

/* Reads a small sysfs/proc file into @buf (trailing newline stripped). */
int read_text(const char *path, char *buf, size_t len);
/* Reads an unsigned integer from a file. */
int read_u64(const char *path, uint64_t *out);

/*
 * The dme tool's log hook (main installs it): prints what the default hook
 * prints, and keeps the last error so that a command can say why something
 * is missing. Programs that link a command without main keep their own hook;
 * cli_log_last_error() then returns "".
 */
void cli_log_hook(void *ctx, enum dme_log_level level, const char *msg);
/* The last error message since cli_log_forget(), or "". */
const char *cli_log_last_error(void);
void cli_log_forget(void);

struct dme_engine;
/* The counters of @e as a JSON object under @key. */
void demo_stats_json(struct jw *w, const char *key, struct dme_engine *e);

#endif
