/* SPDX-License-Identifier: MIT */
/*
 * cli.c - what every dme command shares: its help and its usage errors
 * (exit status 2), in one wording. Linked by the tool and by the programs
 * that run a command in-process (the vm tier's engine-numa runs cmd_info()).
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cli_help(const struct cli_cmd *cmd)
{
	printf("usage: dme %s%s%s\n\n%s", cmd->name, cmd->args[0] ? " " : "", cmd->args, cmd->help);
	if (cmd->help_more)
		cmd->help_more(stdout);
	return CLI_EXIT_OK;
}

int cli_usage_error(const struct cli_cmd *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "dme %s: ", cmd->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: dme %s%s%s\nTry 'dme %s --help'.\n", cmd->name,
		cmd->args[0] ? " " : "", cmd->args, cmd->name);
	return CLI_EXIT_USAGE;
}

int cli_bad_option(const struct cli_cmd *cmd, char **argv, int c)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "?";
	if (c == ':')
		return cli_usage_error(cmd, "option '%s' needs a value", arg);
	/* optopt: the short option, or the val of a long option given a
	 * value it does not take; 0 for an unknown long option */
	if (optopt > 0 && optopt < 128 && strncmp(arg, "--", 2))
		return cli_usage_error(cmd, "unknown option '-%c'", optopt);
	if (optopt)
		return cli_usage_error(cmd, "option '%s' takes no value", arg);
	return cli_usage_error(cmd, "unknown option '%s'", arg);
}
