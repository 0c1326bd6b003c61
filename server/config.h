/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_CONFIG_H
#define KUBIA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "server/log.h"

enum config_mode {
	CONFIG_MODE_PEERS = 0, /* cluster view through SRV discovery (the default) */
	CONFIG_MODE_PET, /* this pod only, no discovery */
};

/* Where a setting's value came from. */
enum config_source {
	CONFIG_FROM_DEFAULT = 0,
	CONFIG_FROM_VARIABLE,
	CONFIG_FROM_FLAG,
	CONFIG_FROM_CGROUP, /* an automatic value taken from the container's cgroup */
};

/* More than the number of settings. */
#define CONFIG_MAX_SETTINGS 48

/* Strings point into argv, the environment or static defaults: nothing to free. */
struct config {
	unsigned port;
	const char *data_file;
	enum config_mode mode;
	const char *service;
	const char *port_name;
	unsigned peer_port;
	unsigned peer_timeout_ms;
	unsigned peer_connect_timeout_ms;
	uint64_t peer_max_bytes;
	unsigned peer_max_connections;
	unsigned max_peers;
	unsigned max_pending;
	unsigned replicas; /* the StatefulSet's pods; 0 = unknown */
	const char *dns_server; /* NULL: the servers of resolv.conf */
	const char *resolv_conf;
	unsigned dns_timeout_ms;
	unsigned dns_cache_ms;
	uint64_t max_body;
	const char *hostname;
	unsigned max_connections;
	unsigned max_connections_per_ip;
	uint64_t connection_memory;
	unsigned idle_timeout_s;
	unsigned header_timeout_s;
	uint64_t body_min_rate; /* bytes/s; 0: no minimum */
	unsigned body_rate_window_s;
	unsigned threads; /* 0 = automatic, resolved at start (main.c) */
	uint64_t max_memory; /* 0 = automatic, resolved at start (main.c) */
	unsigned shutdown_timeout_ms;
	unsigned stream_interval_ms; /* the view watcher's period */
	unsigned stream_heartbeat_s;
	unsigned max_stream_subscribers;
	unsigned stream_max_pending; /* events queued to one subscriber */
	uint64_t stream_max_pending_bytes;
	enum log_level log_level;
	enum log_format log_format;
	bool access_log;
	char hostname_buf[256];
	unsigned char source[CONFIG_MAX_SETTINGS]; /* enum config_source, by setting */
};

enum config_result {
	CONFIG_RUN = 0, /* configuration complete: start */
	CONFIG_DONE, /* --help or --version was printed: exit 0 */
	CONFIG_ERROR, /* err names the bad flag or variable and its value: exit 2 */
};

/* Looks up an environment variable; getenv() in the program, a table in tests. */
typedef const char *(*config_getenv_fn)(const char *name);

/*
 * Fills cfg from defaults, then the KUBIA_* variables, then the flags (flags win).
 * --help and --version print to out. The host name is read only when neither
 * --hostname nor KUBIA_HOSTNAME gives one.
 */
enum config_result config_parse(struct config *cfg, int argc, char *const argv[],
				config_getenv_fn get_env, FILE *out, char *err, size_t errlen);

/* Prints the usage text (every flag with its variable and default). */
void config_usage(FILE *out);

const char *config_mode_name(enum config_mode mode);

/* Setting i (from 0, in --help's order): its flag name, its value as text and where the
 * value came from. false past the last one. */
bool config_setting(const struct config *cfg, size_t i, const char **name, char *value,
		    size_t valuelen, enum config_source *source);

/* Records where the value of the setting named flag came from (main.c resolves the
 * automatic ones). */
void config_set_source(struct config *cfg, const char *flag, enum config_source source);

const char *config_source_name(enum config_source source);

#endif
