/* SPDX-License-Identifier: MIT */
/*
 * bench_help.c - what `dme bench` is, in words: its synopsis and its help.
 * Linked by both programs that answer to it: dme (tools/bench_exec.c, which
 * runs dme-bench, or says that this build has none) and dme-bench
 * (tools/cmd_bench.c, which parses the command line these words describe),
 * so `dme help bench` says the same in a build with or without benchmarks.
 */
#include "cli.h"

const char cli_bench_args[] = "[OPTIONS] SUITE [--benchmark_FLAG=VALUE...]";

const char cli_bench_summary[] =
	"run a benchmark suite (Google Benchmark; --json for its JSON format)";

const char cli_bench_help[] =
	"Runs the cases of a benchmark suite with Google Benchmark, one at a time, and\n"
	"derives dme's figures from them: ratios against baselines measured in the same\n"
	"run (the \"dme keys\"), so runs on different machines compare.\n"
	"\n"
	"options:\n"
	"      --json           Google Benchmark's JSON document on stdout (\"context\",\n"
	"                       \"benchmarks\"), dme's derived keys under \"dme_keys\"\n"
	"      --min-time=S     run each case for at least S seconds\n"
	"      --filter=TEXT    run only the cases whose name contains TEXT\n"
	"      --list           print the names of the cases that would run; run nothing\n"
	"  -q, --quiet          no progress lines on stderr\n"
	"  -h, --help           this text\n"
	"\n"
	"Google Benchmark's flags go to it, in the form --benchmark_NAME=VALUE, e.g.\n"
	"  --benchmark_filter=REGEX       only cases whose name (SUITE/CASE/...) matches\n"
	"  --benchmark_repetitions=N      repeat each case N times and report mean,\n"
	"                                 median, stddev and cv (dme keys use the median)\n"
	"  --benchmark_min_time=S         as --min-time\n"
	"  --benchmark_out=FILE           also write the JSON document to FILE\n"
	"  --benchmark_format=json        as --json (console: the table, the default)\n"
	"  --benchmark_list_tests=true    as --list\n"
	"\n"
	"Progress goes to stderr, a line as each case starts and ends; stdout holds only\n"
	"the table, or only the JSON. Exit status 1 when a case fails, 2 for a wrong\n"
	"command line or filters that leave no case.\n";
