/* SPDX-License-Identifier: MIT */
/*
 * cmd_demo.c - `dme demo [--json]`: dme's main job end to end on the best
 * backend present (iommufd or vfio with DME_DEVICE, else the simulator):
 * DMA memory from pin/, a batch of buffers registered with one map call per
 * contiguous run, translation, and - on the simulator - a device that writes
 * and reads every buffer through the IO page table, a read-only transmit
 * buffer the device cannot write, then teardown with the invariants checked.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <dme/engine.h>
#include <dme/mem.h>
#include <dme/sim.h>

#include "cli.h"

#define BUF 4096u
#define NBUF 512u

extern char **environ;

struct demo {
	struct dme_engine *e;
	struct dme_dma_mem dma;
	uint8_t *plain;
	uint64_t batch_calls;
	unsigned dma_checked, dma_bad;
	int ro_write;
	struct dme_engine_stats peak;
	size_t page_size;
};

static int fail(const char *what, int ret)
{
	fprintf(stderr, "dme demo: %s: %s\n", what, strerror(-ret));
	return CLI_EXIT_FAIL;
}

/* On the simulator: the device writes a pattern into every buffer through
 * its IOVA, the CPU checks it, the device reads it back. */
static void device_dma(struct demo *d, struct dme_sim *sim, uint8_t *base, unsigned n)
{
	uint8_t pat[BUF], back[BUF];
	for (unsigned i = 0; i < n; i++) {
		uint64_t iova;
		memset(pat, (int)(i * 7 + 1), sizeof(pat));
		if (dme_vtoiova(d->e, base + (size_t)i * BUF, &iova) ||
		    dme_sim_dma_write(sim, iova, pat, BUF) ||
		    memcmp(base + (size_t)i * BUF, pat, BUF) ||
		    dme_sim_dma_read(sim, iova, back, BUF) || memcmp(back, pat, BUF))
			d->dma_bad++;
		d->dma_checked++;
	}
}

int cmd_demo(int argc, char **argv)
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
			return cli_help(&cli_demo);
		default:
			return cli_bad_option(&cli_demo, argv, c);
		}
	}
	if (optind < argc)
		return cli_usage_error(&cli_demo, "unexpected argument '%s'", argv[optind]);
	struct dme_config cfg;
	dme_config_init(&cfg);
	if (dme_config_apply_env(&cfg, environ))
		return CLI_EXIT_FAIL;
	struct demo d = {0};
	int ret = dme_engine_open(&cfg, &d.e);
	if (ret)
		return fail("opening an engine", ret);
	struct dme_sim *sim = dme_engine_sim(d.e);

	/* 1. DMA memory: hugepages where possible, mapped congruently */
	ret = dme_dma_alloc(d.e, 4u << 20, DME_MAP_RW, &d.dma);
	if (ret) {
		dme_engine_close(d.e);
		return fail("allocating DMA memory", ret);
	}
	d.page_size = d.dma.page_size;
	/* 2. buffers inside it: references on the existing mapping, no map call */
	struct dme_region_req *q = calloc(NBUF, sizeof(*q));
	d.plain = mmap(NULL, NBUF * BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!q || d.plain == MAP_FAILED) {
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < NBUF; i++)
		q[i] = (struct dme_region_req){(uint8_t *)d.dma.va + (size_t)i * BUF, BUF, DME_MAP_RW, 0};
	ret = dme_register_batch(d.e, q, NBUF);
	if (ret)
		goto out;
	/* 3. caller memory: 512 buffers in shuffled order, one contiguous run */
	struct dme_engine_stats before;
	dme_engine_stats(d.e, &before);
	for (unsigned i = 0; i < NBUF; i++)
		q[i] = (struct dme_region_req){d.plain + (size_t)((i * 211) % NBUF) * BUF, BUF, DME_MAP_RW, 0};
	ret = dme_register_batch(d.e, q, NBUF);
	if (ret)
		goto out;
	dme_engine_stats(d.e, &d.peak);
	d.batch_calls = d.peak.map_calls - before.map_calls;
	/* 4. the device at work (simulator only: a real device needs a driver) */
	if (sim) {
		device_dma(&d, sim, d.dma.va, NBUF);
		device_dma(&d, sim, d.plain, NBUF);
		/* a transmit buffer: the device may read it, never write it */
		uint8_t *ro = mmap(NULL, BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint64_t iova;
		if (ro != MAP_FAILED && !dme_register(d.e, ro, BUF, DME_MAP_READ, &iova)) {
			uint8_t x[64] = {0};
			d.ro_write = dme_sim_dma_write(sim, iova, x, sizeof(x));
			dme_unregister(d.e, ro, BUF);
			dme_engine_flush(d.e);
		}
		if (ro != MAP_FAILED)
			munmap(ro, BUF);
	}
	/* 5. teardown */
	for (unsigned i = 0; i < NBUF; i++) {
		dme_unregister(d.e, (uint8_t *)d.dma.va + (size_t)i * BUF, BUF);
		dme_unregister(d.e, d.plain + (size_t)i * BUF, BUF);
	}
	ret = dme_engine_flush(d.e);
out:
	if (d.dma.va)
		dme_dma_free(d.e, &d.dma);
	int check = dme_engine_check(d.e);
	if (json) {
		struct jw w;
		jw_begin(&w, stdout);
		jw_obj(&w, NULL);
		jw_str(&w, "backend", dme_engine_backend_name(d.e));
		jw_u64(&w, "dma_page_size", d.page_size);
		jw_u64(&w, "buffers", 2 * NBUF);
		jw_u64(&w, "map_calls_for_512_buffers", d.batch_calls);
		jw_u64(&w, "device_buffers_checked", d.dma_checked);
		jw_u64(&w, "device_buffers_bad", d.dma_bad);
		jw_bool(&w, "readonly_write_blocked", sim ? d.ro_write == -EFAULT : false);
		jw_u64(&w, "peak_live_mappings", d.peak.live_mappings);
		demo_stats_json(&w, "final", d.e);
		jw_obj_end(&w);
		jw_end(&w);
	} else {
		printf("backend            %s\n", dme_engine_backend_name(d.e));
		printf("DMA memory         4 MiB on %zu KiB pages\n", d.page_size >> 10);
		printf("buffers            %u registered in two batches (%u inside DMA memory, %u caller-owned)\n",
		       2 * NBUF, NBUF, NBUF);
		printf("map calls          %" PRIu64 " for %u shuffled caller buffers (one contiguous run)\n",
		       d.batch_calls, NBUF);
		printf("cache hits         %" PRIu64 " (buffers inside an existing mapping: no kernel call)\n",
		       d.peak.cache_hits);
		if (sim) {
			printf("device DMA         %u buffers written and read back through the IOMMU, %u bad\n",
			       d.dma_checked, d.dma_bad);
			printf("read-only buffer   device write %s\n",
			       d.ro_write == -EFAULT ? "blocked (fault recorded)" : "NOT blocked");
		} else {
			printf("device DMA         needs a device driver (see examples/); mappings only\n");
		}
		struct dme_engine_stats st;
		dme_engine_stats(d.e, &st);
		printf("after teardown     %" PRIu64 " live mappings, %" PRIu64 " pinned bytes, %" PRIu64 " maps - %" PRIu64 " unmaps\n",
		       st.live_mappings, st.pinned_bytes, st.map_calls, st.unmap_calls);
		printf("invariants         %s\n", check ? "BROKEN" : "hold");
	}
	free(q);
	if (d.plain && d.plain != MAP_FAILED)
		munmap(d.plain, NBUF * BUF);
	bool good = !ret && !check && !d.dma_bad && (!sim || d.ro_write == -EFAULT);
	dme_engine_close(d.e);
	if (ret)
		fail("demo", ret);
	return good ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

const struct cli_cmd cli_demo = {
	.name = "demo",
	.args = "[--json]",
	.summary = "map DMA memory and buffers on the best backend; device DMA on the simulator",
	.help = "dme's main job end to end, on the backend DME_BACKEND and DME_DEVICE select\n"
		"(the built-in simulator when no device is named): 4 MiB of DMA memory, 512\n"
		"buffers inside it and 512 caller buffers registered in two batches (one map\n"
		"call per contiguous run), translation, and on the simulator a device that\n"
		"writes and reads every buffer through the IO page table and cannot write a\n"
		"read-only one; then teardown with the engine's invariants checked. Exit\n"
		"status 1 when the engine cannot be opened or a step or check fails.\n"
		"\n"
		"options:\n"
		"      --json  one JSON object instead of the table\n"
		"  -h, --help  this text\n",
	.run = cmd_demo,
};
