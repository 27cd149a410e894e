// SPDX-License-Identifier: MIT
// shim.cc - registers dme's C benchmark bodies with Google Benchmark and
// collects their figures. The only C++ in the project; everything it knows
// about a suite comes from struct dme_bench_suite.
#include <benchmark/benchmark.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

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

// Keeps the last aggregate of the case being run; prints nothing itself.
class Collector : public benchmark::BenchmarkReporter {
public:
	std::vector<Run> runs;
	bool ReportContext(const Context &) override
	{
		return true;
	}
	void ReportRuns(const std::vector<Run> &reports) override
	{
		for (const auto &r : reports)
			runs.push_back(r);
	}
};

void print_json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

void print_num(FILE *out, double v)
{
	if (std::isfinite(v))
		fprintf(out, "%.6g", v);
	else
		fputs("null", out);
}

} // namespace

extern "C" int dme_bench_run(const struct dme_bench_suite *suite, bool json, double min_time,
			     const char *filter, FILE *out)
{
	std::vector<dme_bench_result> results(suite->nr_cases);
	std::vector<std::string> errors;
	int argc = 1;
	char arg0[] = "dme-bench";
	char *argv[] = {arg0, nullptr};
	benchmark::Initialize(&argc, argv);

	for (size_t i = 0; i < suite->nr_cases; i++) {
		const dme_bench_case *c = &suite->cases[i];
		dme_bench_result *r = &results[i];
		memset(r, 0, sizeof(*r));
		r->name = c->name;
		if (filter && !strstr(c->name, filter))
			continue;
		if (c->prepare && c->prepare(c->arg)) {
			errors.push_back(std::string(c->name) + ": prepare failed");
			continue;
		}
		std::string full = std::string(suite->name) + "/" + c->name;
		auto *b = benchmark::RegisterBenchmark(full.c_str(), [c](benchmark::State &st) {
			dme_bench_state s{&st};
			c->body(&s, c->arg);
		});
		b->UseRealTime()->Unit(benchmark::kNanosecond);
		if (c->threads > 1)
			b->Threads(c->threads);
		if (min_time > 0)
			b->MinTime(min_time);
		Collector col;
		benchmark::RunSpecifiedBenchmarks(&col);
		benchmark::ClearRegisteredBenchmarks();
		if (c->finish)
			c->finish(c->arg);
		if (col.runs.empty()) {
			errors.push_back(std::string(c->name) + ": did not run");
			continue;
		}
		const auto &run = col.runs.back();
		if (run.error_occurred) {
			errors.push_back(std::string(c->name) + ": " + run.error_message);
			continue;
		}
		r->ok = true;
		r->iterations = (uint64_t)run.iterations;
		r->ns_per_iter = run.GetAdjustedRealTime();
		for (const auto &kv : run.counters) {
			if (r->nr_counters == DME_BENCH_MAX_COUNTERS)
				break;
			auto &slot = r->counters[r->nr_counters++];
			snprintf(slot.name, sizeof(slot.name), "%s", kv.first.c_str());
			slot.value = kv.second.value;
		}
		if (!json)
			fprintf(out, "%-40s %12.2f ns/iter %12llu iters\n", full.c_str(),
				r->ns_per_iter, (unsigned long long)r->iterations);
	}

	dme_bench_out derived;
	if (suite->summarize)
		suite->summarize(results.data(), results.size(), &derived);

	if (json) {
		fputs("{", out);
		bool first = true;
		for (const auto &kv : derived.keys) {
			fputs(first ? "\n  " : ",\n  ", out);
			first = false;
			print_json_string(out, kv.first.c_str());
			fputs(": ", out);
			print_num(out, kv.second);
		}
		for (const auto &r : results) {
			if (!r.ok)
				continue;
			std::string key = std::string(suite->name) + ".raw." + r.name + "_ns";
			fputs(first ? "\n  " : ",\n  ", out);
			first = false;
			print_json_string(out, key.c_str());
			fputs(": ", out);
			print_num(out, r.ns_per_iter);
		}
		fputs("\n}\n", out);
	} else {
		for (const auto &kv : derived.keys)
			fprintf(out, "%-40s %12.3f\n", kv.first.c_str(), kv.second);
	}
	for (const auto &e : errors)
		fprintf(stderr, "dme bench %s: %s\n", suite->name, e.c_str());
	return errors.empty() ? 0 : -EIO;
}
