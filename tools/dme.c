/* SPDX-License-Identifier: MIT */
/*
 * dme.c - the dme command-line tool: a table of subcommands.
 * Exit status: 0 success, 1 failure, 2 usage error.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <dme/config.h>

#include "cli.h"

static const struct cli_cmd cmds[] = {
	{"info", "dme info [--json]", "IOMMU, hugepages, NUMA and kernel facts of this machine",
	 cmd_info},
	{"bench", "dme bench SUITE [--json] [--min-time S] [--filter T]", "run a benchmark suite",
	 cmd_bench_exec},
	{"demo", "dme demo [--json]",
	 "map DMA memory and buffers on the best backend; device DMA on the simulator", cmd_demo},
	{"config", "dme config", "list the DME_* environment variables and check the current ones",
	 cmd_config},
};

extern char **environ;

int cmd_config(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "usage: dme config\n");
		return 2;
	}
	size_t n;
	const struct dme_config_var *v = dme_config_vars(&n);
	for (size_t i = 0; i < n; i++)
		printf("%-20s %s\n%-20s   %s (default: %s)\n", v[i].name, v[i].doc, "", v[i].choices,
		       v[i].deflt[0] ? v[i].deflt : "unset");
	struct dme_config cfg;
	dme_config_init(&cfg);
	if (dme_config_apply_env(&cfg, environ)) {
		fprintf(stderr, "dme config: the environment holds invalid DME_* settings\n");
		return 1;
	}
	printf("\nthe current environment is valid (backend %s, hugepages %s)\n",
	       dme_backend_name(cfg.backend), dme_hugepage_name(cfg.hugepage));
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: dme COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-42s %s\n", cmds[i].usage, cmds[i].doc);
}

int main(int argc, char **argv)
{
	dme_log_set_hook(cli_log_hook, NULL, dme_log_get_level());
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].run(argc - 1, argv + 1);
	fprintf(stderr, "dme: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
