/* SPDX-License-Identifier: MIT */
/*
 * cmd_info.c - `dme info [--json]`: what this machine offers a DMA engine:
 * IOMMU interfaces (/dev/iommu, VFIO container and cdevs, IOMMU groups),
 * the PCI devices bound to vfio-pci (address, NUMA node, IOMMU group,
 * cdev: what DME_DEVICE and DME_NUMA=device will use), hugepage pools per
 * size and NUMA node, NUMA nodes, the kernel version.
 * Read-only; needs no privileges beyond reading sysfs.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <dme/log.h>
#include <dme/mem.h>

#include <dme/engine.h>

#include "cli.h"

struct hp_pool {
	int node;
	uint64_t size_kb, nr, free;
};

static int count_dir(const char *path, const char *prefix)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && (!prefix || !strncmp(e->d_name, prefix, strlen(prefix))))
			n++;
	closedir(d);
	return n;
}

static size_t collect_node_pools(struct hp_pool *out, size_t max, int *nr_nodes)
{
	size_t n = 0;
	*nr_nodes = 0;
	DIR *d = opendir("/sys/devices/system/node");
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		int node;
		if (sscanf(e->d_name, "node%d", &node) != 1)
			continue;
		(*nr_nodes)++;
		char path[512];
		snprintf(path, sizeof(path), "/sys/devices/system/node/%s/hugepages", e->d_name);
		DIR *h = opendir(path);
		if (!h)
			continue;
		struct dirent *he;
		while ((he = readdir(h)) && n < max) {
			uint64_t kb;
			if (sscanf(he->d_name, "hugepages-%" SCNu64 "kB", &kb) != 1)
				continue;
			char p2[1400];
			struct hp_pool *pl = &out[n];
			pl->node = node;
			pl->size_kb = kb;
			snprintf(p2, sizeof(p2), "%s/%s/nr_hugepages", path, he->d_name);
			if (read_u64(p2, &pl->nr))
				continue;
			snprintf(p2, sizeof(p2), "%s/%s/free_hugepages", path, he->d_name);
			if (read_u64(p2, &pl->free))
				continue;
			n++;
		}
		closedir(h);
	}
	closedir(d);
	return n;
}

#define VFIO_PCI_DIR "/sys/bus/pci/drivers/vfio-pci"

/* A PCI function bound to vfio-pci. */
struct vdev {
	char addr[16];	/* 0000:41:00.0 */
	char cls[16];	/* 0x010802 */
	char vendor[8]; /* 0x1b36 */
	char device[8]; /* 0x0010 */
	int numa_node;	/* dme_pci_numa_node(); -1 when the platform does not say */
	int group;	/* IOMMU group, -1 when none */
	char cdev[64];	/* /dev/vfio/devices/vfioN, "" when none */
};

static void sysfs_attr(const char *addr, const char *attr, char *out, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", addr, attr);
	if (read_text(path, out, len))
		out[0] = 0;
}

static void fill_vdev(struct vdev *v)
{
	char path[PATH_MAX], link[PATH_MAX];
	sysfs_attr(v->addr, "class", v->cls, sizeof(v->cls));
	sysfs_attr(v->addr, "vendor", v->vendor, sizeof(v->vendor));
	sysfs_attr(v->addr, "device", v->device, sizeof(v->device));
	if (dme_pci_numa_node(v->addr, &v->numa_node))
		v->numa_node = -1;
	v->group = -1;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", v->addr);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n > 0) {
		link[n] = 0;
		const char *slash = strrchr(link, '/');
		v->group = atoi(slash ? slash + 1 : link);
	}
	v->cdev[0] = 0;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", v->addr);
	DIR *d = opendir(path);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (!strncmp(e->d_name, "vfio", 4)) {
				snprintf(v->cdev, sizeof(v->cdev), "/dev/vfio/devices/%.40s",
					 e->d_name);
				break;
			}
		closedir(d);
	}
}

static int cmp_vdev(const void *a, const void *b)
{
	return strcmp(((const struct vdev *)a)->addr, ((const struct vdev *)b)->addr);
}

/* The functions bound to vfio-pci, sorted by address. */
static size_t collect_vfio_devices(struct vdev *out, size_t max)
{
	DIR *d = opendir(VFIO_PCI_DIR);
	size_t n = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		unsigned dom, bus, slot, fn;
		char tail;
		if (sscanf(e->d_name, "%x:%x:%x.%x%c", &dom, &bus, &slot, &fn, &tail) != 4 ||
		    dom > 0xffff || bus > 0xff || slot > 0x1f || fn > 7)
			continue;
		snprintf(out[n].addr, sizeof(out[n].addr), "%04x:%02x:%02x.%x", dom, bus, slot, fn);
		fill_vdev(&out[n]);
		n++;
	}
	closedir(d);
	qsort(out, n, sizeof(out[0]), cmp_vdev);
	return n;
}

static int cmp_pool(const void *a, const void *b)
{
	const struct hp_pool *x = a, *y = b;
	if (x->node != y->node)
		return x->node - y->node;
	return x->size_kb < y->size_kb ? -1 : x->size_kb > y->size_kb;
}

static bool exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

void demo_stats_json(struct jw *w, const char *key, struct dme_engine *e)
{
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	jw_obj(w, key);
	jw_str(w, "backend", dme_engine_backend_name(e));
	jw_str(w, "cache_monitor", dme_engine_cache_monitor(e) ? dme_engine_cache_monitor(e)
								: "none");
	jw_u64(w, "map_calls", st.map_calls);
	jw_u64(w, "unmap_calls", st.unmap_calls);
	jw_u64(w, "bytes_mapped", st.bytes_mapped);
	jw_u64(w, "live_mappings", st.live_mappings);
	jw_u64(w, "pinned_bytes", st.pinned_bytes);
	jw_u64(w, "registry_bytes", st.registry_bytes);
	jw_u64(w, "active_mappings", st.active_mappings);
	jw_u64(w, "idle_mappings", st.idle_mappings);
	jw_u64(w, "pending_unmaps", st.pending_unmaps);
	jw_u64(w, "cache_hits", st.cache_hits);
	jw_u64(w, "evictions", st.evictions);
	jw_u64(w, "faults", st.faults);
	jw_u64(w, "meta_bytes", st.meta_bytes);
	jw_bool(w, "invariants_hold", st.map_calls - st.unmap_calls == st.live_mappings &&
					      st.pinned_bytes == st.registry_bytes &&
					      dme_engine_check(e) == 0);
	jw_obj_end(w);
}


/*
 * A demo engine on the configured backend (DME_BACKEND, DME_DEVICE; the
 * simulator when no device is named): 16 contiguous buffers registered in
 * one batch, so its counters show what a registration costs. NULL when it
 * cannot be had, with the reason in @why.
 */
static struct dme_engine *demo_engine(uint8_t **mem, char why[512])
{
	extern char **environ;
	struct dme_config cfg;
	struct dme_engine *e;
	dme_config_init(&cfg);
	if (dme_config_apply_env(&cfg, environ)) {
		snprintf(why, 512, "the DME_* environment is not valid (see dme config)");
		return NULL;
	}
	cli_log_forget();
	int ret = dme_engine_open(&cfg, &e);
	if (ret) {
		const char *last = cli_log_last_error();
		snprintf(why, 512, "%s%s%s", strerror(-ret), last[0] ? "; " : "", last);
		return NULL;
	}
	*mem = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (*mem == MAP_FAILED) {
		snprintf(why, 512, "mmap: %s", strerror(errno));
		dme_engine_close(e);
		return NULL;
	}
	struct dme_region_req q[16];
	for (int i = 0; i < 16; i++)
		q[i] = (struct dme_region_req){*mem + i * 4096, 4096, DME_MAP_RW, 0};
	dme_register_batch(e, q, 16);
	return e;
}

int cmd_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	bool json = false;
	int c;
	optind = 0; /* afresh: a program may run several commands in-process */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			return cli_help(&cli_info);
		default:
			return cli_bad_option(&cli_info, argv, c);
		}
	}
	if (optind < argc)
		return cli_usage_error(&cli_info, "unexpected argument '%s'", argv[optind]);
	struct utsname u;
	uname(&u);
	bool iommufd = exists("/dev/iommu");
	bool vfio = exists("/dev/vfio/vfio");
	int cdevs = count_dir("/dev/vfio/devices", "vfio");
	int groups = count_dir("/sys/kernel/iommu_groups", NULL);
	struct hp_pool pools[64];
	int nr_nodes;
	size_t np = collect_node_pools(pools, 64, &nr_nodes);
	qsort(pools, np, sizeof(pools[0]), cmp_pool);
	char online[128] = "";
	read_text("/sys/devices/system/node/online", online, sizeof(online));
	const char *best = iommufd && cdevs > 0 ? "iommufd" : vfio && groups > 0 ? "vfio" : "sim";
	static struct vdev devs[64];
	size_t nd = collect_vfio_devices(devs, 64);

	if (json) {
		struct jw w;
		jw_begin(&w, stdout);
		jw_obj(&w, NULL);
		jw_obj(&w, "kernel");
		jw_str(&w, "release", u.release);
		jw_str(&w, "machine", u.machine);
		jw_obj_end(&w);
		jw_obj(&w, "iommu");
		jw_bool(&w, "iommufd", iommufd);
		jw_bool(&w, "vfio_container", vfio);
		jw_i64(&w, "vfio_cdevs", cdevs < 0 ? 0 : cdevs);
		jw_i64(&w, "iommu_groups", groups < 0 ? 0 : groups);
		jw_str(&w, "best_backend", best);
		jw_obj_end(&w);
		jw_arr(&w, "devices");
		for (size_t i = 0; i < nd; i++) {
			jw_obj(&w, NULL);
			jw_str(&w, "address", devs[i].addr);
			jw_str(&w, "driver", "vfio-pci");
			jw_str(&w, "class", devs[i].cls);
			jw_str(&w, "vendor", devs[i].vendor);
			jw_str(&w, "device", devs[i].device);
			jw_i64(&w, "numa_node", devs[i].numa_node);
			jw_i64(&w, "iommu_group", devs[i].group);
			jw_str(&w, "cdev", devs[i].cdev);
			jw_obj_end(&w);
		}
		jw_arr_end(&w);
		jw_obj(&w, "numa");
		jw_i64(&w, "nodes", nr_nodes);
		jw_str(&w, "online", online);
		jw_obj_end(&w);
		jw_arr(&w, "hugepages");
		for (size_t i = 0; i < np; i++) {
			jw_obj(&w, NULL);
			jw_i64(&w, "node", pools[i].node);
			jw_u64(&w, "page_kb", pools[i].size_kb);
			jw_u64(&w, "total", pools[i].nr);
			jw_u64(&w, "free", pools[i].free);
			jw_obj_end(&w);
		}
		jw_arr_end(&w);
		uint8_t *mem = NULL;
		char why[512];
		struct dme_engine *e = demo_engine(&mem, why);
		if (e) {
			demo_stats_json(&w, "engine", e);
			dme_engine_close(e);
			munmap(mem, 16 * 4096);
		} else {
			jw_str(&w, "engine_error", why);
		}
		jw_obj_end(&w);
		jw_end(&w);
		return CLI_EXIT_OK;
	}
	printf("kernel          %s %s\n", u.release, u.machine);
	printf("iommufd         %s\n", iommufd ? "/dev/iommu present" : "absent");
	printf("vfio container  %s\n", vfio ? "/dev/vfio/vfio present" : "absent");
	printf("vfio cdevs      %d\n", cdevs < 0 ? 0 : cdevs);
	printf("iommu groups    %d\n", groups < 0 ? 0 : groups);
	printf("best backend    %s\n", best);
	if (!nd)
		printf("vfio-pci        no device bound\n");
	else
		printf("vfio-pci        address       node  group  cdev"
		       "                     class     id\n");
	for (size_t i = 0; i < nd; i++)
		printf("                %-12s  %4d  %5d  %-23s  %-8s  %s:%s\n", devs[i].addr,
		       devs[i].numa_node, devs[i].group, devs[i].cdev[0] ? devs[i].cdev : "-",
		       devs[i].cls, devs[i].vendor, devs[i].device);
	printf("numa nodes      %d (online %s)\n", nr_nodes, online[0] ? online : "?");
	printf("hugepages       node  page     total  free\n");
	for (size_t i = 0; i < np; i++)
		printf("                %4d  %-7s %6" PRIu64 " %5" PRIu64 "\n", pools[i].node,
		       pools[i].size_kb >= 1048576 ? "1G" : pools[i].size_kb >= 2048 ? "2M" : "?",
		       pools[i].nr, pools[i].free);
	uint8_t *mem = NULL;
	char why[512];
	struct dme_engine *e = demo_engine(&mem, why);
	if (e) {
		struct dme_engine_stats st;
		dme_engine_stats(e, &st);
		printf("demo engine     %s: 16 buffers, %" PRIu64 " map call(s), %" PRIu64 " live, invariants %s\n",
		       dme_engine_backend_name(e), st.map_calls, st.live_mappings,
		       dme_engine_check(e) ? "BROKEN" : "hold");
		const char *mon = dme_engine_cache_monitor(e);
		printf("mapping cache   %s\n",
		       mon ? mon : "no memory monitor: caller memory is unmapped once unregistered (DMA memory stays cached)");
		printf("                %s\n", mon ? "caller memory stays mapped after unregister until evicted; munmap/mremap/MADV_DONTNEED are seen" : "(DME_CACHE_MONITOR=0, no userfaultfd, or not permitted)");
		dme_engine_close(e);
		munmap(mem, 16 * 4096);
	} else {
		printf("demo engine     none could be opened: %s\n", why);
	}
	return CLI_EXIT_OK;
}

const struct cli_cmd cli_info = {
	.name = "info",
	.args = "[--json]",
	.summary = "IOMMU, vfio-pci devices, hugepages, NUMA and kernel facts of this machine",
	.help = "What this machine offers a DMA engine: the IOMMU interfaces (/dev/iommu, the\n"
		"VFIO container and cdevs, IOMMU groups) and the backend DME_BACKEND=auto would\n"
		"pick, the PCI devices bound to vfio-pci (NUMA node, IOMMU group, cdev), hugepage\n"
		"pools per size and NUMA node, the NUMA nodes, the kernel, and the counters of a\n"
		"demo engine opened as the DME_* variables say (or why none could be opened).\n"
		"Reads sysfs only; needs no privileges.\n"
		"\n"
		"options:\n"
		"      --json  one JSON object instead of the table\n"
		"  -h, --help  this text\n",
	.run = cmd_info,
};
