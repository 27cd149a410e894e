/* SPDX-License-Identifier: MIT */
/*
 * dme/config.h - every tunable of dme in one struct.
 *
 * An embedding program fills struct dme_config (start from
 * dme_config_init()), then lets DME_* environment variables override it with
 * dme_config_apply_env(). Every DME_* variable is parsed and validated by one
 * module; an unknown DME_ name or a bad value is an error (-EINVAL) whose
 * message lists the valid choices. Nothing is silently ignored.
 */
#ifndef DME_CONFIG_H
#define DME_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dme/log.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DME_MAX_DEVICES 8
#define DME_DEVICE_NAME_MAX 128

/** Which IOMMU interface the engine drives (DME_BACKEND). */
enum dme_backend_kind {
	DME_BACKEND_AUTO = 0, /* iommufd, vfio, noiommu for DME_DEVICE; sim without */
	DME_BACKEND_IOMMUFD,
	DME_BACKEND_VFIO,
	DME_BACKEND_NOIOMMU,
	DME_BACKEND_SIM,
};

/** Where DMA memory comes from (DME_HUGEPAGE). */
enum dme_hugepage_pref {
	DME_HUGEPAGE_AUTO = 0, /* largest size with free pages on the node */
	DME_HUGEPAGE_1G,
	DME_HUGEPAGE_2M,
	DME_HUGEPAGE_THP,
	DME_HUGEPAGE_NONE, /* plain 4 KiB pages */
};

/** NUMA placement of DMA memory (DME_NUMA). */
enum dme_numa_policy {
	DME_NUMA_DEVICE = 0, /* the node of the first device, else local */
	DME_NUMA_LOCAL,	     /* the calling thread's node */
	DME_NUMA_NODE,	     /* a fixed node: numa_node */
	DME_NUMA_INTERLEAVE, /* interleave over all nodes */
};

/** struct dme_config - all of dme's tunables; see docs/config.md. */
struct dme_config {
	enum dme_backend_kind backend;		       /* DME_BACKEND */
	unsigned nr_devices;			       /* DME_DEVICE (comma list) */
	char devices[DME_MAX_DEVICES][DME_DEVICE_NAME_MAX];
	enum dme_hugepage_pref hugepage;	       /* DME_HUGEPAGE */
	enum dme_numa_policy numa;		       /* DME_NUMA */
	int numa_node;				       /* with DME_NUMA=<node> */
	bool mlock;				       /* DME_MLOCK */
	bool iova_cache;			       /* DME_IOVA_CACHE */
	unsigned iova_mag_size;			       /* DME_IOVA_MAG_SIZE */
	unsigned iova_depot_max;		       /* DME_IOVA_DEPOT_MAX */
	unsigned map_batch;			       /* DME_MAP_BATCH */
	uint64_t cache_budget_bytes;		       /* DME_CACHE_BUDGET */
	unsigned cache_budget_entries;		       /* DME_CACHE_ENTRIES */
	bool allow_iovas_set;			       /* DME_ALLOW_IOVAS */
	uint64_t allow_iova_start, allow_iova_last;    /* inclusive window */
	enum dme_log_level log_level;		       /* DME_LOG_LEVEL (dme/log.h) */
	bool cache_monitor;			       /* DME_CACHE_MONITOR */
};

/**
 * dme_config_init() - fill @cfg with dme's defaults.
 * @cfg: the config to fill
 */
void dme_config_init(struct dme_config *cfg);

/**
 * dme_config_apply_env() - override @cfg from DME_* variables.
 * @cfg:  config to update; left unchanged when an error is returned
 * @envp: NULL-terminated "NAME=value" array (environ for the process)
 *
 * A DME_LOG_LEVEL in @envp also becomes the log hook's level (dme/log.h)
 * when the call succeeds.
 *
 * Return: 0, or -EINVAL for an unknown DME_ name or a bad value (the log
 * hook receives a message naming the variable and listing valid choices).
 */
int dme_config_apply_env(struct dme_config *cfg, char *const *envp);

/**
 * dme_config_set() - set one variable by name, as if from the environment.
 * @cfg:   config to update; unchanged on error
 * @name:  e.g. "DME_BACKEND"
 * @value: e.g. "sim"
 *
 * Return: 0, or -EINVAL (message through the log hook).
 */
int dme_config_set(struct dme_config *cfg, const char *name, const char *value);

/** struct dme_config_var - description of one DME_* variable. */
struct dme_config_var {
	const char *name;    /* "DME_BACKEND" */
	const char *choices; /* "auto|iommufd|vfio|noiommu|sim" or a syntax */
	const char *deflt;   /* default, as text */
	const char *doc;     /* one line */
};

/**
 * dme_config_vars() - the table of every DME_* variable dme understands.
 * @nr: set to the number of entries
 */
const struct dme_config_var *dme_config_vars(size_t *nr);

/** dme_backend_name() - "auto", "iommufd", "vfio", "noiommu" or "sim". */
const char *dme_backend_name(enum dme_backend_kind kind);

/** dme_hugepage_name() - "auto", "1G", "2M", "thp" or "none". */
const char *dme_hugepage_name(enum dme_hugepage_pref pref);

#ifdef __cplusplus
}
#endif
#endif
