/* SPDX-License-Identifier: MIT */
/* jw.c - the CLI's JSON writer, small file readers and log hook. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void sep(struct jw *w, const char *key)
{
	if (w->need_comma[w->depth])
		fputc(',', w->f);
	w->need_comma[w->depth] = true;
	if (w->depth) {
		fputc('\n', w->f);
		for (int i = 0; i < w->depth; i++)
			fputs("  ", w->f);
	}
	if (key)
		fprintf(w->f, "\"%s\": ", key);
}

void jw_begin(struct jw *w, FILE *f)
{
	memset(w, 0, sizeof(*w));
	w->f = f;
}

static void open_(struct jw *w, const char *key, char c)
{
	sep(w, key);
	fputc(c, w->f);
	w->depth++;
	w->need_comma[w->depth] = false;
}

static void close_(struct jw *w, char c)
{
	bool had = w->need_comma[w->depth];
	w->depth--;
	if (had) {
		fputc('\n', w->f);
		for (int i = 0; i < w->depth; i++)
			fputs("  ", w->f);
	}
	fputc(c, w->f);
}

void jw_obj(struct jw *w, const char *key)
{
	open_(w, key, '{');
}

void jw_obj_end(struct jw *w)
{
	close_(w, '}');
}

void jw_arr(struct jw *w, const char *key)
{
	open_(w, key, '[');
}

void jw_arr_end(struct jw *w)
{
	close_(w, ']');
}

void jw_str(struct jw *w, const char *key, const char *val)
{
	sep(w, key);
	fputc('"', w->f);
	for (const char *p = val; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(w->f, "\\%c", *p);
		else if ((unsigned char)*p < 0x20)
			fprintf(w->f, "\\u%04x", *p);
		else
			fputc(*p, w->f);
	}
	fputc('"', w->f);
}

void jw_u64(struct jw *w, const char *key, uint64_t val)
{
	sep(w, key);
	fprintf(w->f, "%" PRIu64, val);
}

void jw_i64(struct jw *w, const char *key, int64_t val)
{
	sep(w, key);
	fprintf(w->f, "%" PRId64, val);
}

void jw_bool(struct jw *w, const char *key, bool val)
{
	sep(w, key);
	fputs(val ? "true" : "false", w->f);
}

void jw_end(struct jw *w)
{
	fputc('\n', w->f);
}

int read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len - 1);
	int err = errno;
	close(fd);
	if (n < 0)
		return -err;
	buf[n] = 0;
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = 0;
	return 0;
}

int read_u64(const char *path, uint64_t *out)
{
	char buf[64];
	int ret = read_text(path, buf, sizeof(buf));
	if (ret)
		return ret;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(buf, &end, 0);
	if (errno || end == buf)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Written by the hook, read by the command, both on the main thread. */
static char last_error[512];

void cli_log_hook(void *ctx, enum dme_log_level level, const char *msg)
{
	static const char *const names[] = {"err", "warn", "info", "debug"};
	(void)ctx;
	fprintf(stderr, "dme: %s: %s\n", level >= 0 && level <= 3 ? names[level] : "?", msg);
	if (level == DME_LOG_ERR)
		snprintf(last_error, sizeof(last_error), "%s", msg);
}

const char *cli_log_last_error(void)
{
	return last_error;
}

void cli_log_forget(void)
{
	last_error[0] = 0;
}
