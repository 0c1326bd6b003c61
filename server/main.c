/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "discovery/discovery.h"
#include "server/config.h"
#include "server/http.h"
#include "server/log.h"
#include "storage/storage.h"
#include "version.h"

#define EXIT_CONFIG 2

/* After the in-flight deadline, cluster views are ended by discovery_stop(); this is
 * how long their (now complete) answers get to be written. */
#define FLUSH_MS 200

static const char *env_lookup(const char *name)
{
	return getenv(name);
}

/* As PID 1 a signal is delivered only if it has a handler, even when it is blocked and
 * collected with sigwaitinfo(); this handler never runs while the signal is blocked. */
static void on_signal(int sig)
{
	(void)sig;
}

static bool setup_signals(sigset_t *set)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) != 0) {
		return false;
	}
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0 ||
	    sigaction(SIGHUP, &sa, NULL) != 0) {
		return false;
	}
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	/* Blocked before any thread starts, so every thread inherits the mask and only
	 * the main thread's sigwaitinfo() sees these signals. */
	return pthread_sigmask(SIG_BLOCK, set, NULL) == 0;
}

static bool local_data(void *ctx, char **out, size_t *len)
{
	struct storage *st = ctx;
	const struct storage_blob *b = storage_acquire(st);
	const char *text = b->present ? b->data : HTTP_NO_DATA;
	size_t n = b->present ? b->len : strlen(text);
	char *copy = malloc(n + 1);

	if (copy == NULL) {
		storage_release(b);
		return false;
	}
	memcpy(copy, text, n);
	copy[n] = '\0';
	storage_release(b);
	*out = copy;
	*len = n;
	return true;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

int main(int argc, char **argv)
{
	struct config cfg;
	char err[512];
	struct storage *st = NULL;
	struct discovery *disc = NULL;
	struct http_server *srv = NULL;
	sigset_t set;
	bool locked = false;
	int status = EXIT_FAILURE;
	struct timespec t0;

	switch (config_parse(&cfg, argc, argv, env_lookup, stdout, err, sizeof(err))) {
	case CONFIG_RUN:
		break;
	case CONFIG_DONE:
		return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
	case CONFIG_ERROR:
	default:
		fprintf(stderr, "kubia: %s\n", err);
		return EXIT_CONFIG;
	}
	log_set_level(cfg.log_level);
	if (!setup_signals(&set)) {
		log_errno(LOG_LEVEL_ERROR, errno, "could not set up signal handling");
		return EXIT_FAILURE;
	}

	st = storage_open(cfg.data_file, (size_t)cfg.max_body, &locked, err, sizeof(err));
	if (st == NULL) {
		log_msg(LOG_LEVEL_ERROR, "%s", err);
		if (locked) {
			log_msg(LOG_LEVEL_ERROR, "refusing to start: at most one kubia may use a "
						 "data directory");
		}
		return EXIT_FAILURE;
	}
	if (cfg.mode == CONFIG_MODE_PEERS) {
		struct discovery_config dc = {
			.service = cfg.service,
			.hostname = cfg.hostname,
			.dns_server = cfg.dns_server,
			.resolv_conf = cfg.resolv_conf,
			.dns_timeout_ms = cfg.dns_timeout_ms,
			.cache_ms = cfg.dns_cache_ms,
			.peer_port = cfg.peer_port,
			.peer_timeout_ms = cfg.peer_timeout_ms,
			.peer_connect_timeout_ms = cfg.peer_connect_timeout_ms,
			.peer_max_bytes = (size_t)cfg.peer_max_bytes,
			.max_peers = cfg.max_peers,
			.max_pending = cfg.max_pending,
		};
		disc = discovery_create(&dc, local_data, st, err, sizeof(err));
		if (disc == NULL) {
			log_msg(LOG_LEVEL_ERROR, "could not start peer discovery: %s", err);
			goto out;
		}
	}
	srv = http_start(&cfg, st, disc, err, sizeof(err));
	if (srv == NULL) {
		log_msg(LOG_LEVEL_ERROR, "%s", err);
		goto out;
	}
	log_msg(LOG_LEVEL_INFO, "kubia %s listening on port %u as %s, mode %s, data file %s%s%s",
		KUBIA_VERSION, http_port(srv), cfg.hostname, config_mode_name(cfg.mode),
		cfg.data_file, cfg.mode == CONFIG_MODE_PEERS ? ", service " : "",
		cfg.mode == CONFIG_MODE_PEERS ? cfg.service : "");

	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&set, &si);

		if (sig < 0) {
			if (errno == EINTR) {
				continue;
			}
			log_errno(LOG_LEVEL_ERROR, errno, "sigwaitinfo");
			break;
		}
		if (sig == SIGHUP) {
			log_msg(LOG_LEVEL_INFO,
				"SIGHUP ignored: the configuration is read at start");
			continue;
		}
		log_msg(LOG_LEVEL_INFO, "%s received: shutting down",
			sig == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	}

	/* Order matters: stop accepting, let requests in flight finish, end the cluster
	 * views still waiting on peers (which resumes their connections), then close. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	http_quiesce(srv);
	if (!http_wait_idle(srv, cfg.shutdown_timeout_ms)) {
		log_msg(LOG_LEVEL_WARN, "%u requests still in flight after %u ms",
			http_in_flight(srv), cfg.shutdown_timeout_ms);
	}
	if (disc != NULL) {
		discovery_stop(disc);
	}
	(void)http_wait_idle(srv, FLUSH_MS);
	http_stop(srv);
	srv = NULL;
	log_msg(LOG_LEVEL_INFO, "stopped in %.0f ms", ms_since(&t0));
	status = EXIT_SUCCESS;
out:
	http_stop(srv);
	discovery_destroy(disc);
	storage_close(st);
	return status;
}
