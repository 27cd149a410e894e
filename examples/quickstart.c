/* SPDX-License-Identifier: MIT */
/*
 * quickstart.c - the README's "Using the library" as a whole program, built
 * the way an embedder builds: libdme.so and <dme/dme.h> only. It opens an
 * engine from the DME_* variables (the built-in simulator when DME_DEVICE
 * names no device), allocates DMA memory, translates a pointer into it,
 * registers a buffer of its own for device reads, and tears everything down.
 *
 *	DME_DEVICE=0000:00:03.0 build/examples/quickstart
 *
 * Exit status: 0 success, 1 failure (the library's message is on stderr).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dme/dme.h>

static int fail(const char *what, int ret)
{
	fprintf(stderr, "quickstart: %s: %s\n", what, strerror(-ret));
	return 1;
}

int main(void)
{
	struct dme_engine *e;
	struct dme_dma_mem m;
	uint64_t iova;
	int ret, status = 1;

	ret = dme_engine_open(NULL, &e); /* config from DME_* variables */
	if (ret)
		return fail("dme_engine_open", ret);
	printf("backend %s\n", dme_engine_backend_name(e));

	/* hugepages on the device's node, mapped, IOVA == VA mod page size */
	ret = dme_dma_alloc(e, 8 << 20, DME_MAP_RW, &m);
	if (ret) {
		fail("dme_dma_alloc", ret);
		goto out_close;
	}
	ret = dme_vtoiova(e, (char *)m.va + 4096, &iova); /* lock-free, no system call */
	if (ret) {
		fail("dme_vtoiova", ret);
		goto out_free_dma;
	}
	printf("DMA memory: %zu bytes at IOVA 0x%llx, +4096 at 0x%llx\n", m.len,
	       (unsigned long long)m.iova, (unsigned long long)iova);

	/* caller memory, read-only for the device */
	size_t len = 64 << 10;
	void *buf = aligned_alloc(4096, len);
	if (!buf) {
		fail("aligned_alloc", -ENOMEM);
		goto out_free_dma;
	}
	memset(buf, 0x5a, len);
	ret = dme_register(e, buf, len, DME_MAP_READ, &iova);
	if (ret) {
		fail("dme_register", ret);
		free(buf);
		goto out_free_dma;
	}
	printf("buffer: %zu bytes at IOVA 0x%llx\n", len, (unsigned long long)iova);
	/* the mapping stays (idle) until evicted; memory about to go back to
	 * malloc must not stay mapped, so flush unmaps it now */
	ret = dme_unregister(e, buf, len);
	if (!ret)
		ret = dme_engine_flush(e);
	if (ret) {
		fail("dme_unregister + dme_engine_flush", ret);
		goto out_free_dma; /* buf may still be mapped: leak it */
	}
	free(buf);
	status = 0;

out_free_dma:
	ret = dme_dma_free(e, &m);
	if (ret && !status)
		status = fail("dme_dma_free", ret);
out_close:
	dme_engine_close(e);
	return status;
}
