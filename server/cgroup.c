/* SPDX-License-Identifier: MIT */
#include "server/cgroup.h"

#include "common/parse.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cgroup v1 reports "no limit" as a huge number (the largest page-aligned int64). */
#define V1_UNLIMITED ((uint64_t)1 << 60)

/* Reads the first line of root/name into buf; false when there is none. */
static bool read_line(const char *root, const char *name, char *buf, size_t len)
{
	char path[4096];
	FILE *f;
	bool ok;

	if (snprintf(path, sizeof(path), "%s/%s", root, name) >= (int)sizeof(path)) {
		return false;
	}
	f = fopen(path, "re");
	if (f == NULL) {
		return false;
	}
	ok = fgets(buf, (int)len, f) != NULL;
	(void)fclose(f);
	if (ok) {
		buf[strcspn(buf, "\n")] = '\0';
	}
	return ok;
}

static unsigned whole_cpus(uint64_t quota, uint64_t period)
{
	uint64_t n;

	if (quota == 0 || period == 0) {
		return 0;
	}
	n = (quota + period - 1) / period;
	return n > 4096 ? 4096 : (unsigned)n;
}

static void read_memory(const char *root, struct cgroup_limits *out)
{
	char line[128];
	uint64_t v;

	if (read_line(root, "memory.max", line, sizeof(line))) {
		/* "max" is no limit */
		if (parse_u64(line, &v) && v > 0) {
			out->memory = v;
			out->memory_file = "memory.max";
		}
		return;
	}
	if (read_line(root, "memory/memory.limit_in_bytes", line, sizeof(line)) &&
	    parse_u64(line, &v) && v > 0 && v < V1_UNLIMITED) {
		out->memory = v;
		out->memory_file = "memory/memory.limit_in_bytes";
	}
}

static void read_cpu(const char *root, struct cgroup_limits *out)
{
	char line[128];
	char quota_text[64];
	uint64_t quota;
	uint64_t period;

	if (read_line(root, "cpu.max", line, sizeof(line))) {
		/* "<quota> <period>", quota "max" for none */
		char *space = strchr(line, ' ');

		if (space != NULL) {
			*space = '\0';
			if (parse_u64(line, &quota) && parse_u64(space + 1, &period)) {
				out->cpus = whole_cpus(quota, period);
				out->cpu_file = out->cpus != 0 ? "cpu.max" : "";
			}
		}
		return;
	}
	/* v1: a quota of -1 is none, and does not parse as a number here */
	if (read_line(root, "cpu/cpu.cfs_quota_us", quota_text, sizeof(quota_text)) &&
	    read_line(root, "cpu/cpu.cfs_period_us", line, sizeof(line)) &&
	    parse_u64(quota_text, &quota) && parse_u64(line, &period)) {
		out->cpus = whole_cpus(quota, period);
		out->cpu_file = out->cpus != 0 ? "cpu/cpu.cfs_quota_us" : "";
	}
}

void cgroup_read(const char *root, struct cgroup_limits *out)
{
	memset(out, 0, sizeof(*out));
	out->memory_file = "";
	out->cpu_file = "";
	read_memory(root, out);
	read_cpu(root, out);
}
