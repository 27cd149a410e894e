/* SPDX-License-Identifier: MIT */
/*
 * ioctl.h - the one door through which backends call ioctl(), with fault
 * injection for tests: the real kernel cannot be made to fail on demand, so
 * tests arm "fail the Nth call of command X with errno E" and check that the
 * backend and the engine unwind cleanly. Disarmed it costs one load.
 */
#ifndef DME_ENGINE_IOCTL_H
#define DME_ENGINE_IOCTL_H

/* Internal symbols carry the dmei_ prefix in the library (libdme.a links
 * beside other libraries' own avl_*, tree_*...); the code uses the short
 * names. */
#define be_ioctl dmei_be_ioctl

#include <stdint.h>

/* ioctl(fd, cmd, arg): 0 or a negative errno (never -1 + errno). */
int be_ioctl(int fd, unsigned long cmd, void *arg);

/**
 * dme_fault_ioctl() - make the @nth be_ioctl() call with @cmd fail with @err.
 * @cmd: the ioctl request number (0: any command)
 * @nth: 1 = the next matching call; 0 disarms
 * @err: negative errno to return
 *
 * Internal (tests link the static library). One fault armed at a time.
 */
void dme_fault_ioctl(unsigned long cmd, uint64_t nth, int err);

/** dme_fault_ioctl_fired() - how many armed faults have fired. */
uint64_t dme_fault_ioctl_fired(void);

#endif
