/* SPDX-License-Identifier: MIT */
/* version.c - dme_version(): the project version libdme was built as. */
#include <dme/version.h>

#include "compiler.h"
#include "dme_build.h"

DME_EXPORT const char *dme_version(void)
{
	return DME_VERSION_STRING;
}
