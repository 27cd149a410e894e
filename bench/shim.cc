// SPDX-License-Identifier: MIT
// shim.cc - registers dme's C benchmark bodies with Google Benchmark, runs a
// suite one case at a time and reports it as one Google Benchmark run (its
// console table or its JSON, so its tools such as compare.py read dme's
// output), with the suite's derived keys beside it. The only C++ in the
// project; everything it knows about a suite comes from struct
// dme_bench_suite.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <dme/engine.h>
#include <dme/version.h>

#include "shim.h"

struct dme_bench_state {
	benchmark::State *st;
};

struct dme_bench_out {
	std::vector<std::pair<std::string, double>> keys;
};

extern "C" {

bool dme_bench_batch(struct dme_bench_state *s, uint64_t *n)
{
	const uint64_t batch = 256;
	if (!s->st->KeepRunningBatch(batch))
		return false;
	*n = batch;
	return true;
}

bool dme_bench_next(struct dme_bench_state *s)
{
	return s->st->KeepRunning();
}

int dme_bench_thread(struct dme_bench_state *s)
{
	return s->st->thread_index();
}

int dme_bench_threads(struct dme_bench_state *s)
{
	return s->st->threads();
}

void dme_bench_pause(struct dme_bench_state *s)
{
	s->st->PauseTiming();
}

void dme_bench_resume(struct dme_bench_state *s)
{
	s->st->ResumeTiming();
}

void dme_bench_counter(struct dme_bench_state *s, const char *name, double value)
{
	s->st->counters[name] = benchmark::Counter(value, benchmark::Counter::kAvgThreads);
}

void dme_bench_fail(struct dme_bench_state *s, const char *msg)
{
	s->st->SkipWithError(msg);
}

void dme_bench_out_num(struct dme_bench_out *out, const char *key, double value)
{
	out->keys.emplace_back(key, value);
}

const struct dme_bench_result *dme_bench_find(const struct dme_bench_result *res, size_t n,
					      const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (res[i].ok && !strcmp(res[i].name, name))
			return &res[i];
	return nullptr;
}

double dme_bench_result_counter(const struct dme_bench_result *r, const char *name)
{
	for (unsigned i = 0; r && i < r->nr_counters; i++)
		if (!strcmp(r->counters[i].name, name))
			return r->counters[i].value;
	return NAN;
}

const struct dme_bench_suite *const *dme_bench_suites(void)
{
	static const struct dme_bench_suite *all[] = {
		&dme_bench_suite_iova,
		nullptr,	/* engine: filled below */
		&dme_bench_suite_pin,
		nullptr,
	};
	all[1] = dme_bench_engine_suite();
	return all;
}

} // extern "C"

namespace {

using Run = benchmark::BenchmarkReporter::Run;

// Records the names of the runs Google Benchmark reports (the probe's).
class NameCollector : public benchmark::BenchmarkReporter {
public:
	std::vector<std::string> names;
	bool ReportContext(const Context &) override
	{
		return true;
	}
	void ReportRuns(const std::vector<Run> &reports) override
	{
		for (const auto &r : reports)
			names.push_back(r.benchmark_name());
	}
};

// Google Benchmark runs once per case (each case has its own prepare and
// finish), but the reporters must see one run of the whole suite: the
// context once (begin()), then each case's runs under its own family index,
// and no Finalize() (the caller closes the JSON document).
class Fanout : public benchmark::BenchmarkReporter {
public:
	std::vector<benchmark::BenchmarkReporter *> sinks;
	int64_t family = 0;
	std::vector<Run> runs; // the current case's

	void begin(size_t name_width)
	{
		Context ctx;
		ctx.name_field_width = name_width;
		for (auto *s : sinks)
			s->ReportContext(ctx);
	}
	bool ReportContext(const Context &) override
	{
		return true;
	}
	void ReportRuns(const std::vector<Run> &reports) override
	{
		std::vector<Run> rs(reports);
		for (auto &r : rs)
			r.family_index = family;
		for (auto *s : sinks)
			s->ReportRuns(rs);
		runs.insert(runs.end(), rs.begin(), rs.end());
	}
};

void configure(benchmark::internal::Benchmark *b, const dme_bench_case *c)
{
	b->UseRealTime()->Unit(benchmark::kNanosecond);
	if (c->threads > 1)
		b->Threads(c->threads);
}

// The names Google Benchmark would report for case @c (none when its
// --benchmark_filter leaves it out), found without preparing the case: the
// same registration with a body that fails at once.
std::vector<std::string> probe(const std::string &full, const dme_bench_case *c)
{
	auto *b = benchmark::RegisterBenchmark(full.c_str(), [](benchmark::State &st) {
		st.SkipWithError("probe");
		while (st.KeepRunning()) {
		}
	});
	configure(b, c);
	NameCollector names;
	std::ostringstream sink;
	names.SetOutputStream(&sink);
	names.SetErrorStream(&sink);
	benchmark::RunSpecifiedBenchmarks(&names);
	benchmark::ClearRegisteredBenchmarks();
	return names.names;
}

// dme's facts in the JSON "context", beside Google Benchmark's own.
void add_context(const dme_bench_suite *suite)
{
	static bool done;
	if (done)
		return;
	done = true;
	std::string backends;
	for (const char *const *b = dme_engine_backends(); *b; b++)
		backends += (backends.empty() ? "" : ",") + std::string(*b);
	benchmark::AddCustomContext("dme_version", dme_version());
	benchmark::AddCustomContext("dme_backends", backends);
	benchmark::AddCustomContext("dme_build_type", DME_BUILD_TYPE);
	benchmark::AddCustomContext("dme_suite", suite->name);
	benchmark::AddCustomContext("dme_gbench_version", DME_GBENCH_VERSION);
}

std::string json_string(const std::string &s)
{
	std::string out = "\"";
	for (char ch : s) {
		if (ch == '"' || ch == '\\')
			out += '\\';
		out += ch;
	}
	return out + "\"";
}

std::string json_num(double v)
{
	if (!std::isfinite(v))
		return "null";
	char buf[64];
	snprintf(buf, sizeof(buf), "%.6g", v);
	return buf;
}

// Closes what JSONReporter opened (its "benchmarks" array and the document)
// with dme's derived keys as a top-level object of their own.
std::string json_tail(const dme_bench_out &derived)
{
	std::string out = "\n  ],\n  \"dme_keys\": {";
	bool first = true;
	for (const auto &kv : derived.keys) {
		out += first ? "\n    " : ",\n    ";
		first = false;
		out += json_string(kv.first) + ": " + json_num(kv.second);
	}
	return out + (first ? "}\n}\n" : "\n  }\n}\n");
}

// The run whose figures feed the derived keys: the median of the
// repetitions when there are several, else the one run.
const Run *pick_run(const std::vector<Run> &runs)
{
	const Run *one = nullptr;
	for (const auto &r : runs) {
		if (r.error_occurred)
			continue;
		if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "median")
			return &r;
		if (r.run_type == Run::RT_Iteration && !one)
			one = &r;
	}
	return one;
}

void gbench_flag_error()
{
	fprintf(stderr, "dme bench: Google Benchmark refuses the value of a --benchmark_* flag\n");
	exit(2);
}

} // namespace

extern "C" int dme_bench_init(const char *argv0, int argc, char **argv, double min_time)
{
	// Google Benchmark keeps argv[0] (the JSON context's "executable")
	static std::vector<std::string> args;
	args.assign(1, argv0);
	for (int i = 0; i < argc; i++)
		args.emplace_back(argv[i]);
	if (min_time > 0) {
		char buf[64];
		snprintf(buf, sizeof(buf), "--benchmark_min_time=%g%s", min_time,
			 DME_GBENCH_MIN_TIME_SUFFIX);
		args.emplace_back(buf);
	}
	std::vector<char *> v;
	for (auto &a : args)
		v.push_back(&a[0]);
	v.push_back(nullptr);
	int n = (int)args.size();
	// exits (status 2) for a value Google Benchmark cannot parse as its
	// flag's type, as it exits for --help
	benchmark::Initialize(&n, v.data(), gbench_flag_error);
	for (int i = 1; i < n; i++)
		fprintf(stderr, "dme bench: Google Benchmark does not take '%s'\n", v[i]);
	return n > 1 ? -EINVAL : 0;
}

extern "C" int dme_bench_run(const struct dme_bench_suite *suite, const struct dme_bench_opts *o)
{
	std::vector<dme_bench_result> results(suite->nr_cases);
	std::vector<std::string> errors;

	// 1. the cases that run: dme's --filter, then Google Benchmark's
	struct Selected {
		size_t index;
		std::string full;
		std::vector<std::string> names;
	};
	std::vector<Selected> sel;
	size_t width = 0;
	bool repeated = false;
	for (size_t i = 0; i < suite->nr_cases; i++) {
		const dme_bench_case *c = &suite->cases[i];
		memset(&results[i], 0, sizeof(results[i]));
		results[i].name = c->name;
		if (o->filter && !strstr(c->name, o->filter))
			continue;
		std::string full = std::string(suite->name) + "/" + c->name;
		auto names = probe(full, c);
		if (names.empty())
			continue;
		for (const auto &n : names)
			width = std::max(width, n.size());
		repeated |= names.size() > 1;
		sel.push_back({i, full, names});
	}
	if (o->list) {
		for (const auto &s : sel)
			for (size_t k = 0; k < s.names.size(); k++)
				if (!k || s.names[k] != s.names[k - 1])
					printf("%s\n", s.names[k].c_str());
		return 0;
	}
	if (sel.empty()) {
		fprintf(stderr, "dme bench %s: no case matches the filters\n", suite->name);
		return -ENOENT;
	}

	// 2. the reporters: the table or the JSON on stdout, the JSON in a file
	Fanout fan;
	benchmark::JSONReporter json, file;
	std::ostringstream json_text, file_text;
	static std::ostringstream silenced; // the table reporter outlives this call
	if (o->json) {
		json.SetOutputStream(&json_text);
		fan.sinks.push_back(&json);
	} else {
		// Google Benchmark's table, as its flags (color, tabular) say; it
		// writes the context (CPUs, load, warnings) to stderr
		auto *table = benchmark::CreateDefaultDisplayReporter();
		if (o->quiet)
			table->SetErrorStream(&silenced);
		fan.sinks.push_back(table);
	}
	if (o->json_path) {
		file.SetOutputStream(&file_text);
		fan.sinks.push_back(&file);
	}
	add_context(suite);
	fan.begin(width + (repeated ? strlen("_stddev") : 0));

	// 3. each case: prepare, measure, finish
	for (size_t k = 0; k < sel.size(); k++) {
		const dme_bench_case *c = &suite->cases[sel[k].index];
		dme_bench_result *r = &results[sel[k].index];
		if (!o->quiet)
			fprintf(stderr, "dme bench: [%zu/%zu] %s ...\n", k + 1, sel.size(),
				sel[k].full.c_str());
		auto t0 = std::chrono::steady_clock::now();
		std::string err;
		if (c->prepare && c->prepare(c->arg)) {
			err = "prepare failed";
		} else {
			auto *b = benchmark::RegisterBenchmark(sel[k].full.c_str(),
				[c](benchmark::State &st) {
					dme_bench_state s{&st};
					c->body(&s, c->arg);
				});
			configure(b, c);
			fan.family = (int64_t)k;
			fan.runs.clear();
			benchmark::RunSpecifiedBenchmarks(&fan);
			benchmark::ClearRegisteredBenchmarks();
			if (c->finish)
				c->finish(c->arg);
			std::cout.flush();
			for (const auto &run : fan.runs)
				if (run.error_occurred && err.empty())
					err = run.error_message;
			const Run *run = pick_run(fan.runs);
			if (!run && err.empty())
				err = "did not run";
			if (err.empty()) {
				r->ok = true;
				r->iterations = (uint64_t)run->iterations;
				r->ns_per_iter = run->GetAdjustedRealTime();
				for (const auto &kv : run->counters) {
					if (r->nr_counters == DME_BENCH_MAX_COUNTERS)
						break;
					auto &slot = r->counters[r->nr_counters++];
					snprintf(slot.name, sizeof(slot.name), "%s",
						 kv.first.c_str());
					slot.value = kv.second.value;
				}
			}
		}
		double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
				      .count();
		if (!err.empty())
			errors.push_back(std::string(c->name) + ": " + err);
		std::string how = err.empty() ? "done" : "FAILED: " + err;
		if (!o->quiet)
			fprintf(stderr, "dme bench: [%zu/%zu] %s %s (%.1f s)\n", k + 1, sel.size(),
				sel[k].full.c_str(), how.c_str(), secs);
	}

	// 4. the derived keys, from the figures of this run only
	dme_bench_out derived;
	if (suite->summarize)
		suite->summarize(results.data(), results.size(), &derived);
	int ret = 0;
	if (o->json) {
		fputs((json_text.str() + json_tail(derived)).c_str(), stdout);
	} else {
		printf("\n%-40s %12s\n", "dme keys (ratios within this run)", "value");
		for (const auto &kv : derived.keys)
			printf("%-40s %12.3f\n", kv.first.c_str(), kv.second);
	}
	fflush(stdout);
	if (o->json_path) {
		FILE *f = fopen(o->json_path, "w");
		int err = f ? 0 : errno;
		if (f && fputs((file_text.str() + json_tail(derived)).c_str(), f) < 0)
			err = errno;
		if (f && fclose(f) && !err)
			err = errno;
		if (err) {
			fprintf(stderr, "dme bench: %s: %s\n", o->json_path, strerror(err));
			ret = -err;
		}
	}
	for (const auto &e : errors)
		fprintf(stderr, "dme bench %s: %s\n", suite->name, e.c_str());
	if (!errors.empty())
		return -EIO;
	return ret;
}
