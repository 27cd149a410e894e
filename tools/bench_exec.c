/* SPDX-License-Identifier: MIT */
/*
 * bench_exec.c - `dme bench ...`: runs dme-bench (bench/main.c) with the same
 * arguments, so the CLI itself links neither Google Benchmark nor libstdc++.
 * dme-bench is looked for beside this executable (both installed in bindir)
 * and then in ../bench/ (the build tree: build/tools/dme, build/bench/
 * dme-bench); never on $PATH, which could hold another version. A build
 * configured without -Dbench has none, and `dme bench` says so.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cmd_bench_exec(int argc, char **argv)
{
	static const char *const where[] = {"dme-bench", "../bench/dme-bench"};
	char self[PATH_MAX], path[PATH_MAX + 32];
	(void)argc;

	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		fprintf(stderr,
			"dme bench: cannot find this program's directory (/proc/self/exe: %s)\n",
			strerror(n < 0 ? errno : ENOENT));
		return 1;
	}
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (slash)
		*slash = 0;
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", self, where[i]);
		if (access(path, X_OK))
			continue;
		argv[0] = path;
		execv(path, argv);
		fprintf(stderr, "dme bench: cannot run %s: %s\n", path, strerror(errno));
		return 1;
	}
	fprintf(stderr,
		"dme bench: this build of dme has no benchmarks (no dme-bench in %s); "
		"configure dme with -Dbench=enabled (needs g++ and libbenchmark-dev)\n",
		self);
	return 1;
}
