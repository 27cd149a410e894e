/* SPDX-License-Identifier: MIT */
/*
 * dme/version.h - which libdme a program runs with.
 *
 * The version is the library's own, read at run time: a program built
 * against one release and run with another (a newer libdme.so.0) learns the
 * one it actually runs with. The backends built into it are listed by
 * dme_engine_backends() (dme/engine.h).
 */
#ifndef DME_VERSION_H
#define DME_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

/**
 * dme_version() - the version of the running libdme.
 *
 * Return: a static string, "MAJOR.MINOR.PATCH" (e.g. "0.1.0").
 */
const char *dme_version(void);

#ifdef __cplusplus
}
#endif
#endif
