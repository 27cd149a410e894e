/* SPDX-License-Identifier: MIT */
/*
 * util.c - small readers of /proc and /sys, capability checks and size
 * formatting for pin/. Stateless; every function is thread-safe.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compiler.h"
#include "pin.h"

int pin_read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n;
	do {
		n = read(fd, buf, len - 1);
	} while (n < 0 && errno == EINTR);
	int ret = n < 0 ? -errno : 0;
	close(fd);
	if (ret)
		return ret;
	buf[n] = 0;
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = 0;
	return 0;
}

int pin_read_u64(const char *path, uint64_t *out)
{
	char buf[64], *end;
	int ret = pin_read_text(path, buf, sizeof(buf));
	if (ret)
		return ret;
	errno = 0;
	unsigned long long v = strtoull(buf, &end, 10);
	if (errno || end == buf || buf[0] == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

int pin_read_int(const char *path, int *out)
{
	char buf[64], *end;
	int ret = pin_read_text(path, buf, sizeof(buf));
	if (ret)
		return ret;
	errno = 0;
	long v = strtol(buf, &end, 10);
	if (errno || end == buf || v < -1 || v > 1 << 20)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

bool pin_has_cap(unsigned cap)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	if (cap >= 32 * _LINUX_CAPABILITY_U32S_3)
		return false;
	if (syscall(SYS_capget, &hdr, data))
		return false;
	return data[cap / 32].effective & (1u << (cap % 32));
}

const char *pin_fmt_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB"};
	if (bytes < 1024) {
		snprintf(buf, len, "%" PRIu64 " B", bytes);
		return buf;
	}
	unsigned u = 0;
	uint64_t div = 1024;
	/* climb while the next unit still divides exactly */
	while (u + 1 < ARRAY_SIZE(unit) && bytes % (div << 10) == 0)
		u++, div <<= 10;
	/* large odd sizes: show them in MiB, rounded up */
	if (u == 0 && bytes >= (16ull << 20))
		u = 1, div = 1ull << 20;
	snprintf(buf, len, "%" PRIu64 " %s", (bytes + div - 1) / div, unit[u]);
	return buf;
}

size_t pin_base_page(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	return pg > 0 ? (size_t)pg : 4096;
}

bool pin_vmflag(const char *line, const char *flag)
{
	if (strncmp(line, "VmFlags:", 8))
		return false;
	for (const char *p = line + 8; *p;) {
		p += strspn(p, " \t\n");
		size_t n = strcspn(p, " \t\n");
		if (n == 2 && p[0] == flag[0] && p[1] == flag[1])
			return true;
		p += n;
	}
	return false;
}
