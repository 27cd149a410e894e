/* SPDX-License-Identifier: MIT */
/*
 * config.c - the one module that knows DME_* environment variables.
 *
 * pub_vars[] and parsers[] are the single source of truth: name, syntax,
 * default, doc and a parser per variable. Parsing works on a copy of the config, so a failed call leaves the
 * caller's config untouched. Unknown DME_ names are errors, not warnings:
 * a typo such as DME_HUGEPAGES must never silently fall back to defaults.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <dme/config.h>

#include "compiler.h"
#include "log_internal.h"

/* struct var is a dme_config_var: parsers get the description for messages */
#define var dme_config_var

static int bad(const struct var *v, const char *val)
{
	dme_err("%s='%s' is not valid; expected %s", v->name, val, v->choices);
	return -EINVAL;
}

/* Parses an unsigned decimal/hex number with an optional K/M/G/T suffix. */
static int parse_u64(const char *s, bool suffix, uint64_t *out)
{
	char *end;
	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	unsigned shift = 0;
	if (suffix && *end) {
		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		case 't': case 'T': shift = 40; break;
		default: return -EINVAL;
		}
		end++;
	}
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_choice(const struct var *v, const char *val, const char *const *names,
			unsigned n, unsigned *out)
{
	for (unsigned i = 0; i < n; i++) {
		if (names[i] && !strcasecmp(val, names[i])) {
			*out = i;
			return 0;
		}
	}
	return bad(v, val);
}

static const char *const backend_names[] = {"auto", "iommufd", "vfio", "noiommu", "sim"};
static const char *const hugepage_names[] = {"auto", "1G", "2M", "thp", "none"};
static const char *const bool_names[] = {"0", "1"};
static const char *const level_names[] = {"err", "warn", "info", "debug"};

static int p_backend(struct dme_config *c, const struct var *v, const char *val)
{
	unsigned i;
	int ret = parse_choice(v, val, backend_names, ARRAY_SIZE(backend_names), &i);
	if (!ret)
		c->backend = (enum dme_backend_kind)i;
	return ret;
}

static int p_hugepage(struct dme_config *c, const struct var *v, const char *val)
{
	unsigned i;
	int ret = parse_choice(v, val, hugepage_names, ARRAY_SIZE(hugepage_names), &i);
	if (!ret)
		c->hugepage = (enum dme_hugepage_pref)i;
	return ret;
}

static int p_bool_into(bool *dst, const struct var *v, const char *val)
{
	if (!strcasecmp(val, "yes") || !strcasecmp(val, "on") || !strcasecmp(val, "true")) {
		*dst = true;
		return 0;
	}
	if (!strcasecmp(val, "no") || !strcasecmp(val, "off") || !strcasecmp(val, "false")) {
		*dst = false;
		return 0;
	}
	unsigned i;
	int ret = parse_choice(v, val, bool_names, ARRAY_SIZE(bool_names), &i);
	if (!ret)
		*dst = i;
	return ret;
}

static int p_mlock(struct dme_config *c, const struct var *v, const char *val)
{
	return p_bool_into(&c->mlock, v, val);
}

static int p_iova_cache(struct dme_config *c, const struct var *v, const char *val)
{
	return p_bool_into(&c->iova_cache, v, val);
}

static int p_monitor(struct dme_config *c, const struct var *v, const char *val)
{
	return p_bool_into(&c->cache_monitor, v, val);
}

static int p_numa(struct dme_config *c, const struct var *v, const char *val)
{
	if (!strcasecmp(val, "device")) {
		c->numa = DME_NUMA_DEVICE;
	} else if (!strcasecmp(val, "local")) {
		c->numa = DME_NUMA_LOCAL;
	} else if (!strcasecmp(val, "interleave")) {
		c->numa = DME_NUMA_INTERLEAVE;
	} else {
		uint64_t n;
		if (parse_u64(val, false, &n) || n > 1023)
			return bad(v, val);
		c->numa = DME_NUMA_NODE;
		c->numa_node = (int)n;
	}
	return 0;
}

static int p_uint_range(unsigned *dst, const struct var *v, const char *val, uint64_t lo,
			uint64_t hi, bool pow2)
{
	uint64_t n;
	if (parse_u64(val, false, &n) || n < lo || n > hi || (pow2 && !is_pow2(n)))
		return bad(v, val);
	*dst = (unsigned)n;
	return 0;
}

static int p_mag(struct dme_config *c, const struct var *v, const char *val)
{
	return p_uint_range(&c->iova_mag_size, v, val, 1, 1024, false);
}

static int p_depot(struct dme_config *c, const struct var *v, const char *val)
{
	return p_uint_range(&c->iova_depot_max, v, val, 0, 65536, false);
}

static int p_batch(struct dme_config *c, const struct var *v, const char *val)
{
	return p_uint_range(&c->map_batch, v, val, 1, 65536, false);
}

static int p_entries(struct dme_config *c, const struct var *v, const char *val)
{
	return p_uint_range(&c->cache_budget_entries, v, val, 1, 1u << 24, false);
}

static int p_budget(struct dme_config *c, const struct var *v, const char *val)
{
	uint64_t n;
	if (parse_u64(val, true, &n))
		return bad(v, val);
	c->cache_budget_bytes = n;
	return 0;
}

static int p_devices(struct dme_config *c, const struct var *v, const char *val)
{
	unsigned n = 0;
	const char *p = val;
	char tmp[DME_MAX_DEVICES][DME_DEVICE_NAME_MAX];

	while (*p) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (!len || len >= DME_DEVICE_NAME_MAX || n == DME_MAX_DEVICES)
			return bad(v, val);
		memcpy(tmp[n], p, len);
		tmp[n][len] = 0;
		n++;
		p += len + (e ? 1 : 0);
		if (e && !*p)
			return bad(v, val);
	}
	memcpy(c->devices, tmp, sizeof(tmp[0]) * n);
	c->nr_devices = n;
	return 0;
}

static int p_allow(struct dme_config *c, const struct var *v, const char *val)
{
	char buf[64];
	uint64_t a, b;
	const char *dash = strchr(val, '-');
	if (!dash || (size_t)(dash - val) >= sizeof(buf))
		return bad(v, val);
	memcpy(buf, val, (size_t)(dash - val));
	buf[dash - val] = 0;
	if (parse_u64(buf, false, &a) || parse_u64(dash + 1, false, &b) || b < a)
		return bad(v, val);
	c->allow_iovas_set = true;
	c->allow_iova_start = a;
	c->allow_iova_last = b;
	return 0;
}

static int p_level(struct dme_config *c, const struct var *v, const char *val)
{
	unsigned i;
	int ret = parse_choice(v, val, level_names, ARRAY_SIZE(level_names), &i);
	if (!ret)
		c->log_level = (enum dme_log_level)i;
	return ret;
}

static const struct dme_config_var pub_vars[] = {
	{"DME_BACKEND", "auto|iommufd|vfio|noiommu|sim", "auto",
	  "IOMMU interface; auto tries iommufd, vfio, noiommu for DME_DEVICE, sim without one"},
	{"DME_DEVICE", "comma list of PCI addresses (0000:00:03.0) or cdev paths", "",
	  "devices to attach, all on one IO address space; one that cannot be is an error"},
	{"DME_HUGEPAGE", "auto|1G|2M|thp|none", "auto",
	  "backing page size of DMA memory; every fallback is logged"},
	{"DME_NUMA", "device|local|interleave|<node number>", "device",
	  "NUMA placement of DMA memory"},
	{"DME_MLOCK", "0|1", "0", "mlock DMA memory in addition to pinning"},
	{"DME_IOVA_CACHE", "0|1", "1", "per-thread IOVA magazines"},
	{"DME_IOVA_MAG_SIZE", "integer 1..1024", "64", "IOVAs per magazine"},
	{"DME_IOVA_DEPOT_MAX", "integer 0..65536", "32",
	  "full magazines kept per size class in the shared depot"},
	{"DME_MAP_BATCH", "integer 1..65536", "256", "map requests coalesced per flush"},
	{"DME_CACHE_BUDGET", "bytes, suffix K/M/G/T allowed (0 = memlock limit)", "0",
	  "idle mapped bytes kept in the mapping cache"},
	{"DME_CACHE_ENTRIES", "integer 1..16777216", "65535",
	  "map entries allowed (type1 DMA_AVAIL caps it further)"},
	{"DME_ALLOW_IOVAS", "START-LAST (inclusive, hex or decimal)", "",
	  "restrict the IO address space to this window"},
	{"DME_LOG_LEVEL", "err|warn|info|debug", "warn", "most verbose level logged"},
	{"DME_CACHE_MONITOR", "0|1", "1",
	  "watch caller memory (userfaultfd) so unregistered mappings can stay cached; 0: caller memory is unmapped once unregistered"},
};

static int (*const parsers[])(struct dme_config *, const struct var *, const char *) = {
	p_backend,
	p_devices,
	p_hugepage,
	p_numa,
	p_mlock,
	p_iova_cache,
	p_mag,
	p_depot,
	p_batch,
	p_budget,
	p_entries,
	p_allow,
	p_level,
	p_monitor,
};

_Static_assert(ARRAY_SIZE(pub_vars) == ARRAY_SIZE(parsers), "one parser per variable");

DME_EXPORT const struct dme_config_var *dme_config_vars(size_t *nr)
{
	*nr = ARRAY_SIZE(pub_vars);
	return pub_vars;
}

DME_EXPORT const char *dme_backend_name(enum dme_backend_kind kind)
{
	return (unsigned)kind < ARRAY_SIZE(backend_names) ? backend_names[kind] : "?";
}

DME_EXPORT const char *dme_hugepage_name(enum dme_hugepage_pref pref)
{
	return (unsigned)pref < ARRAY_SIZE(hugepage_names) ? hugepage_names[pref] : "?";
}

DME_EXPORT void dme_config_init(struct dme_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = DME_BACKEND_AUTO;
	cfg->hugepage = DME_HUGEPAGE_AUTO;
	cfg->numa = DME_NUMA_DEVICE;
	cfg->numa_node = -1;
	cfg->iova_cache = true;
	cfg->iova_mag_size = 64;
	cfg->iova_depot_max = 32;
	cfg->map_batch = 256;
	cfg->cache_budget_entries = 65535;
	cfg->log_level = DME_LOG_WARN;
	cfg->cache_monitor = true;
}

static void list_valid_names(void)
{
	char buf[400];
	size_t off = 0;
	for (size_t i = 0; i < ARRAY_SIZE(pub_vars) && off < sizeof(buf); i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s", i ? " " : "",
					pub_vars[i].name);
	dme_err("valid DME_ variables: %s", buf);
}

static int set_one(struct dme_config *cfg, const char *name, size_t nlen, const char *val)
{
	for (size_t i = 0; i < ARRAY_SIZE(pub_vars); i++) {
		if (strlen(pub_vars[i].name) == nlen && !memcmp(pub_vars[i].name, name, nlen))
			return parsers[i](cfg, &pub_vars[i], val);
	}
	dme_err("unknown variable %.*s", (int)nlen, name);
	list_valid_names();
	return -EINVAL;
}

static bool is_level_var(const char *name, size_t nlen)
{
	return nlen == strlen("DME_LOG_LEVEL") && !memcmp(name, "DME_LOG_LEVEL", nlen);
}

/*
 * DME_LOG_LEVEL governs the process-wide log hook (the hook has one level,
 * whatever config struct is in use): it is applied once the variable has
 * been read without error, and never when it is absent, so a program's own
 * dme_log_set_hook() level stands unless the user asks otherwise.
 */
DME_EXPORT int dme_config_set(struct dme_config *cfg, const char *name, const char *value)
{
	struct dme_config tmp = *cfg;
	int ret = set_one(&tmp, name, strlen(name), value);
	if (ret)
		return ret;
	*cfg = tmp;
	if (is_level_var(name, strlen(name)))
		dme_log_apply_level(cfg->log_level);
	return 0;
}

DME_EXPORT int dme_config_apply_env(struct dme_config *cfg, char *const *envp)
{
	struct dme_config tmp = *cfg;
	int first_err = 0;
	bool level_set = false;

	for (; envp && *envp; envp++) {
		const char *kv = *envp;
		if (strncmp(kv, "DME_", 4))
			continue;
		const char *eq = strchr(kv, '=');
		if (!eq)
			continue;
		int ret = set_one(&tmp, kv, (size_t)(eq - kv), eq + 1);
		if (ret && !first_err)
			first_err = ret;	/* keep going: report every bad variable */
		level_set |= is_level_var(kv, (size_t)(eq - kv));
	}
	if (first_err)
		return first_err;
	*cfg = tmp;
	if (level_set)
		dme_log_apply_level(cfg->log_level);
	return 0;
}
