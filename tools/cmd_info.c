/* SPDX-License-Identifier: MIT */
/*
 * cmd_info.c - `dme info [--json]`: what this machine offers a DMA engine:
 * IOMMU interfaces (/dev/iommu, VFIO container and cdevs, IOMMU groups),
 * hugepage pools per size and NUMA node, NUMA nodes, the kernel version.
 * Read-only; needs no privileges beyond reading sysfs.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

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

int cmd_info(int argc, char **argv)
{
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else {
			fprintf(stderr, "dme info: unknown option '%s' (valid: --json)\n", argv[i]);
			return 2;
		}
	}
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
		jw_obj_end(&w);
		jw_end(&w);
		return 0;
	}
	printf("kernel          %s %s\n", u.release, u.machine);
	printf("iommufd         %s\n", iommufd ? "/dev/iommu present" : "absent");
	printf("vfio container  %s\n", vfio ? "/dev/vfio/vfio present" : "absent");
	printf("vfio cdevs      %d\n", cdevs < 0 ? 0 : cdevs);
	printf("iommu groups    %d\n", groups < 0 ? 0 : groups);
	printf("best backend    %s\n", best);
	printf("numa nodes      %d (online %s)\n", nr_nodes, online[0] ? online : "?");
	printf("hugepages       node  page     total  free\n");
	for (size_t i = 0; i < np; i++)
		printf("                %4d  %-7s %6" PRIu64 " %5" PRIu64 "\n", pools[i].node,
		       pools[i].size_kb >= 1048576 ? "1G" : pools[i].size_kb >= 2048 ? "2M" : "?",
		       pools[i].nr, pools[i].free);
	return 0;
}
