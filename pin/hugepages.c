/* SPDX-License-Identifier: MIT */
/*
 * hugepages.c - what the kernel offers in huge pages: hugetlb pools per size
 * and node (sysfs), hugetlbfs mounts (/proc/self/mounts), the THP setting,
 * and which parts of a range are mapped by huge pages now (PAGEMAP_SCAN).
 *
 * Nothing is cached: pools change under us (other processes, the admin), so
 * each question reads the kernel's current answer. Thread-safe.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "compiler.h"
#include "log_internal.h"
#include "pin.h"

/* PAGEMAP_SCAN (Linux 6.7) for headers that predate it; the ABI is stable. */
#ifndef PAGEMAP_SCAN
#define PAGE_IS_HUGE (1 << 6)
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

enum thp_mode pin_thp_mode(void)
{
	char buf[128];
	/* 1: THP disabled for this process entirely (PR_SET_THP_DISABLE); newer
	 * kernels add a bit for "except where advised", which MADV_HUGEPAGE is */
	if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1)
		return THP_PROCESS_OFF;
	if (pin_read_text("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof(buf)))
		return THP_ABSENT;
	if (strstr(buf, "[always]"))
		return THP_ALWAYS;
	if (strstr(buf, "[madvise]"))
		return THP_MADVISE;
	return THP_NEVER;
}

DME_EXPORT int dme_mem_hugepages_free(size_t page_size, int node, uint64_t *free)
{
	char path[160];
	uint64_t gfree, gresv, nfree;

	if (!is_pow2(page_size) || page_size <= SZ_4K || node < -1)
		return -EINVAL;
	size_t kb = page_size >> 10;
	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%zukB/free_hugepages", kb);
	int ret = pin_read_u64(path, &gfree);
	if (ret)
		return ret == -ENOENT ? -ENOENT : ret;
	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%zukB/resv_hugepages", kb);
	ret = pin_read_u64(path, &gresv);
	if (ret)
		return ret;
	/* reserved pages are free but promised to existing mappings */
	uint64_t avail = gfree > gresv ? gfree - gresv : 0;
	if (node >= 0) {
		snprintf(path, sizeof(path),
			 "/sys/devices/system/node/node%d/hugepages/hugepages-%zukB/free_hugepages",
			 node, kb);
		ret = pin_read_u64(path, &nfree);
		if (ret)
			return ret;
		if (nfree < avail)
			avail = nfree;
	}
	*free = avail;
	return 0;
}

/* "2M", "1024M", "1G", "2048k" -> bytes; 0 when malformed. */
static uint64_t parse_pagesize(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return 0;
	unsigned shift = 0;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	}
	if ((*end && *end != ',') || v > (UINT64_MAX >> shift))
		return 0;
	return (uint64_t)v << shift;
}

static uint64_t default_hugepage_size(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	uint64_t kb = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Hugepagesize: %" SCNu64 " kB", &kb) == 1)
			break;
	fclose(f);
	return kb << 10;
}

int pin_hugetlbfs_dir(size_t page_size, char *dir, size_t len)
{
	struct mntent ent, *e;
	char buf[4096];
	int ret = -ENOENT;
	FILE *f = setmntent("/proc/self/mounts", "re");
	if (!f)
		return -errno;
	while ((e = getmntent_r(f, &ent, buf, sizeof(buf)))) {
		if (strcmp(e->mnt_type, "hugetlbfs"))
			continue;
		const char *opt = hasmntopt(e, "pagesize");
		uint64_t sz =
		    opt && opt[8] == '=' ? parse_pagesize(opt + 9) : default_hugepage_size();
		if (sz != page_size)
			continue;
		if (access(e->mnt_dir, W_OK | X_OK)) {
			dme_dbg("hugetlbfs mount %s is not writable by this process", e->mnt_dir);
			ret = -EACCES;
			continue;
		}
		if (strlen(e->mnt_dir) >= len) {
			ret = -ENAMETOOLONG;
			continue;
		}
		strcpy(dir, e->mnt_dir);
		ret = 0;
		break;
	}
	endmntent(f);
	return ret;
}

int pin_huge_scan(uint64_t va, uint64_t len, uint64_t *huge_bytes,
		  void (*region)(void *ctx, uint64_t start, uint64_t end), void *ctx)
{
	struct page_region vec[32];
	uint64_t total = 0, end = va + len;
	int ret = 0;

	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (uint64_t at = va; at < end;) {
		struct pm_scan_arg a = {
		    .size = sizeof(a),
		    .start = at,
		    .end = end,
		    .vec = (uint64_t)(uintptr_t)vec,
		    .vec_len = ARRAY_SIZE(vec),
		    .category_mask = PAGE_IS_HUGE,
		    .return_mask = PAGE_IS_HUGE,
		};
		long n = ioctl(fd, PAGEMAP_SCAN, &a);
		if (n < 0) {
			ret = errno == ENOTTY || errno == EINVAL ? -EOPNOTSUPP : -errno;
			break;
		}
		for (long i = 0; i < n; i++) {
			total += vec[i].end - vec[i].start;
			if (region)
				region(ctx, vec[i].start, vec[i].end);
		}
		if (a.walk_end <= at) { /* no progress: never loop forever */
			ret = -EIO;
			break;
		}
		at = a.walk_end;
	}
	close(fd);
	if (!ret)
		*huge_bytes = total;
	return ret;
}
