"""Who set which field of a stored object (metadata.managedFields), as the API server
tracks it for server-side apply: every write records its field manager (the request's
fieldManager, else the client's name from its User-Agent) with the fields it set; an
apply (application/apply-patch+yaml) that would change a field another manager set is
refused with 409 Conflict naming the fields, unless forced (force=true, kubectl's
--force-conflicts), which takes the fields over.

Fields are paths as FieldsV1 writes them: "f:<name>" for a field of a map, "k:<key as
JSON>" for an item of a list merged by key (smp.py's merge keys; ports also by
protocol); any other list is atomic, one field. Fields the applier no longer applies
stay on the object (the real API server removes those no one else manages).
"""

import json
import time

from .smp import merge_key

MISSING = object()


def fields(obj):
    """The field paths obj sets: spec and the other top-level fields, labels and
    annotations; not status, nor what the API server sets in metadata."""
    out = set()
    for k, v in obj.items():
        if k in ("apiVersion", "kind", "status", "metadata"):
            continue
        walk(v, ("f:" + k,), (k,), out)
    meta = obj.get("metadata") or {}
    for k in ("labels", "annotations"):
        for name, v in (meta.get(k) or {}).items():
            if k == "annotations" and name == "kubectl.kubernetes.io/last-applied-configuration":
                continue
            out.add(("f:metadata", "f:" + k, "f:" + name))
    return out


def item_key(keys, item, mk):
    ident = {mk: item[mk]}
    if keys[-1] == "ports":
        ident["protocol"] = item.get("protocol", "TCP")
    return "k:" + json.dumps(ident, separators=(",", ":"), sort_keys=True)


def walk(v, path, keys, out):
    if isinstance(v, dict) and v:
        for k, x in v.items():
            walk(x, path + ("f:" + k,), keys + (k,), out)
        return
    mk = merge_key(keys[:-1], keys[-1]) if isinstance(v, list) else None
    if mk and v and all(isinstance(i, dict) and mk in i for i in v):
        for item in v:
            walk({k: x for k, x in item.items()}, path + (item_key(keys, item, mk),),
                 keys, out)
        return
    out.add(path)


def value_at(obj, path):
    v = obj
    for el in path:
        if el.startswith("f:"):
            if not isinstance(v, dict) or el[2:] not in v:
                return MISSING
            v = v[el[2:]]
        else:
            ident = json.loads(el[2:])
            if not isinstance(v, list):
                return MISSING
            hits = [i for i in v if isinstance(i, dict) and all(
                i.get(k, "TCP" if k == "protocol" else None) == x for k, x in ident.items())]
            if not hits:
                return MISSING
            v = hits[0]
    return v


def encode(paths):
    root = {}
    for path in sorted(paths):
        d = root
        for el in path:
            d = d.setdefault(el, {})
            if el.startswith("k:"):
                d.setdefault(".", {})
    return root


def decode(tree, path=()):
    out = set()
    for el, sub in (tree or {}).items():
        if el == ".":
            continue
        kids = [k for k in sub if k != "."]
        if kids:
            out |= decode(sub, path + (el,))
        else:
            out.add(path + (el,))
    return out


def text(path):
    """A path as the API server's conflict message writes it."""
    out = ""
    for el in path:
        if el.startswith("f:"):
            out += "." + el[2:]
        else:
            out += "[%s]" % ",".join("%s=%s" % (k, json.dumps(v)) for k, v in
                                     json.loads(el[2:]).items())
    return out


def text_set(tree):
    """The fields of a FieldsV1 tree, as text."""
    return {text(p) for p in decode(tree)}


def entry(manager, operation, api_version, paths, subresource=None):
    e = {"manager": manager, "operation": operation, "apiVersion": api_version,
         "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         "fieldsType": "FieldsV1", "fieldsV1": encode(paths)}
    if subresource:
        e["subresource"] = subresource
    return e


def manager_of(req):
    """The request's field manager: fieldManager=, else the client's name."""
    m = req.query.get("fieldManager")
    if m:
        return m
    agent = (req.h.headers.get("User-Agent") or "unknown").split("/")[0]
    return agent or "unknown"


class Conflict(Exception):
    def __init__(self, conflicts):
        super().__init__("conflict")
        self.conflicts = conflicts  # [(manager, apiVersion, path)]

    def message(self):
        by = {}
        for m, v, p in self.conflicts:
            by.setdefault((m, v), []).append(text(p))
        n = len(self.conflicts)
        if n == 1:
            (m, v), ps = next(iter(by.items()))
            return 'Apply failed with 1 conflict: conflict with "%s" using %s: %s' % (
                m, v, ps[0])
        parts = []
        for (m, v), ps in by.items():
            if len(ps) == 1:
                parts.append('conflict with "%s" using %s: %s' % (m, v, ps[0]))
            else:
                parts.append('conflicts with "%s" using %s:\n%s' % (
                    m, v, "\n".join("- " + p for p in ps)))
        return "Apply failed with %d conflicts: %s" % (n, "\n".join(parts))

    def causes(self):
        return [{"reason": "FieldManagerConflict", "message": 'conflict with "%s" using %s'
                 % (m, v), "field": text(p)} for m, v, p in self.conflicts]


def created(obj, manager, operation, applied=None):
    """The managed fields of a new object: its creator's, of everything it set."""
    return [entry(manager, operation, obj["apiVersion"], fields(applied or obj))]


def applied(old, new, config, manager, force):
    """The managed fields after manager applied config to old, giving new; raises
    Conflict when a field another manager set changes and force is not given."""
    mine = fields(config)
    managed = list(old["metadata"].get("managedFields") or [])
    conflicts = []
    for e in managed:
        if e["manager"] == manager and e["operation"] == "Apply":
            continue
        for p in sorted(decode(e.get("fieldsV1")) & mine):
            if value_at(old, p) != value_at(new, p):
                conflicts.append((e["manager"], e["apiVersion"], p))
    if conflicts and not force:
        raise Conflict(conflicts)
    taken = {p for _, _, p in conflicts}
    out = []
    for e in managed:
        if e["manager"] == manager and e["operation"] == "Apply":
            continue
        left = decode(e.get("fieldsV1")) - taken
        if left:
            out.append(dict(e, fieldsV1=encode(left)))
    out.append(entry(manager, "Apply", new["apiVersion"], mine))
    return out


def updated(old, new, manager, subresource=None):
    """The managed fields after an update by manager: it owns the fields it changed (or
    added), which no other manager owns any more."""
    changed = {p for p in fields(new) if value_at(old, p) != value_at(new, p)}
    out, mine = [], set()
    for e in old["metadata"].get("managedFields") or []:
        have = decode(e.get("fieldsV1"))
        if e["manager"] == manager and e["operation"] == "Update" and \
                e.get("subresource") == subresource:
            mine = have
            continue
        left = have - changed
        if left:
            out.append(dict(e, fieldsV1=encode(left)))
    mine = {p for p in mine | changed if value_at(new, p) is not MISSING}
    if mine:
        out.append(entry(manager, "Update", new["apiVersion"], mine, subresource))
    return out
