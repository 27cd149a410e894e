/* SPDX-License-Identifier: MIT */
/*
 * main.c - dme-bench, the benchmark harness as a program of its own:
 * `dme-bench [OPTIONS] SUITE [--benchmark_FLAG=VALUE...]` is `dme bench ...`
 * (the dme CLI execs this with the same arguments, tools/bench_exec.c), and
 * speaks as `dme bench` does: its help, usage errors and messages
 * (tools/cmd_bench.c). Exit status: 0 success, 1 a case failed, 2 a wrong
 * command line or filters that leave no case.
 */
#include "cli.h"

int main(int argc, char **argv)
{
	return cmd_bench(argc, argv);
}
