/* SPDX-License-Identifier: MIT */
/* test-config: DME_* parsing, validation and the log hook. */
#include <errno.h>
#include <string.h>

#include <dme/config.h>

#include "log_internal.h"
#include "logcap.h"
#include "tap.h"

static void test_defaults(void)
{
	struct dme_config c;
	dme_config_init(&c);
	ok(c.backend == DME_BACKEND_AUTO && c.hugepage == DME_HUGEPAGE_AUTO &&
		   c.numa == DME_NUMA_DEVICE && c.iova_cache && c.iova_mag_size == 64,
	   "defaults: auto backend, auto hugepages, device NUMA, IOVA cache on");
}

static void test_env_ok(void)
{
	struct dme_config c;
	char *env[] = {"PATH=/bin", "DME_BACKEND=sim", "DME_HUGEPAGE=2M", "DME_NUMA=1",
		       "DME_DEVICE=0000:00:03.0,/dev/vfio/devices/vfio1", "DME_CACHE_BUDGET=64M",
		       "DME_ALLOW_IOVAS=0x100000-0xffffffff", "DME_IOVA_CACHE=off",
		       "DME_LOG_LEVEL=debug", NULL};
	dme_config_init(&c);
	ok_eq(dme_config_apply_env(&c, env), 0, "a valid environment applies");
	ok(c.backend == DME_BACKEND_SIM, "DME_BACKEND=sim selects sim");
	ok(c.hugepage == DME_HUGEPAGE_2M, "DME_HUGEPAGE=2M selects 2 MiB pages");
	ok(c.numa == DME_NUMA_NODE && c.numa_node == 1, "DME_NUMA=1 binds to node 1");
	ok(c.nr_devices == 2 && !strcmp(c.devices[0], "0000:00:03.0") &&
		   !strcmp(c.devices[1], "/dev/vfio/devices/vfio1"),
	   "DME_DEVICE takes a comma list");
	ok(c.cache_budget_bytes == 64ull << 20, "size suffix M is MiB");
	ok(c.allow_iovas_set && c.allow_iova_start == 0x100000 && c.allow_iova_last == 0xffffffff,
	   "DME_ALLOW_IOVAS parses an inclusive window");
	ok(!c.iova_cache, "boolean accepts off");
	ok(c.log_level == DME_LOG_DEBUG, "log level parses");
}

static void test_env_bad(void)
{
	struct dme_config c, before;
	dme_config_init(&c);
	before = c;

	char *unknown[] = {"DME_HUGEPAGES=2M", NULL};
	logcap_reset();
	ok_eq(dme_config_apply_env(&c, unknown), -EINVAL, "unknown DME_ name is -EINVAL");
	ok(logcap.count[DME_LOG_ERR] >= 2 && strstr(logcap.last, "DME_HUGEPAGE"),
	   "unknown name: message lists the valid variables");

	char *badval[] = {"DME_BACKEND=ioomufd", NULL};
	logcap_reset();
	ok_eq(dme_config_apply_env(&c, badval), -EINVAL, "bad enum value is -EINVAL");
	ok(strstr(logcap.last, "auto|iommufd|vfio|noiommu|sim") != NULL,
	   "bad value: message lists the valid choices");

	char *mixed[] = {"DME_BACKEND=sim", "DME_IOVA_MAG_SIZE=0", NULL};
	ok_eq(dme_config_apply_env(&c, mixed), -EINVAL, "out-of-range integer is -EINVAL");
	ok(!memcmp(&c, &before, sizeof(c)), "a failed apply leaves the config unchanged");

	const char *bads[][2] = {
		{"DME_IOVA_MAG_SIZE", "12x"}, {"DME_IOVA_MAG_SIZE", "-1"},
		{"DME_CACHE_BUDGET", "99999999999999999999"}, {"DME_CACHE_BUDGET", "20000000T"},
		{"DME_ALLOW_IOVAS", "0x2000-0x1000"}, {"DME_ALLOW_IOVAS", "0x1000"},
		{"DME_NUMA", "far"}, {"DME_DEVICE", "a,,b"}, {"DME_DEVICE", "a,"},
		{"DME_MLOCK", "maybe"}, {"DME_LOG_LEVEL", ""},
	};
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++)
		ok_eq(dme_config_set(&c, bads[i][0], bads[i][1]), -EINVAL, "%s='%s' refused",
		      bads[i][0], bads[i][1]);
	ok(!memcmp(&c, &before, sizeof(c)), "refused values change nothing");
}

static void test_table(void)
{
	size_t n;
	const struct dme_config_var *v = dme_config_vars(&n);
	struct dme_config c;
	int all = 1;
	dme_config_init(&c);
	for (size_t i = 0; i < n; i++) {
		if (!v[i].name || strncmp(v[i].name, "DME_", 4) || !v[i].choices || !v[i].doc)
			all = 0;
		/* every documented default must itself parse */
		if (v[i].deflt[0] && dme_config_set(&c, v[i].name, v[i].deflt))
			all = 0;
	}
	ok(n >= 13 && all, "every variable is documented and its default parses (%zu vars)", n);
}

static int seen;
static void count_hook(void *ctx, enum dme_log_level l, const char *m)
{
	(void)ctx; (void)l; (void)m;
	seen++;
}

static void test_log_levels(void)
{
	struct dme_config c;
	dme_config_init(&c);
	dme_log_set_hook(count_hook, NULL, DME_LOG_NONE);
	dme_config_set(&c, "DME_NOPE", "1");
	ok_eq(seen, 0, "DME_LOG_NONE silences every message");
	dme_log_set_hook(count_hook, NULL, DME_LOG_ERR);
	dme_config_set(&c, "DME_NOPE", "1");
	ok(seen > 0, "errors reach a hook at level err");
	ok_eq(dme_log_get_level(), DME_LOG_ERR, "dme_log_get_level reports the level");
	logcap_install();
}

/* One message per level through the library's own logging calls. */
static void log_each_level(void)
{
	logcap_reset();
	dme_err("test: an error");
	dme_warn("test: a warning");
	dme_info("test: a note");
	dme_dbg("test: a debug detail");
}

static void test_log_level_env(void)
{
	struct dme_config c;
	dme_config_init(&c);
	dme_log_set_hook(logcap_hook, &logcap, DME_LOG_WARN);

	char *err[] = {"DME_LOG_LEVEL=err", NULL};
	ok_eq(dme_config_apply_env(&c, err), 0, "DME_LOG_LEVEL=err applies");
	ok_eq(dme_log_get_level(), DME_LOG_ERR, "DME_LOG_LEVEL=err: the hook's level is err");
	log_each_level();
	ok(logcap.count[DME_LOG_ERR] == 1 && logcap.count[DME_LOG_WARN] == 0,
	   "DME_LOG_LEVEL=err: errors are delivered, warnings are not");

	char *debug[] = {"DME_LOG_LEVEL=debug", NULL};
	ok_eq(dme_config_apply_env(&c, debug), 0, "DME_LOG_LEVEL=debug applies");
	log_each_level();
	ok(logcap.count[DME_LOG_ERR] == 1 && logcap.count[DME_LOG_WARN] == 1 &&
		   logcap.count[DME_LOG_INFO] == 1 && logcap.count[DME_LOG_DEBUG] == 1,
	   "DME_LOG_LEVEL=debug: debug messages are delivered too");

	char *bad[] = {"DME_LOG_LEVEL=info", "DME_NOPE=1", NULL};
	dme_config_apply_env(&c, bad);
	ok_eq(dme_log_get_level(), DME_LOG_DEBUG, "a failed apply leaves the log level alone");

	char *none[] = {"DME_BACKEND=sim", NULL};
	dme_log_set_hook(logcap_hook, &logcap, DME_LOG_INFO);
	ok_eq(dme_config_apply_env(&c, none), 0, "an environment without DME_LOG_LEVEL applies");
	ok_eq(dme_log_get_level(), DME_LOG_INFO,
	      "... and leaves the level given to dme_log_set_hook() alone");

	ok_eq(dme_config_set(&c, "DME_LOG_LEVEL", "warn"), 0, "dme_config_set(DME_LOG_LEVEL, warn)");
	log_each_level();
	ok(dme_log_get_level() == DME_LOG_WARN && logcap.count[DME_LOG_WARN] == 1 &&
		   logcap.count[DME_LOG_INFO] == 0,
	   "dme_config_set sets the level too: warnings delivered, notes not");
	logcap_install();
}

int main(void)
{
	logcap_install();
	test_defaults();
	test_env_ok();
	test_env_bad();
	test_table();
	test_log_levels();
	test_log_level_env();
	return tap_done();
}
