/* SPDX-License-Identifier: MIT */
/*
 * fuzz-iova: libFuzzer target. The input bytes drive the same differential
 * run as test-iova-diff (allocations, fixed, congruent, frees right and
 * wrong, quarantine, reservations) against the reference model, with the
 * caches off (exact first fit) and on. Any mismatch aborts.
 */
#include <stdint.h>
#include <stdlib.h>

#include <dme/log.h>

#include "../iova-diff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int quiet;
	if (!quiet) {
		dme_log_set_hook(NULL, NULL, DME_LOG_NONE);
		quiet = 1;
	}
	if (size < 2)
		return 0;
	struct rsrc rs = {0, data + 1, size - 1, 0};
	long n = 0;
	if (run_single(data[0] & 1, 1L << 20, &rs, &n))
		abort();
	return 0;
}
