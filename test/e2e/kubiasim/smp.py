"""The patches the API server applies: strategic merge patch (what kubectl edit, patch
and client-side apply send, built from kubectl's compiled-in types), JSON merge patch
(RFC 7386) and JSON patch (RFC 6902).

A strategic merge patch merges lists of objects by their merge key (containers and
volumes by name, a container's ports by containerPort, a Service's by port, env by
name, volumeMounts by mountPath) and replaces other lists, and honours the directives
$patch (replace, delete, merge), $retainKeys, $setElementOrder/<list> and
$deleteFromPrimitiveList/<list>.
"""

import copy

MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name",
              "env": "name", "volumeMounts": "mountPath", "volumes": "name",
              "imagePullSecrets": "name", "conditions": "type", "ownerReferences": "uid",
              "hostAliases": "ip", "volumeDevices": "devicePath",
              "topologySpreadConstraints": "topologyKey", "resourceClaims": "name"}
# lists of scalars merged as sets
SET_LISTS = {"finalizers"}


class PatchError(ValueError):
    """A patch that cannot be applied (the API server answers 422 or 400)."""


def merge_key(path, key):
    if key == "ports":
        return "containerPort" if any(p in ("containers", "initContainers")
                                      for p in path) else "port"
    return MERGE_KEYS.get(key)


def strategic(orig, patch, path=()):
    """orig with the strategic merge patch applied (a new object)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(orig, dict):
        orig = {}
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out = copy.deepcopy(orig)
    retain = patch.get("$retainKeys")
    orders = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            name = k.split("/", 1)[1]
            out[name] = [x for x in out.get(name) or [] if x not in (v or [])]
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict):
            merged = strategic(out.get(k), v, path + (k,))
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
        elif isinstance(v, list):
            out[k] = merge_list(out.get(k), v, path, k)
        else:
            out[k] = v
    for k, order in orders.items():
        if isinstance(out.get(k), list):
            out[k] = ordered(out[k], order, merge_key(path, k))
    if retain is not None:
        out = {k: v for k, v in out.items() if k in retain}
    return out


def merge_list(orig, patch, path, key):
    mk = merge_key(path, key)
    orig = copy.deepcopy(orig or [])
    if any(isinstance(e, dict) and e.get("$patch") == "replace" for e in patch):
        return [copy.deepcopy(e) for e in patch if not (isinstance(e, dict) and
                                                         e.get("$patch") == "replace")]
    if key in SET_LISTS:
        return orig + [e for e in patch if e not in orig]
    if mk is None or not all(isinstance(e, dict) for e in patch):
        return copy.deepcopy(patch)
    for e in patch:
        if mk not in e:
            raise PatchError("%s: an element without its merge key %s" % (key, mk))
        idx = [i for i, o in enumerate(orig) if isinstance(o, dict) and o.get(mk) == e[mk]]
        if e.get("$patch") == "delete":
            for i in reversed(idx):
                del orig[i]
            continue
        if idx:
            orig[idx[0]] = strategic(orig[idx[0]], e, path + (key,))
        else:
            orig.append(strategic({}, e, path + (key,)))
    return orig


def ordered(items, order, mk):
    """items in the order that $setElementOrder gives; those it leaves out last."""
    def key_of(e):
        return e.get(mk) if mk and isinstance(e, dict) else e
    want = [key_of(o) for o in order]
    first = sorted((e for e in items if key_of(e) in want), key=lambda e: want.index(
        key_of(e)))
    return first + [e for e in items if key_of(e) not in want]


def merge(orig, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(orig) if isinstance(orig, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("JSON pointer %r does not start with /" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts):
    for p in parts:
        if isinstance(doc, list):
            try:
                doc = doc[int(p)]
            except (ValueError, IndexError):
                raise PatchError("no element %s" % p)
        elif isinstance(doc, dict) and p in doc:
            doc = doc[p]
        else:
            raise PatchError("no field %s" % p)
    return doc


def _put(doc, parts, value, replace):
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
            return
        try:
            i = int(last)
        except ValueError:
            raise PatchError("list index %r" % last)
        if replace:
            if not 0 <= i < len(parent):
                raise PatchError("no element %d" % i)
            parent[i] = value
        else:
            if not 0 <= i <= len(parent):
                raise PatchError("no element %d" % i)
            parent.insert(i, value)
    elif isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError("replace: no field %s" % last)
        parent[last] = value
    else:
        raise PatchError("cannot add %s to a value" % last)


def _remove(doc, parts):
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    try:
        if isinstance(parent, list):
            return parent.pop(int(last))
        return parent.pop(last)
    except (KeyError, ValueError, IndexError, AttributeError):
        raise PatchError("remove: no field %s" % last)


def json_patch(orig, ops):
    """RFC 6902 JSON patch."""
    doc = copy.deepcopy(orig)
    if not isinstance(ops, list):
        raise PatchError("a JSON patch is a list of operations")
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("each operation needs op and path")
        parts = _pointer(op["path"])
        kind = op["op"]
        if kind in ("add", "replace"):
            if not parts:
                doc = copy.deepcopy(op.get("value"))
                continue
            _put(doc, parts, copy.deepcopy(op.get("value")), kind == "replace")
        elif kind == "remove":
            _remove(doc, parts)
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = _remove(doc, src) if kind == "move" else copy.deepcopy(_walk(doc, src))
            _put(doc, parts, value, False)
        elif kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise PatchError("test of %s failed" % op["path"])
        else:
            raise PatchError("unknown operation %r" % kind)
    return doc
