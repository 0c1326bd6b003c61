#!/usr/bin/env python3
"""Compiles the page of GET /ui into a C header: the page's bytes as an array, the
Content-Security-Policy that allows exactly its one inline <style> and one inline
<script> (by their SHA-256, CSP level 2), and an entity tag of its bytes.

Usage: gen_ui.py PAGE.html OUT.h

The build fails, with the reason, on a page the policy could not cover: not UTF-8, a
<script> or <style> with attributes (src= would load what the policy forbids), or more
or fewer than one of each.
"""
import base64
import hashlib
import re
import sys

# connect-src 'self': the stream and the POST go to the origin the page came from, the
# proxy's. img-src data: is the empty icon, which spares kubia a GET /favicon.ico (a
# cluster view). Nothing else is allowed: no other script, style, frame, form target.
POLICY = ("default-src 'none'; script-src %s; style-src %s; connect-src 'self'; "
          "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def inline(page, tag):
    """The text of the page's one <tag> element, which has no attributes."""
    opened = re.findall(rb"<%s\b[^>]*>" % tag, page, re.I)
    bodies = re.findall(rb"<%s>(.*?)</%s>" % (tag, tag), page, re.S)
    if opened != [b"<%s>" % tag] or len(bodies) != 1:
        raise ValueError("the page must have exactly one <%s> without attributes "
                         "(found %s)" % (tag.decode(), [o.decode() for o in opened]))
    return bodies[0]


def digest(text):
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text).digest()).decode()


def header(page):
    page.decode("utf-8")  # served as charset=utf-8: it must be
    csp = POLICY % (digest(inline(page, b"script")), digest(inline(page, b"style")))
    etag = '"%s"' % hashlib.sha256(page).hexdigest()[:20]
    rows = []
    for i in range(0, len(page), 12):
        rows.append("\t" + " ".join("0x%02x," % b for b in page[i:i + 12]))
    return ("/* Made by server/gen_ui.py from server/ui.html: edit those. */\n"
            "#ifndef KUBIA_UI_PAGE_H\n#define KUBIA_UI_PAGE_H\n\n"
            "#define UI_PAGE_CSP \"%s\"\n#define UI_PAGE_ETAG \"%s\"\n\n"
            "static const unsigned char ui_page[%d] = {\n%s\n};\n\n#endif\n"
            % (csp, etag.replace('"', '\\"'), len(page), "\n".join(rows)))


def main(argv):
    if len(argv) != 3:
        print("usage: gen_ui.py PAGE.html OUT.h", file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        page = f.read()
    try:
        text = header(page)
    except (ValueError, UnicodeDecodeError) as e:
        print("%s: %s" % (argv[1], e), file=sys.stderr)
        return 1
    with open(argv[2], "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
