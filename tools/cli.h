/* SPDX-License-Identifier: MIT */
/*
 * cli.h - shared pieces of the dme command-line tool: what a subcommand
 * is (name, synopsis, help), usage errors and exit codes, a tiny JSON writer
 * (objects, arrays, strings, integers) and the tool's log hook.
 */
#ifndef DME_CLI_H
#define DME_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <dme/log.h>

/* Exit status of every command (dme(1), `dme help`). */
enum {
	CLI_EXIT_OK = 0,    /* the command did what was asked */
	CLI_EXIT_FAIL = 1,  /* it could not: a check failed, a backend could not open... */
	CLI_EXIT_USAGE = 2, /* the command line is wrong: nothing was done */
};

/* A subcommand: `dme NAME ARGS`. */
struct cli_cmd {
	const char *name;    /* "bench" */
	const char *args;    /* its synopsis after "dme NAME " */
	const char *summary; /* one line for `dme help` */
	const char *help;    /* `dme NAME --help` after the usage line: what it does, options */
	void (*help_more)(FILE *f); /* the part of the help made at run time, or NULL */
	int (*run)(int argc, char **argv); /* argv[0] is NAME; returns a CLI_EXIT_* */
};

extern const struct cli_cmd cli_info, cli_demo, cli_bench, cli_config;

/* `dme bench` is two programs: dme's cli_bench (tools/bench_exec.c) runs
 * dme-bench, whose cli_bench (tools/cmd_bench.c) parses the command line.
 * Both say what bench_help.c says. */
extern const char cli_bench_args[], cli_bench_summary[], cli_bench_help[];

/* The commands' entry points (cli_NAME.run), for programs that run one
 * in-process. */
int cmd_info(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_bench(int argc, char **argv);	   /* dme-bench's (bench/main.c) */
int cmd_bench_exec(int argc, char **argv); /* dme's `bench`: execs dme-bench */
int cmd_config(int argc, char **argv);

/* `dme NAME --help`: @cmd's usage line and help on stdout; returns CLI_EXIT_OK. */
int cli_help(const struct cli_cmd *cmd);
/* A usage error of @cmd: "dme NAME: MSG", the usage line and a pointer to
 * --help on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const struct cli_cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The usage error for what getopt_long() (opterr = 0, optstring starting
 * with ':') returned as @c for @argv; returns CLI_EXIT_USAGE. */
int cli_bad_option(const struct cli_cmd *cmd, char **argv, int c);

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
