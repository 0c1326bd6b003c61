"""The front of the API server: nginx on localhost:<api_port>. The pod and Service proxy
paths (pods/<name>[:<port>]/proxy/..., services/<name>[:<port>]/proxy/..., answered as
the API server answers them, with its JSON errors) are served by nginx for their speed
under load; every other request goes to the API server (apiserver.py) on its unix
socket.

Two nginx: the front, whose configuration never changes, listens on the API port and
sends the proxy paths to the proxy, on a unix socket of its own, whose configuration
follows the endpoints: a change rewrites it and reloads it gracefully, and waits for
its old workers to quit. The API's connections (watches, logs -f) are the front's and
last as long as the client wants: they would keep an old worker of the proxy alive.
"""

import contextlib
import http.client
import os
import signal

from .processes import alive, children_of, signal_ref, spawn
from .state import PUBLIC, STS
from .util import SimError, tool, wait_for, write_atomic


def status_json(code, reason, message, details=""):
    body = ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
            '"message":"%s","reason":"%s",%s"code":%d}' % (message, reason, details, code))
    return body.replace('"', '\\"')


def nginx_conf(c, generation, ready):
    st = c.st
    run = c.run
    ns = st["namespace"]
    pods = sorted(st["pods"].values(), key=lambda p: p["ordinal"])
    listen = ["listen unix:%s/proxy.sock;" % run]
    pod_map = "".join("\t\t%s %s:%d;\n" % (p["name"], p["ip"], p["port"]) for p in pods)
    if ready:
        upstream = "\tupstream kubia_public {\n%s\t}\n" % "".join(
            "\t\tserver %s:%d max_fails=0;\n" % (p["ip"], p["port"]) for p in ready)
        public = "proxy_pass http://kubia_public$ksim_uri;"
    else:
        upstream = ""
        public = "return 503 '%s\\n';" % status_json(
            503, "ServiceUnavailable", 'no endpoints available for service \\"$ksim_svc\\"')
    not_found = status_json(404, "NotFound", 'pods \\"$ksim_pod\\" not found',
                            '"details":{"name":"$ksim_pod","kind":"pods"},')
    temp = "".join("\t%s_temp_path %s/nginx/%s;\n" % (k, run, k)
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""# written by kubia-sim; generation {generation}
worker_processes 1;
# A reload waits for the old workers (nginx_apply); a stream (GET /?watch=1, the page
# GET /ui draws from) would keep one alive for as long as its client stays. It is cut
# this long after a change of the endpoints, which the real API server never does; the
# client reconnects. Every ordinary request ends well within it.
worker_shutdown_timeout 8s;
daemon off;
pid {run}/nginx.pid;
error_log {run}/nginx.error.log warn;
events {{
	worker_connections 1024;
}}
http {{
	access_log {run}/nginx.access.log;
{temp}	client_max_body_size 0;
	proxy_http_version 1.1;
	proxy_request_buffering off;
	proxy_buffering off;
	proxy_connect_timeout 5s;
	proxy_read_timeout 60s;
	# kube-proxy sends a connection to one endpoint and never retries it on another:
	# a failed request is the client's to see, and a failing pod stays in the rotation
	proxy_next_upstream off;
	default_type application/json;
	map $ksim_pod $ksim_pod_addr {{
		default "";
{pod_map}	}}
	map $http_upgrade $ksim_connection {{
		default upgrade;
		"" close;
	}}
	# the part after /proxy, raw as the client sent it; "" and "?q" mean "/" and "/?q"
	map $ksim_rest $ksim_uri {{
		~^/ $ksim_rest;
		default /$ksim_rest;
	}}
{upstream}	server {{
		{' '.join(listen)}
		location = /healthz {{
			add_header X-Kubia-Sim-Generation {generation} always;
			return 200 'ok';
		}}
		location ~ ^/api/v1/namespaces/{ns}/pods/([^/:]+)(:[^/]*)?/proxy(/.*)?$ {{
			set $ksim_pod $1;
			set $ksim_rest "";
			if ($request_uri ~ ^/api/v1/namespaces/[^/]+/pods/[^/]+/proxy(?<raw>.*)$) {{
				set $ksim_rest $raw;
			}}
			if ($ksim_pod_addr = "") {{
				return 404 '{not_found}\\n';
			}}
			proxy_pass http://$ksim_pod_addr$ksim_uri;
		}}
		location ~ ^/api/v1/namespaces/{ns}/services/({PUBLIC}|{STS})(:[^/]*)?/proxy(/.*)?$ {{
			set $ksim_svc $1;
			set $ksim_rest "";
			if ($request_uri ~ ^/api/v1/namespaces/[^/]+/services/[^/]+/proxy(?<raw>.*)$) {{
				set $ksim_rest $raw;
			}}
			{public}
		}}
		location / {{
			return 404 '{status_json(404, "NotFound", "the server could not find the requested resource")}\\n';
		}}
	}}
}}
"""


def front_conf(c):
    st = c.st
    run = c.run
    ns = st["namespace"]
    listen = ["listen 127.0.0.1:%d;" % st["api_port"]]
    if st.get("api_ipv6"):
        listen.append("listen [::1]:%d;" % st["api_port"])
    proxied = "(pods/[^/]+|services/(%s|%s)(:[^/]*)?)" % (PUBLIC, STS)
    temp = "".join("\t%s_temp_path %s/nginx-front/%s;\n" % (k, run, k)
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # its workers reach the two unix sockets in the run directory, which may be private
    # to root (a test's temporary directory)
    return f"""# written by kubia-sim: the API port
user root;
worker_processes 1;
daemon off;
pid {run}/nginx-front.pid;
error_log {run}/nginx-front.error.log warn;
events {{
	worker_connections 1024;
}}
http {{
	access_log off;
{temp}	client_max_body_size 0;
	proxy_http_version 1.1;
	proxy_request_buffering off;
	proxy_buffering off;
	proxy_connect_timeout 5s;
	proxy_next_upstream off;
	default_type application/json;
	map $http_upgrade $ksim_connection {{
		default upgrade;
		"" close;
	}}
	server {{
		{' '.join(listen)}
		location = /healthz {{
			proxy_pass http://unix:{run}/proxy.sock;
		}}
		location ~ ^/api/v1/namespaces/{ns}/{proxied}/proxy(/.*)?$ {{
			proxy_pass http://unix:{run}/proxy.sock;
			proxy_set_header Host $host;
			proxy_read_timeout 60s;
		}}
		location / {{
			proxy_pass http://unix:{run}/apiserver.sock;
			proxy_set_header Host $host;
			proxy_set_header X-Real-IP $remote_addr;
			proxy_set_header Upgrade $http_upgrade;
			proxy_set_header Connection $ksim_connection;
			# watches, logs -f, exec and attach stay open as long as the client wants
			proxy_read_timeout 3600s;
			proxy_send_timeout 3600s;
		}}
	}}
}}
"""


def front_start(c):
    """The front on the API port (its configuration is written once)."""
    st = c.st
    if alive(st.get("nginx_front")):
        return
    path = os.path.join(c.run, "nginx-front.conf")
    os.makedirs(os.path.join(c.run, "nginx-front"), exist_ok=True)
    write_atomic(path, front_conf(c))
    st["nginx_front"], _ = spawn([tool("nginx"), "-e", os.path.join(
        c.run, "nginx-front.error.log"), "-p", c.run, "-c", path],
        os.path.join(c.run, "nginx-front.out"))
    c.save()


def api_get(c, path, timeout=1.0):
    conn = http.client.HTTPConnection("127.0.0.1", c.st["api_port"], timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return r
    except OSError:
        return None
    finally:
        conn.close()


def nginx_apply(c, ready, on_routed=None):
    """Loads the proxy's configuration for the ready pods; on_routed() runs once it
    serves (before the old workers quit), or at once when nothing changed."""
    st = c.st
    front_start(c)
    generation = st.get("nginx_generation", 0) + 1
    conf = nginx_conf(c, generation, ready)
    path = os.path.join(c.run, "nginx.conf")
    old = None
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        old = f.read().split("\n", 1)[1]
    if alive(st.get("nginx")) and old == conf.split("\n", 1)[1]:
        if on_routed is not None:
            on_routed()
        return
    os.makedirs(os.path.join(c.run, "nginx"), exist_ok=True)
    write_atomic(path, conf)
    st["nginx_generation"] = generation
    if alive(st.get("nginx")):
        signal_ref(st["nginx"], signal.SIGHUP)  # graceful reload
    else:
        ref, _ = spawn([tool("nginx"), "-e", os.path.join(c.run, "nginx.error.log"),
                        "-p", c.run, "-c", path], os.path.join(c.run, "nginx.out"))
        st["nginx"] = ref
    c.save()

    def current():
        if not alive(st["nginx"]):
            raise SimError("nginx exited: see %s" % os.path.join(c.run, "nginx.error.log"))
        r = api_get(c, "/healthz")
        return r is not None and r.getheader("X-Kubia-Sim-Generation") == str(generation)
    try:
        wait_for(current, 10, "the API proxy on localhost:%d to load its configuration"
                 % st["api_port"])
    finally:
        if on_routed is not None:
            on_routed()
    # Workers of the old configuration keep accepting until they have quit; wait for
    # them, so that nothing is routed to endpoints that are gone.
    wait_for(lambda: len(children_of(st["nginx"]["pid"])) <= 1, 10,
             "the API proxy's old workers to quit")
