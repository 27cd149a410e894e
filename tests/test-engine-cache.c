/* SPDX-License-Identifier: MIT */
/*
 * test-engine-cache: the mapping cache never lies. Each case pins one
 * promise of docs/engine.md at its edge, through the public API on the
 * simulator, whose device reads memory through its IO page table exactly as
 * mapped: a cached mapping that no longer reaches the caller's memory shows
 * up as a device read of the wrong bytes.
 *   - coherence: a mapping of caller memory is never served again after
 *     munmap, mremap or MADV_DONTNEED/FREE/REMOVE of its VA range (with the
 *     memory monitor), or after its last unregister (without one);
 *   - exact registration semantics: unregister takes exactly a registered
 *     range; a failed call changes nothing; a batch never hits a mapping it
 *     replaces; dme_dma_free() and dme_share() check what they are given;
 *   - no starvation: idle and pending mappings and cached IOVAs give way;
 *   - fork() while another thread is inside the engine;
 *   - quarantine after a failed unmap; geometry after attach.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dme/engine.h>
#include <dme/sim.h>

#include "logcap.h"
#include "tap.h"

#define PG 4096ull

static struct dme_engine *open_sim_cfg(bool monitor, unsigned map_batch)
{
	struct dme_config c;
	dme_config_init(&c);
	c.backend = DME_BACKEND_SIM;
	c.cache_monitor = monitor;
	if (map_batch)
		c.map_batch = map_batch;
	struct dme_engine *e = NULL;
	if (dme_engine_open(&c, &e))
		return NULL;
	return e;
}

static uint8_t *mem(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* Does the device, reading @iova, see @len bytes equal to @va's? */
static bool device_sees(struct dme_engine *e, uint64_t iova, const void *va, size_t len)
{
	uint8_t buf[64];
	if (len > sizeof(buf))
		len = sizeof(buf);
	return dme_sim_dma_read(dme_engine_sim(e), iova, buf, len) == 0 && !memcmp(buf, va, len);
}

static uint64_t hits(struct dme_engine *e)
{
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	return st.cache_hits;
}

static uint64_t idle(struct dme_engine *e)
{
	struct dme_engine_stats st;
	dme_engine_stats(e, &st);
	return st.idle_mappings;
}

enum change { CH_MUNMAP, CH_MREMAP, CH_DONTNEED, CH_FREE, CH_REMOVE };
static const char *const change_name[] = {"munmap+mmap", "mremap+mmap", "MADV_DONTNEED",
					  "MADV_FREE", "MADV_REMOVE"};

/*
 * Register, unregister (idle), change the VA range behind the engine's back,
 * put new bytes there, register again: the device must read the new bytes.
 */
static void coherence_case(bool monitor, enum change ch)
{
	const size_t len = 16 * PG;
	struct dme_engine *e = open_sim_cfg(monitor, 0);
	const char *mode = monitor ? "monitor" : "no monitor";
	if (!e) {
		ok(0, "coherence (%s, %s): open", mode, change_name[ch]);
		return;
	}
	if (monitor && !dme_engine_cache_monitor(e)) {
		printf("ok %d - coherence (%s): %s # SKIP no userfaultfd here\n", ++tap_n, mode,
		       change_name[ch]);
		dme_engine_close(e);
		return;
	}
	uint8_t *p;
	int memfd = -1;
	if (ch == CH_REMOVE) { /* MADV_REMOVE needs shared (shmem) memory */
		memfd = memfd_create("dme-test", MFD_CLOEXEC);
		if (memfd < 0 || ftruncate(memfd, (off_t)len)) {
			ok(0, "coherence: memfd");
			return;
		}
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	} else {
		p = mem(len);
	}
	memset(p, 0x11, len);
	uint64_t iova1, iova2;
	int r1 = dme_register(e, p, len, DME_MAP_RW, &iova1);
	int u1 = dme_unregister(e, p, len);
	ok(r1 == 0 && u1 == 0 && idle(e) == (monitor ? 1u : 0u),
	   "coherence (%s, %s): unregistered caller memory is %s", mode, change_name[ch],
	   monitor ? "kept mapped, idle" : "not kept (nothing watches it)");
	uint8_t *q = p;
	switch (ch) {
	case CH_MUNMAP:
		munmap(p, len);
		q = mmap(p, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		break;
	case CH_MREMAP: {
		uint8_t *away = mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, mem(len));
		(void)away;
		q = mmap(p, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		munmap(away, len);
		break;
	}
	case CH_DONTNEED:
		madvise(p, len, MADV_DONTNEED);
		break;
	case CH_FREE:
		madvise(p, len, MADV_FREE);
		break;
	case CH_REMOVE:
		madvise(p, len, MADV_REMOVE);
		break;
	}
	if (q != p) {
		/* another thread of this process (a sanitizer's) took the freed
		 * address first: nothing to test, not a failure of dme */
		printf("ok %d - coherence (%s, %s) # SKIP the freed address was taken by another mapping\n",
		       ++tap_n, mode, change_name[ch]);
		if (q != MAP_FAILED)
			munmap(q, len);
		dme_engine_close(e);
		return;
	}
	memset(p, 0x22, len);
	uint64_t h = hits(e);
	int r2 = dme_register(e, p, len, DME_MAP_RW, &iova2);
	ok(r2 == 0 && device_sees(e, iova2, p, 64),
	   "coherence (%s, %s): the device reads the new bytes through the new registration", mode,
	   change_name[ch]);
	ok(hits(e) == h, "coherence (%s, %s): and it was not served from the cache", mode,
	   change_name[ch]);
	ok(dme_engine_check(e) == 0, "coherence (%s, %s): invariants hold", mode, change_name[ch]);
	dme_unregister(e, p, len);
	dme_engine_close(e);
	munmap(p, len);
	if (memfd >= 0)
		close(memfd);
}

static void test_coherence(void)
{
	for (int ch = CH_MUNMAP; ch <= CH_REMOVE; ch++) {
		coherence_case(true, (enum change)ch);
		coherence_case(false, (enum change)ch);
	}

	/* with the monitor, untouched memory is still served from the cache */
	struct dme_engine *e = open_sim_cfg(true, 0);
	if (e && dme_engine_cache_monitor(e)) {
		uint8_t *p = mem(8 * PG);
		memset(p, 0x5a, 8 * PG);
		uint64_t a, b;
		dme_register(e, p, 8 * PG, DME_MAP_RW, &a);
		dme_unregister(e, p, 8 * PG);
		uint64_t h = hits(e);
		ok(dme_register(e, p, 8 * PG, DME_MAP_RW, &b) == 0 && a == b && hits(e) == h + 1,
		   "monitor: an unchanged idle mapping is a cache hit (same IOVA)");
		dme_unregister(e, p, 8 * PG);
		munmap(p, 8 * PG);
	} else {
		printf("ok %d - monitor: cache hit # SKIP no userfaultfd here\n", ++tap_n);
	}
	if (e)
		dme_engine_close(e);

	/* without the monitor, DMA memory (dme's own) is still cached */
	e = open_sim_cfg(false, 0);
	struct dme_dma_mem d;
	if (e && dme_dma_alloc(e, 64 * PG, DME_MAP_RW, &d) == 0) {
		uint64_t a, b;
		uint64_t h = hits(e);
		int r = dme_register(e, (char *)d.va + PG, PG, DME_MAP_RW, &a);
		dme_unregister(e, (char *)d.va + PG, PG);
		ok(r == 0 && dme_register(e, (char *)d.va + PG, PG, DME_MAP_RW, &b) == 0 &&
		       a == b && hits(e) == h + 2,
		   "no monitor: DMA memory is still served from the cache");
		dme_unregister(e, (char *)d.va + PG, PG);
		ok_eq(dme_dma_free(e, &d), 0, "no monitor: DMA memory freed");
	} else {
		ok(0, "no monitor: DMA memory");
	}
	dme_engine_close(e);
}

static void test_exact_unregister(void)
{
	struct dme_engine *e = open_sim_cfg(true, 0);
	uint8_t *p = mem(16 * PG);
	uint64_t iova, x;
	ok_eq(dme_register(e, p, 2 * PG, DME_MAP_RW, &iova), 0, "exact: register 2 pages");
	logcap_reset();
	ok(dme_unregister(e, p, PG) == -EINVAL && logcap.count[DME_LOG_ERR] == 1,
	   "exact: the first page alone is -EINVAL with a message");
	ok_eq(dme_unregister(e, p + PG, PG), -EINVAL, "exact: the second page alone is -EINVAL");
	ok_eq(dme_unregister(e, p, 3 * PG), -EINVAL,
	      "exact: a length past the registration is -EINVAL");
	ok_eq(dme_unregister(e, p + 1, 2 * PG), -EINVAL, "exact: an unaligned range is -EINVAL");
	ok(dme_vtoiova(e, p + PG, &x) == 0 && x == iova + PG,
	   "exact: after the refused calls both pages still translate");
	ok_eq(dme_unregister(e, p, 2 * PG), 0, "exact: the registered range is accepted");
	ok_eq(dme_unregister(e, p, 2 * PG), -EINVAL, "exact: a second unregister is -EINVAL");

	/* two owners of one range: each unregister drops exactly one */
	ok(dme_register(e, p + 4 * PG, PG, DME_MAP_RW, &x) == 0 &&
	       dme_register(e, p + 4 * PG, PG, DME_MAP_RW, &x) == 0,
	   "exact: the same page registered twice");
	ok(dme_unregister(e, p + 4 * PG, PG) == 0 && dme_unregister(e, p + 4 * PG, PG) == 0 &&
	       dme_unregister(e, p + 4 * PG, PG) == -EINVAL,
	   "exact: two unregisters succeed, the third is -EINVAL");

	/* a batch of two neighbours: their union is not a registration */
	struct dme_region_req q[2] = {{p + 8 * PG, PG, DME_MAP_RW, 0},
				      {p + 9 * PG, PG, DME_MAP_RW, 0}};
	ok_eq(dme_register_batch(e, q, 2), 0, "exact: a batch of two neighbouring pages");
	ok_eq(dme_unregister(e, p + 8 * PG, 2 * PG), -EINVAL, "exact: their union is -EINVAL");
	ok_eq(dme_unregister(e, p + 8 * PG, PG), 0, "exact: the first buffer");
	ok_eq(dme_unregister(e, p + 8 * PG, PG), -EINVAL,
	      "exact: the first again is -EINVAL (it does not drop the second's)");
	ok(dme_vtoiova(e, p + 9 * PG, &x) == 0 && x == q[1].iova,
	   "exact: the second buffer still translates");
	ok_eq(dme_engine_flush(e), 0, "exact: flush");
	ok(dme_vtoiova(e, p + 9 * PG, &x) == 0 && x == q[1].iova &&
	       device_sees(e, x, p + 9 * PG, 64),
	   "exact: after a flush the second buffer is still mapped for the device");
	ok_eq(dme_unregister(e, p + 9 * PG, PG), 0, "exact: the second buffer");
	ok(dme_engine_check(e) == 0, "exact: invariants hold");
	dme_engine_close(e);
	munmap(p, 16 * PG);
}

/*
 * A batch of two neighbours is one mapping. Unregister the first, replace
 * its memory, register it again: the old mapping (still held by the second
 * buffer) must not be served for it.
 */
static void partial_case(bool monitor, bool replace)
{
	struct dme_engine *e = open_sim_cfg(monitor, 0);
	const char *mode = monitor ? "monitor" : "no monitor";
	uint8_t *p = mem(4 * PG);
	memset(p, 0x41, 4 * PG);
	struct dme_region_req q[2] = {{p, PG, DME_MAP_RW, 0}, {p + PG, PG, DME_MAP_RW, 0}};
	dme_register_batch(e, q, 2);
	dme_unregister(e, p, PG);
	if (replace) {
		munmap(p, PG);
		mmap(p, PG, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	}
	memset(p, 0x42, PG);
	uint64_t x = 0, h = hits(e);
	logcap_reset();
	int r = dme_register(e, p, PG, DME_MAP_RW, &x);
	if (replace || !monitor)
		/* the simulator's device reaches memory by VA, so a stale mapping
		 * reads the new bytes too: the cache-hit counter tells */
		ok((r == 0 && hits(e) == h && x != q[0].iova && device_sees(e, x, p, 64)) ||
		       (r == -EBUSY && logcap.count[DME_LOG_ERR]),
		   "partial (%s, %s): re-registering the first buffer never returns the old "
		   "mapping (%d)",
		   mode, replace ? "memory replaced" : "same memory", r);
	else
		ok(r == 0 && x == q[0].iova && device_sees(e, x, p, 64),
		   "partial (%s, same memory): the first buffer is served again by its mapping",
		   mode);
	if (!r)
		dme_unregister(e, p, PG);
	dme_unregister(e, p + PG, PG);
	ok(dme_engine_check(e) == 0, "partial (%s): invariants hold", mode);
	dme_engine_close(e);
	munmap(p, 4 * PG);
}

static void test_failed_call_changes_nothing(void)
{
	struct dme_engine *e = open_sim_cfg(true, 0);
	if (!dme_engine_cache_monitor(e)) {
		printf("ok %d - failed call # SKIP no userfaultfd here (no idle caller mappings)\n",
		       ++tap_n);
		dme_engine_close(e);
		return;
	}
	uint8_t *p = mem(8 * PG);
	uint64_t ir, is, x;
	/* R = [0, 2) idle, S = [2, 3) active */
	dme_register(e, p, 2 * PG, DME_MAP_RW, &ir);
	dme_unregister(e, p, 2 * PG);
	dme_register(e, p + 2 * PG, PG, DME_MAP_RW, &is);
	logcap_reset();
	ok(dme_register(e, p, 3 * PG, DME_MAP_RW, &x) == -EBUSY && logcap.count[DME_LOG_ERR] == 1,
	   "failed call: overlapping an active mapping is -EBUSY with a message");
	ok(idle(e) == 1 && dme_vtoiova(e, p, &x) == 0 && x == ir,
	   "failed call: the idle mapping it overlaps is still cached");
	/* an injected map failure after planning also leaves it */
	dme_sim_inject(dme_engine_sim(e), DME_SIM_OP_MAP, 1, -ENOMEM);
	ok_eq(dme_register(e, p, 2 * PG, DME_MAP_READ | DME_MAP_WRITE, &x), 0,
	      "failed call: a hit needs no map call (the injection stays armed)");
	dme_unregister(e, p, 2 * PG);
	ok_eq(dme_register(e, p + PG, 3 * PG - PG, DME_MAP_RW, &x), -EBUSY,
	      "failed call: a range reaching into the active mapping is -EBUSY");
	ok_eq(dme_register(e, p, 2 * PG, DME_MAP_RW, &x), 0, "failed call: the idle one is hit");
	dme_unregister(e, p, 2 * PG);
	ok_eq(dme_register(e, p + PG, PG, DME_MAP_RW, &x), 0, "failed call: a hit inside it");
	dme_unregister(e, p + PG, PG);
	/* a new mapping replacing R fails in the backend: R stays */
	ok_eq(dme_register(e, p + 3 * PG, 2 * PG, DME_MAP_RW, &x), -ENOMEM,
	      "failed call: an injected map failure is reported");
	ok(idle(e) == 1 && dme_vtoiova(e, p, &x) == 0 && x == ir,
	   "failed call: the idle mapping is still there after the failure");
	dme_sim_inject_clear(dme_engine_sim(e));
	ok(dme_engine_check(e) == 0, "failed call: invariants hold");
	dme_unregister(e, p + 2 * PG, PG);
	dme_engine_close(e);
	munmap(p, 8 * PG);
}

/* Request A inside idle region R, request B over R's end, one batch. */
static void in_batch_case(unsigned map_batch)
{
	struct dme_engine *e = open_sim_cfg(true, map_batch);
	if (!dme_engine_cache_monitor(e)) {
		printf("ok %d - in-batch (DME_MAP_BATCH=%u) # SKIP no userfaultfd here\n", ++tap_n,
		       map_batch);
		dme_engine_close(e);
		return;
	}
	uint8_t *p = mem(8 * PG);
	for (int i = 0; i < 8; i++)
		memset(p + i * PG, 0x30 + i, PG);
	uint64_t ir, x;
	dme_register(e, p, 4 * PG, DME_MAP_RW, &ir);
	dme_unregister(e, p, 4 * PG);
	struct dme_region_req q[2] = {{p + PG, PG, DME_MAP_RW, 0},
				      {p + 3 * PG, 2 * PG, DME_MAP_RW, 0}};
	ok_eq(dme_register_batch(e, q, 2), 0, "in-batch (DME_MAP_BATCH=%u): the batch registers",
	      map_batch);
	ok(dme_vtoiova(e, p + PG, &x) == 0 && x == q[0].iova &&
	       dme_vtoiova(e, p + 3 * PG, &x) == 0 && x == q[1].iova,
	   "in-batch (DME_MAP_BATCH=%u): both buffers translate to what the batch returned",
	   map_batch);
	ok_eq(dme_engine_flush(e), 0, "in-batch (DME_MAP_BATCH=%u): flush", map_batch);
	ok(device_sees(e, q[0].iova, p + PG, 64) && device_sees(e, q[1].iova, p + 3 * PG, 64) &&
	       device_sees(e, q[1].iova + PG, p + 4 * PG, 64),
	   "in-batch (DME_MAP_BATCH=%u): after a flush the device reads both buffers", map_batch);
	ok(dme_unregister(e, p + PG, PG) == 0 && dme_unregister(e, p + 3 * PG, 2 * PG) == 0,
	   "in-batch (DME_MAP_BATCH=%u): exact unregisters succeed", map_batch);
	ok(dme_engine_check(e) == 0, "in-batch (DME_MAP_BATCH=%u): invariants hold", map_batch);
	dme_engine_close(e);
	munmap(p, 8 * PG);
}

static void test_dma_free_checks(void)
{
	struct dme_engine *e = open_sim_cfg(true, 0);
	struct dme_dma_mem d, stale, bad;
	uint64_t x;
	ok_eq(dme_dma_alloc(e, 64 * PG, DME_MAP_RW, &d), 0, "dma_free: allocate");
	stale = d;
	ok_eq(dme_dma_free(e, &d), 0, "dma_free: free it");
	ok_eq(dme_dma_alloc(e, 64 * PG, DME_MAP_RW, &d), 0, "dma_free: allocate again");
	logcap_reset();
	int r = dme_dma_free(e, &stale);
	ok((r == -ENOENT || (r == -EINVAL)) && logcap.count[DME_LOG_ERR] == 1,
	   "dma_free: a stale copy is refused with a message (got %d)", r);
	bad = d;
	bad.mem = NULL;
	ok_eq(dme_dma_free(e, &bad), -ENOENT, "dma_free: mem == NULL is -ENOENT");
	bad = d;
	bad.len *= 2;
	ok_eq(dme_dma_free(e, &bad), -EINVAL, "dma_free: an enlarged length is -EINVAL");
	bad = d;
	bad.va = (char *)bad.va + PG;
	ok_eq(dme_dma_free(e, &bad), -ENOENT, "dma_free: a shifted address is -ENOENT");
	ok(dme_vtoiova(e, d.va, &x) == 0 && x == d.iova && dme_engine_check(e) == 0,
	   "dma_free: the live allocation is untouched");
	if (stale.va == d.va && stale.mem == d.mem && stale.iova == d.iova)
		diag("the stale copy equals the live allocation: indistinguishable by design");
	ok_eq(dme_dma_free(e, &d), 0, "dma_free: the real descriptor frees it");
	dme_engine_close(e);
}

static void test_share_checks(void)
{
	struct dme_engine *a = open_sim_cfg(true, 0), *b = open_sim_cfg(true, 0), *s = NULL;
	uint8_t *p = mem(4 * PG);
	uint64_t x, y;
	dme_register(a, p, 4 * PG, DME_MAP_RW, &x);
	logcap_reset();
	ok(dme_share(a, b, p, 4 * PG, DME_MAP_RW, &y) == -EINVAL && logcap.count[DME_LOG_ERR] == 1,
	   "share: into an engine that is not a sibling is -EINVAL with a message");
	ok_eq(dme_engine_open_sibling(a, &s), 0, "share: open a sibling");
	ok_eq(dme_share(a, s, p, 4 * PG, DME_MAP_RW, &y), 0, "share: into the sibling works");
	ok_eq(dme_share(s, a, p, 4 * PG, DME_MAP_RW, &y), -EBUSY,
	      "share: back into the source, where it is mapped, is -EBUSY");
	ok_eq(dme_unregister(s, p, 4 * PG), 0, "share: unregister in the sibling");
	ok(dme_engine_check(a) == 0 && dme_engine_check(s) == 0, "share: invariants hold");
	dme_unregister(a, p, 4 * PG);
	dme_engine_close(s);
	dme_engine_close(b);
	dme_engine_close(a);
	munmap(p, 4 * PG);
}

struct sharer {
	struct dme_engine *src, *dst;
	uint8_t *p;
	atomic_int stop, failed;
	pthread_barrier_t *go;
};

static void *share_loop(void *arg)
{
	struct sharer *sh = arg;
	uint64_t y;
	pthread_barrier_wait(sh->go);
	for (int i = 0; i < 50000 && !atomic_load(&sh->stop); i++) {
		if (dme_share(sh->src, sh->dst, sh->p, PG, DME_MAP_RW, &y) ||
		    dme_unregister(sh->dst, sh->p, PG)) {
			atomic_store(&sh->failed, 1);
			break;
		}
	}
	return NULL;
}

static void test_share_no_deadlock(void)
{
	struct dme_engine *a = open_sim_cfg(true, 0), *b = NULL;
	dme_engine_open_sibling(a, &b);
	uint8_t *p = mem(2 * PG), *q = mem(2 * PG);
	uint64_t x;
	dme_register(a, p, PG, DME_MAP_RW, &x);
	dme_register(b, q, PG, DME_MAP_RW, &x);
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, 2);
	struct sharer s1 = {a, b, p, 0, 0, &go}, s2 = {b, a, q, 0, 0, &go};
	pthread_t t1, t2;
	alarm(60); /* a deadlock ends the program (and fails the test) */
	pthread_create(&t1, NULL, share_loop, &s1);
	pthread_create(&t2, NULL, share_loop, &s2);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	alarm(0);
	ok(!s1.failed && !s2.failed, "share: 2 x 50000 shares and unregisters succeeded");
	ok(dme_engine_check(a) == 0 && dme_engine_check(b) == 0,
	   "share: share(a,b) racing share(b,a) finishes, invariants hold");
	dme_unregister(a, p, PG);
	dme_unregister(b, q, PG);
	dme_engine_close(b);
	dme_engine_close(a);
}

static void test_no_starvation(void)
{
	/* a 1 MiB IO address space */
	struct dme_iova_range r = {0x100000, 0x1fffff};
	struct dme_sim_params sp = {.ranges = &r, .nr_ranges = 1};
	struct dme_config c;
	dme_config_init(&c);
	c.map_batch = 1024; /* pending unmaps pile up */
	struct dme_engine *e;
	ok_eq(dme_engine_open_sim(&c, &sp, &e), 0, "starvation: a 1 MiB space");
	uint8_t *p = mem(300 * PG);
	uint64_t x;
	int ok_all = 1;
	for (int i = 0; i < 256; i++)
		ok_all &= dme_register(e, p + i * PG, PG, DME_MAP_RW, &x) == 0;
	for (int i = 0; i < 256; i++)
		ok_all &= dme_unregister(e, p + i * PG, PG) == 0;
	ok(ok_all, "starvation: the whole space registered and unregistered page by page");
	ok_eq(dme_register(e, p + 260 * PG, 4 * PG, DME_MAP_RW, &x), 0,
	      "starvation: a 16 KiB register still succeeds (idle/pending mappings give way)");
	ok_eq(dme_unregister(e, p + 260 * PG, 4 * PG), 0, "starvation: unregister it (idle)");
	ok_eq(dme_register(e, p, 200 * PG, DME_MAP_RW, &x), 0,
	      "starvation: an 800 KiB register succeeds too");
	ok(dme_engine_check(e) == 0, "starvation: invariants hold");
	dme_engine_close(e);

	/* a batch that hits an idle mapping and needs the space the other idle
	 * ones hold: making room must not evict the one it hits */
	ok_eq(dme_engine_open_sim(&c, &sp, &e), 0, "starvation: a 1 MiB space again");
	uint64_t ia;
	ok_all = dme_register(e, p, 4 * PG, DME_MAP_RW, &ia) == 0 &&
		 dme_unregister(e, p, 4 * PG) == 0;
	for (int i = 8; i < 250; i++)
		ok_all &= dme_register(e, p + i * PG, PG, DME_MAP_RW, &x) == 0 &&
			  dme_unregister(e, p + i * PG, PG) == 0;
	ok(ok_all, "starvation: one idle 16 KiB mapping and the space full of idle pages");
	if (dme_engine_cache_monitor(e)) {
		uint8_t *b2 = mem(100 * PG);
		struct dme_region_req q[2] = {{p, 4 * PG, DME_MAP_RW, 0},
					      {b2, 100 * PG, DME_MAP_RW, 0}};
		ok_eq(dme_register_batch(e, q, 2), 0,
		      "starvation: a batch hitting the idle one and needing 400 KiB more");
		ok(q[0].iova == ia && dme_vtoiova(e, p, &x) == 0 && x == ia &&
			   dme_engine_check(e) == 0,
		   "starvation: the hit kept its mapping while room was made");
		dme_engine_close(e);
		e = NULL;
		munmap(b2, 100 * PG);
	} else {
		printf("ok %d - starvation: hit while reclaiming # SKIP no userfaultfd here\n", ++tap_n);
	}
	if (e)
		dme_engine_close(e);
	munmap(p, 300 * PG);
}

static void test_quarantine_after_failed_unmap(void)
{
	struct dme_engine *e = open_sim_cfg(false, 0);
	uint8_t *p = mem(8 * PG);
	uint64_t a, b, x;
	dme_register(e, p, 4 * PG, DME_MAP_RW, &a);
	dme_sim_inject(dme_engine_sim(e), DME_SIM_OP_UNMAP, 1, -EIO);
	dme_unregister(e, p, 4 * PG);
	ok(dme_engine_flush(e) == -EIO, "quarantine: the unmap fails");
	dme_sim_inject_clear(dme_engine_sim(e));
	ok(dme_register(e, p + 4 * PG, 4 * PG, DME_MAP_RW, &b) == 0 &&
	       (b + 4 * PG <= a || b >= a + 4 * PG),
	   "quarantine: a later register gets a different IOVA (0x%llx vs 0x%llx)",
	   (unsigned long long)b, (unsigned long long)a);
	ok(dme_engine_flush(e) == 0 && dme_engine_check(e) == 0,
	   "quarantine: the next flush unmaps it, invariants hold");
	(void)x;
	dme_unregister(e, p + 4 * PG, 4 * PG);
	dme_engine_close(e);
	munmap(p, 8 * PG);
}

static void test_attach_requeries_geometry(void)
{
	/* a backend ready before any device; the device reserves [1 MiB, 2 MiB)
	 * where nothing is mapped yet */
	struct dme_iova_range r = {0x1000, 0x3fffff};
	struct dme_sim_params sp = {.ranges = &r,
				    .nr_ranges = 1,
				    .has_attach_reserved = true,
				    .attach_reserved = {0x100000, 0x1fffff}};
	struct dme_config c;
	dme_config_init(&c);
	struct dme_engine *e;
	ok_eq(dme_engine_open_sim(&c, &sp, &e), 0, "attach: a ready sim");
	ok_eq(dme_engine_attach(e, "dev0"), 0, "attach: a device with a reserved region");
	uint8_t *p = mem(1024 * PG);
	int clean = 1;
	for (int i = 0; i < 700; i++) {
		uint64_t x;
		int ret = dme_register(e, p + i * PG, PG, DME_MAP_RW, &x);
		clean &= ret == -ENOSPC || (ret == 0 && (x + PG <= 0x100000 || x > 0x1fffff));
	}
	ok(clean, "attach: no IOVA handed out in the device's reserved region");
	dme_engine_close(e);
	munmap(p, 1024 * PG);
}

struct hammer {
	struct dme_engine *e;
	uint8_t *p;
	atomic_int stop;
};

static void *hammer_loop(void *arg)
{
	struct hammer *h = arg;
	uint64_t x;
	while (!atomic_load(&h->stop)) {
		dme_register(h->e, h->p, 4 * PG, DME_MAP_RW, &x);
		dme_unregister(h->e, h->p, 4 * PG);
	}
	return NULL;
}

static void test_fork(void)
{
	struct dme_engine *e = open_sim_cfg(true, 0);
	struct hammer h = {e, mem(4 * PG), 0};
	uint8_t *mine = mem(4 * PG);
	pthread_t t;
	pthread_create(&t, NULL, hammer_loop, &h);
	int good = 0;
	for (int i = 0; i < 20; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			alarm(10); /* a hang dies of SIGALRM */
			uint64_t x;
			int ret = dme_register(e, mine, 4 * PG, DME_MAP_RW, &x);
			if (!ret)
				ret = dme_unregister(e, mine, 4 * PG);
			_exit(ret == 0 ? 0 : 3);
		}
		int st = 0;
		waitpid(pid, &st, 0);
		good += WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	atomic_store(&h.stop, 1);
	pthread_join(t, NULL);
	ok(good == 20,
	   "fork: 20 children, forked while a thread is inside the engine, register and unregister "
	   "(%d did)",
	   good);
	ok(dme_engine_check(e) == 0, "fork: the parent's engine is intact");
	dme_engine_close(e);
}

/* Fixes from review: each one a behaviour. */
static void test_review_edges(void)
{
	uint64_t x, y;
	/* unregister succeeds once the registration is gone, whatever a flush
	 * of pending unmaps does */
	struct dme_engine *e = open_sim_cfg(false, 1);
	uint8_t *p = mem(8 * PG);
	memset(p, 1, 8 * PG);
	dme_register(e, p, PG, DME_MAP_RW, &x);
	dme_sim_inject(dme_engine_sim(e), DME_SIM_OP_UNMAP, 1, -EIO);
	ok_eq(dme_unregister(e, p, PG), 0,
	      "edges: unregister returns 0 although the batched unmap behind it failed");
	ok_eq(dme_unregister(e, p, PG), -EINVAL, "edges: ... and the registration is gone");
	dme_sim_inject_clear(dme_engine_sim(e));
	ok(dme_engine_flush(e) == 0 && dme_engine_check(e) == 0, "edges: the next flush unmaps it");

	/* nested requests starting at the same address, in either order */
	struct dme_region_req a[2] = {{p, PG, DME_MAP_RW, 0}, {p, 2 * PG, DME_MAP_RW, 0}};
	struct dme_region_req b[2] = {{p + 4 * PG, 2 * PG, DME_MAP_RW, 0},
				      {p + 4 * PG, PG, DME_MAP_RW, 0}};
	ok(dme_register_batch(e, a, 2) == 0 && dme_register_batch(e, b, 2) == 0,
	   "edges: nested requests with one start register in either order");
	ok(dme_unregister(e, p, PG) == 0 && dme_unregister(e, p, 2 * PG) == 0 &&
		   dme_unregister(e, p + 4 * PG, PG) == 0 && dme_unregister(e, p + 4 * PG, 2 * PG) == 0,
	   "edges: ... each unregisters exactly");
	struct dme_region_req d[2] = {{p, PG, DME_MAP_READ, 0}, {p, PG, DME_MAP_RW, 0}};
	ok(dme_register_batch(e, d, 2) == 0 && d[0].iova == d[1].iova &&
		   dme_unregister(e, p, PG) == 0 && dme_unregister(e, p, PG) == 0,
	   "edges: the same page read-only and read-write in one batch, in this order, share a mapping");

	/* share refuses the unregistered part of a batch mapping (no monitor:
	 * its memory may have been replaced) */
	struct dme_engine *s = NULL;
	dme_engine_open_sibling(e, &s);
	struct dme_region_req q[2] = {{p, PG, DME_MAP_RW, 0}, {p + PG, PG, DME_MAP_RW, 0}};
	dme_register_batch(e, q, 2);
	dme_unregister(e, p, PG);
	ok(dme_share(e, s, p, PG, DME_MAP_RW, &y) == -ENOENT &&
		   dme_share(e, s, p + PG, PG, DME_MAP_RW, &y) == 0,
	   "edges: share takes the live buffer of a batch mapping, not its unregistered part");
	dme_unregister(s, p + PG, PG);
	dme_unregister(e, p + PG, PG);
	dme_engine_close(s);
	dme_engine_close(e);
	munmap(p, 8 * PG);

	/* memory replaced while registered: reported, and never served later */
	e = open_sim_cfg(true, 0);
	if (!dme_engine_cache_monitor(e)) {
		printf("ok %d - edges: replaced while registered # SKIP no userfaultfd here\n", ++tap_n);
		dme_engine_close(e);
		return;
	}
	p = mem(4 * PG);
	memset(p, 1, 4 * PG);
	dme_register(e, p, 4 * PG, DME_MAP_RW, &x);
	logcap_reset();
	munmap(p, 4 * PG);
	uint8_t *n = mmap(p, 4 * PG, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (n != p) {
		/* another thread (a sanitizer's) took the freed address first */
		printf("ok %d - edges: replaced while registered # SKIP the freed address was taken by another mapping\n",
		       ++tap_n);
		if (n != MAP_FAILED)
			munmap(n, 4 * PG);
		dme_unregister(e, p, 4 * PG);
		dme_engine_close(e);
		return;
	}
	memset(n, 2, 4 * PG);
	uint64_t h = hits(e);
	dme_unregister(e, p, 4 * PG);
	ok(logcap.count[DME_LOG_WARN] >= 1 && strstr(logcap.all, "while registered"),
	   "edges: unmapping registered memory is reported (a warning names the buffer)");
	ok(n == p && dme_register(e, p, 4 * PG, DME_MAP_RW, &y) == 0 && hits(e) == h,
	   "edges: the replaced memory is mapped anew, not served from the old mapping");
	dme_unregister(e, p, 4 * PG);
	ok(dme_engine_check(e) == 0, "edges: invariants hold");
	dme_engine_close(e);
	munmap(p, 4 * PG);
}

int main(void)
{
	logcap_install();
	test_coherence();
	test_exact_unregister();
	partial_case(true, false);
	partial_case(true, true);
	partial_case(false, false);
	partial_case(false, true);
	test_failed_call_changes_nothing();
	in_batch_case(256);
	in_batch_case(1);
	test_dma_free_checks();
	test_share_checks();
	test_share_no_deadlock();
	test_no_starvation();
	test_quarantine_after_failed_unmap();
	test_attach_requeries_geometry();
	test_fork();
	test_review_edges();
	return tap_done();
}
