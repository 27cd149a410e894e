/* SPDX-License-Identifier: MIT */
/*
 * Guest check of dme's NUMA placement in the two-node shape: one NVMe on the
 * main host bridge (sysfs numa_node -1) and one behind a pxb-pcie bridge on
 * node 1.
 *   - `dme info` lists both vfio-pci devices with their NUMA node, IOMMU
 *     group and cdev. The dme CLI cannot go into the initramfs (it links
 *     Google Benchmark, which Debian ships as a shared library only), so
 *     this program links the CLI's own tools/cmd_info.c and runs cmd_info()
 *     in-process, text and --json, against the guest's sysfs.
 *   - DME_NUMA=device semantics: dme_mem_params_from_config() with the
 *     node-1 device gives node 1, and dme_mem_alloc() puts every page there
 *     (move_pages says so), hugetlb and 4 KiB alike; with the node-less
 *     device the fallback to the local node is reported.
 *   - The engine on iommufd with the node-1 device maps that memory, and
 *     dme_vtoiova() answers the same from a thread on each node (the
 *     translation table has one replica per node).
 */
#include "dmeguest.h"
#include "ioas.h"
#include "vmtest.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <dme/engine.h>
#include <dme/mem.h>

#include "cli.h"


/* ---- dme info, in-process -------------------------------------------------- */

/* Runs cmd_info(argv) with stdout captured into @buf. Returns its status. */
static int run_info(int argc, char **argv, char *buf, size_t len)
{
	char path[] = "/tmp/dme-info-XXXXXX";
	int fd = mkstemp(path), saved, rc;
	ssize_t n;

	if (fd < 0)
		return -1;
	unlink(path);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	dup2(fd, STDOUT_FILENO);
	rc = cmd_info(argc, argv);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	n = pread(fd, buf, len - 1, 0);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return rc;
}

/* The JSON object of device @bdf in `dme info --json` output, copied into
 * @obj; false when it is not listed. */
static bool info_device(const char *json, const char *bdf, char *obj, size_t len)
{
	char key[64];
	const char *p, *start, *end;

	snprintf(key, sizeof(key), "\"address\": \"%s\"", bdf);
	p = strstr(json, key);
	if (!p)
		return false;
	for (start = p; start > json && *start != '{'; start--)
		;
	end = strchr(p, '}');
	if (!end || (size_t)(end - start + 1) >= len)
		return false;
	memcpy(obj, start, (size_t)(end - start + 1));
	obj[end - start + 1] = '\0';
	return true;
}

static void check_info(const struct vm_nvme *far, const struct vm_nvme *near)
{
	static char out[16384];
	char obj[512], want[128];
	char *argv_json[] = {"info", "--json", NULL}, *argv_text[] = {"info", NULL};
	int group_far = atoi(strrchr(far->group, '/') + 1);

	tap_eq_u64((uint64_t)run_info(2, argv_json, out, sizeof(out)), 0,
		   "dme info --json exits 0");
	tap_check(strstr(out, "\"devices\": [") != NULL, "dme info --json has a devices list");
	if (tap_check(info_device(out, far->bdf, obj, sizeof(obj)), "dme info --json lists %s",
		      far->bdf)) {
		for (char *c = obj; *c; c++)
			if (*c == '\n')
				*c = ' ';
		tap_diag("%s", obj);
		tap_check(strstr(obj, "\"numa_node\": 1,") != NULL, "... with numa_node 1");
		snprintf(want, sizeof(want), "\"iommu_group\": %d,", group_far);
		tap_check(strstr(obj, want) != NULL, "... with its IOMMU group %d", group_far);
		snprintf(want, sizeof(want), "\"cdev\": \"%s\"", far->cdev);
		tap_check(strstr(obj, want) != NULL, "... with its cdev %s", far->cdev);
		tap_check(strstr(obj, "\"driver\": \"vfio-pci\"") &&
			      strstr(obj, "\"class\": \"0x010802\""),
			  "... bound to vfio-pci, class NVMe");
	}
	if (tap_check(info_device(out, near->bdf, obj, sizeof(obj)), "dme info --json lists %s",
		      near->bdf))
		tap_check(strstr(obj, "\"numa_node\": -1,") != NULL,
			  "... with numa_node -1 (the main host bridge has no node in this guest)");

	tap_eq_u64((uint64_t)run_info(1, argv_text, out, sizeof(out)), 0, "dme info exits 0");
	bool row = false;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		char addr[32], cdev[64];
		int node, group;
		if (sscanf(line, " %31s %d %d %63s", addr, &node, &group, cdev) == 4 &&
		    strcmp(addr, far->bdf) == 0)
			row = node == 1 && group == group_far && strcmp(cdev, far->cdev) == 0;
	}
	tap_check(row, "dme info prints %s with node 1, group %d and %s", far->bdf, group_far,
		  far->cdev);
}

/* ---- DME_NUMA=device ------------------------------------------------------- */

static struct dme_mem *alloc_for(const char *bdf, enum dme_hugepage_pref hp, size_t len,
				 struct dme_mem_params *p)
{
	struct dme_config c;
	struct dme_mem *m = NULL;

	dme_config_init(&c);
	c.numa = DME_NUMA_DEVICE;
	c.hugepage = hp;
	c.nr_devices = 1;
	snprintf(c.devices[0], sizeof(c.devices[0]), "%s", bdf);
	if (dme_mem_params_from_config(p, &c, len) != 0)
		return NULL;
	return dme_mem_alloc(p, &m) == 0 ? m : NULL;
}

struct xlate_probe {
	struct dme_engine *e;
	const uint8_t *va;
	uint64_t len;
	int cpu;
	int node;      /* getcpu() said */
	uint64_t bad;  /* pages whose translation was wrong */
	uint64_t want; /* the IOVA of va */
};

static void *xlate_thread(void *arg)
{
	struct xlate_probe *x = arg;
	unsigned cpu, node;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(x->cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		x->bad = UINT64_MAX;
		return NULL;
	}
	/* the table re-reads its node every few thousand lookups: do more */
	for (int round = 0; round < 4; round++)
		for (uint64_t off = 0; off < x->len; off += SZ_4K) {
			uint64_t iova;
			if (dme_vtoiova(x->e, x->va + off, &iova) != 0 || iova != x->want + off)
				x->bad++;
		}
	if (syscall(SYS_getcpu, &cpu, &node, NULL) == 0)
		x->node = (int)node;
	return NULL;
}

static void check_engine(const struct vm_nvme *far, struct dme_mem *m)
{
	struct dme_config c;
	struct dme_engine *e = NULL;
	struct dg_ifd k;
	uint64_t iova = 0, got = 0;

	dme_config_init(&c);
	c.backend = DME_BACKEND_IOMMUFD;
	c.nr_devices = 1;
	snprintf(c.devices[0], sizeof(c.devices[0]), "%s", far->bdf);
	if (!tap_ret(dme_engine_open(&c, &e), 0, "engine: iommufd with the node-1 device %s",
		     far->bdf) ||
	    !tap_ret(dg_ifd_init(e, &k), 0, "engine: probe IOAS"))
		return;
	tap_ret(dme_register(e, m->va, m->len, DME_MAP_RW, &iova), 0,
		"engine: register the node-1 memory (%zu MiB)", m->len >> 20);
	tap_check(dg_ifd_exact(&k, m->va, iova, m->len, true, &got) == 0 && got == m->len,
		  "engine: the kernel maps exactly its IOVA range");

	struct xlate_probe x[2] = {{e, m->va, m->len, 0, -1, 0, iova},
				   {e, m->va, m->len, 1, -1, 0, iova}};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, xlate_thread, &x[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	tap_check(
	    x[0].bad == 0 && x[0].node == 0 && x[1].bad == 0 && x[1].node == 1,
	    "engine: dme_vtoiova gives every page's IOVA from a thread on node 0 and on node 1 "
	    "(nodes %d/%d, wrong %" PRIu64 "/%" PRIu64 ")",
	    x[0].node, x[1].node, x[0].bad, x[1].bad);

	tap_ret(dme_unregister(e, m->va, m->len), 0, "engine: unregister");
	tap_ret(dme_engine_flush(e), 0, "engine: flush");
	tap_eq_u64(dg_ifd_unmap_all(&k), 0, "engine: the kernel holds nothing afterwards");
	tap_check(dg_balanced(e), "engine: stats balance");
	dg_ifd_fini(&k);
	dme_engine_close(e);
}

int main(void)
{
	struct vm_nvme devs[VM_MAX_NVME], *far = NULL, *near = NULL;
	struct dme_mem_params p;
	struct dme_mem *m;
	int n, node;

	tap_init("engine-numa");
	dg_log_install(DME_LOG_INFO);
	n = vm_find_nvme(devs, VM_MAX_NVME);
	for (int i = 0; i < n; i++) {
		if (strcmp(devs[i].driver, "vfio-pci") != 0)
			continue;
		if (strcmp(devs[i].host_bridge, "pci0000:00") != 0)
			far = &devs[i];
		else
			near = &devs[i];
	}
	if (!tap_check(far && near, "two vfio-pci NVMe controllers, one behind the node-1 bridge"))
		tap_fatal("the numa shape");

	check_info(far, near);

	tap_check(dme_pci_numa_node(far->bdf, &node) == 0 && node == 1,
		  "dme_pci_numa_node(%s) is 1", far->bdf);
	tap_check(dme_pci_numa_node(far->cdev, &node) == 0 && node == 1,
		  "dme_pci_numa_node(%s) is 1 too", far->cdev);
	tap_check(dme_pci_numa_node(near->bdf, &node) == 0 && node == -1,
		  "dme_pci_numa_node(%s) is -1", near->bdf);

	/* hugetlb (auto picks 2 MiB) for the node-1 device */
	m = alloc_for(far->bdf, DME_HUGEPAGE_AUTO, 8 * SZ_1M, &p);
	tap_check(
	    p.numa == DME_NUMA_DEVICE && p.node == 1,
	    "params from the config with DME_NUMA=device and the node-1 device: node 1 (got %d)",
	    p.node);
	if (tap_check(m != NULL, "dme_mem_alloc 8 MiB for it")) {
		tap_diag("%s, page %zu, node wanted %d actual %d, misplaced %" PRIu64
			 ", fallbacks 0x%x",
			 dme_mem_source_name(m->source), m->page_size, m->node_wanted,
			 m->node_actual, m->pages_misplaced, m->fallbacks);
		tap_check(m->page_size == SZ_2M && m->source == DME_MEM_SRC_HUGETLB_MEMFD,
			  "... from 2 MiB hugetlb pages");
		tap_check(m->node_wanted == 1 && m->node_actual == 1 && m->pages_misplaced == 0 &&
			      m->fallbacks == 0,
			  "... dme says: wanted node 1, all on node 1, no fallback");
		tap_eq_u64((uint64_t)(int64_t)vm_pages_node(m->va, m->len / SZ_2M, SZ_2M), 1,
			   "... move_pages: every hugepage is on node 1");
		check_engine(far, m);
		dme_mem_free(m);
	}

	/* 4 KiB pages for the node-1 device */
	m = alloc_for(far->bdf, DME_HUGEPAGE_NONE, 64 * SZ_4K, &p);
	if (tap_check(m != NULL && m->page_size == SZ_4K,
		      "dme_mem_alloc 256 KiB of 4 KiB pages for it")) {
		tap_eq_u64((uint64_t)(int64_t)vm_pages_node(m->va, 64, SZ_4K), 1,
			   "... move_pages: every 4 KiB page is on node 1");
		dme_mem_free(m);
	}

	/* the device on the main bridge has no node: local node, reported */
	struct dme_mem_stats before, after;
	dme_mem_stats(&before);
	m = alloc_for(near->bdf, DME_HUGEPAGE_NONE, 16 * SZ_4K, &p);
	dme_mem_stats(&after);
	tap_check(p.node == -1, "params for the node-less device: node -1");
	if (tap_check(m != NULL, "dme_mem_alloc for it works")) {
		tap_check(m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_NODE_UNKNOWN),
			  "... and reports the node_unknown fallback (local node %d)",
			  m->node_actual);
		tap_eq_u64(after.fallbacks[DME_MEM_FB_NODE_UNKNOWN] -
			       before.fallbacks[DME_MEM_FB_NODE_UNKNOWN],
			   1, "... counted once in dme_mem_stats");
		dme_mem_free(m);
	}
	return tap_done();
}
