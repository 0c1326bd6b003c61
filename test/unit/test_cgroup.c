/* SPDX-License-Identifier: MIT */
/*
 * The container's limits read from control-group files laid out as cgroup v2 and v1
 * mount them, in a scratch directory standing for /sys/fs/cgroup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sys/stat.h>
#include <unistd.h>

#include "server/cgroup.h"

struct root {
	char dir[64];
};

static void put(const struct root *r, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", r->dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

static void subdir(const struct root *r, const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", r->dir, name);
	assert_int_equal(mkdir(path, 0755), 0);
}

static int setup(void **state)
{
	struct root *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		return -1;
	}
	snprintf(r->dir, sizeof(r->dir), "/tmp/kubia-cgroup-XXXXXX");
	if (mkdtemp(r->dir) == NULL) {
		free(r);
		return -1;
	}
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct root *r = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
	if (system(cmd) != 0) {
		return -1;
	}
	free(r);
	return 0;
}

static void test_v2_limits(void **state)
{
	struct root *r = *state;
	struct cgroup_limits c;

	put(r, "memory.max", "67108864\n");
	put(r, "cpu.max", "150000 100000\n");
	cgroup_read(r->dir, &c);
	assert_int_equal(c.memory, 64u << 20);
	assert_string_equal(c.memory_file, "memory.max");
	/* 1.5 CPUs of quota: two threads can use it */
	assert_int_equal(c.cpus, 2);
	assert_string_equal(c.cpu_file, "cpu.max");
}

static void test_v2_no_limits(void **state)
{
	struct root *r = *state;
	struct cgroup_limits c;

	put(r, "memory.max", "max\n");
	put(r, "cpu.max", "max 100000\n");
	cgroup_read(r->dir, &c);
	assert_int_equal(c.memory, 0);
	assert_string_equal(c.memory_file, "");
	assert_int_equal(c.cpus, 0);
	assert_string_equal(c.cpu_file, "");
}

static void test_v2_small_quota_is_one_cpu(void **state)
{
	struct root *r = *state;
	struct cgroup_limits c;

	put(r, "cpu.max", "5000 100000\n");
	cgroup_read(r->dir, &c);
	assert_int_equal(c.cpus, 1);
}

static void test_v1_limits(void **state)
{
	struct root *r = *state;
	struct cgroup_limits c;

	subdir(r, "memory");
	subdir(r, "cpu");
	put(r, "memory/memory.limit_in_bytes", "33554432\n");
	put(r, "cpu/cpu.cfs_quota_us", "200000\n");
	put(r, "cpu/cpu.cfs_period_us", "100000\n");
	cgroup_read(r->dir, &c);
	assert_int_equal(c.memory, 32u << 20);
	assert_string_equal(c.memory_file, "memory/memory.limit_in_bytes");
	assert_int_equal(c.cpus, 2);
	assert_string_equal(c.cpu_file, "cpu/cpu.cfs_quota_us");
}

static void test_v1_no_limits(void **state)
{
	struct root *r = *state;
	struct cgroup_limits c;

	subdir(r, "memory");
	subdir(r, "cpu");
	/* v1's "unlimited" is the largest page-aligned 64-bit number */
	put(r, "memory/memory.limit_in_bytes", "9223372036854771712\n");
	put(r, "cpu/cpu.cfs_quota_us", "-1\n");
	put(r, "cpu/cpu.cfs_period_us", "100000\n");
	cgroup_read(r->dir, &c);
	assert_int_equal(c.memory, 0);
	assert_int_equal(c.cpus, 0);
}

static void test_missing_or_garbled_files(void **state)
{
	struct root *r = *state;
	struct cgroup_limits c;

	cgroup_read(r->dir, &c);
	assert_int_equal(c.memory, 0);
	assert_int_equal(c.cpus, 0);
	put(r, "memory.max", "lots\n");
	put(r, "cpu.max", "100000\n");
	cgroup_read(r->dir, &c);
	assert_int_equal(c.memory, 0);
	assert_int_equal(c.cpus, 0);
	cgroup_read("/nonexistent/cgroup/root", &c);
	assert_int_equal(c.memory, 0);
	assert_int_equal(c.cpus, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_v2_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_no_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_small_quota_is_one_cpu, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v1_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v1_no_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_or_garbled_files, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
