/* SPDX-License-Identifier: MIT */
/* cmd_config.c - `dme config`: the DME_* variables, and a check of the environment. */
#include <getopt.h>
#include <stdio.h>

#include <dme/config.h>

#include "cli.h"

extern char **environ;

int cmd_config(int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c;
	optind = 0; /* afresh: a program may run several commands in-process */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			return cli_help(&cli_config);
		default:
			return cli_bad_option(&cli_config, argv, c);
		}
	}
	if (optind < argc)
		return cli_usage_error(&cli_config, "unexpected argument '%s'", argv[optind]);
	size_t n;
	const struct dme_config_var *v = dme_config_vars(&n);
	for (size_t i = 0; i < n; i++)
		printf("%-20s %s\n%-20s   %s (default: %s)\n", v[i].name, v[i].doc, "",
		       v[i].choices, v[i].deflt[0] ? v[i].deflt : "unset");
	struct dme_config cfg;
	dme_config_init(&cfg);
	if (dme_config_apply_env(&cfg, environ)) {
		fprintf(stderr, "dme config: the environment holds invalid DME_* settings\n");
		return CLI_EXIT_FAIL;
	}
	printf("\nthe current environment is valid (backend %s, hugepages %s)\n",
	       dme_backend_name(cfg.backend), dme_hugepage_name(cfg.hugepage));
	return CLI_EXIT_OK;
}

const struct cli_cmd cli_config = {
	.name = "config",
	.args = "",
	.summary = "list the DME_* environment variables and check the current ones",
	.help = "Lists every DME_* environment variable dme understands, with its choices and\n"
		"default, then checks the current environment. An unknown DME_ name or a bad\n"
		"value is reported (with the valid choices) and the exit status is 1.\n"
		"\n"
		"options:\n"
		"  -h, --help  this text\n",
	.run = cmd_config,
};
