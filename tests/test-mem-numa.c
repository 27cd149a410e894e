/* SPDX-License-Identifier: MIT */
/*
 * test-mem-numa: NUMA placement on this machine's nodes (policy applied,
 * placement verified independently with get_mempolicy), the node of a PCI
 * device from sysfs, and params built from a dme_config. Placement across
 * two nodes is tested in the VM tier; here whatever nodes exist are used.
 */
#include <dirent.h>
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <sched.h>
#include <stdlib.h>

#include <dme/config.h>
#include <dme/mem.h>

#include "../pin/pin.h" /* pin_place_verify(), to simulate a misplacement */
#include "logcap.h"
#include "memtest.h"
#include "tap.h"

/* Node of the page at @va, asked the kernel independently of dme. */
static int node_of(void *va)
{
	int node = -1;
	if (get_mempolicy(&node, NULL, 0, va, MPOL_F_NODE | MPOL_F_ADDR))
		return -2;
	return node;
}

static int policy_of(void *va)
{
	int mode = -1;
	unsigned long mask[16] = {0};
	if (get_mempolicy(&mode, mask, 16 * 64 + 1, va, MPOL_F_ADDR))
		return -2;
	return mode;
}

static struct dme_mem *alloc_with(enum dme_numa_policy pol, int node, unsigned flags,
				  enum dme_hugepage_pref hp, int *ret)
{
	struct dme_mem_params p;
	struct dme_mem *m = NULL;
	dme_mem_params_init(&p, 4 << 20);
	p.hugepage = hp;
	p.numa = pol;
	p.node = node;
	p.flags = flags;
	*ret = dme_mem_alloc(&p, &m);
	return m;
}

static bool all_pages_on(struct dme_mem *m, int node)
{
	for (size_t off = 0; off < m->len; off += m->page_size)
		if (node_of((char *)m->va + off) != node)
			return false;
	return true;
}

static void test_node_policy(int node)
{
	int ret;
	logcap_reset();
	struct dme_mem *m = alloc_with(DME_NUMA_NODE, node, 0, DME_HUGEPAGE_NONE, &ret);
	ok_eq(ret, 0, "node %d: allocated", node);
	if (!m)
		return;
	ok(m->node_wanted == node && m->node_actual == node && !m->pages_misplaced,
	   "node %d: wanted and verified", node);
	ok(all_pages_on(m, node), "node %d: get_mempolicy agrees for every page", node);
	ok_eq(policy_of(m->va), MPOL_PREFERRED, "node %d: preferred by default", node);
	ok(!m->fallbacks && !logcap.count[DME_LOG_WARN], "node %d: no fallback", node);
	dme_mem_free(m);

	m = alloc_with(DME_NUMA_NODE, node, DME_MEM_F_NUMA_BIND, DME_HUGEPAGE_NONE, &ret);
	ok(!ret && m && m->node_actual == node, "node %d bind: placed", node);
	ok(m && policy_of(m->va) == MPOL_BIND, "node %d bind: MPOL_BIND applied", node);
	dme_mem_free(m);

	m = alloc_with(DME_NUMA_NODE, node, DME_MEM_F_NO_VERIFY, DME_HUGEPAGE_NONE, &ret);
	ok(!ret && m && m->node_actual == -1 && all_pages_on(m, node),
	   "node %d, no verify: placed, node_actual left unknown", node);
	dme_mem_free(m);
}

static void test_local(void)
{
	int ret;
	struct dme_mem *m = alloc_with(DME_NUMA_LOCAL, -1, 0, DME_HUGEPAGE_THP, &ret);
	ok_eq(ret, 0, "local: allocated");
	if (!m)
		return;
	int cpu_node = numa_node_of_cpu(sched_getcpu());
	ok(m->node_wanted >= 0 && m->node_actual == m->node_wanted,
	   "local: node %d wanted and verified", m->node_wanted);
	/* the thread may migrate between nodes; on one node it cannot */
	if (numa_num_configured_nodes() == 1)
		ok_eq(m->node_wanted, cpu_node, "local: the CPU's node");
	ok(all_pages_on(m, m->node_wanted), "local: get_mempolicy agrees");
	dme_mem_free(m);
}

static void test_device_unknown(void)
{
	int ret;
	struct dme_mem_stats a, b;
	dme_mem_stats(&a);
	logcap_reset();
	struct dme_mem *m = alloc_with(DME_NUMA_DEVICE, -1, 0, DME_HUGEPAGE_NONE, &ret);
	ok_eq(ret, 0, "device node -1: allocated");
	if (!m)
		return;
	dme_mem_stats(&b);
	bool reported =
	    (m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_NODE_UNKNOWN)) &&
	    b.fallbacks[DME_MEM_FB_NODE_UNKNOWN] == a.fallbacks[DME_MEM_FB_NODE_UNKNOWN] + 1 &&
	    strstr(logcap.all, "NUMA node is unknown");
	if (numa_num_configured_nodes() > 1)
		ok(reported, "device node -1: local node used, fallback reported");
	else
		ok(!m->fallbacks && !logcap.count[DME_LOG_WARN],
		   "device node -1 on a single-node host: local node, nothing to report");
	ok(m->node_wanted >= 0 && m->node_actual == m->node_wanted, "device node -1: placed");
	dme_mem_free(m);

	m = alloc_with(DME_NUMA_DEVICE, 0, 0, DME_HUGEPAGE_NONE, &ret);
	ok(!ret && m && m->node_wanted == 0 && m->node_actual == 0 && !m->fallbacks,
	   "device on node 0: placed on 0");
	dme_mem_free(m);

	/* a device on a node without memory (here: one past the last node) */
	logcap_reset();
	m = alloc_with(DME_NUMA_DEVICE, numa_max_node() + 1, 0, DME_HUGEPAGE_NONE, &ret);
	ok(!ret && m && m->node_wanted >= 0 && m->node_actual == m->node_wanted &&
	       (m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_NODE_UNKNOWN)) &&
	       strstr(logcap.all, "has no memory"),
	   "device on a node without memory: local node, node_unknown reported");
	dme_mem_free(m);
}

static void test_interleave(void)
{
	int ret;
	struct dme_mem *m = alloc_with(DME_NUMA_INTERLEAVE, -1, 0, DME_HUGEPAGE_NONE, &ret);
	ok_eq(ret, 0, "interleave: allocated");
	if (!m)
		return;
	ok_eq(m->node_wanted, -1, "interleave: no single node wanted");
	ok_eq(policy_of(m->va), MPOL_INTERLEAVE, "interleave: MPOL_INTERLEAVE applied");
	ok(!m->pages_misplaced && !m->fallbacks, "interleave: nothing misplaced");
	if (numa_num_configured_nodes() == 1)
		ok_eq(m->node_actual, 0, "interleave on one node: every page on node 0");
	dme_mem_free(m);
}

static void test_bad_node(void)
{
	int ret;
	struct dme_mem *m;
	logcap_reset();
	m = alloc_with(DME_NUMA_NODE, numa_max_node() + 1, 0, DME_HUGEPAGE_NONE, &ret);
	ok(ret == -EINVAL && !m, "node beyond the last: -EINVAL");
	ok(strstr(logcap.last, "does not exist") && strstr(logcap.last, "nodes with memory: "),
	   "node beyond the last: message lists the nodes");
	m = alloc_with(DME_NUMA_NODE, -1, 0, DME_HUGEPAGE_NONE, &ret);
	ok(ret == -EINVAL && !m && strstr(logcap.last, "needs a node number"),
	   "DME_NUMA=<node> without a node: -EINVAL");
	m = alloc_with(DME_NUMA_NODE, 5000, 0, DME_HUGEPAGE_NONE, &ret);
	ok(ret == -EINVAL && !m, "node 5000: -EINVAL");
	m = alloc_with((enum dme_numa_policy)42, 0, 0, DME_HUGEPAGE_NONE, &ret);
	ok(ret == -EINVAL && !m, "unknown policy: -EINVAL");
}

/* A second node is not available here: verify against a node the pages are
 * not on, to check how a misplacement is counted and reported. */
static void test_misplaced_report(void)
{
	int ret;
	struct dme_mem *m =
	    alloc_with(DME_NUMA_NODE, 0, DME_MEM_F_NO_VERIFY, DME_HUGEPAGE_NONE, &ret);
	if (!m) {
		ok(0, "misplaced: allocated");
		return;
	}
	int other = numa_max_node() + 1;
	struct pin_place pl = {.node = other, .apply = true};
	struct dme_mem_stats a, b;
	dme_mem_stats(&a);
	logcap_reset();
	pin_place_verify(m, &pl);
	dme_mem_stats(&b);
	ok_eq(m->pages_misplaced, m->len / m->page_size,
	      "misplaced: every page counted off node %d", other);
	ok(m->node_actual == 0, "misplaced: node_actual is where they are");
	ok((m->fallbacks & DME_MEM_FB_BIT(DME_MEM_FB_MISPLACED)) &&
	       b.fallbacks[DME_MEM_FB_MISPLACED] == a.fallbacks[DME_MEM_FB_MISPLACED] + 1,
	   "misplaced: recorded and counted");
	ok(strstr(logcap.last, "landed off node") != NULL, "misplaced: warned");
	dme_mem_free(m);
}

static void test_hugetlb_on_node(void)
{
	struct hp_res r;
	if (!hp_reserve(&r, 0, 2048, 2)) {
		tap_skip("cannot reserve 2 MiB pages", "hugetlb node 0");
		return;
	}
	int ret;
	struct dme_mem *m =
	    alloc_with(DME_NUMA_NODE, 0, DME_MEM_F_NUMA_BIND, DME_HUGEPAGE_2M, &ret);
	ok(!ret && m && m->source == DME_MEM_SRC_HUGETLB_MEMFD && m->node_actual == 0 &&
	       all_pages_on(m, 0),
	   "hugetlb bound to node 0: placed and verified");
	dme_mem_free(m);
	hp_release(&r);
}

/* Compare dme_pci_numa_node() with sysfs for every PCI device of this machine. */
static void test_pci_node(void)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	int checked = 0, good = 0;
	char first[64] = "";
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[300];
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/numa_node", e->d_name);
		FILE *f = fopen(path, "re");
		int want = -7, got = -9;
		if (f) {
			if (fscanf(f, "%d", &want) != 1)
				want = -7;
			fclose(f);
		}
		if (want < -1)
			continue;
		checked++;
		good += !dme_pci_numa_node(e->d_name, &got) && got == (want < 0 ? -1 : want);
		if (!first[0])
			snprintf(first, sizeof(first), "%.60s", e->d_name);
	}
	if (d)
		closedir(d);
	if (!checked) {
		tap_skip("no PCI devices", "pci node");
	} else {
		ok(good == checked, "pci node: matches sysfs for all %d devices", checked);
		int a = -5, b = -6;
		ok(!dme_pci_numa_node(first, &a) && !dme_pci_numa_node(first + 5, &b) && a == b,
		   "pci node: short form %s == long form", first + 5);
		char upper[64];
		for (size_t i = 0; i <= strlen(first); i++)
			upper[i] =
			    (char)(first[i] >= 'a' && first[i] <= 'f' ? first[i] - 32 : first[i]);
		ok(!dme_pci_numa_node(upper, &b) && a == b, "pci node: upper-case hex accepted");
	}
	int node = 77;
	static const char *const bad[] = {"",
					  "../../../etc",
					  "0000:00:00.0/../..",
					  "0000:100:00.0",
					  "zz:00.0",
					  "00:00.8",
					  "00:20.0",
					  "0000:00:00.0 ",
					  "10000:00:00.0",
					  "/dev/vfio/devices/foo",
					  "/dev/vfio/devices/vfio1/../x"};
	int nbad = 0;
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		nbad += dme_pci_numa_node(bad[i], &node) == -EINVAL;
	ok(nbad == (int)ARRAY_LEN(bad) && node == 77, "pci node: malformed names -EINVAL");
	ok_eq(dme_pci_numa_node(NULL, &node), -EINVAL, "pci node: NULL -EINVAL");
	logcap_reset();
	ok(dme_pci_numa_node("0000:ff:1f.7", &node) == -ENODEV && node == 77 &&
	       strstr(logcap.last, "0000:ff:1f.7"),
	   "pci node: absent device -ENODEV, named in the message");
	ok_eq(dme_pci_numa_node("/dev/vfio/devices/vfio4000", &node), -ENODEV,
	      "pci node: absent VFIO cdev -ENODEV");
}

static void test_params_from_config(void)
{
	struct dme_config cfg;
	struct dme_mem_params p;
	dme_config_init(&cfg);
	ok_eq(dme_mem_params_from_config(&p, &cfg, 4096), 0, "config defaults: ok");
	ok(p.len == 4096 && p.hugepage == DME_HUGEPAGE_AUTO && p.numa == DME_NUMA_DEVICE &&
	       p.node == -1 && !p.mlock && !p.flags,
	   "config defaults: auto pages, device policy without a device -> node -1");
	ok(!dme_config_set(&cfg, "DME_NUMA", "0") && !dme_config_set(&cfg, "DME_HUGEPAGE", "thp") &&
	       !dme_config_set(&cfg, "DME_MLOCK", "1"),
	   "config: DME_NUMA=0 DME_HUGEPAGE=thp DME_MLOCK=1");
	ok(!dme_mem_params_from_config(&p, &cfg, 1 << 20) && p.numa == DME_NUMA_NODE &&
	       p.node == 0 && p.hugepage == DME_HUGEPAGE_THP && p.mlock,
	   "config: params follow the variables");

	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	char dev[64] = "";
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(dev, sizeof(dev), "%.60s", e->d_name);
			break;
		}
	if (d)
		closedir(d);
	dme_config_init(&cfg);
	if (dev[0] && !dme_config_set(&cfg, "DME_DEVICE", dev)) {
		int want = -3;
		dme_pci_numa_node(dev, &want);
		ok(!dme_mem_params_from_config(&p, &cfg, 4096) && p.node == want,
		   "config: DME_NUMA=device takes the node of %s (%d)", dev, want);
	}
	dme_config_init(&cfg);
	dme_config_set(&cfg, "DME_DEVICE", "0000:ff:1f.7");
	p.len = 1234;
	ok(dme_mem_params_from_config(&p, &cfg, 4096) == -ENODEV && p.len == 1234,
	   "config: absent device -ENODEV, params untouched");
}

int main(void)
{
	if (numa_available() < 0)
		tap_skip_all("the kernel has no NUMA support");
	logcap_install();
	for (int n = 0; n <= numa_max_node(); n++)
		if (numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)n))
			test_node_policy(n);
	test_local();
	test_device_unknown();
	test_interleave();
	test_bad_node();
	test_misplaced_report();
	test_hugetlb_on_node();
	test_pci_node();
	test_params_from_config();
	return tap_done();
}
