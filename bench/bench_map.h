/* SPDX-License-Identifier: MIT */
/* bench_map.h - the engine's mapping cases, joined into `dme bench engine`. */
#ifndef DME_BENCH_MAP_H
#define DME_BENCH_MAP_H

#include "shim.h"

extern const struct dme_bench_case dme_bench_map_cases[];
extern const size_t dme_bench_map_nr_cases;
void dme_bench_map_summarize(const struct dme_bench_result *r, size_t n, struct dme_bench_out *out);

#endif
