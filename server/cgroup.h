/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_CGROUP_H
#define KUBIA_CGROUP_H

#include <stdint.h>

/*
 * The container's limits, as its control group sets them: what kubia's defaults follow
 * so that a pod is sized by its manifest, not by the node it lands on.
 */
struct cgroup_limits {
	uint64_t memory; /* bytes; 0: no limit */
	const char *memory_file; /* where it was read ("" when none) */
	unsigned cpus; /* the CPU quota rounded up to whole CPUs; 0: no quota */
	const char *cpu_file;
};

/* Reads the limits under root (normally /sys/fs/cgroup): cgroup v2's memory.max and
 * cpu.max, else v1's memory/memory.limit_in_bytes and cpu/cpu.cfs_quota_us with
 * cpu.cfs_period_us. What is missing, unreadable or unlimited counts as no limit. */
void cgroup_read(const char *root, struct cgroup_limits *out);

#endif
