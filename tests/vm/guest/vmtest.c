/* SPDX-License-Identifier: MIT */
#include <linux/capability.h>
#include <sys/syscall.h>
#include "vmtest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *tap_prog = "?";
static int tap_n;
static int tap_failed;

void tap_init(const char *prog)
{
	tap_prog = prog;
	setvbuf(stdout, NULL, _IONBF, 0);
	setvbuf(stderr, NULL, _IONBF, 0);
}

static void tap_vline(bool cond, const char *directive, const char *fmt, va_list ap)
{
	char desc[512];

	vsnprintf(desc, sizeof(desc), fmt, ap);
	/* A '#' in a description would start a directive. */
	for (char *p = desc; *p; p++)
		if (*p == '#')
			*p = '_';
	tap_n++;
	if (!cond && !(directive && strstr(directive, "# TODO")))
		tap_failed++;
	printf("%sok %d - %s%s\n", cond ? "" : "not ", tap_n, desc, directive ? directive : "");
}

bool tap_check(bool cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_vline(cond, NULL, fmt, ap);
	va_end(ap);
	return cond;
}

void tap_skip(const char *reason, const char *fmt, ...)
{
	char directive[256];
	va_list ap;

	snprintf(directive, sizeof(directive), " # SKIP %s", reason);
	va_start(ap, fmt);
	tap_vline(true, directive, fmt, ap);
	va_end(ap);
}

void tap_diag(const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	printf("# %s\n", text);
}

int tap_done(void)
{
	printf("1..%d\n", tap_n);
	if (tap_failed)
		tap_diag("%s: %d of %d checks failed", tap_prog, tap_failed, tap_n);
	return tap_failed ? 1 : 0;
}

_Noreturn void tap_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_vline(false, NULL, fmt, ap);
	va_end(ap);
	tap_diag("%s: cannot continue after this failure", tap_prog);
	tap_done();
	exit(1);
}

bool tap_ok_rc(int rc, const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	tap_vline(rc == 0, NULL, fmt, ap);
	va_end(ap);
	if (rc != 0)
		tap_diag("  got rc=%d errno=%d (%s), want rc=0", rc, err, strerror(err));
	return rc == 0;
}

bool tap_errno(int rc, int want, const char *fmt, ...)
{
	int err = errno;
	bool cond = rc == -1 && err == want;
	va_list ap;

	va_start(ap, fmt);
	tap_vline(cond, NULL, fmt, ap);
	va_end(ap);
	if (!cond) {
		if (rc == 0)
			tap_diag("  got rc=0 (success), want errno %d (%s)", want, strerror(want));
		else
			tap_diag("  got rc=%d errno=%d (%s), want errno %d (%s)", rc, err,
				 strerror(err), want, strerror(want));
	}
	return cond;
}

bool tap_ret(int ret, int want, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_vline(ret == want, NULL, fmt, ap);
	va_end(ap);
	if (ret != want)
		tap_diag("  got %d (%s), want %d (%s)", ret, ret ? strerror(-ret) : "success", want,
			 want ? strerror(-want) : "success");
	return ret == want;
}

bool tap_todo(bool cond, const char *reason, const char *fmt, ...)
{
	char directive[256];
	va_list ap;

	snprintf(directive, sizeof(directive), " # TODO %s", reason);
	va_start(ap, fmt);
	tap_vline(cond, directive, fmt, ap);
	va_end(ap);
	return cond;
}

bool tap_eq_u64(uint64_t got, uint64_t want, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_vline(got == want, NULL, fmt, ap);
	va_end(ap);
	if (got != want)
		tap_diag("  got 0x%llx (%llu), want 0x%llx (%llu)", (unsigned long long)got,
			 (unsigned long long)got, (unsigned long long)want,
			 (unsigned long long)want);
	return got == want;
}

int vm_read_str(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return 0;
}

long vm_read_long(const char *path, long dflt)
{
	char buf[64], *end;
	long v;

	if (vm_read_str(path, buf, sizeof(buf)) < 0)
		return dflt;
	errno = 0;
	v = strtol(buf, &end, 0);
	if (errno || end == buf)
		return dflt;
	return v;
}

static void copy_str(char *dst, size_t len, const char *src)
{
	size_t l = strlen(src);

	if (l >= len)
		l = len - 1;
	memcpy(dst, src, l);
	dst[l] = '\0';
}

/* basename of the symlink at path, or "" */
static void link_base(const char *path, char *out, size_t len)
{
	char target[PATH_MAX];
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	const char *slash;

	out[0] = '\0';
	if (n <= 0)
		return;
	target[n] = '\0';
	slash = strrchr(target, '/');
	copy_str(out, len, slash ? slash + 1 : target);
}

static int cmp_nvme(const void *a, const void *b)
{
	return strcmp(((const struct vm_nvme *)a)->bdf, ((const struct vm_nvme *)b)->bdf);
}

int vm_find_nvme(struct vm_nvme *out, int max)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)) && n < max) {
		char path[PATH_MAX], cls[32], real[PATH_MAX], grp[32];
		struct vm_nvme *v = &out[n];
		DIR *vd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/class", e->d_name);
		if (vm_read_str(path, cls, sizeof(cls)) < 0 || strcmp(cls, VM_NVME_CLASS) != 0)
			continue;
		memset(v, 0, sizeof(*v));
		copy_str(v->bdf, sizeof(v->bdf), e->d_name);

		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", v->bdf);
		link_base(path, v->driver, sizeof(v->driver));
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", v->bdf);
		link_base(path, grp, sizeof(grp));
		if (grp[0])
			snprintf(v->group, sizeof(v->group), "/dev/vfio/%s", grp);
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/numa_node", v->bdf);
		v->numa_node = (int)vm_read_long(path, -1);

		/* /sys/devices/pci0000:40/0000:40:00.0/0000:41:00.0 -> pci0000:40 */
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", v->bdf);
		if (realpath(path, real)) {
			const char *p = strstr(real, "/devices/");
			if (p) {
				p += strlen("/devices/");
				size_t l = strcspn(p, "/");
				if (l >= sizeof(v->host_bridge))
					l = sizeof(v->host_bridge) - 1;
				memcpy(v->host_bridge, p, l);
				v->host_bridge[l] = '\0';
			}
		}

		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", v->bdf);
		vd = opendir(path);
		if (vd) {
			struct dirent *ve;
			while ((ve = readdir(vd)))
				if (strncmp(ve->d_name, "vfio", 4) == 0) {
					snprintf(v->cdev, sizeof(v->cdev), "/dev/vfio/devices/%.40s",
						 ve->d_name);
					break;
				}
			closedir(vd);
		}
		n++;
	}
	closedir(d);
	qsort(out, (size_t)n, sizeof(*out), cmp_nvme);
	return n;
}

struct vm_nvme vm_first_vfio_nvme(void)
{
	struct vm_nvme devs[VM_MAX_NVME];
	int n = vm_find_nvme(devs, VM_MAX_NVME);

	for (int i = 0; i < n; i++) {
		tap_diag("nvme %s driver=%s cdev=%s group=%s numa_node=%d bridge=%s", devs[i].bdf,
			 devs[i].driver[0] ? devs[i].driver : "-", devs[i].cdev[0] ? devs[i].cdev : "-",
			 devs[i].group[0] ? devs[i].group : "-", devs[i].numa_node,
			 devs[i].host_bridge);
	}
	for (int i = 0; i < n; i++)
		if (strcmp(devs[i].driver, "vfio-pci") == 0)
			return devs[i];
	tap_fatal("an NVMe controller (class %s) is bound to vfio-pci (found %d NVMe)",
		  VM_NVME_CLASS, n);
}

void *vm_huge_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0x5a, len);
	return p;
}

void *vm_small_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, len, MADV_NOHUGEPAGE);
	memset(p, 0xa5, len);
	return p;
}

int vm_pages_node(const void *p, size_t n, size_t pgsz)
{
	void *pages[512];
	int status[512], node = -1;

	if (n > 512)
		n = 512;
	for (size_t i = 0; i < n; i++)
		pages[i] = (char *)p + i * pgsz;
	if (syscall(SYS_move_pages, 0, (unsigned long)n, pages, NULL, status, 0) != 0)
		return -errno;
	for (size_t i = 0; i < n; i++) {
		if (status[i] < 0)
			return status[i];
		if (node == -1)
			node = status[i];
		else if (node != status[i])
			return -2000;
	}
	return node;
}

int vm_drop_cap_ipc_lock(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d) != 0)
		return -1;
	d[0].effective &= ~(1u << CAP_IPC_LOCK);
	d[0].permitted &= ~(1u << CAP_IPC_LOCK);
	d[0].inheritable &= ~(1u << CAP_IPC_LOCK);
	if (syscall(SYS_capset, &h, d) != 0)
		return -1;
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) != 0)
		return -1;
	return (d[0].effective & (1u << CAP_IPC_LOCK)) ? -1 : 0;
}
