/* SPDX-License-Identifier: MIT */
/* cmd_bench.c - `dme bench SUITE [--json] [--min-time S] [--filter TEXT]`. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "shim.h"

static void list_suites(FILE *f)
{
	for (const struct dme_bench_suite *const *s = dme_bench_suites(); *s; s++)
		fprintf(f, "  %-8s %s\n", (*s)->name, (*s)->doc);
}

int cmd_bench(int argc, char **argv)
{
	bool json = false;
	double min_time = 0;
	const char *name = NULL, *filter = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) {
			char *end;
			min_time = strtod(argv[++i], &end);
			if (*end || min_time <= 0) {
				fprintf(stderr, "dme bench: --min-time wants seconds > 0\n");
				return 2;
			}
		} else if (!strcmp(argv[i], "--filter") && i + 1 < argc) {
			filter = argv[++i];
		} else if (argv[i][0] != '-' && !name) {
			name = argv[i];
		} else {
			fprintf(stderr, "dme bench: unknown argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!name) {
		fprintf(stderr, "usage: dme bench SUITE [--json] [--min-time S] [--filter TEXT]\nsuites:\n");
		list_suites(stderr);
		return 2;
	}
	for (const struct dme_bench_suite *const *s = dme_bench_suites(); *s; s++)
		if (!strcmp((*s)->name, name))
			return dme_bench_run(*s, json, min_time, filter, stdout) ? 1 : 0;
	fprintf(stderr, "dme bench: no suite '%s'; suites:\n", name);
	list_suites(stderr);
	return 2;
}
