/* SPDX-License-Identifier: MIT */
/*
 * bench_exec.c - `dme bench ...`: runs dme-bench (bench/main.c) with the same
 * arguments, so the CLI itself links neither Google Benchmark nor libstdc++;
 * dme-bench parses them (tools/cmd_bench.c) and its exit status is dme's.
 * dme-bench is looked for beside this executable (both installed in bindir)
 * and then in ../bench/ (the build tree: build/tools/dme, build/bench/
 * dme-bench); never on $PATH, which could hold another version. A build
 * configured without -Dbench has none, and `dme bench` says so (exit status
 * 1), though `dme bench --help` still describes the command.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define NO_BENCH_HINT "configure dme with -Dbench=enabled (needs g++ and libbenchmark-dev)"

static void help_no_suites(FILE *f)
{
	fprintf(f, "\nsuites: none, this build of dme has no benchmarks;\n" NO_BENCH_HINT "\n");
}

/* What dme says when there is no dme-bench to run (the help of dme-bench
 * lists the suites instead). */
const struct cli_cmd cli_bench = {
	.name = "bench",
	.args = cli_bench_args,
	.summary = cli_bench_summary,
	.help = cli_bench_help,
	.help_more = help_no_suites,
	.run = cmd_bench_exec,
};

/* -h or --help among the options (before a "--") */
static bool asks_help(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	return false;
}

int cmd_bench_exec(int argc, char **argv)
{
	static const char *const where[] = {"dme-bench", "../bench/dme-bench"};
	char self[PATH_MAX], path[PATH_MAX + 32];

	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		fprintf(stderr,
			"dme bench: cannot find this program's directory (/proc/self/exe: %s)\n",
			strerror(n < 0 ? errno : ENOENT));
		return CLI_EXIT_FAIL;
	}
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (slash)
		*slash = 0;
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", self, where[i]);
		if (access(path, X_OK))
			continue;
		fflush(stdout);
		argv[0] = path;
		execv(path, argv);
		fprintf(stderr, "dme bench: cannot run %s: %s\n", path, strerror(errno));
		return CLI_EXIT_FAIL;
	}
	if (asks_help(argc, argv))
		return cli_help(&cli_bench);
	fprintf(stderr,
		"dme bench: this build of dme has no benchmarks (no dme-bench in %s); "
		NO_BENCH_HINT "\n", self);
	return CLI_EXIT_FAIL;
}
