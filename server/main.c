/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/budget.h"
#include "common/monotonic.h"
#include "discovery/discovery.h"
#include "server/cgroup.h"
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

/* This pod's own line of its cluster view: the stored blob itself, held (not copied)
 * until the view is rendered. */
static void local_get(void *ctx, const char **data, size_t *len, void **hold)
{
	const struct storage_blob *b = storage_acquire(ctx);

	*data = b->present ? b->data : HTTP_NO_DATA;
	*len = b->present ? b->len : strlen(HTTP_NO_DATA);
	*hold = (void *)(uintptr_t)b;
}

static void local_release(void *ctx, void *hold)
{
	(void)ctx;
	storage_release(hold);
}

/* Everything main() starts, so that start-up, shutdown and release share one record. */
struct app {
	struct config cfg;
	struct budget budget; /* bodies, peer answers and responses in flight */
	sigset_t signals; /* blocked in every thread; collected by wait_for_signal() */
	struct storage *st;
	struct discovery *disc; /* NULL in pet mode */
	struct http_server *srv;
};

/* The budget when neither a flag, a variable nor a cgroup limit gives one. */
#define DEFAULT_MAX_MEMORY ((uint64_t)256 << 20)
#define CGROUP_ROOT "/sys/fs/cgroup"

/* The automatic limits: the container's own when its cgroup sets them (so a pod is
 * sized by its manifest, not by its node), else the machine's. Said once at start. */
static void resolve_limits(struct config *cfg)
{
	struct cgroup_limits cg;
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned cpus = online > 0 ? (unsigned)online : 1;
	const char *mem_from = "--max-memory";
	const char *threads_from = "--threads";

	cgroup_read(CGROUP_ROOT, &cg);
	if (cfg->max_memory == 0) {
		/* Half the limit: the rest is the process itself, its connections' buffers and
		 * the kernel's socket memory, which the cgroup counts too. */
		cfg->max_memory = cg.memory != 0 ? cg.memory / 2 : DEFAULT_MAX_MEMORY;
		mem_from = cg.memory != 0 ? "half the cgroup memory limit" : "default";
		if (cg.memory != 0) {
			config_set_source(cfg, "max-memory", CONFIG_FROM_CGROUP);
		}
		if (cfg->max_memory <= cfg->max_body) {
			cfg->max_memory = cfg->max_body + 1;
		}
	}
	if (cfg->threads == 0) {
		cfg->threads = cg.cpus != 0 && cg.cpus < cpus ? cg.cpus : cpus;
		threads_from =
			cg.cpus != 0 && cg.cpus < cpus ? "the cgroup CPU quota" : "online CPUs";
		if (cg.cpus != 0 && cg.cpus < cpus) {
			config_set_source(cfg, "threads", CONFIG_FROM_CGROUP);
		}
	}
	log_msg(LOG_LEVEL_INFO,
		"memory budget %" PRIu64 " bytes (%s%s%s), %u HTTP threads (%s%s%s)",
		cfg->max_memory, mem_from, cg.memory != 0 ? ", " : "", cg.memory_file, cfg->threads,
		threads_from, cg.cpus != 0 ? ", " : "", cg.cpu_file);
}

/* The effective configuration, once, as one line: each setting (its flag's name with
 * '_' for '-') and, as <name>_source, where its value came from. */
static void log_config(const struct config *cfg)
{
	static char values[CONFIG_MAX_SETTINGS][256];
	static char keys[CONFIG_MAX_SETTINGS][2][48];
	struct log_field f[2 * CONFIG_MAX_SETTINGS];
	const char *name;
	enum config_source from;
	size_t n = 0;

	for (size_t i = 0; config_setting(cfg, i, &name, values[i], sizeof(values[i]), &from);
	     i++) {
		const char *src = config_source_name(from);

		snprintf(keys[i][0], sizeof(keys[i][0]), "%s", name);
		snprintf(keys[i][1], sizeof(keys[i][1]), "%s_source", name);
		for (char *p = keys[i][0]; *p != '\0'; p++) {
			*p = *p == '-' ? '_' : *p;
		}
		for (char *p = keys[i][1]; *p != '\0'; p++) {
			*p = *p == '-' ? '_' : *p;
		}
		f[n++] = (struct log_field){.key = keys[i][0],
					    .type = LOG_STR,
					    .str = values[i],
					    .len = strlen(values[i])};
		f[n++] = (struct log_field){
			.key = keys[i][1], .type = LOG_STR, .str = src, .len = strlen(src)};
	}
	log_fields(LOG_LEVEL_INFO, "configuration", f, n);
}

/* What goes wrong inside the discovery loop reaches the log like everything else. */
static void log_discovery(void *ctx, enum discovery_log_level level, const char *line)
{
	static const enum log_level levels[] = {
		[DISCOVERY_LOG_ERROR] = LOG_LEVEL_ERROR,
		[DISCOVERY_LOG_WARN] = LOG_LEVEL_WARN,
		[DISCOVERY_LOG_INFO] = LOG_LEVEL_INFO,
		[DISCOVERY_LOG_DEBUG] = LOG_LEVEL_DEBUG,
	};

	(void)ctx;
	log_msg((unsigned)level < sizeof(levels) / sizeof(levels[0]) ? levels[level]
								     : LOG_LEVEL_ERROR,
		"discovery: %s", line);
}

static struct discovery *start_discovery(struct app *a, char *err, size_t errlen)
{
	const struct config *cfg = &a->cfg;
	struct discovery_config dc = {
		.service = cfg->service,
		.port_name = cfg->port_name,
		.hostname = cfg->hostname,
		.dns_server = cfg->dns_server,
		.resolv_conf = cfg->resolv_conf,
		.dns_timeout_ms = cfg->dns_timeout_ms,
		.cache_ms = cfg->dns_cache_ms,
		.peer_port = cfg->peer_port,
		.peer_timeout_ms = cfg->peer_timeout_ms,
		.peer_connect_timeout_ms = cfg->peer_connect_timeout_ms,
		.peer_max_bytes = (size_t)cfg->peer_max_bytes,
		.peer_max_connections = cfg->peer_max_connections,
		.max_peers = cfg->max_peers,
		.max_pending = cfg->max_pending,
		.replicas = cfg->replicas,
		.budget = &a->budget,
		.log = log_discovery,
	};

	const struct discovery_local local = {local_get, local_release, a->st};

	return discovery_create(&dc, &local, err, errlen);
}

/* Opens the data, starts peer discovery (peers mode) and the HTTP server, in that
 * order: each needs the one before. false, with the reason logged, when one fails;
 * what did start is left for release(). */
static bool start(struct app *a)
{
	const struct config *cfg = &a->cfg;
	char err[512];
	bool locked = false;

	a->st = storage_open(cfg->data_file, (size_t)cfg->max_body, &locked, err, sizeof(err));
	if (a->st == NULL) {
		log_msg(LOG_LEVEL_ERROR, "%s", err);
		if (locked) {
			log_msg(LOG_LEVEL_ERROR, "refusing to start: at most one kubia may use a "
						 "data directory");
		}
		return false;
	}
	if (cfg->mode == CONFIG_MODE_PEERS) {
		a->disc = start_discovery(a, err, sizeof(err));
		if (a->disc == NULL) {
			/* discovery's text names what failed: no prefix of ours on it */
			log_msg(LOG_LEVEL_ERROR, "%s", err);
			return false;
		}
	}
	a->srv = http_start(cfg, a->st, a->disc, &a->budget, err, sizeof(err));
	if (a->srv == NULL) {
		log_msg(LOG_LEVEL_ERROR, "%s", err);
		return false;
	}
	log_msg(LOG_LEVEL_INFO, "kubia %s listening on port %u as %s, mode %s, data file %s%s%s",
		KUBIA_VERSION, http_port(a->srv), cfg->hostname, config_mode_name(cfg->mode),
		cfg->data_file, cfg->mode == CONFIG_MODE_PEERS ? ", service " : "",
		cfg->mode == CONFIG_MODE_PEERS ? cfg->service : "");
	return true;
}

/* Returns on SIGTERM or SIGINT (SIGHUP is logged and ignored), or when waiting fails. */
static void wait_for_signal(const sigset_t *set)
{
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(set, &si);

		if (sig < 0) {
			if (errno == EINTR) {
				continue;
			}
			log_errno(LOG_LEVEL_ERROR, errno, "sigwaitinfo");
			return;
		}
		if (sig == SIGHUP) {
			log_msg(LOG_LEVEL_INFO,
				"SIGHUP ignored: the configuration is read at start");
			continue;
		}
		log_msg(LOG_LEVEL_INFO, "%s received: shutting down",
			sig == SIGTERM ? "SIGTERM" : "SIGINT");
		return;
	}
}

/* Order matters: stop accepting, let requests in flight finish, end the cluster views
 * still waiting on peers (which resumes their connections), then close. */
static void shut_down(struct app *a)
{
	uint64_t t0 = monotonic_ns();

	http_quiesce(a->srv);
	if (!http_wait_idle(a->srv, a->cfg.shutdown_timeout_ms)) {
		log_msg(LOG_LEVEL_WARN, "%u requests still in flight after %u ms",
			http_in_flight(a->srv), a->cfg.shutdown_timeout_ms);
	}
	if (a->disc != NULL) {
		discovery_stop(a->disc);
	}
	/* Commits what was handed over (its POSTs are answered when it is durable) and
	 * stops the writer: POSTs whose upload ends later are refused as shutting down. */
	storage_stop(a->st);
	(void)http_wait_idle(a->srv, FLUSH_MS);
	http_stop(a->srv);
	a->srv = NULL;
	log_msg(LOG_LEVEL_INFO, "stopped in %.0f ms", (double)(monotonic_ns() - t0) / 1e6);
}

/* Frees whatever start() got to, in reverse order: the data directory's lock goes last. */
static void release(struct app *a)
{
	http_stop(a->srv);
	discovery_destroy(a->disc);
	storage_close(a->st);
}

/* Blocks from this size on are mapped on their own (see main). */
enum { KUBIA_MMAP_THRESHOLD = 128 * 1024 };

int main(int argc, char **argv)
{
	struct app a;
	char err[512];
	bool ok;

	memset(&a, 0, sizeof(a));
	/*
	 * Bodies and views of hundreds of KiB are mapped and unmapped, always: glibc would
	 * otherwise raise its mapping threshold after the first such block is freed and
	 * serve the next ones from its arenas, which keep what they once held, so the
	 * process could stay well above the memory budget after a burst of large bodies.
	 */
	(void)mallopt(M_MMAP_THRESHOLD, KUBIA_MMAP_THRESHOLD);
	switch (config_parse(&a.cfg, argc, argv, env_lookup, stdout, err, sizeof(err))) {
	case CONFIG_RUN:
		break;
	case CONFIG_DONE:
		return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
	case CONFIG_ERROR:
	default:
		fprintf(stderr, "kubia: %s\n", err);
		return EXIT_CONFIG;
	}
	log_set_level(a.cfg.log_level);
	log_set_format(a.cfg.log_format);
	resolve_limits(&a.cfg);
	log_config(&a.cfg);
	budget_init(&a.budget, a.cfg.max_memory);
	if (!setup_signals(&a.signals)) {
		log_errno(LOG_LEVEL_ERROR, errno, "could not set up signal handling");
		return EXIT_FAILURE;
	}
	ok = start(&a);
	if (ok) {
		wait_for_signal(&a.signals);
		shut_down(&a);
	}
	release(&a);
	return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
