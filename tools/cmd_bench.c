/* SPDX-License-Identifier: MIT */
/*
 * cmd_bench.c - `dme bench [OPTIONS] SUITE [--benchmark_FLAG=VALUE...]`.
 * Compiled into dme-bench (bench/main.c), which `dme bench` runs with its
 * arguments (tools/bench_exec.c): this is where they are parsed.
 *
 * dme's options go through getopt_long(); every --benchmark_* argument goes
 * to Google Benchmark, except the few that concern output, which dme does
 * itself because it runs Google Benchmark once per case: --benchmark_format
 * (json is --json), --benchmark_out(_format) and --benchmark_list_tests.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "shim.h"

#define GB_PREFIX "--benchmark_"

static void list_suites(FILE *f)
{
	for (const struct dme_bench_suite *const *s = dme_bench_suites(); *s; s++)
		fprintf(f, "  %-8s %s\n", (*s)->name, (*s)->doc);
}

/* "--benchmark_NAME=VALUE" of @arg when its NAME is @name: VALUE, "" for a
 * bare "--benchmark_NAME", NULL for another flag. */
static const char *gb_flag(const char *arg, const char *name)
{
	size_t n = strlen(name);
	if (strncmp(arg + strlen(GB_PREFIX), name, n))
		return NULL;
	arg += strlen(GB_PREFIX) + n;
	return *arg == '=' ? arg + 1 : *arg ? NULL : arg;
}

/* Google Benchmark's idea of a true/false flag value; -1 when neither. */
static int gb_bool(const char *v)
{
	static const char *const yes[] = {"", "1", "t", "true", "y", "yes", "on"};
	static const char *const no[] = {"0", "f", "false", "n", "no", "off"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!strcasecmp(v, yes[i]))
			return 1;
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (!strcasecmp(v, no[i]))
			return 0;
	return -1;
}

/* Takes the output flags of Google Benchmark into @o; returns 1 when @arg is
 * one of them, 0 when it is for Google Benchmark, or CLI_EXIT_USAGE + 1
 * when its value is not one dme can honour. */
static int gb_output_flag(const char *arg, struct dme_bench_opts *o)
{
	const char *v;
	if ((v = gb_flag(arg, "format"))) {
		if (strcmp(v, "json") && strcmp(v, "console")) {
			cli_usage_error(&cli_bench, "'%s': dme writes the console table or json",
					arg);
			return CLI_EXIT_USAGE + 1;
		}
		o->json = !strcmp(v, "json");
	} else if ((v = gb_flag(arg, "out_format"))) {
		if (strcmp(v, "json")) {
			cli_usage_error(&cli_bench, "'%s': dme writes json to --benchmark_out",
					arg);
			return CLI_EXIT_USAGE + 1;
		}
	} else if ((v = gb_flag(arg, "out")) && *v) {
		o->json_path = v;
	} else if ((v = gb_flag(arg, "list_tests"))) {
		int b = gb_bool(v);
		if (b < 0) {
			cli_usage_error(&cli_bench, "'%s' wants true or false", arg);
			return CLI_EXIT_USAGE + 1;
		}
		o->list = b;
	} else {
		return 0;
	}
	return 1;
}

static void help_suites(FILE *f)
{
	fprintf(f, "\nsuites:\n");
	list_suites(f);
}

int cmd_bench(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_MIN_TIME, OPT_FILTER, OPT_LIST };
	static const struct option opts[] = {
		{"json", no_argument, NULL, OPT_JSON},
		{"min-time", required_argument, NULL, OPT_MIN_TIME},
		{"filter", required_argument, NULL, OPT_FILTER},
		{"list", no_argument, NULL, OPT_LIST},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct dme_bench_opts o = {0};
	double min_time = 0;
	int ret = CLI_EXIT_USAGE;

	/* --benchmark_* arguments leave argv before getopt_long() sees it */
	char **mine = calloc((size_t)argc + 1, sizeof(*mine));
	char **gb = calloc((size_t)argc + 1, sizeof(*gb));
	int nmine = 0, ngb = 0;
	if (!mine || !gb) {
		fprintf(stderr, "dme bench: %s\n", strerror(ENOMEM));
		ret = CLI_EXIT_FAIL;
		goto out;
	}
	for (int i = 0; i < argc; i++) {
		if (i == 0 || strncmp(argv[i], GB_PREFIX, strlen(GB_PREFIX))) {
			mine[nmine++] = argv[i];
			continue;
		}
		int r = gb_output_flag(argv[i], &o);
		if (r > 1)
			goto out;
		if (!r)
			gb[ngb++] = argv[i];
	}

	int c;
	optind = 0; /* afresh: a program may run several commands in-process */
	opterr = 0;
	while ((c = getopt_long(nmine, mine, ":qh", opts, NULL)) != -1) {
		char *end;
		switch (c) {
		case OPT_JSON:
			o.json = true;
			break;
		case OPT_MIN_TIME:
			min_time = strtod(optarg, &end);
			if (end == optarg || *end || !(min_time > 0)) {
				cli_usage_error(&cli_bench,
						"--min-time wants seconds > 0, not '%s'", optarg);
				goto out;
			}
			break;
		case OPT_FILTER:
			o.filter = optarg;
			break;
		case OPT_LIST:
			o.list = true;
			break;
		case 'q':
			o.quiet = true;
			break;
		case 'h':
			ret = cli_help(&cli_bench);
			goto out;
		default:
			cli_bad_option(&cli_bench, mine, c);
			goto out;
		}
	}
	if (optind == nmine) {
		cli_usage_error(&cli_bench, "which suite? The suites:");
		list_suites(stderr);
		goto out;
	}
	if (nmine - optind > 1) {
		cli_usage_error(&cli_bench, "one SUITE at a time, not '%s' and '%s'", mine[optind],
				mine[optind + 1]);
		goto out;
	}
	const struct dme_bench_suite *suite = NULL;
	for (const struct dme_bench_suite *const *s = dme_bench_suites(); *s; s++)
		if (!strcmp((*s)->name, mine[optind]))
			suite = *s;
	if (!suite) {
		cli_usage_error(&cli_bench, "no suite '%s'; the suites:", mine[optind]);
		list_suites(stderr);
		goto out;
	}
	if (dme_bench_init("dme", ngb, gb, min_time))
		goto out;
	switch (dme_bench_run(suite, &o)) {
	case 0:
		ret = CLI_EXIT_OK;
		break;
	case -ENOENT: /* the filters leave no case: a command line that asks for nothing */
		ret = CLI_EXIT_USAGE;
		break;
	default:
		ret = CLI_EXIT_FAIL;
		break;
	}
out:
	free(mine);
	free(gb);
	return ret;
}

/* dme-bench's `bench`: the help of dme's, and the suites this build has. */
const struct cli_cmd cli_bench = {
	.name = "bench",
	.args = cli_bench_args,
	.summary = cli_bench_summary,
	.help = cli_bench_help,
	.help_more = help_suites,
	.run = cmd_bench,
};
