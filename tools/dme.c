/* SPDX-License-Identifier: MIT */
/*
 * dme.c - the dme command-line tool: global options, the subcommand table,
 * help and usage errors.
 *
 * Every command parses its options with getopt_long() (GNU habits: --opt=V
 * and --opt V, -h/--help anywhere, options before or after operands) and
 * exits 0 when it did what was asked, 1 when it could not, 2 for a wrong
 * command line (nothing done). Help goes to stdout, usage errors to stderr.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <dme/engine.h>
#include <dme/version.h>

#include "cli.h"
#include "dme_build.h"

static int cmd_help(int argc, char **argv);

static const struct cli_cmd cli_help_cmd = {
	.name = "help",
	.args = "[COMMAND]",
	.summary = "this text, or a command's help (as dme COMMAND --help)",
	.help = "Without COMMAND: the commands, global options and exit status of dme.\n"
		"With COMMAND: that command's help.\n",
	.run = cmd_help,
};

/* In the order `dme help` lists them. */
static const struct cli_cmd *const cmds[] = {
	&cli_info, &cli_demo, &cli_bench, &cli_config, &cli_help_cmd, NULL,
};

static const struct cli_cmd *find_cmd(const char *name)
{
	for (const struct cli_cmd *const *c = cmds; *c; c++)
		if (!strcmp((*c)->name, name))
			return *c;
	return NULL;
}

static void usage(FILE *f)
{
	fputs("usage: dme [-h | --help] [-V | --version] COMMAND [ARGS]\n"
	      "\n"
	      "The command-line tool of libdme, the DMA mapping engine for userspace drivers.\n"
	      "\n"
	      "commands:\n",
	      f);
	for (const struct cli_cmd *const *c = cmds; *c; c++)
		fprintf(f, "  %-8s %s\n", (*c)->name, (*c)->summary);
	fputs("\n"
	      "options:\n"
	      "  -h, --help     this text\n"
	      "  -V, --version  the version of dme and libdme, and the backends built in\n"
	      "\n"
	      "'dme COMMAND --help' (or 'dme help COMMAND') describes a command and its options.\n"
	      "The engine is configured by DME_* environment variables: 'dme config' lists them.\n"
	      "\n"
	      "exit status:\n"
	      "  0  success\n"
	      "  1  failure: the command could not do what was asked (a message says why)\n"
	      "  2  usage error: a wrong command line; nothing was done\n"
	      "\n"
	      "See dme(1) and, for the library, dme(3).\n",
	      f);
}

static int version(void)
{
	printf("dme %s\nlibdme %s\nbackends:", DME_VERSION_STRING, dme_version());
	for (const char *const *b = dme_engine_backends(); *b; b++)
		printf(" %s", *b);
	printf("\n");
	return CLI_EXIT_OK;
}

static int cmd_help(int argc, char **argv)
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
			return cli_help(&cli_help_cmd);
		default:
			return cli_bad_option(&cli_help_cmd, argv, c);
		}
	}
	if (argc - optind > 1)
		return cli_usage_error(&cli_help_cmd, "one COMMAND at most");
	if (argc == optind) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	const struct cli_cmd *cmd = find_cmd(argv[optind]);
	if (!cmd)
		return cli_usage_error(&cli_help_cmd, "unknown command '%s'", argv[optind]);
	/* the command's own --help: `dme bench --help` is dme-bench's, which
	 * lists the suites of this build */
	static char help_opt[] = "--help";
	char *help_argv[] = {argv[optind], help_opt, NULL};
	return cmd->run(2, help_argv);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	int c;
	dme_log_set_hook(cli_log_hook, NULL, dme_log_get_level());
	opterr = 0;
	/* '+': stop at the command; what follows is the command's */
	while ((c = getopt_long(argc, argv, "+:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case 'V':
			return version();
		default:
			fprintf(stderr, "dme: unknown option '%s'\nTry 'dme --help'.\n",
				argv[optind - 1]);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind == argc) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	const struct cli_cmd *cmd = find_cmd(argv[optind]);
	if (!cmd) {
		fprintf(stderr, "dme: unknown command '%s'\nTry 'dme help'.\n", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	return cmd->run(argc - optind, argv + optind);
}
