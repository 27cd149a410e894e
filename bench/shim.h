/* SPDX-License-Identifier: MIT */
/*
 * shim.h - the C face of dme's benchmarks.
 *
 * Benchmark bodies are C functions; shim.cc (the only C++ in dme) registers
 * them with Google Benchmark, runs one suite, reports every case in Google
 * Benchmark's own formats (its console table, its JSON) and hands the
 * measured figures to the suite's summarize(), which derives the stable keys
 * (ratios against baselines measured in the same run) reported beside them.
 *
 * A body loops like this, so the per-iteration shim cost is amortised:
 *
 *	uint64_t n;
 *	while (dme_bench_batch(st, &n))
 *		for (uint64_t i = 0; i < n; i++)
 *			work();
 */
#ifndef DME_BENCH_SHIM_H
#define DME_BENCH_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct dme_bench_state;

/** dme_bench_batch() - next batch of iterations; false when measuring is done. */
bool dme_bench_batch(struct dme_bench_state *st, uint64_t *n);
/**
 * dme_bench_next() - one more iteration? For bodies whose iteration takes
 * milliseconds (a batch of 256 would run for minutes):
 *
 *	while (dme_bench_next(st))
 *		work();
 */
bool dme_bench_next(struct dme_bench_state *st);
/** dme_bench_thread() - index of the calling benchmark thread (0-based). */
int dme_bench_thread(struct dme_bench_state *st);
/** dme_bench_threads() - number of threads running this case. */
int dme_bench_threads(struct dme_bench_state *st);
/** dme_bench_pause() / dme_bench_resume() - exclude a stretch from timing. */
void dme_bench_pause(struct dme_bench_state *st);
void dme_bench_resume(struct dme_bench_state *st);
/** dme_bench_counter() - attach a named figure to this case's result. */
void dme_bench_counter(struct dme_bench_state *st, const char *name, double value);
/** dme_bench_fail() - abort this case with a message; its figures are absent. */
void dme_bench_fail(struct dme_bench_state *st, const char *msg);

/** struct dme_bench_case - one measured body. */
struct dme_bench_case {
	const char *name;	/* "cached_pair_1t"; reported as suite/name */
	void (*body)(struct dme_bench_state *st, void *arg);
	void *arg;
	int threads;		/* 0 or 1: single-threaded */
	int (*prepare)(void *arg); /* before the case runs (outside timing) */
	void (*finish)(void *arg); /* after it */
};

#define DME_BENCH_MAX_COUNTERS 8

/** struct dme_bench_result - what one case measured. */
struct dme_bench_result {
	const char *name;
	bool ok;
	double ns_per_iter;	/* wall time per iteration, all threads together */
	uint64_t iterations;
	unsigned nr_counters;
	struct {
		char name[48];
		double value;
	} counters[DME_BENCH_MAX_COUNTERS];
};

struct dme_bench_out;

/** dme_bench_out_num() - emit one derived key (e.g. "iova.speedup_vs_tree"). */
void dme_bench_out_num(struct dme_bench_out *out, const char *key, double value);

/** dme_bench_find() - the result named @name, or NULL if absent or failed. */
const struct dme_bench_result *dme_bench_find(const struct dme_bench_result *res, size_t n,
					      const char *name);
/** dme_bench_result_counter() - counter @name of @r, or NaN. */
double dme_bench_result_counter(const struct dme_bench_result *r, const char *name);

/** struct dme_bench_suite - a named group of cases and its derived keys. */
struct dme_bench_suite {
	const char *name;
	const char *doc;
	const struct dme_bench_case *cases;
	size_t nr_cases;
	void (*summarize)(const struct dme_bench_result *res, size_t n, struct dme_bench_out *out);
};

/** Suites compiled into this build. */
extern const struct dme_bench_suite dme_bench_suite_iova;
/* The engine suite joins cases from two files; built on first use. */
const struct dme_bench_suite *dme_bench_engine_suite(void);
extern const struct dme_bench_suite dme_bench_suite_pin;

/**
 * dme_bench_suites() - every suite, NULL-terminated.
 */
const struct dme_bench_suite *const *dme_bench_suites(void);

/**
 * dme_bench_init() - hand Google Benchmark its flags; once, before dme_bench_run().
 * @argv0:    the program, for the JSON context's "executable"
 * @argc:     number of Google Benchmark flags in @argv
 * @argv:     "--benchmark_*=VALUE" flags (repetitions, filter, min_time, ...)
 * @min_time: seconds each case runs at least (0: Google Benchmark's default
 *            or --benchmark_min_time); wins over --benchmark_min_time
 *
 * Return: 0, or -EINVAL when Google Benchmark does not take a flag (each is
 * named on stderr).
 */
int dme_bench_init(const char *argv0, int argc, char **argv, double min_time);

/** struct dme_bench_opts - how dme_bench_run() reports. */
struct dme_bench_opts {
	bool json;	       /* Google Benchmark's JSON (+ "dme_keys") on stdout, not the table */
	bool list;	       /* print the names of the cases that would run; run nothing */
	bool quiet;	       /* no progress lines on stderr */
	const char *filter;    /* run only cases whose name contains this (NULL: all) */
	const char *json_path; /* also write the JSON document to this file (NULL: no) */
};

/**
 * dme_bench_run() - run @suite and print its figures on stdout.
 * @suite: the suite
 * @opts:  output and selection
 *
 * Each selected case runs in turn (its prepare, Google Benchmark, its
 * finish); cases the filters leave out are not prepared. Without --json,
 * stdout gets Google Benchmark's table, then the derived keys; with it, one
 * JSON document in Google Benchmark's format ("context", "benchmarks") with
 * the derived keys under "dme_keys" (a key whose cases did not run is null).
 * With repetitions the derived keys use the median of each case. Progress
 * goes to stderr: a line as each case starts and as it ends.
 *
 * Return: 0, -EIO when a case failed (its message is printed to stderr), or
 * -errno when @opts->json_path cannot be written.
 */
int dme_bench_run(const struct dme_bench_suite *suite, const struct dme_bench_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
