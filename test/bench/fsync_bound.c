// SPDX-License-Identifier: MIT
/*
 * The fsync bound of a durable replace: what one writer at a time can do on a volume,
 * with nothing else in the way. Each operation is the sequence kubia follows for a POST:
 * create a new temporary file in the directory (O_EXCL), write the body, fsync it, rename
 * it over the data file, fsync the directory.
 *
 * Usage: fsync_bound DIR BYTES SECONDS
 * Runs for SECONDS, then prints one line in the format of the benchmark's wrk report:
 *   BENCHRESULT <operations> <duration us> <p50 us> <p99 us> 0 0 0 0 0 <bytes written>
 * and exits 0; on any failed system call it says which on stderr and exits 1.
 * Built by bench.sh with the system compiler; needs only POSIX and Linux.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Latency histogram: 1 us buckets up to 1 s, then one overflow bucket. */
#define BUCKETS 1000000u

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void fail(const char *what, const char *name)
{
	fprintf(stderr, "fsync_bound: %s %s: %s\n", what, name, strerror(errno));
	exit(1);
}

static uint64_t percentile(const uint32_t *hist, uint64_t count, double p)
{
	uint64_t rank = (uint64_t)((double)count * p / 100.0 + 0.5);
	uint64_t seen = 0;

	if (rank < 1) {
		rank = 1;
	}
	for (uint32_t i = 0; i <= BUCKETS; i++) {
		seen += hist[i];
		if (seen >= rank) {
			return i;
		}
	}
	return BUCKETS;
}

/* One durable replace of DIR/kubia.txt by BODY, through a new temporary file. */
static void replace(int dirfd, const char *dir, const char *body, size_t len, uint64_t n)
{
	char tmp[64];
	size_t off = 0;
	int fd;

	snprintf(tmp, sizeof(tmp), ".kubia.txt.tmp.%llu", (unsigned long long)n);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		fail("cannot create a temporary file in", dir);
	}
	while (off < len) {
		ssize_t w = write(fd, body + off, len - off);

		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w <= 0) {
			fail("cannot write a temporary file in", dir);
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0) {
		fail("cannot fsync a temporary file in", dir);
	}
	if (close(fd) < 0) {
		fail("cannot close a temporary file in", dir);
	}
	if (renameat(dirfd, tmp, dirfd, "kubia.txt") < 0) {
		fail("cannot rename a temporary file over the data file in", dir);
	}
	if (fsync(dirfd) < 0) {
		fail("cannot fsync", dir);
	}
}

int main(int argc, char **argv)
{
	uint32_t *hist;
	char *body;
	size_t len;
	uint64_t secs, start, end, t, n = 0;
	int dirfd;

	if (argc != 4) {
		fprintf(stderr, "usage: fsync_bound DIR BYTES SECONDS\n");
		return 2;
	}
	len = strtoul(argv[2], NULL, 10);
	secs = strtoull(argv[3], NULL, 10);
	body = malloc(len > 0 ? len : 1);
	hist = calloc(BUCKETS + 1u, sizeof(*hist));
	if (body == NULL || hist == NULL || secs == 0) {
		fprintf(stderr, "fsync_bound: out of memory or SECONDS is 0\n");
		return 2;
	}
	memset(body, 'p', len);
	dirfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		fail("cannot open directory", argv[1]);
	}
	start = now_us();
	end = start + secs * 1000000u;
	t = start;
	while (t < end) {
		uint64_t t0 = t, d;

		replace(dirfd, argv[1], body, len, n);
		t = now_us();
		d = t - t0;
		hist[d < BUCKETS ? d : BUCKETS]++;
		n++;
	}
	printf("BENCHRESULT %llu %llu %llu %llu 0 0 0 0 0 %llu\n", (unsigned long long)n,
	       (unsigned long long)(t - start), (unsigned long long)percentile(hist, n, 50),
	       (unsigned long long)percentile(hist, n, 99), (unsigned long long)(n * len));
	return 0;
}
