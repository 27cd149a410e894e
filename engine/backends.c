/* SPDX-License-Identifier: MIT */
/*
 * backends.c - the backends compiled into dme, in the order
 * DME_BACKEND=auto tries them, and what their probes share. The simulator
 * always comes last: it is what an embedding program gets when it names no
 * device. dme_engine_backends() lists them for users (dme --version).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "compiler.h"

#include <dme/engine.h>

const struct be_ops *const be_all[] = {
	&be_iommufd_ops,
	&be_vfio_ops,
	&be_noiommu_ops,
	&be_sim_ops,
	NULL,
};

/* be_all's names, NULL-terminated; filled once (a name is not a constant
 * expression in C), read-only afterwards. */
static const char *be_names[ARRAY_SIZE(be_all)];
static pthread_once_t be_names_once = PTHREAD_ONCE_INIT;

static void be_names_fill(void)
{
	for (size_t i = 0; be_all[i]; i++)
		be_names[i] = be_all[i]->name;
}

DME_EXPORT const char *const *dme_engine_backends(void)
{
	pthread_once(&be_names_once, be_names_fill);
	return be_names;
}

int be_probe_node(const char *path, const char *absent_hint, char *why, size_t len)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	int err = errno;
	int absent = err == ENOENT || err == ENODEV || err == ENXIO;
	snprintf(why, len, "%s: %s%s", path, strerror(err), absent ? absent_hint : "");
	return absent ? -ENODEV : -err;
}
