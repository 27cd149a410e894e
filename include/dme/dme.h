/* SPDX-License-Identifier: MIT */
/*
 * dme/dme.h - everything dme offers, in one include.
 */
#ifndef DME_DME_H
#define DME_DME_H

#include <dme/version.h>
#include <dme/log.h>
#include <dme/config.h>
#include <dme/iova.h>
#include <dme/mem.h>
#include <dme/engine.h>
#include <dme/sim.h>

#endif
