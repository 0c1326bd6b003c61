// SPDX-License-Identifier: MIT
/*
 * Start-to-ready and SIGTERM-to-exit of a server, measured from outside.
 *
 * Usage: startstop PORT PATH IDLE_MS LOG -- COMMAND [ARG]...
 *
 * Takes the time, forks and execs COMMAND (stdout and stderr appended to LOG), then
 * retries in a tight loop (a 50 us pause between attempts) to connect to 127.0.0.1:PORT
 * and GET PATH, until the answer's status is 200: that is start-to-ready. It then leaves
 * the server idle for IDLE_MS, reads its VmRSS, takes the time, sends SIGTERM and waits
 * for the process to end (waitpid): that is SIGTERM-to-exit. Prints one line:
 *   STARTSTOP <start-to-ready us> <SIGTERM-to-exit us> <VmRSS kiB> <exit:N | signal:N>
 * and exits 0. Exits 1, having killed the server, when the server ends before it is
 * ready, is not ready within 10 s, or does not end within 10 s of the SIGTERM; killed
 * itself by SIGTERM or SIGINT, it kills the server first.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_US 10000000u
#define PAUSE_US 50

static pid_t child = -1;

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void pause_us(long us)
{
	struct timespec ts = {0, us * 1000};

	nanosleep(&ts, NULL);
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* Stopped from outside (the benchmark's clean-up): take the server along. */
static void on_stop(int sig)
{
	(void)sig;
	if (child > 0) {
		kill(child, SIGKILL);
	}
	_exit(1);
}

static void die(const char *msg)
{
	fprintf(stderr, "startstop: %s\n", msg);
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	exit(1);
}

/* One attempt: 1 when PATH answered 200, 0 otherwise (refused, not yet answering, 503). */
static int probe(const struct sockaddr_in *addr, const char *request)
{
	struct timeval tv = {1, 0};
	char buf[16];
	size_t got = 0;
	int ok = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		die("cannot create a socket");
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0 &&
	    send(fd, request, strlen(request), MSG_NOSIGNAL) == (ssize_t)strlen(request)) {
		while (got < 12) {
			ssize_t r = recv(fd, buf + got, 12 - got, 0);

			if (r <= 0) {
				break;
			}
			got += (size_t)r;
		}
		ok = got == 12 &&
		     (memcmp(buf, "HTTP/1.1 200", 12) == 0 || memcmp(buf, "HTTP/1.0 200", 12) == 0);
	}
	close(fd);
	return ok;
}

static long vmrss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL) {
		return 0;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kib = strtol(line + 6, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kib;
}

static void spawn(const char *log, char **cmd)
{
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

	if (fd < 0) {
		die("cannot open the log file");
	}
	child = fork();
	if (child < 0) {
		die("cannot fork");
	}
	if (child == 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		execvp(cmd[0], cmd);
		_exit(127);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr;
	char request[512];
	uint64_t t0, ready, t1, gone;
	int status, idle_ms;
	long rss;

	if (argc < 7 || strcmp(argv[5], "--") != 0) {
		fprintf(stderr, "usage: startstop PORT PATH IDLE_MS LOG -- COMMAND [ARG]...\n");
		return 2;
	}
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)atoi(argv[1]));
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	snprintf(request, sizeof(request),
		 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n", argv[2],
		 argv[1]);
	idle_ms = atoi(argv[3]);
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_alarm;
		sigaction(SIGALRM, &sa, NULL);
		sa.sa_handler = on_stop;
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
	}

	t0 = now_us();
	spawn(argv[4], argv + 6);
	for (;;) {
		if (probe(&addr, request)) {
			break;
		}
		if (waitpid(child, &status, WNOHANG) == child) {
			child = -1;
			die("the server ended before it was ready (see its log)");
		}
		if (now_us() - t0 > DEADLINE_US) {
			die("the server was not ready within 10 s");
		}
		pause_us(PAUSE_US);
	}
	ready = now_us();

	pause_us((long)idle_ms * 1000);
	rss = vmrss_kib(child);
	t1 = now_us();
	if (kill(child, SIGTERM) < 0) {
		die("cannot send SIGTERM");
	}
	/* A blocking wait, so the exit is seen at once; SIGALRM (no SA_RESTART) bounds it. */
	alarm(DEADLINE_US / 1000000u);
	if (waitpid(child, &status, 0) != child) {
		die("the server did not end within 10 s of SIGTERM");
	}
	gone = now_us();
	child = -1;
	printf("STARTSTOP %llu %llu %ld %s:%d\n", (unsigned long long)(ready - t0),
	       (unsigned long long)(gone - t1), rss, WIFEXITED(status) ? "exit" : "signal",
	       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	return 0;
}
