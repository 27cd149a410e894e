/* SPDX-License-Identifier: MIT */
/* Helpers for the engine guest programs; see dmeguest.h. */
#include "dmeguest.h"
#include "vmtest.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/iommufd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "internal.h"

/* ---- the log hook ------------------------------------------------------- */

static struct {
	int count[4];
	char last[512];
	bool quiet;
} dg_log;

static void dg_hook(void *ctx, enum dme_log_level level, const char *msg)
{
	(void)ctx;
	if (level >= 0 && level < 4)
		dg_log.count[level]++;
	snprintf(dg_log.last, sizeof(dg_log.last), "%s", msg);
	if (!dg_log.quiet)
		tap_diag("dme %s: %s", dme_log_level_name(level), msg);
}

void dg_log_install(enum dme_log_level level)
{
	dg_log_reset();
	dme_log_set_hook(dg_hook, NULL, level);
}

void dg_log_reset(void)
{
	memset(dg_log.count, 0, sizeof(dg_log.count));
	dg_log.last[0] = '\0';
}

int dg_log_count(enum dme_log_level level)
{
	return level >= 0 && level < 4 ? dg_log.count[level] : 0;
}

const char *dg_log_last(void)
{
	return dg_log.last;
}

void dg_log_quiet(bool quiet)
{
	dg_log.quiet = quiet;
}

/* ---- engine invariants ---------------------------------------------------- */

bool dg_balanced(struct dme_engine *e)
{
	struct dme_engine_stats st;

	dme_engine_stats(e, &st);
	return st.map_calls - st.unmap_calls == st.live_mappings &&
	       st.pinned_bytes == st.registry_bytes && dme_engine_check(e) == 0;
}

void dg_stats_diag(struct dme_engine *e, const char *when)
{
	struct dme_engine_stats st;

	dme_engine_stats(e, &st);
	tap_diag("%s: maps %" PRIu64 " unmaps %" PRIu64 " live %" PRIu64 " active %" PRIu64
		 " idle %" PRIu64 " pending %" PRIu64 " pinned 0x%" PRIx64 " hits %" PRIu64
		 " evictions %" PRIu64,
		 when, st.map_calls, st.unmap_calls, st.live_mappings, st.active_mappings,
		 st.idle_mappings, st.pending_unmaps, st.pinned_bytes, st.cache_hits, st.evictions);
}

/* ---- iommufd probes ------------------------------------------------------- */

static int ifd_ioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) ? -errno : 0;
}

int dg_ifd_init(struct dme_engine *e, struct dg_ifd *k)
{
	struct iommu_ioas_alloc a = {.size = sizeof(a)};
	int ret;

	memset(k, 0, sizeof(*k));
	dme_iommufd_ids(dme__engine_backend(e), &k->fd, &k->ioas);
	ret = ifd_ioctl(k->fd, IOMMU_IOAS_ALLOC, &a);
	if (!ret)
		k->probe = a.out_ioas_id;
	return ret;
}

void dg_ifd_fini(struct dg_ifd *k)
{
	struct iommu_destroy d = {.size = sizeof(d), .id = k->probe};

	if (k->probe)
		ifd_ioctl(k->fd, IOMMU_DESTROY, &d);
	k->probe = 0;
}

static int unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len, uint64_t *got)
{
	struct iommu_ioas_unmap u = {
	    .size = sizeof(u), .ioas_id = ioas, .iova = iova, .length = len};
	int ret = ifd_ioctl(fd, IOMMU_IOAS_UNMAP, &u);

	*got = ret ? 0 : u.length;
	return ret;
}

int dg_ifd_mapped(struct dg_ifd *k, uint64_t iova, uint64_t len, bool write)
{
	struct iommu_ioas_copy c = {
	    .size = sizeof(c),
	    .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
		     (write ? IOMMU_IOAS_MAP_WRITEABLE : 0),
	    .dst_ioas_id = k->probe,
	    .src_ioas_id = k->ioas,
	    .length = len,
	    .dst_iova = iova,
	    .src_iova = iova,
	};
	uint64_t got;
	int ret = ifd_ioctl(k->fd, IOMMU_IOAS_COPY, &c);

	if (ret)
		return ret;
	ret = unmap(k->fd, k->probe, 0, UINT64_MAX, &got);
	if (!ret && got != len)
		ret = -EIO;
	return ret;
}

int dg_ifd_free(struct dg_ifd *k, uint64_t iova, uint64_t len)
{
	for (uint64_t off = 0; off < len; off += SZ_4K) {
		int ret = dg_ifd_mapped(k, iova + off, SZ_4K, false);
		if (ret == 0)
			return -EEXIST;
		if (ret != -ENOENT)
			return ret;
	}
	return 0;
}

int dg_ifd_exact(struct dg_ifd *k, const void *va, uint64_t iova, uint64_t len, bool write,
		 uint64_t *got)
{
	int ret = unmap(k->fd, k->ioas, iova, len, got);

	if (ret)
		return ret;
	struct iommu_ioas_map m = {
	    .size = sizeof(m),
	    .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
		     (write ? IOMMU_IOAS_MAP_WRITEABLE : 0),
	    .ioas_id = k->ioas,
	    .user_va = (uintptr_t)va,
	    .length = len,
	    .iova = iova,
	};
	return ifd_ioctl(k->fd, IOMMU_IOAS_MAP, &m);
}

uint64_t dg_ifd_unmap_all(struct dg_ifd *k)
{
	uint64_t got;
	int ret = unmap(k->fd, k->ioas, 0, UINT64_MAX, &got);

	return ret ? (uint64_t)(int64_t)ret : got;
}
