/* SPDX-License-Identifier: MIT */
/*
 * main.c - dme-bench, the benchmark harness as a program of its own:
 * `dme-bench SUITE [--json] [--min-time S] [--filter T]` is `dme bench ...`
 * (the dme CLI execs this, tools/bench_exec.c). Exit status: 0 success,
 * 1 a case failed, 2 usage error.
 */
#include "cli.h"

int main(int argc, char **argv)
{
	return cmd_bench(argc, argv);
}
