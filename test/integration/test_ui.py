# SPDX-License-Identifier: MIT
"""GET /ui (server/ui.c, server/ui.html, server/gen_ui.py), from a real kubia: the page
is server/ui.html byte for byte, at /ui and /ui/, with headers that let it run only its
own inline style and script and fetch only from where it came; conditional requests by
its entity tag; pet mode has no page. The page in a browser: test/e2e/test_ui.py."""

import base64
import hashlib
import os
import re

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "server",
                    "ui.html")
HTML = "text/html; charset=utf-8"


def page_source():
    with open(PAGE, "rb") as f:
        return f.read()


def inline_hash(body, tag):
    m = re.search(rb"<%s>(.*?)</%s>" % (tag, tag), body, re.S)
    assert m, "no <%s> in the page" % tag.decode()
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()


def policy(r):
    """The Content-Security-Policy as {directive: [values]}."""
    out = {}
    for d in r.header("Content-Security-Policy").split(";"):
        words = d.split()
        out[words[0]] = words[1:]
    return out


def requests_counted(k, code):
    text = k.get("/metrics").body.decode()
    m = re.search(r'^kubia_http_requests_total\{route="/ui",code="%s"\} (\d+)$' % code, text,
                  re.M)
    return int(m.group(1)) if m else 0


def test_the_page_and_its_headers(factory):
    k = factory.kubia("kubia-0")
    src = page_source()
    for path in ("/ui", "/ui/"):
        r = k.get(path)
        assert r.status == 200, r
        assert r.body == src
        assert r.header("Content-Type") == HTML
        assert r.header("Cache-Control") == "no-cache"
        assert r.header("X-Content-Type-Options") == "nosniff"
        assert r.header("Referrer-Policy") == "no-referrer"
        assert re.fullmatch(r'"[0-9a-f]{20}"', r.header("ETag")), r.header("ETag")
        csp = policy(r)
        # exactly the page's own style and script, by hash; nothing inline besides
        assert csp["script-src"] == [inline_hash(r.body, b"script")]
        assert csp["style-src"] == [inline_hash(r.body, b"style")]
        assert csp["default-src"] == ["'none'"]
        assert csp["connect-src"] == ["'self'"]
        for d in ("base-uri", "form-action", "frame-ancestors"):
            assert csp[d] == ["'none'"], d
    assert k.get("/ui").header("ETag") == k.get("/ui/").header("ETag")
    r = k.request("HEAD", "/ui")
    assert (r.status, r.body, r.header("Content-Type")) == (200, b"", HTML)
    assert r.header("Content-Length") == str(len(src))
    # only /ui and /ui/ are the page: the cluster view everywhere else
    for path in ("/ui/x", "/UI", "/ui//"):
        r = k.get(path)
        assert r.header("Content-Type") != HTML and r.body.startswith(b"You've hit"), path


def test_every_url_of_the_page_is_relative():
    """Behind kubectl proxy the page is at /api/v1/.../proxy/ui: an absolute path or
    URL would leave the prefix. The browser test follows the page's own requests."""
    body = page_source().decode()
    assert not re.search(r"https?:|//[a-z]", body.replace("<!DOCTYPE", "")), \
        "an absolute URL in the page"
    assert re.findall(r'(?:href|src|action)="([^"]*)"', body) == ["data:,"]
    for call in re.findall(r"new (?:URL|EventSource)\(([^,)]*)", body):
        assert not call.strip().startswith(("'/", '"/')), call


def test_conditional_requests(factory):
    k = factory.kubia("kubia-0")
    etag = k.get("/ui").header("ETag")
    before = requests_counted(k, 304)
    for inm in (etag, "W/" + etag, '"other", ' + etag, '"a",%s' % etag, "*",
                " \t%s ," % etag):
        for path in ("/ui", "/ui/"):
            r = k.get(path, headers={"If-None-Match": inm})
            assert r.status == 304, (inm, r)
            assert r.body == b""
            assert r.header("ETag") == etag
            assert r.header("Cache-Control") == "no-cache"
    assert requests_counted(k, 304) == before + 12
    # another tag, a malformed list, a tag cut short: the page, whole
    for inm in ('"other"', etag[:-1], etag.strip('"'), "W/", "", '"a" junk ' + etag,
                etag + "x", '"' + etag):
        r = k.get("/ui", headers={"If-None-Match": inm})
        assert (r.status, r.body) == (200, page_source()), inm
    assert requests_counted(k, 200) >= 8


def test_pet_mode_has_no_page(factory):
    """A pet has no cluster to draw: /ui is any other path, its data as text."""
    k = factory.kubia("kubia-0", mode="pet")
    assert k.post("/", b"pet data").status == 200
    want = k.get("/").body
    assert want == b"You've hit kubia-0\nData stored on this pod: pet data\n"
    for path in ("/ui", "/ui/"):
        r = k.get(path)
        assert (r.status, r.body) == (200, want)
        assert r.header("Content-Type") == "text/plain; charset=utf-8"
