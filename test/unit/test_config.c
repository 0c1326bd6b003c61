/* SPDX-License-Identifier: MIT */
/* Unit tests of configuration: defaults, variables, flags, precedence and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/config.h"

/* A fake environment: NULL-terminated name/value pairs. */
static const char *const *fake_env;

static const char *fake_getenv(const char *name)
{
	for (size_t i = 0; fake_env != NULL && fake_env[i] != NULL; i += 2) {
		if (strcmp(fake_env[i], name) == 0) {
			return fake_env[i + 1];
		}
	}
	return NULL;
}

static enum config_result parse(struct config *cfg, const char *const *env, char *err,
				size_t errlen, int argc, ...)
{
	char *argv[32];
	va_list ap;
	FILE *out = fopen("/dev/null", "w");
	enum config_result r;

	assert_non_null(out);
	assert_true(argc < 32);
	argv[0] = (char *)(uintptr_t) "kubia";
	va_start(ap, argc);
	for (int i = 1; i < argc; i++) {
		argv[i] = (char *)(uintptr_t)va_arg(ap, const char *);
	}
	va_end(ap);
	argv[argc] = NULL;
	fake_env = env;
	err[0] = '\0';
	r = config_parse(cfg, argc, argv, fake_getenv, out, err, errlen);
	fclose(out);
	return r;
}

static void test_defaults(void **state)
{
	struct config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, NULL, err, sizeof(err), 1), CONFIG_RUN);
	assert_int_equal(c.port, 8080);
	assert_string_equal(c.data_file, "/var/data/kubia.txt");
	assert_int_equal(c.mode, CONFIG_MODE_PEERS);
	assert_string_equal(c.service, "kubia");
	assert_int_equal(c.peer_port, 0);
	assert_int_equal(c.peer_timeout_ms, 2000);
	assert_null(c.dns_server);
	assert_int_equal(c.dns_timeout_ms, 2000);
	assert_int_equal(c.max_body, 1048576);
	assert_non_null(c.hostname);
	assert_true(strlen(c.hostname) > 0);
	assert_int_equal(c.dns_cache_ms, 1000);
	assert_int_equal(c.shutdown_timeout_ms, 25000);
	assert_int_equal(c.log_level, LOG_LEVEL_INFO);
	assert_string_equal(c.resolv_conf, "/etc/resolv.conf");
	assert_int_equal(c.header_timeout_s, 10);
	assert_int_equal(c.body_min_rate, 1024);
	assert_int_equal(c.body_rate_window_s, 5);
}

static void test_env_and_flags(void **state)
{
	static const char *const env[] = {"KUBIA_PORT",
					  "9000",
					  "KUBIA_MODE",
					  "pet",
					  "KUBIA_HOSTNAME",
					  "kubia-7",
					  "KUBIA_SERVICE",
					  "kubia.default.svc.cluster.local.",
					  NULL};
	struct config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, env, err, sizeof(err), 1), CONFIG_RUN);
	assert_int_equal(c.port, 9000);
	assert_int_equal(c.mode, CONFIG_MODE_PET);
	assert_string_equal(c.hostname, "kubia-7");
	assert_string_equal(c.service, "kubia.default.svc.cluster.local.");
	/* flags win, both spellings */
	assert_int_equal(parse(&c, env, err, sizeof(err), 4, "--port", "9100", "--mode=peers"),
			 CONFIG_RUN);
	assert_int_equal(c.port, 9100);
	assert_int_equal(c.mode, CONFIG_MODE_PEERS);
	assert_string_equal(c.hostname, "kubia-7");
}

static void test_every_flag_parses(void **state)
{
	struct config c;
	char err[256];

	(void)state;
	assert_int_equal(
		parse(&c, NULL, err, sizeof(err), 24, "--peer-port=81", "--peer-timeout-ms=150",
		      "--dns-server=127.0.0.1:5353", "--dns-timeout-ms=300", "--max-body=10",
		      "--hostname=p-1", "--peer-connect-timeout-ms=100", "--peer-max-bytes=99",
		      "--max-peers=3", "--max-pending=4", "--dns-cache-ms=0",
		      "--resolv-conf=/tmp/r", "--max-connections=5", "--max-connections-per-ip=2",
		      "--connection-memory=8192", "--idle-timeout-s=7", "--threads=1",
		      "--shutdown-timeout-ms=50", "--log-level=debug", "--data-file=/tmp/x/d.txt",
		      "--service=svc", "--mode=pet", "--port=1"),
		CONFIG_RUN);
	assert_int_equal(c.peer_port, 81);
	assert_int_equal(c.peer_timeout_ms, 150);
	assert_string_equal(c.dns_server, "127.0.0.1:5353");
	assert_int_equal(c.dns_timeout_ms, 300);
	assert_int_equal(c.max_body, 10);
	assert_string_equal(c.hostname, "p-1");
	assert_int_equal(c.peer_connect_timeout_ms, 100);
	assert_int_equal(c.peer_max_bytes, 99);
	assert_int_equal(c.max_peers, 3);
	assert_int_equal(c.max_pending, 4);
	assert_int_equal(c.dns_cache_ms, 0);
	assert_string_equal(c.resolv_conf, "/tmp/r");
	assert_int_equal(c.max_connections, 5);
	assert_int_equal(c.max_connections_per_ip, 2);
	assert_int_equal(c.connection_memory, 8192);
	assert_int_equal(c.idle_timeout_s, 7);
	assert_int_equal(c.threads, 1);
	assert_int_equal(c.shutdown_timeout_ms, 50);
	assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
	assert_string_equal(c.data_file, "/tmp/x/d.txt");
	assert_string_equal(c.service, "svc");
	assert_int_equal(c.mode, CONFIG_MODE_PET);
	assert_int_equal(c.port, 1);
}

static void test_connect_timeout_capped(void **state)
{
	struct config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, NULL, err, sizeof(err), 2, "--peer-timeout-ms=200"), CONFIG_RUN);
	assert_int_equal(c.peer_connect_timeout_ms, 200);
}

static void expect_error(const char *const *env, const char *needle1, const char *needle2, int argc,
			 const char *a1, const char *a2)
{
	struct config c;
	char err[256];

	assert_int_equal(parse(&c, env, err, sizeof(err), argc, a1, a2), CONFIG_ERROR);
	if (strstr(err, needle1) == NULL || (needle2 != NULL && strstr(err, needle2) == NULL)) {
		fail_msg("error \"%s\" lacks \"%s\"/\"%s\"", err, needle1, needle2);
	}
}

static void test_bad_values(void **state)
{
	static const char *const bad_port_env[] = {"KUBIA_PORT", "http", NULL};
	static const char *const bad_mode_env[] = {"KUBIA_MODE", "cluster", NULL};

	(void)state;
	expect_error(NULL, "--port", "\"0\"", 3, "--port", "0");
	expect_error(NULL, "--port", "\"65536\"", 2, "--port=65536", NULL);
	expect_error(NULL, "--port", "\"-1\"", 2, "--port=-1", NULL);
	expect_error(NULL, "--port", "\"8080x\"", 2, "--port=8080x", NULL);
	expect_error(NULL, "--port", "\" 80\"", 2, "--port= 80", NULL);
	expect_error(NULL, "--port", "\"\"", 2, "--port=", NULL);
	expect_error(NULL, "--mode", "\"both\"", 2, "--mode=both", NULL);
	expect_error(NULL, "--max-body", "\"99999999999999999999999\"", 2,
		     "--max-body=99999999999999999999999", NULL);
	expect_error(NULL, "--service", "\"bad name\"", 2, "--service=bad name", NULL);
	expect_error(NULL, "--service", "\"a..b\"", 2, "--service=a..b", NULL);
	expect_error(NULL, "--dns-server", "\"1.2.3.4:99999\"", 2, "--dns-server=1.2.3.4:99999",
		     NULL);
	expect_error(NULL, "--dns-server", "\"[::1\"", 2, "--dns-server=[::1", NULL);
	expect_error(NULL, "--data-file", "\"/var/data/\"", 2, "--data-file=/var/data/", NULL);
	expect_error(NULL, "--hostname", "\"a b\"", 2, "--hostname=a b", NULL);
	expect_error(NULL, "--log-level", "\"loud\"", 2, "--log-level=loud", NULL);
	expect_error(NULL, "--port-name", "\"HTTP\"", 2, "--port-name=HTTP", NULL);
	expect_error(NULL, "--port-name", "\"8080\"", 2, "--port-name=8080", NULL);
	expect_error(NULL, "--port-name", "\"a--b\"", 2, "--port-name=a--b", NULL);
	expect_error(NULL, "--port-name", "\"averyverylongname\"", 2,
		     "--port-name=averyverylongname", NULL);
	expect_error(NULL, "--peer-timeout-ms", "\"0\"", 2, "--peer-timeout-ms=0", NULL);
	expect_error(NULL, "unknown option", "--nope", 2, "--nope", NULL);
	expect_error(NULL, "unexpected argument", "\"extra\"", 2, "extra", NULL);
	/* A value is shown escaped: it can never break the message's line (found by
	 * fuzz_config). */
	expect_error(NULL, "--port", "\"a\\x0ab\\\"\\\\\\x1b[0m\" (expected", 2,
		     "--port=a\nb\"\\\x1b[0m", NULL);
	expect_error(NULL, "unknown option \"--a\\x0ab\"", NULL, 2, "--a\nb=1", NULL);
	expect_error(NULL, "unexpected argument \"\\x09\"", NULL, 2, "\t", NULL);
	expect_error(NULL, "--port needs a value", NULL, 2, "--port", NULL);
	expect_error(bad_port_env, "KUBIA_PORT", "\"http\"", 1, NULL, NULL);
	expect_error(bad_mode_env, "KUBIA_MODE", "\"cluster\"", 1, NULL, NULL);
}

/* The request deadlines: each at its bounds taken, past them refused, the variable read
 * and the flag winning over it. */
static void test_deadlines(void **state)
{
	static const char *const env[] = {"KUBIA_HEADER_TIMEOUT_S",
					  "3",
					  "KUBIA_BODY_MIN_RATE",
					  "0",
					  "KUBIA_BODY_RATE_WINDOW_S",
					  "3600",
					  NULL};
	struct config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, env, err, sizeof(err), 1), CONFIG_RUN);
	assert_int_equal(c.header_timeout_s, 3);
	assert_int_equal(c.body_min_rate, 0);
	assert_int_equal(c.body_rate_window_s, 3600);
	assert_int_equal(parse(&c, env, err, sizeof(err), 4, "--header-timeout-s=1",
			       "--body-min-rate=1073741824", "--body-rate-window-s=1"),
			 CONFIG_RUN);
	assert_int_equal(c.header_timeout_s, 1);
	assert_int_equal(c.body_min_rate, 1073741824);
	assert_int_equal(c.body_rate_window_s, 1);
	assert_int_equal(parse(&c, NULL, err, sizeof(err), 2, "--header-timeout-s=3600"),
			 CONFIG_RUN);
	assert_int_equal(c.header_timeout_s, 3600);
	expect_error(NULL, "--header-timeout-s", "\"0\"", 2, "--header-timeout-s=0", NULL);
	expect_error(NULL, "--header-timeout-s", "\"3601\"", 2, "--header-timeout-s=3601", NULL);
	expect_error(NULL, "--body-min-rate", "\"1073741825\"", 2, "--body-min-rate=1073741825",
		     NULL);
	expect_error(NULL, "--body-min-rate", "\"-1\"", 2, "--body-min-rate=-1", NULL);
	expect_error(NULL, "--body-rate-window-s", "\"0\"", 2, "--body-rate-window-s=0", NULL);
	expect_error(NULL, "--body-rate-window-s", "\"3601\"", 2, "--body-rate-window-s=3601",
		     NULL);
}

/* --replicas / KUBIA_REPLICAS: 0 (unknown) by default, 0-65535, the flag wins. */
static void test_replicas(void **state)
{
	static const char *const env[] = {"KUBIA_REPLICAS", "7", NULL};
	static const char *const bad_env[] = {"KUBIA_REPLICAS", "2x", NULL};
	struct config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, NULL, err, sizeof(err), 1), CONFIG_RUN);
	assert_int_equal(c.replicas, 0);
	assert_int_equal(parse(&c, env, err, sizeof(err), 1), CONFIG_RUN);
	assert_int_equal(c.replicas, 7);
	assert_int_equal(parse(&c, env, err, sizeof(err), 2, "--replicas=65535"), CONFIG_RUN);
	assert_int_equal(c.replicas, 65535);
	expect_error(NULL, "--replicas", "\"65536\"", 2, "--replicas=65536", NULL);
	expect_error(NULL, "--replicas", "\"-1\"", 3, "--replicas", "-1");
	expect_error(NULL, "--replicas", "\"three\"", 2, "--replicas=three", NULL);
	expect_error(bad_env, "KUBIA_REPLICAS", "\"2x\"", 1, NULL, NULL);
}

static void test_dns_server_shapes(void **state)
{
	static const char *const ok[] = {"10.96.0.10", "10.96.0.10:53", "[fd00::a]:5353", "[::1]",
					 "fd00::a"};
	struct config c;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(parse(&c, NULL, err, sizeof(err), 3, "--dns-server", ok[i]),
				 CONFIG_RUN);
		assert_string_equal(c.dns_server, ok[i]);
	}
}

/* The longest DNS name is 253 characters, 254 with the trailing dot of a fully qualified
 * name; the configuration and discovery agree on it, so a name is refused at start (exit
 * 2) or not at all. */
static void test_service_name_length(void **state)
{
	char name[300];
	struct config c;
	char err[256];

	(void)state;
	/* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters */
	memset(name, 'a', sizeof(name));
	name[63] = name[127] = name[191] = '.';
	name[253] = '\0';
	assert_int_equal(parse(&c, NULL, err, sizeof(err), 3, "--service", name), CONFIG_RUN);
	name[253] = '.';
	name[254] = '\0';
	assert_int_equal(parse(&c, NULL, err, sizeof(err), 3, "--service", name), CONFIG_RUN);
	name[253] = 'a';
	assert_int_equal(parse(&c, NULL, err, sizeof(err), 3, "--service", name), CONFIG_ERROR);
	assert_non_null(strstr(err, "--service"));
}

/* A host name is refused at start with the reason, in pet mode too: the value is checked
 * by the same parser discovery uses, whatever the mode. */
static void test_dns_server_host_name_refused(void **state)
{
	static const char *const pet_env[] = {"KUBIA_MODE", "pet", NULL};

	(void)state;
	expect_error(NULL, "--dns-server", "not an IPv4 or IPv6 address", 2,
		     "--dns-server=dns.local:53", NULL);
	expect_error(pet_env, "--dns-server", "not an IPv4 or IPv6 address", 3, "--dns-server",
		     "kube-dns.kube-system");
	expect_error(pet_env, "--dns-server", "port '0'", 2, "--dns-server=10.0.0.1:0", NULL);
}

/* Runs config_parse() with the one argument arg; returns what it printed (malloc()ed). */
static char *printed_env(const char *arg, const char *const *env, enum config_result *res)
{
	char *argv[] = {(char *)(uintptr_t) "kubia", (char *)(uintptr_t)arg, NULL};
	char *text = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&text, &size);
	struct config c;
	char err[256] = "";

	assert_non_null(out);
	fake_env = env;
	*res = config_parse(&c, 2, argv, fake_getenv, out, err, sizeof(err));
	assert_int_equal(fclose(out), 0);
	assert_non_null(text);
	return text;
}

static char *printed(const char *arg, enum config_result *res)
{
	return printed_env(arg, NULL, res);
}

/* The line of text on which needle appears, checked to hold also; fails if none. */
static void expect_on_one_line(const char *text, const char *needle, const char *also)
{
	const char *at = strstr(text, needle);
	const char *end;
	const char *found;

	if (at == NULL) {
		fail_msg("--help does not mention \"%s\":\n%s", needle, text);
	}
	end = strchr(at, '\n');
	found = strstr(at, also);
	if (end == NULL || found == NULL || found > end) {
		fail_msg("--help does not give %s on the line of %s:\n%s", also, needle, text);
	}
}

static void test_help_and_version(void **state)
{
	/* Every flag with its variable; the leading spaces and the trailing one keep a flag
	 * from matching inside a longer one (--max-connections, --max-connections-per-ip). */
	static const char *const opts[][2] = {
		{"  --port ", "KUBIA_PORT"},
		{"  --data-file ", "KUBIA_DATA_FILE"},
		{"  --mode ", "KUBIA_MODE"},
		{"  --service ", "KUBIA_SERVICE"},
		{"  --port-name ", "KUBIA_PORT_NAME"},
		{"  --peer-port ", "KUBIA_PEER_PORT"},
		{"  --peer-timeout-ms ", "KUBIA_PEER_TIMEOUT_MS"},
		{"  --dns-server ", "KUBIA_DNS_SERVER"},
		{"  --dns-timeout-ms ", "KUBIA_DNS_TIMEOUT_MS"},
		{"  --max-body ", "KUBIA_MAX_BODY"},
		{"  --hostname ", "KUBIA_HOSTNAME"},
		{"  --peer-connect-timeout-ms ", "KUBIA_PEER_CONNECT_TIMEOUT_MS"},
		{"  --peer-max-bytes ", "KUBIA_PEER_MAX_BYTES"},
		{"  --max-peers ", "KUBIA_MAX_PEERS"},
		{"  --max-pending ", "KUBIA_MAX_PENDING"},
		{"  --dns-cache-ms ", "KUBIA_DNS_CACHE_MS"},
		{"  --resolv-conf ", "KUBIA_RESOLV_CONF"},
		{"  --max-connections ", "KUBIA_MAX_CONNECTIONS "},
		{"  --max-connections-per-ip ", "KUBIA_MAX_CONNECTIONS_PER_IP"},
		{"  --connection-memory ", "KUBIA_CONNECTION_MEMORY"},
		{"  --idle-timeout-s ", "KUBIA_IDLE_TIMEOUT_S"},
		{"  --header-timeout-s ", "KUBIA_HEADER_TIMEOUT_S"},
		{"  --body-min-rate ", "KUBIA_BODY_MIN_RATE"},
		{"  --body-rate-window-s ", "KUBIA_BODY_RATE_WINDOW_S"},
		{"  --threads ", "KUBIA_THREADS"},
		{"  --max-memory ", "KUBIA_MAX_MEMORY"},
		{"  --shutdown-timeout-ms ", "KUBIA_SHUTDOWN_TIMEOUT_MS"},
		{"  --log-level ", "KUBIA_LOG_LEVEL"},
		{"  --stream-interval-ms ", "KUBIA_STREAM_INTERVAL_MS"},
		{"  --stream-heartbeat-s ", "KUBIA_STREAM_HEARTBEAT_S"},
		{"  --max-stream-subscribers ", "KUBIA_MAX_STREAM_SUBSCRIBERS"},
		{"  --stream-max-pending ", "KUBIA_STREAM_MAX_PENDING "},
		{"  --stream-max-pending-bytes ", "KUBIA_STREAM_MAX_PENDING_BYTES"},
	};
	static const char usage[] = "Usage: kubia [OPTION]...\n";
	enum config_result res;
	char *text;

	(void)state;
	text = printed("--help", &res);
	assert_int_equal(res, CONFIG_DONE);
	if (strncmp(text, usage, strlen(usage)) != 0) {
		fail_msg("--help does not start with the usage line:\n%s", text);
	}
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		expect_on_one_line(text, opts[i][0], opts[i][1]);
	}
	expect_on_one_line(text, "  --help ", "exit");
	expect_on_one_line(text, "  --version ", "exit");
	free(text);

	text = printed("--version", &res);
	assert_int_equal(res, CONFIG_DONE);
	if (strncmp(text, "kubia ", 6) != 0 || text[6] < '0' || text[6] > '9' ||
	    strchr(text, '\n') == NULL) {
		fail_msg("--version prints \"%s\"", text);
	}
	free(text);
}

/* The view stream's settings: defaults, variables, flags over variables, and each one's
 * range refused past either end with its name and value. */
static void test_stream_settings(void **state)
{
	static const char *const env[] = {"KUBIA_STREAM_INTERVAL_MS",
					  "250",
					  "KUBIA_STREAM_HEARTBEAT_S",
					  "3",
					  "KUBIA_MAX_STREAM_SUBSCRIBERS",
					  "9",
					  "KUBIA_STREAM_MAX_PENDING",
					  "2",
					  "KUBIA_STREAM_MAX_PENDING_BYTES",
					  "2048",
					  NULL};
	struct config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, NULL, err, sizeof(err), 1), CONFIG_RUN);
	assert_int_equal(c.stream_interval_ms, 500);
	assert_int_equal(c.stream_heartbeat_s, 15);
	assert_int_equal(c.max_stream_subscribers, 256);
	assert_int_equal(c.stream_max_pending, 8);
	assert_int_equal(c.stream_max_pending_bytes, 4194304);
	assert_int_equal(parse(&c, env, err, sizeof(err), 1), CONFIG_RUN);
	assert_int_equal(c.stream_interval_ms, 250);
	assert_int_equal(c.stream_heartbeat_s, 3);
	assert_int_equal(c.max_stream_subscribers, 9);
	assert_int_equal(c.stream_max_pending, 2);
	assert_int_equal(c.stream_max_pending_bytes, 2048);
	assert_int_equal(parse(&c, env, err, sizeof(err), 6, "--stream-interval-ms=100",
			       "--stream-heartbeat-s=3600", "--max-stream-subscribers=1",
			       "--stream-max-pending=1024", "--stream-max-pending-bytes=1024"),
			 CONFIG_RUN);
	assert_int_equal(c.stream_interval_ms, 100);
	assert_int_equal(c.stream_heartbeat_s, 3600);
	assert_int_equal(c.max_stream_subscribers, 1);
	assert_int_equal(c.stream_max_pending, 1024);
	assert_int_equal(c.stream_max_pending_bytes, 1024);
	expect_error(NULL, "--stream-interval-ms", "\"99\"", 2, "--stream-interval-ms=99", NULL);
	expect_error(NULL, "--stream-interval-ms", "\"600001\"", 2, "--stream-interval-ms=600001",
		     NULL);
	expect_error(NULL, "--stream-heartbeat-s", "\"0\"", 2, "--stream-heartbeat-s=0", NULL);
	expect_error(NULL, "--stream-heartbeat-s", "\"3601\"", 2, "--stream-heartbeat-s=3601",
		     NULL);
	expect_error(NULL, "--max-stream-subscribers", "\"0\"", 2, "--max-stream-subscribers=0",
		     NULL);
	expect_error(NULL, "--max-stream-subscribers", "\"1000001\"", 2,
		     "--max-stream-subscribers=1000001", NULL);
	expect_error(NULL, "--stream-max-pending", "\"0\"", 2, "--stream-max-pending=0", NULL);
	expect_error(NULL, "--stream-max-pending", "\"1025\"", 2, "--stream-max-pending=1025",
		     NULL);
	expect_error(NULL, "--stream-max-pending-bytes", "\"1023\"", 2,
		     "--stream-max-pending-bytes=1023", NULL);
	expect_error(NULL, "--stream-max-pending-bytes", "\"1073741825\"", 2,
		     "--stream-max-pending-bytes=1073741825", NULL);
	{
		static const char *const bad_env[] = {"KUBIA_STREAM_INTERVAL_MS", "fast", NULL};

		expect_error(bad_env, "KUBIA_STREAM_INTERVAL_MS", "\"fast\"", 1, NULL, NULL);
	}
}

/* Help is given whatever the environment says: a broken variable must not hide it. */
static void test_help_despite_a_bad_variable(void **state)
{
	static const char *const env[] = {"KUBIA_PORT", "http", NULL};
	enum config_result res;
	char *text;

	(void)state;
	text = printed_env("--help", env, &res);
	assert_int_equal(res, CONFIG_DONE);
	assert_non_null(strstr(text, "Usage: kubia"));
	free(text);
	text = printed_env("--version", env, &res);
	assert_int_equal(res, CONFIG_DONE);
	assert_non_null(strstr(text, "kubia "));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_env_and_flags),
		cmocka_unit_test(test_every_flag_parses),
		cmocka_unit_test(test_connect_timeout_capped),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_deadlines),
		cmocka_unit_test(test_replicas),
		cmocka_unit_test(test_dns_server_shapes),
		cmocka_unit_test(test_dns_server_host_name_refused),
		cmocka_unit_test(test_service_name_length),
		cmocka_unit_test(test_help_and_version),
		cmocka_unit_test(test_stream_settings),
		cmocka_unit_test(test_help_despite_a_bad_variable),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
