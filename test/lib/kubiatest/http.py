# SPDX-License-Identifier: MIT
"""One HTTP request on its own connection, and its whole answer."""

import http.client


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage
        self.body = body

    def header(self, name):
        return self.headers.get(name)

    def __repr__(self):
        return "Response(%d, %r)" % (self.status, self.body[:300])


def http_request(host, port, method, path, body=None, headers=None, timeout=10):
    """Sends one request and reads the whole answer; OSError or HTTPException when the
    server does not answer in time or not in HTTP."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.headers, data)
    finally:
        conn.close()
