/* SPDX-License-Identifier: MIT */
/*
 * test-caller-mem: caller memory is validated on the default simulator
 * engine as the kernel's pin validates it on iommufd/vfio, below the 2 MiB
 * at which the engine inspects memory itself. Through the public API only:
 * each bad kind of memory is refused with the kernel's errno and a message
 * naming the range and the reason, leaves nothing registered, and the engine
 * stays usable (register, lookup, device DMA, unregister, dme_engine_check()).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <dme/engine.h>
#include <dme/sim.h>

#include "logcap.h"
#include "tap.h"

#define PG 4096ull

static struct dme_engine *e;

static void *map(size_t len, int prot)
{
	void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* A hole between two mapped pages, made right before it is used. */
static char *hole(void)
{
	char *p = map(3 * PG, PROT_READ | PROT_WRITE);
	munmap(p + PG, PG);
	return p + PG;
}

/* The engine still works: a fresh buffer registers, translates both ways,
 * carries a device write and read, unregisters; the books balance. */
static bool usable(void)
{
	struct dme_sim *sim = dme_engine_sim(e);
	char *buf = map(PG, PROT_READ | PROT_WRITE), back[8];
	uint64_t iova = 0, x = 0;
	void *va = NULL;
	bool good = buf && !dme_register(e, buf, PG, DME_MAP_RW, &iova) &&
		    !dme_vtoiova(e, buf + 100, &x) && x == iova + 100 &&
		    !dme_iovatov(e, iova + 100, &va) && va == buf + 100 &&
		    !dme_sim_dma_write(sim, iova + 8, "written", 8) &&
		    !strcmp(buf + 8, "written") && !dme_sim_dma_read(sim, iova + 8, back, 8) &&
		    !strcmp(back, "written") && !dme_unregister(e, buf, PG) && !dme_engine_flush(e);
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	good = good && st.map_calls - st.unmap_calls == st.live_mappings &&
	       st.pinned_bytes == st.registry_bytes && !dme_engine_check(e);
	if (buf)
		munmap(buf, PG);
	return good;
}

/*
 * One refusal: dme_register(@va, @len, @flags) fails with @want, the log
 * names [@bad, and says @why, no byte of the range translates, and the
 * engine is usable afterwards.
 */
static void refused(const char *what, void *va, size_t len, unsigned flags, int want, void *bad,
		    const char *why)
{
	char at[40];
	uint64_t iova = 0x5a5a, x;
	snprintf(at, sizeof(at), "[%#" PRIx64 ",", (uint64_t)(uintptr_t)bad);
	logcap_reset();
	int got = dme_register(e, va, len, flags, &iova);
	ok_eq(got, want, "%s: refused with %s", what, strerror(-want));
	ok(strstr(logcap.all, at) && strstr(logcap.all, why), "%s: the log names %s and says '%s'",
	   what, at, why);
	if (!strstr(logcap.all, at) || !strstr(logcap.all, why))
		diag("  log: %s", logcap.all);
	bool none = iova == 0x5a5a;
	for (uint64_t off = 0; off < len; off += PG)
		none &= dme_vtoiova(e, (char *)va + off, &x) == -ENOENT;
	ok(none, "%s: nothing registered, the IOVA out parameter untouched", what);
	ok(usable(),
	   "%s: the engine is usable afterwards (register, lookup, DMA, unregister, "
	   "dme_engine_check)",
	   what);
}

static void test_null(void)
{
	refused("NULL", NULL, PG, DME_MAP_RW, -EFAULT, NULL, "not mapped");
}

static void test_hole(void)
{
	char *h = hole();
	refused("a hole (mmap then munmap)", h, PG, DME_MAP_RW, -EFAULT, h, "not mapped");
}

static void test_prot_none(void)
{
	char *p = map(PG, PROT_NONE);
	refused("PROT_NONE for a device that writes", p, PG, DME_MAP_RW, -EFAULT, p,
		"not writable");
	refused("PROT_NONE for a device that reads", p, PG, DME_MAP_READ, -EFAULT, p,
		"not readable");
	munmap(p, PG);
}

static void test_read_only(void)
{
	char *p = map(PG, PROT_READ);
	refused("PROT_READ memory with DME_MAP_RW", p, PG, DME_MAP_RW, -EFAULT, p, "not writable");

	uint64_t iova, x;
	logcap_reset();
	ok(dme_register(e, p, PG, DME_MAP_READ, &iova) == 0 && !dme_vtoiova(e, p, &x) &&
	       x == iova && logcap.count[DME_LOG_ERR] == 0,
	   "PROT_READ memory with DME_MAP_READ: registered, translates, nothing logged");
	struct dme_sim *sim = dme_engine_sim(e);
	char back[4];
	dme_log_set_hook(NULL, NULL, DME_LOG_NONE); /* the fault below is expected */
	ok(!dme_sim_dma_read(sim, iova, back, 4) && dme_sim_dma_write(sim, iova, "x", 1) == -EFAULT,
	   "PROT_READ memory with DME_MAP_READ: the device reads it and cannot write it");
	logcap_install();
	ok(dme_unregister(e, p, PG) == 0 && usable(),
	   "PROT_READ memory with DME_MAP_READ: unregistered, the engine usable");
	dme_engine_flush(e);
	munmap(p, PG);
}

static void test_vvar(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	uint64_t vvar = 0;
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "[vvar]"))
			sscanf(line, "%" SCNx64, &vvar);
	if (f)
		fclose(f);
	if (!vvar) {
		ok(1, "[vvar] # SKIP no [vvar] in /proc/self/maps");
		return;
	}
	void *v = (void *)(uintptr_t)vvar;
	refused("[vvar] for a device that reads", v, PG, DME_MAP_READ, -EFAULT, v, "[vvar]");
}

static void test_straddle(void)
{
	char *p = map(2 * PG, PROT_READ | PROT_WRITE);
	munmap(p + PG, PG);
	refused("a mapped page then an unmapped one", p, 2 * PG, DME_MAP_RW, -EFAULT, p + PG,
		"not mapped");
	munmap(p, PG);
}

static void test_batch(void)
{
	char *a = map(PG, PROT_READ | PROT_WRITE), *c = map(PG, PROT_READ | PROT_WRITE);
	char *h = hole();
	struct dme_region_req q[3] = {
	    {a, PG, DME_MAP_RW, 0}, {h, PG, DME_MAP_RW, 0}, {c, PG, DME_MAP_RW, 0}};
	uint64_t x;
	char at[40];
	snprintf(at, sizeof(at), "[%#" PRIx64 ",", (uint64_t)(uintptr_t)h);
	logcap_reset();
	ok_eq(dme_register_batch(e, q, 3), -EFAULT,
	      "a batch with a hole among good buffers: refused with -EFAULT");
	ok(strstr(logcap.all, at) && strstr(logcap.all, "not mapped"),
	   "a batch with a hole: the log names the hole %s", at);
	ok(dme_vtoiova(e, a, &x) == -ENOENT && dme_vtoiova(e, c, &x) == -ENOENT,
	   "a batch with a hole: all or nothing, the good buffers are not registered either");
	ok(usable(), "a batch with a hole: the engine is usable afterwards");
	munmap(a, PG);
	munmap(c, PG);
}

int main(void)
{
	logcap_install();
	struct dme_config c;
	dme_config_init(&c);
	c.backend = DME_BACKEND_SIM;
	if (dme_engine_open(&c, &e) || !dme_engine_sim(e)) {
		ok(0, "open the default simulator engine");
		return tap_done();
	}
	ok(usable(), "the default simulator engine registers good memory");
	test_null();
	test_hole();
	test_prot_none();
	test_read_only();
	test_vvar();
	test_straddle();
	test_batch();
	dme_engine_close(e);
	return tap_done();
}
