/* SPDX-License-Identifier: MIT */
/*
 * numa.c - NUMA placement of DMA memory (libnuma + mbind/move_pages) and the
 * NUMA node of a device (sysfs).
 *
 * A policy resolves to one wanted node (or interleave), is applied with
 * mbind() before the first fault so pages are born on the right node, and is
 * checked after prefault with move_pages() in query mode, one query per
 * backing page (about 50 ms per GiB of 4 KiB pages; a host with a single
 * memory node skips it, as there is nowhere else for a page to be). A device whose node the
 * platform does not report (-1) gets the local node: a reported fallback only when there is more
 * than one node to choose from. Thread-safe; no state of its own.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <numa.h>
#include <numaif.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "compiler.h"
#include "log_internal.h"
#include "pin.h"

#define MASK_BITS 1024 /* nodes an mbind mask can name (the kernel's MAX_NUMNODES cap) */
#define VERIFY_CHUNK 512

static bool node_has_memory(int node)
{
	return node >= 0 && node <= numa_max_node() && node < MASK_BITS &&
	       numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)node);
}

static void list_nodes(char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = 0;
	for (int n = 0; n <= numa_max_node() && off < len; n++)
		if (node_has_memory(n))
			off += (size_t)snprintf(buf + off, len - off, "%s%d", off ? "," : "", n);
}

static int local_node(void)
{
	int cpu = sched_getcpu();
	int node = cpu >= 0 ? numa_node_of_cpu(cpu) : -1;
	return node >= 0 ? node : 0;
}

int pin_place_resolve(const struct dme_mem_params *p, struct dme_mem *m, struct pin_place *pl)
{
	struct pin_place r = {.node = -1, .bind = p->flags & DME_MEM_F_NUMA_BIND, .apply = true};
	char nodes[256];

	if (numa_available() < 0) {
		/* no NUMA in this kernel: there is one node, 0 */
		r.apply = false;
		if (p->numa == DME_NUMA_NODE && p->node != 0) {
			dme_err("DME_NUMA=%d: this kernel has no NUMA support, only node 0 exists",
				p->node);
			return -EINVAL;
		}
		r.node = p->numa == DME_NUMA_INTERLEAVE ? -1 : 0;
		pin_note_fallback(m, DME_MEM_FB_NUMA_UNAVAILABLE);
		dme_info("DMA memory: the kernel has no NUMA support; placement not applied");
		*pl = r;
		return 0;
	}
	switch (p->numa) {
	case DME_NUMA_NODE:
		if (p->node < 0) {
			dme_err("DME_NUMA=<node> needs a node number, got %d", p->node);
			return -EINVAL;
		}
		if (!node_has_memory(p->node)) {
			list_nodes(nodes, sizeof(nodes));
			dme_err(
			    "NUMA node %d does not exist or has no memory (nodes with memory: %s)",
			    p->node, nodes);
			return -EINVAL;
		}
		r.node = p->node;
		break;
	case DME_NUMA_DEVICE:
		if (node_has_memory(p->node)) {
			r.node = p->node;
			break;
		}
		r.node = local_node();
		if (p->node >= 0) {
			/* e.g. a device on a memory-less node: nothing to place there */
			pin_note_fallback(m, DME_MEM_FB_NODE_UNKNOWN);
			dme_warn(
			    "DMA memory: the device's NUMA node %d has no memory; placing it on "
			    "the local node %d",
			    p->node, r.node);
		} else if (numa_num_configured_nodes() > 1) {
			pin_note_fallback(m, DME_MEM_FB_NODE_UNKNOWN);
			dme_warn("DMA memory: the device's NUMA node is unknown (sysfs numa_node "
				 "is -1); placing it on the local node %d",
				 r.node);
		}
		break;
	case DME_NUMA_LOCAL:
		r.node = local_node();
		break;
	case DME_NUMA_INTERLEAVE:
		r.interleave = true;
		break;
	default:
		dme_err("unknown NUMA policy %d", (int)p->numa);
		return -EINVAL;
	}
	*pl = r;
	return 0;
}

bool pin_place_single_node(const struct pin_place *pl)
{
	return pl->apply && !pl->interleave && numa_num_configured_nodes() == 1 &&
	       node_has_memory(pl->node);
}

int pin_place_apply(void *va, size_t len, const struct pin_place *pl)
{
	unsigned long mask[MASK_BITS / (8 * sizeof(unsigned long))] = {0};
	const unsigned bpl = 8 * sizeof(unsigned long);
	int mode;

	if (!pl->apply)
		return 0;
	if (pl->interleave) {
		for (int n = 0; n <= numa_max_node() && n < MASK_BITS; n++)
			if (node_has_memory(n))
				mask[n / bpl] |= 1ul << (n % bpl);
		mode = MPOL_INTERLEAVE;
	} else {
		mask[pl->node / bpl] |= 1ul << (pl->node % bpl);
		mode = pl->bind ? MPOL_BIND : MPOL_PREFERRED;
	}
	/* maxnode is one more than the bits in the mask: the kernel drops one */
	if (mbind(va, len, mode, mask, MASK_BITS + 1, 0)) {
		int err = errno;
		dme_err("mbind(%p, %zu, %s, node %d) failed: %s", va, len,
			mode == MPOL_INTERLEAVE ? "interleave"
			: pl->bind		? "bind"
						: "preferred",
			pl->node, strerror(err));
		return -err;
	}
	return 0;
}

void pin_place_verify(struct dme_mem *m, const struct pin_place *pl)
{
	void *pages[VERIFY_CHUNK];
	int status[VERIFY_CHUNK];
	uint64_t npages = m->len / m->page_size, misplaced = 0, absent = 0;
	int first = -1;
	bool mixed = false;
	char sz[32];

	if (!pl->apply) {
		m->node_actual = 0;
		return;
	}
	for (uint64_t i = 0; i < npages;) {
		unsigned long cnt =
		    (unsigned long)(npages - i < VERIFY_CHUNK ? npages - i : VERIFY_CHUNK);
		for (unsigned long k = 0; k < cnt; k++)
			pages[k] = (char *)m->va + (i + k) * m->page_size;
		if (move_pages(0, cnt, pages, NULL, status, 0) < 0) {
			int err = errno;
			dme_warn("cannot verify the NUMA placement of DMA memory at %p: "
				 "move_pages: %s",
				 m->va, strerror(err));
			m->node_actual = -1;
			return;
		}
		for (unsigned long k = 0; k < cnt; k++) {
			int s = status[k];
			if (s < 0) {
				absent++;
				continue;
			}
			if (first < 0)
				first = s;
			else if (s != first)
				mixed = true;
			if (pl->node >= 0 && s != pl->node)
				misplaced++;
		}
		i += cnt;
	}
	m->node_actual = !mixed && !absent ? first : -1;
	m->pages_misplaced = misplaced;
	if (misplaced) {
		pin_note_fallback(m, DME_MEM_FB_MISPLACED);
		dme_warn("DMA memory at %p: %" PRIu64 " of %" PRIu64 " %s pages landed off node %d "
			 "(too little free memory there?)",
			 m->va, misplaced, npages, pin_fmt_size(m->page_size, sz, sizeof(sz)),
			 pl->node);
	}
	if (absent)
		dme_warn("DMA memory at %p: %" PRIu64 " of %" PRIu64 " pages not present after "
			 "prefault",
			 m->va, absent, npages);
}

/* "0000:00:03.0" or "00:03.0" (hex, lower or upper case) -> "0000:00:03.0". */
static int normalize_bdf(const char *s, char *out, size_t len)
{
	unsigned dom = 0, bus, dev, fn;
	int n = 0;
	size_t sl = strlen(s);

	for (size_t i = 0; i < sl; i++)
		if (!isxdigit((unsigned char)s[i]) && s[i] != ':' && s[i] != '.')
			return -EINVAL;
	if (sscanf(s, "%x:%x:%x.%x%n", &dom, &bus, &dev, &fn, &n) == 4 && (size_t)n == sl) {
		if (dom > 0xffff)
			return -EINVAL;
	} else if (sscanf(s, "%x:%x.%x%n", &bus, &dev, &fn, &n) == 3 && (size_t)n == sl) {
		dom = 0;
	} else {
		return -EINVAL;
	}
	if (bus > 0xff || dev > 0x1f || fn > 7)
		return -EINVAL;
	snprintf(out, len, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
	return 0;
}

DME_EXPORT int dme_pci_numa_node(const char *dev, int *node)
{
	static const char cdev_dir[] = "/dev/vfio/devices/";
	char path[128], name[32];
	unsigned idx;
	int n, ret;

	if (!dev)
		return -EINVAL;
	if (!strncmp(dev, cdev_dir, sizeof(cdev_dir) - 1)) {
		const char *base = dev + sizeof(cdev_dir) - 1;
		if (sscanf(base, "vfio%u%n", &idx, &n) != 1 || base[n]) {
			dme_err("'%s' is not a VFIO device cdev (expected %svfioN)", dev, cdev_dir);
			return -EINVAL;
		}
		snprintf(path, sizeof(path), "/sys/class/vfio-dev/vfio%u/device/numa_node", idx);
	} else {
		if (normalize_bdf(dev, name, sizeof(name))) {
			dme_err("'%s' is not a PCI address (expected DDDD:BB:DD.F, e.g. "
				"0000:00:03.0) or a VFIO cdev path",
				dev);
			return -EINVAL;
		}
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/numa_node", name);
	}
	ret = pin_read_int(path, &n);
	if (ret == -ENOENT) {
		dme_err("no device %s: %s does not exist", dev, path);
		return -ENODEV;
	}
	if (ret) {
		dme_err("cannot read %s: %s", path, strerror(-ret));
		return ret;
	}
	*node = n < 0 ? -1 : n;
	return 0;
}
