/* SPDX-License-Identifier: MIT */
/*
 * test-shared: an embedder's view of libdme.so. Linked against the shared
 * library with the public headers only (every other test links libdme.a):
 * the calls resolve to libdme.so.0 (the soname), carry the LIBDME_0.1
 * symbol version of libdme.map, internal symbols stay inside, and a few
 * calls work end to end on the simulator.
 */
#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <dme/dme.h>

#include "tap.h"

static int errors;
static void count_errors(void *ctx, enum dme_log_level level, const char *msg)
{
	(void)ctx;
	(void)msg;
	if (level == DME_LOG_ERR)
		errors++;
}

int main(void)
{
	Dl_info info = {0};
	const char *from =
	    dladdr((void *)dme_engine_open, &info) && info.dli_fname ? info.dli_fname : "?";
	ok(strstr(from, "libdme.so.0") != NULL, "dme_engine_open comes from libdme.so.0 (%s)",
	   from);
	ok(dlvsym(RTLD_DEFAULT, "dme_engine_open", "LIBDME_0.1") != NULL,
	   "dme_engine_open carries the symbol version LIBDME_0.1");
	ok(dlvsym(RTLD_DEFAULT, "dme_config_init", "LIBDME_0.1") != NULL,
	   "dme_config_init carries the symbol version LIBDME_0.1");
	/* internal functions, non-static in the library: not exported */
	ok(dlsym(RTLD_DEFAULT, "dme_log_msg") == NULL && dlsym(RTLD_DEFAULT, "be_all") == NULL &&
	       dlsym(RTLD_DEFAULT, "xlate_init") == NULL,
	   "internal symbols (dme_log_msg, be_all, xlate_init) stay inside the library");

	struct dme_config c;
	dme_config_init(&c);
	dme_log_set_hook(count_errors, NULL, DME_LOG_WARN);
	ok_eq(dme_config_set(&c, "DME_BACKEND", "sim"), 0, "dme_config_set DME_BACKEND=sim");
	ok(dme_config_set(&c, "DME_BACKEND", "nope") == -EINVAL && errors == 1,
	   "a bad value is -EINVAL with an error through the hook");

	struct dme_engine *e = NULL;
	if (!ok(dme_engine_open(&c, &e) == 0 && e, "dme_engine_open on the simulator"))
		return tap_done();
	ok(!strcmp(dme_engine_backend_name(e), "sim"), "the engine says sim");
	void *buf = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t iova = 0, x = 0;
	ok(buf != MAP_FAILED && dme_register(e, buf, 8192, DME_MAP_RW, &iova) == 0 && iova,
	   "dme_register 8 KiB");
	ok(dme_vtoiova(e, (char *)buf + 4096, &x) == 0 && x == iova + 4096,
	   "dme_vtoiova translates inside it");
	ok(dme_unregister(e, buf, 8192) == 0 && dme_engine_flush(e) == 0 &&
	       dme_vtoiova(e, buf, &x) == -ENOENT,
	   "unregister and flush: no translation left");
	dme_engine_close(e);
	munmap(buf, 8192);
	dme_log_set_hook(NULL, NULL, DME_LOG_WARN);
	return tap_done();
}
