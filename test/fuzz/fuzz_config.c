/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the configuration (server/config.c): any command line and any
 * KUBIA_* variables. The outcome is compared with a model of the contract written here
 * on its own (README "Configuration"): every option's range or shape, variables before
 * flags, flags in order (the last one wins), the first bad value refused with its flag
 * or variable named, --help and --version whatever else is there. A valid configuration
 * is never refused and an invalid one never taken; what is taken is exactly what was
 * given. The model must know every option kubia has: it checks the list against
 * --help's text at start.
 *
 * Input: NUL-separated items. An item's first byte picks an option (high six bits) and
 * a form (low two bits): "--flag=value", "--flag" "value", the variable, or the rest of
 * the item as a raw argument.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "discovery/discovery.h"
#include "server/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ITEMS 24
#define OPT(f) offsetof(struct config, f)

enum shape { UINT, U64, PATH, DNS_NAME, HOST_PORT, HOSTNAME, PORT_NAME, MODE, LEVEL, FORMAT, BOOL };

struct model {
	const char *flag;
	enum shape shape;
	uint64_t min, max;
	const char *def;
	size_t off;
};

/* The contract's options, in kubia's order (checked against --help). */
static const struct model opts[] = {
	{"port", UINT, 1, 65535, "8080", OPT(port)},
	{"data-file", PATH, 0, 0, "/var/data/kubia.txt", OPT(data_file)},
	{"mode", MODE, 0, 0, "peers", OPT(mode)},
	{"service", DNS_NAME, 0, 0, "kubia", OPT(service)},
	{"peer-port", UINT, 0, 65535, "0", OPT(peer_port)},
	{"peer-timeout-ms", UINT, 1, 600000, "2000", OPT(peer_timeout_ms)},
	{"port-name", PORT_NAME, 0, 0, "http", OPT(port_name)},
	{"dns-server", HOST_PORT, 0, 0, NULL, OPT(dns_server)},
	{"dns-timeout-ms", UINT, 1, 600000, "2000", OPT(dns_timeout_ms)},
	{"max-body", U64, 0, 1ull << 30, "1048576", OPT(max_body)},
	{"hostname", HOSTNAME, 0, 0, NULL, OPT(hostname)},
	{"peer-connect-timeout-ms", UINT, 1, 600000, "1000", OPT(peer_connect_timeout_ms)},
	{"peer-max-bytes", U64, 1, 1ull << 30, "1048576", OPT(peer_max_bytes)},
	{"peer-max-connections", UINT, 1, 1024, "4", OPT(peer_max_connections)},
	{"max-peers", UINT, 1, 65535, "256", OPT(max_peers)},
	{"max-pending", UINT, 1, 1000000, "1024", OPT(max_pending)},
	{"replicas", UINT, 0, 65535, "0", OPT(replicas)},
	{"dns-cache-ms", UINT, 0, 3600000, "1000", OPT(dns_cache_ms)},
	{"resolv-conf", PATH, 0, 0, "/etc/resolv.conf", OPT(resolv_conf)},
	{"max-connections", UINT, 1, 1000000, "1024", OPT(max_connections)},
	{"max-connections-per-ip", UINT, 0, 1000000, "0", OPT(max_connections_per_ip)},
	{"connection-memory", U64, 4096, 1ull << 24, "32768", OPT(connection_memory)},
	{"idle-timeout-s", UINT, 1, 86400, "30", OPT(idle_timeout_s)},
	{"header-timeout-s", UINT, 1, 3600, "10", OPT(header_timeout_s)},
	{"body-min-rate", U64, 0, 1ull << 30, "1024", OPT(body_min_rate)},
	{"body-rate-window-s", UINT, 1, 3600, "5", OPT(body_rate_window_s)},
	{"threads", UINT, 0, 256, "0", OPT(threads)},
	{"max-memory", U64, 0, 1ull << 40, "0", OPT(max_memory)},
	{"shutdown-timeout-ms", UINT, 0, 600000, "25000", OPT(shutdown_timeout_ms)},
	{"log-level", LEVEL, 0, 0, "info", OPT(log_level)},
	{"log-format", FORMAT, 0, 0, "logfmt", OPT(log_format)},
	{"access-log", BOOL, 0, 0, "true", OPT(access_log)},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static const char *const levels[] = {"error", "warn", "info", "debug"};

static FILE *devnull;
static char env_names[NOPTS][64];
static const char *env_values[NOPTS];

/* ---- the contract's shapes, stated on their own ----------------------------------- */

static bool number(const char *v, uint64_t *out)
{
	uint64_t n = 0;

	if (*v == '\0') {
		return false;
	}
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9' || n > (UINT64_MAX - (uint64_t)(*v - '0')) / 10) {
			return false;
		}
		n = n * 10 + (uint64_t)(*v - '0');
	}
	*out = n;
	return true;
}

static bool alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Labels of 1-63 letters, digits, '-' and '_' between dots; 253 characters at most
 * without the trailing dot of a fully qualified name. */
static bool dns_name(const char *v)
{
	size_t n = strlen(v);
	size_t label = 0;

	if (n == 0 || v[0] == '.' || n - (v[n - 1] == '.') > 253) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '.') {
			if (label == 0) {
				return false;
			}
			label = 0;
		} else if ((!alnum(v[i]) && v[i] != '-' && v[i] != '_') || ++label > 63) {
			return false;
		}
	}
	return true;
}

/* An IANA service name as Kubernetes takes it for a port: 1-15 of a-z, 0-9 and '-',
 * a letter among them, no '-' first, last or twice in a row. */
static bool port_name(const char *v)
{
	size_t n = strlen(v);
	bool letter = false;

	if (n == 0 || n > 15 || v[0] == '-' || v[n - 1] == '-' || strstr(v, "--") != NULL) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if ((v[i] < 'a' || v[i] > 'z') && (v[i] < '0' || v[i] > '9') && v[i] != '-') {
			return false;
		}
		letter = letter || (v[i] >= 'a' && v[i] <= 'z');
	}
	return letter;
}

static bool valid(const struct model *o, const char *v)
{
	uint64_t n = 0;
	size_t len = strlen(v);

	switch (o->shape) {
	case UINT:
	case U64:
		return number(v, &n) && n >= o->min && n <= o->max;
	case PATH:
		return len > 0 && len < 4096 && v[len - 1] != '/';
	case DNS_NAME:
		return dns_name(v);
	case HOST_PORT: {
		/* Whatever discovery itself can use (its parser is fuzzed in fuzz_names). */
		struct discovery_dns_server s;
		char why[128];

		return discovery_parse_dns_server(v, &s, why, sizeof(why));
	}
	case HOSTNAME:
		for (size_t i = 0; i < len; i++) {
			if (v[i] <= ' ' || v[i] >= 0x7f || v[i] == '/') {
				return false;
			}
		}
		return len > 0 && len <= 253;
	case PORT_NAME:
		return port_name(v);
	case MODE:
		return strcmp(v, "peers") == 0 || strcmp(v, "pet") == 0;
	case LEVEL:
		for (size_t i = 0; i < 4; i++) {
			if (strcmp(v, levels[i]) == 0) {
				return true;
			}
		}
		return false;
	case FORMAT:
		return strcmp(v, "logfmt") == 0 || strcmp(v, "json") == 0;
	case BOOL:
		return strcmp(v, "true") == 0 || strcmp(v, "false") == 0;
	}
	return false;
}

/* ---- what must come out --------------------------------------------------------- */

struct outcome {
	enum config_result result;
	const char *says; /* on an error: what err must name */
	char says_buf[80];
	const char *value; /* and the value it must show, if a bad value it is */
	const char *eff[NOPTS]; /* on a run: each option's text in force */
	enum config_source from[NOPTS]; /* and where it came from */
};

static const struct model *find(const char *name, size_t len)
{
	for (size_t i = 0; i < NOPTS; i++) {
		if (strlen(opts[i].flag) == len && strncmp(opts[i].flag, name, len) == 0) {
			return &opts[i];
		}
	}
	return NULL;
}

static size_t at(const char *flag)
{
	const struct model *m = find(flag, strlen(flag));

	if (m == NULL) {
		abort();
	}
	return (size_t)(m - opts);
}

static void refuse(struct outcome *o, const char *prefix, const char *name)
{
	o->result = CONFIG_ERROR;
	snprintf(o->says_buf, sizeof(o->says_buf), "%s%s", prefix, name);
	o->says = o->says_buf;
}

static uint64_t num(const char *v)
{
	uint64_t n = 0;

	return number(v, &n) ? n : 0;
}

static void expect(int argc, char **argv, struct outcome *o)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--version") == 0) {
			o->result = CONFIG_DONE;
			return;
		}
	}
	o->result = CONFIG_RUN;
	for (size_t k = 0; k < NOPTS; k++) {
		o->eff[k] = opts[k].def;
		if (env_values[k] != NULL) {
			if (!valid(&opts[k], env_values[k])) {
				refuse(o, "", env_names[k]);
				o->value = env_values[k];
				return;
			}
			o->eff[k] = env_values[k];
			o->from[k] = CONFIG_FROM_VARIABLE;
		}
	}
	for (int i = 1; i < argc; i++) {
		const char *name = argv[i];
		const char *eq;
		size_t len;
		const struct model *m;
		const char *v;

		if (strncmp(argv[i], "--", 2) != 0 || argv[i][2] == '\0') {
			refuse(o, "", "unexpected argument");
			return;
		}
		name += 2;
		eq = strchr(name, '=');
		len = eq != NULL ? (size_t)(eq - name) : strlen(name);
		m = find(name, len);
		if (m == NULL) {
			refuse(o, "", "unknown option");
			return;
		}
		if (eq == NULL && i + 1 >= argc) {
			refuse(o, "", "needs a value");
			return;
		}
		v = eq != NULL ? eq + 1 : argv[++i];
		if (!valid(m, v)) {
			refuse(o, "--", m->flag);
			o->value = v;
			return;
		}
		o->eff[m - opts] = v;
		o->from[m - opts] = CONFIG_FROM_FLAG;
	}
	/* max-memory must leave room for a body of max-body, unless automatic. */
	if (num(o->eff[at("max-memory")]) != 0 &&
	    num(o->eff[at("max-memory")]) <= num(o->eff[at("max-body")])) {
		refuse(o, "--", "max-memory");
	}
}

static void check_run(const struct config *c, const struct outcome *o)
{
	for (size_t k = 0; k < NOPTS; k++) {
		const char *field = (const char *)c + opts[k].off;
		const char *e = o->eff[k];
		const char *s = NULL;
		uint64_t n = num(e != NULL ? e : "0");
		bool ok;

		switch (opts[k].shape) {
		case UINT:
			if (k == at("peer-connect-timeout-ms") &&
			    n > num(o->eff[at("peer-timeout-ms")])) {
				n = num(o->eff[at("peer-timeout-ms")]); /* within the total */
			}
			ok = *(const unsigned *)(const void *)field == n;
			break;
		case U64:
			ok = *(const uint64_t *)(const void *)field == n;
			break;
		case MODE:
			ok = c->mode ==
			     (strcmp(e, "pet") == 0 ? CONFIG_MODE_PET : CONFIG_MODE_PEERS);
			break;
		case LEVEL:
			ok = strcmp(levels[c->log_level], e) == 0;
			break;
		case FORMAT:
			ok = strcmp(log_format_name(c->log_format), e) == 0;
			break;
		case BOOL:
			ok = c->access_log == (strcmp(e, "true") == 0);
			break;
		case HOSTNAME:
			memcpy(&s, field, sizeof(s));
			/* Without one given, the machine's own. */
			ok = e != NULL ? s != NULL && strcmp(s, e) == 0
				       : s == c->hostname_buf && s[0] != '\0';
			break;
		default:
			memcpy(&s, field, sizeof(s));
			ok = e == NULL ? s == NULL : s != NULL && strcmp(s, e) == 0;
			break;
		}
		if (!ok || c->source[k] != o->from[k]) {
			fprintf(stderr, "--%s is not what was given\n", opts[k].flag);
			abort();
		}
	}
}

/* The model knows every option of --help, in its order, and each variable's name. */
static void init(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	const char *p;
	size_t k = 0;

	devnull = fopen("/dev/null", "w");
	if (f == NULL || devnull == NULL) {
		abort();
	}
	config_usage(f);
	fclose(f);
	for (p = strstr(text, "\n  --"); p != NULL; p = strstr(p + 1, "\n  --")) {
		const char *name = p + 5;
		size_t n = strcspn(name, " ");

		if ((n == 4 && strncmp(name, "help", 4) == 0) ||
		    (n == 7 && strncmp(name, "version", 7) == 0)) {
			continue;
		}
		if (k >= NOPTS || strlen(opts[k].flag) != n || strncmp(opts[k].flag, name, n)) {
			fprintf(stderr, "fuzz_config: the model lacks --%.*s\n", (int)n, name);
			abort();
		}
		k++;
	}
	if (k != NOPTS) {
		fprintf(stderr, "fuzz_config: kubia has no --%s\n", opts[k].flag);
		abort();
	}
	free(text);
	for (k = 0; k < NOPTS; k++) {
		size_t i;

		memcpy(env_names[k], "KUBIA_", 6);
		for (i = 0; opts[k].flag[i] != '\0'; i++) {
			char ch = opts[k].flag[i];

			env_names[k][6 + i] = ch == '-' ? '_' : (char)(ch - 'a' + 'A');
		}
		env_names[k][6 + i] = '\0';
	}
}

/* One line of text: whatever a value holds, shown escaped (no control bytes). */
static bool one_line(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f) {
			return false;
		}
	}
	return true;
}

static const char *fake_getenv(const char *name)
{
	for (size_t k = 0; k < NOPTS; k++) {
		if (strcmp(name, env_names[k]) == 0) {
			return env_values[k];
		}
	}
	return NULL;
}

/* A bad value as the error must show it: quoted, control bytes as \xHH, quotes and
 * backslashes after a backslash (docs/contract.md). false when it is too long to be
 * shown whole. */
static bool shown(const char *v, char *buf, size_t len)
{
	size_t w = 0;

	buf[w++] = '"';
	for (; *v != '\0' && w + 6 < len; v++) {
		unsigned char c = (unsigned char)*v;

		if (c < 0x20 || c == 0x7f) {
			w += (size_t)snprintf(buf + w, len - w, "\\x%02x", c);
		} else {
			if (c == '"' || c == '\\') {
				buf[w++] = '\\';
			}
			buf[w++] = (char)c;
		}
	}
	buf[w++] = '"';
	buf[w] = '\0';
	return *v == '\0';
}

/* config_parse() against the model, for one command line and the variables set. */
static void check_case(int argc, char **argv)
{
	struct outcome want;
	struct config c;
	char err[512] = "";
	char quoted[100];
	enum config_result r;

	memset(&want, 0, sizeof(want));
	expect(argc, argv, &want);
	r = config_parse(&c, argc, argv, fake_getenv, devnull, err, sizeof(err));
	if (r != want.result) {
		fprintf(stderr, "config_parse gave %d, the contract %d (%s)\n", r, want.result,
			err);
		abort();
	}
	if (r == CONFIG_ERROR && (strstr(err, want.says) == NULL || !one_line(err))) {
		fprintf(stderr, "the error does not name %s in one line: %s\n", want.says, err);
		abort();
	}
	if (r == CONFIG_ERROR && want.value != NULL && shown(want.value, quoted, 100) &&
	    strstr(err, quoted) == NULL) {
		fprintf(stderr, "the error does not show %s: %s\n", quoted, err);
		abort();
	}
	if (r == CONFIG_RUN) {
		check_run(&c, &want);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	char *copy = malloc(size + 1);
	char *argv[2 * MAX_ITEMS + 2];
	char flags[MAX_ITEMS][64];
	int argc = 1;
	size_t items = 0;

	if (!ready) {
		init();
		ready = true;
	}
	if (copy == NULL) {
		abort();
	}
	memcpy(copy, data, size);
	copy[size] = '\0';
	memset(env_values, 0, sizeof(env_values));
	argv[0] = "kubia";
	for (char *item = copy; item < copy + size && items < MAX_ITEMS;
	     item += strlen(item) + 1, items++) {
		const struct model *m = &opts[((unsigned char)item[0] >> 2) % NOPTS];
		const char *value = item[0] != '\0' ? item + 1 : item;

		switch ((unsigned char)item[0] & 3) {
		case 0:
			snprintf(flags[items], sizeof(flags[items]), "--%s=", m->flag);
			/* The value follows the '=' in a string of its own making. */
			argv[argc] = malloc(strlen(flags[items]) + strlen(value) + 1);
			if (argv[argc] == NULL) {
				abort();
			}
			strcpy(argv[argc], flags[items]);
			strcat(argv[argc++], value);
			break;
		case 1:
			snprintf(flags[items], sizeof(flags[items]), "--%s", m->flag);
			argv[argc++] = strdup(flags[items]);
			argv[argc++] = strdup(value);
			break;
		case 2:
			env_values[m - opts] = value;
			break;
		default:
			argv[argc++] = strdup(value);
			break;
		}
	}
	argv[argc] = NULL;
	check_case(argc, argv);
	/* The first item's value alone, as its option's flag: each option and its check
	 * meet every value the fuzzer makes, not only when a whole command line passes. */
	if (size > 0 && copy[0] != '\0') {
		char *one[3] = {"kubia", NULL, NULL};
		const struct model *m = &opts[((unsigned char)copy[0] >> 2) % NOPTS];

		memset(env_values, 0, sizeof(env_values));
		if (asprintf(&one[1], "--%s=%s", m->flag, copy + 1) < 0) {
			abort();
		}
		check_case(2, one);
		free(one[1]);
	}
	for (int i = 1; i < argc; i++) {
		free(argv[i]);
	}
	free(copy);
	return 0;
}
