/* SPDX-License-Identifier: MIT */
#include "server/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errtext.h"
#include "common/parse.h"
#include "common/timeout.h"
#include "discovery/discovery.h"
#include "version.h"

enum opt_kind {
	OPT_UINT, /* unsigned, stored in an unsigned */
	OPT_U64, /* byte counts, stored in a uint64_t */
	OPT_STRING, /* validated by a check function */
	OPT_MODE,
	OPT_LEVEL,
	OPT_FORMAT,
	OPT_BOOL,
};

/* Checks a value; false with the reason (not repeating the value) in why. */
typedef bool (*check_fn)(const char *value, char *why, size_t whylen);

struct opt {
	const char *flag;
	const char *env;
	enum opt_kind kind;
	size_t offset;
	uint64_t min;
	uint64_t max;
	const char *def; /* default as text, shown in --help; NULL: none */
	check_fn check;
	const char *help;
};

static bool check_path(const char *v, char *why, size_t whylen);
static bool check_dns_name(const char *v, char *why, size_t whylen);
static bool check_host_port(const char *v, char *why, size_t whylen);
static bool check_hostname(const char *v, char *why, size_t whylen);
static bool check_port_name(const char *v, char *why, size_t whylen);

#define OFF(field) offsetof(struct config, field)

/* The first ten are the stable names of the contract (docs/contract.md); the rest are
 * kubia's own limits. */
static const struct opt opts[] = {
	{"port", "KUBIA_PORT", OPT_UINT, OFF(port), 1, 65535, "8080", NULL,
	 "TCP port to listen on (all addresses, IPv4 and IPv6)"},
	{"data-file", "KUBIA_DATA_FILE", OPT_STRING, OFF(data_file), 0, 0, "/var/data/kubia.txt",
	 check_path, "the pod's data; its directory is locked"},
	{"mode", "KUBIA_MODE", OPT_MODE, OFF(mode), 0, 0, "peers", NULL,
	 "peers (cluster view) or pet (this pod only)"},
	{"service", "KUBIA_SERVICE", OPT_STRING, OFF(service), 0, 0, "kubia", check_dns_name,
	 "governing Service to look up (short or fully qualified)"},
	{"peer-port", "KUBIA_PEER_PORT", OPT_UINT, OFF(peer_port), 0, 65535, "0", NULL,
	 "port for peers; 0 = the SRV record's port"},
	{"peer-timeout-ms", "KUBIA_PEER_TIMEOUT_MS", OPT_UINT, OFF(peer_timeout_ms), 1, 600000,
	 "2000", NULL, "total time allowed for one peer"},
	{"port-name", "KUBIA_PORT_NAME", OPT_STRING, OFF(port_name), 0, 0, "http", check_port_name,
	 "the container port's name: a bare service name without SRV records is asked as "
	 "_<port-name>._tcp.<service>"},
	{"dns-server", "KUBIA_DNS_SERVER", OPT_STRING, OFF(dns_server), 0, 0, NULL, check_host_port,
	 "IP[:port] to ask instead of the system's servers (an address, not a name)"},
	{"dns-timeout-ms", "KUBIA_DNS_TIMEOUT_MS", OPT_UINT, OFF(dns_timeout_ms), 1, 600000, "2000",
	 NULL, "total time allowed for the SRV lookup"},
	{"max-body", "KUBIA_MAX_BODY", OPT_U64, OFF(max_body), 0, (uint64_t)1 << 30, "1048576",
	 NULL, "largest POST body in bytes"},
	{"hostname", "KUBIA_HOSTNAME", OPT_STRING, OFF(hostname), 0, 0, NULL, check_hostname,
	 "the pod name shown in replies (default: the host name)"},
	{"peer-connect-timeout-ms", "KUBIA_PEER_CONNECT_TIMEOUT_MS", OPT_UINT,
	 OFF(peer_connect_timeout_ms), 1, 600000, "1000", NULL,
	 "time allowed to connect to one peer"},
	{"peer-max-bytes", "KUBIA_PEER_MAX_BYTES", OPT_U64, OFF(peer_max_bytes), 1,
	 (uint64_t)1 << 30, "1048576", NULL, "largest /data reply accepted from a peer"},
	{"peer-max-connections", "KUBIA_PEER_MAX_CONNECTIONS", OPT_UINT, OFF(peer_max_connections),
	 1, 1024, "4", NULL, "most requests to one peer at once; views share them"},
	{"max-peers", "KUBIA_MAX_PEERS", OPT_UINT, OFF(max_peers), 1, 65535, "256", NULL,
	 "most peers listed from one SRV answer"},
	{"max-pending", "KUBIA_MAX_PENDING", OPT_UINT, OFF(max_pending), 1, 1000000, "1024", NULL,
	 "most cluster views being assembled at once (more get 503)"},
	{"replicas", "KUBIA_REPLICAS", OPT_UINT, OFF(replicas), 0, 65535, "0", NULL,
	 "the StatefulSet's number of pods: the ordinals up to it that DNS does not list "
	 "are shown as missing; 0 = unknown"},
	{"dns-cache-ms", "KUBIA_DNS_CACHE_MS", OPT_UINT, OFF(dns_cache_ms), 0, 3600000, "1000",
	 NULL, "longest time an SRV answer is reused (never past its TTL); 0 = never"},
	{"resolv-conf", "KUBIA_RESOLV_CONF", OPT_STRING, OFF(resolv_conf), 0, 0, "/etc/resolv.conf",
	 check_path, "where the search list (and servers) are read"},
	{"max-connections", "KUBIA_MAX_CONNECTIONS", OPT_UINT, OFF(max_connections), 1, 1000000,
	 "1024", NULL, "most client connections at once"},
	{"max-connections-per-ip", "KUBIA_MAX_CONNECTIONS_PER_IP", OPT_UINT,
	 OFF(max_connections_per_ip), 0, 1000000, "0", NULL,
	 "most connections from one client address; 0 = no limit"},
	{"connection-memory", "KUBIA_CONNECTION_MEMORY", OPT_U64, OFF(connection_memory), 4096,
	 (uint64_t)1 << 24, "32768", NULL,
	 "memory per connection for the request line and headers"},
	{"idle-timeout-s", "KUBIA_IDLE_TIMEOUT_S", OPT_UINT, OFF(idle_timeout_s), 1, 86400, "30",
	 NULL, "seconds before an idle connection is closed"},
	{"header-timeout-s", "KUBIA_HEADER_TIMEOUT_S", OPT_UINT, OFF(header_timeout_s), 1, 3600,
	 "10", NULL,
	 "seconds a request's whole head may take (a kept-alive connection's wait for it "
	 "included); past them the connection is closed"},
	{"body-min-rate", "KUBIA_BODY_MIN_RATE", OPT_U64, OFF(body_min_rate), 0, (uint64_t)1 << 30,
	 "1024", NULL,
	 "bytes/s a request body must keep up over each window, after one window of grace, "
	 "or the connection is closed; 0 = no minimum"},
	{"body-rate-window-s", "KUBIA_BODY_RATE_WINDOW_S", OPT_UINT, OFF(body_rate_window_s), 1,
	 3600, "5", NULL, "seconds over which --body-min-rate is measured"},
	{"threads", "KUBIA_THREADS", OPT_UINT, OFF(threads), 0, 256, "0", NULL,
	 "HTTP threads; 0 = the container's CPU quota (cgroup), else one per CPU"},
	{"max-memory", "KUBIA_MAX_MEMORY", OPT_U64, OFF(max_memory), 0, (uint64_t)1 << 40, "0",
	 NULL,
	 "memory for bodies, peer answers and responses in flight together (more get 503); "
	 "0 = half the container's memory limit (cgroup), else 256 MiB"},
	{"shutdown-timeout-ms", "KUBIA_SHUTDOWN_TIMEOUT_MS", OPT_UINT, OFF(shutdown_timeout_ms), 0,
	 600000, "25000", NULL, "time requests in flight get to finish after SIGTERM"},
	{"stream-interval-ms", "KUBIA_STREAM_INTERVAL_MS", OPT_UINT, OFF(stream_interval_ms), 100,
	 600000, "500", NULL,
	 "how often the view stream's watcher assembles the view while anyone watches"},
	{"stream-heartbeat-s", "KUBIA_STREAM_HEARTBEAT_S", OPT_UINT, OFF(stream_heartbeat_s), 1,
	 3600, "15", NULL, "seconds of silence on a view stream before a heartbeat comment"},
	{"max-stream-subscribers", "KUBIA_MAX_STREAM_SUBSCRIBERS", OPT_UINT,
	 OFF(max_stream_subscribers), 1, 1000000, "256", NULL,
	 "most view streams open at once (more get 503); each is also a connection"},
	{"stream-max-pending", "KUBIA_STREAM_MAX_PENDING", OPT_UINT, OFF(stream_max_pending), 1,
	 1024, "8", NULL,
	 "events queued to one view stream; a subscriber that falls further behind is dropped"},
	{"stream-max-pending-bytes", "KUBIA_STREAM_MAX_PENDING_BYTES", OPT_U64,
	 OFF(stream_max_pending_bytes), 1024, (uint64_t)1 << 30, "4194304", NULL,
	 "bytes queued to one view stream (past its first event) before it is dropped"},
	{"log-level", "KUBIA_LOG_LEVEL", OPT_LEVEL, OFF(log_level), 0, 0, "info", NULL,
	 "error, warn, info or debug"},
	{"log-format", "KUBIA_LOG_FORMAT", OPT_FORMAT, OFF(log_format), 0, 0, "logfmt", NULL,
	 "logfmt or json: one line per event on standard error"},
	{"access-log", "KUBIA_ACCESS_LOG", OPT_BOOL, OFF(access_log), 0, 0, "true", NULL,
	 "true or false: a line per request (at level info)"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

const char *config_mode_name(enum config_mode mode)
{
	return mode == CONFIG_MODE_PET ? "pet" : "peers";
}

static bool check_path(const char *v, char *why, size_t whylen)
{
	size_t n = strlen(v);

	if (n == 0) {
		snprintf(why, whylen, "expected a file path");
		return false;
	}
	if (v[n - 1] == '/') {
		snprintf(why, whylen, "expected a file path, not a directory");
		return false;
	}
	if (n >= PATH_MAX) {
		snprintf(why, whylen, "path too long");
		return false;
	}
	return true;
}

/* Letters, digits, '-', '_' and dots between labels of 1-63 characters. A trailing dot
 * marks a fully qualified name. */
static bool check_dns_name(const char *v, char *why, size_t whylen)
{
	size_t n = strlen(v), label = 0;

	snprintf(why, whylen,
		 "expected a DNS name such as kubia or kubia.default.svc.cluster.local");
	/* 253 characters, plus the trailing dot of a fully qualified name. */
	if (n == 0 || n - (v[n - 1] == '.') > 253 || v[0] == '.') {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c == '.') {
			if (label == 0) {
				return false;
			}
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_') {
			return false;
		}
		if (++label > 63) {
			return false;
		}
	}
	return true;
}

/* The DNS server is parsed by discovery's own parser, so what is accepted here is exactly
 * what discovery can use, in either mode. */
static bool check_host_port(const char *v, char *why, size_t whylen)
{
	struct discovery_dns_server server;

	return discovery_parse_dns_server(v, &server, why, whylen);
}

/* A Kubernetes port name (an IANA service name): 1-15 lower-case letters, digits and
 * '-', at least one letter, no '-' at either end or twice in a row. */
static bool check_port_name(const char *v, char *why, size_t whylen)
{
	size_t n = strlen(v);
	bool letter = false;

	snprintf(why, whylen,
		 "expected a port name such as http: 1-15 lower-case letters, "
		 "digits and single inner dashes, with a letter");
	if (n == 0 || n > 15 || v[0] == '-' || v[n - 1] == '-') {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char c = v[i];

		if (c == '-' && v[i + 1] == '-') {
			return false;
		}
		if ((c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-') {
			return false;
		}
		letter = letter || (c >= 'a' && c <= 'z');
	}
	return letter;
}

static bool check_hostname(const char *v, char *why, size_t whylen)
{
	size_t n = strlen(v);

	snprintf(why, whylen, "expected a host name of 1-253 printable characters without spaces");
	if (n == 0 || n > 253) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c <= ' ' || c >= 0x7f || c == '/') {
			return false;
		}
	}
	return true;
}

/* The first n bytes of v as an error message shows them: between quotes, control bytes
 * as \xHH, quotes and backslashes after a backslash, so that a value never breaks the
 * message's line or reads as something else; cut with "..." when buf is too small. */
static const char *quote(const char *v, size_t n, char *buf, size_t buflen)
{
	static const char hex[] = "0123456789abcdef";
	size_t w = 0;

	buf[w++] = '"';
	for (size_t i = 0; i < n && v[i] != '\0'; i++) {
		unsigned char c = (unsigned char)v[i];
		char esc[5] = {(char)c, '\0'};

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			esc[2] = '\0';
		} else if (c < 0x20 || c == 0x7f) {
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hex[c >> 4];
			esc[3] = hex[c & 0xf];
			esc[4] = '\0';
		}
		if (w + strlen(esc) + 5 > buflen) {
			memcpy(buf + w, "...", 3);
			w += 3;
			break;
		}
		memcpy(buf + w, esc, strlen(esc));
		w += strlen(esc);
	}
	buf[w++] = '"';
	buf[w] = '\0';
	return buf;
}

/* Applies one value; `source` is the flag or variable as the user wrote it. */
static bool apply(struct config *cfg, const struct opt *o, const char *value, const char *source,
		  bool is_flag, char *err, size_t errlen)
{
	char *field = (char *)cfg + o->offset;
	char why[160] = "";
	char shown[160];
	uint64_t v = 0;

	quote(value, strlen(value), shown, sizeof(shown));
	switch (o->kind) {
	case OPT_UINT:
	case OPT_U64:
		if (!parse_u64(value, &v) || v < o->min || v > o->max) {
			errtext_set(err, errlen,
				    "invalid value for %s%s: %s (expected an integer from %" PRIu64
				    " to %" PRIu64 ")",
				    is_flag ? "--" : "", source, shown, o->min, o->max);
			return false;
		}
		if (o->kind == OPT_UINT) {
			*(unsigned *)(void *)field = (unsigned)v;
		} else {
			*(uint64_t *)(void *)field = v;
		}
		return true;
	case OPT_STRING:
		if (o->check != NULL && !o->check(value, why, sizeof(why))) {
			errtext_set(err, errlen, "invalid value for %s%s: %s (%s)",
				    is_flag ? "--" : "", source, shown, why);
			return false;
		}
		*(const char **)(void *)field = value;
		return true;
	case OPT_MODE:
		if (strcmp(value, "peers") == 0) {
			cfg->mode = CONFIG_MODE_PEERS;
		} else if (strcmp(value, "pet") == 0) {
			cfg->mode = CONFIG_MODE_PET;
		} else {
			errtext_set(err, errlen,
				    "invalid value for %s%s: %s (expected peers or pet)",
				    is_flag ? "--" : "", source, shown);
			return false;
		}
		return true;
	case OPT_LEVEL:
		if (!log_level_parse(value, &cfg->log_level)) {
			errtext_set(err, errlen,
				    "invalid value for %s%s: %s (expected error, warn, info or "
				    "debug)",
				    is_flag ? "--" : "", source, shown);
			return false;
		}
		return true;
	case OPT_FORMAT:
		if (!log_format_parse(value, &cfg->log_format)) {
			errtext_set(err, errlen,
				    "invalid value for %s%s: %s (expected logfmt or json)",
				    is_flag ? "--" : "", source, shown);
			return false;
		}
		return true;
	case OPT_BOOL:
		if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
			errtext_set(err, errlen,
				    "invalid value for %s%s: %s (expected true or false)",
				    is_flag ? "--" : "", source, shown);
			return false;
		}
		*(bool *)(void *)field = strcmp(value, "true") == 0;
		return true;
	}
	return false;
}

void config_usage(FILE *out)
{
	fprintf(out, "Usage: kubia [OPTION]...\n"
		     "The stateful clustered data store of Kubernetes in Action, chapter 10.\n"
		     "Every option can also be set by its environment variable; flags win.\n\n");
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt *o = &opts[i];
		fprintf(out, "  --%-26s %-31s %s", o->flag, o->env, o->help);
		if (o->def != NULL) {
			fprintf(out, " [%s]", o->def);
		}
		fputc('\n', out);
	}
	fprintf(out, "  --%-26s %-31s %s\n", "help", "", "show this text and exit");
	fprintf(out, "  --%-26s %-31s %s\n", "version", "", "show the version and exit");
}

static const struct opt *find_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < NOPTS; i++) {
		if (strlen(opts[i].flag) == len && strncmp(opts[i].flag, name, len) == 0) {
			return &opts[i];
		}
	}
	return NULL;
}

/* --help and --version answer whatever else the command line or the environment says:
 * someone asking for help with a broken KUBIA_* variable must still get it. */
static bool help_or_version(int argc, char *const argv[], FILE *out)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			config_usage(out);
			return true;
		}
		if (strcmp(argv[i], "--version") == 0) {
			fprintf(out, "kubia %s\n", KUBIA_VERSION);
			return true;
		}
	}
	return false;
}

/* The KUBIA_* variables, each over its default. */
static bool apply_env(struct config *cfg, config_getenv_fn get_env, char *err, size_t errlen)
{
	for (size_t i = 0; i < NOPTS; i++) {
		const char *v = get_env != NULL ? get_env(opts[i].env) : NULL;

		if (v == NULL) {
			continue;
		}
		if (!apply(cfg, &opts[i], v, opts[i].env, false, err, errlen)) {
			return false;
		}
		cfg->source[i] = CONFIG_FROM_VARIABLE;
	}
	return true;
}

enum config_result config_parse(struct config *cfg, int argc, char *const argv[],
				config_getenv_fn get_env, FILE *out, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	if (help_or_version(argc, argv, out)) {
		return CONFIG_DONE;
	}
	for (size_t i = 0; i < NOPTS; i++) {
		if (opts[i].def != NULL &&
		    !apply(cfg, &opts[i], opts[i].def, opts[i].flag, true, err, errlen)) {
			return CONFIG_ERROR; /* a broken default is a bug; still say so */
		}
	}
	if (!apply_env(cfg, get_env, err, errlen)) {
		return CONFIG_ERROR;
	}
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *name, *eq, *value;
		char shown[160];
		const struct opt *o;
		size_t len;

		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
			errtext_set(err, errlen, "unexpected argument %s (see --help)",
				    quote(arg, strlen(arg), shown, sizeof(shown)));
			return CONFIG_ERROR;
		}
		name = arg + 2;
		eq = strchr(name, '=');
		len = eq != NULL ? (size_t)(eq - name) : strlen(name);
		o = find_flag(name, len);
		if (o == NULL) {
			errtext_set(err, errlen, "unknown option %s (see --help)",
				    quote(arg, (size_t)(name - arg) + len, shown, sizeof(shown)));
			return CONFIG_ERROR;
		}
		if (eq != NULL) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			errtext_set(err, errlen, "option --%s needs a value", o->flag);
			return CONFIG_ERROR;
		}
		if (!apply(cfg, o, value, o->flag, true, err, errlen)) {
			return CONFIG_ERROR;
		}
		cfg->source[o - opts] = CONFIG_FROM_FLAG;
	}
	if (cfg->max_memory != 0 && cfg->max_memory <= cfg->max_body) {
		errtext_set(err, errlen,
			    "invalid value for --max-memory: %" PRIu64
			    " (must be more than --max-body, %" PRIu64
			    ", or no POST could be taken)",
			    cfg->max_memory, cfg->max_body);
		return CONFIG_ERROR;
	}
	/* curl would give up at the total anyway; keep the two coherent. */
	cfg->peer_connect_timeout_ms =
		timeout_connect_ms(cfg->peer_connect_timeout_ms, cfg->peer_timeout_ms);
	if (cfg->hostname == NULL) {
		if (gethostname(cfg->hostname_buf, sizeof(cfg->hostname_buf) - 1) != 0 ||
		    cfg->hostname_buf[0] == '\0') {
			errtext_set(err, errlen,
				    "could not read the host name: %s (set --hostname or "
				    "KUBIA_HOSTNAME)",
				    strerror(errno));
			return CONFIG_ERROR;
		}
		cfg->hostname = cfg->hostname_buf;
	}
	return CONFIG_RUN;
}

_Static_assert(NOPTS <= CONFIG_MAX_SETTINGS, "CONFIG_MAX_SETTINGS is too small");

const char *config_source_name(enum config_source source)
{
	static const char *const names[] = {"default", "variable", "flag", "cgroup"};

	return names[source];
}

void config_set_source(struct config *cfg, const char *flag, enum config_source source)
{
	const struct opt *o = find_flag(flag, strlen(flag));

	if (o != NULL) {
		cfg->source[o - opts] = (unsigned char)source;
	}
}

bool config_setting(const struct config *cfg, size_t i, const char **name, char *value,
		    size_t valuelen, enum config_source *source)
{
	const struct opt *o;
	const char *field;

	if (i >= NOPTS) {
		return false;
	}
	o = &opts[i];
	field = (const char *)cfg + o->offset;
	*name = o->flag;
	*source = (enum config_source)cfg->source[i];
	switch (o->kind) {
	case OPT_UINT:
		snprintf(value, valuelen, "%u", *(const unsigned *)(const void *)field);
		break;
	case OPT_U64:
		snprintf(value, valuelen, "%" PRIu64, *(const uint64_t *)(const void *)field);
		break;
	case OPT_STRING: {
		const char *s = *(const char *const *)(const void *)field;
		snprintf(value, valuelen, "%s", s != NULL ? s : "");
		break;
	}
	case OPT_MODE:
		snprintf(value, valuelen, "%s", config_mode_name(cfg->mode));
		break;
	case OPT_LEVEL:
		snprintf(value, valuelen, "%s", log_level_name(cfg->log_level));
		break;
	case OPT_FORMAT:
		snprintf(value, valuelen, "%s", log_format_name(cfg->log_format));
		break;
	case OPT_BOOL:
		snprintf(value, valuelen, "%s",
			 *(const bool *)(const void *)field ? "true" : "false");
		break;
	}
	return true;
}
