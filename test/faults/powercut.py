#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""powercut: a FUSE file system that forgets what was not synced, to test what a power
cut leaves behind (in the spirit of LazyFS).

    powercut.py BACKING MOUNTPOINT CONTROL_SOCKET

At start the tree under BACKING (directories and regular files only) is loaded into
memory, and MOUNTPOINT shows it. Every change made through MOUNTPOINT is kept in memory
only; what a power cut would keep is tracked next to it, following what a POSIX file
system guarantees and no more:

  * the data of a regular file (its contents and size) become durable at its fsync or
    fdatasync, and only then;
  * a directory's entries (names created, renamed, removed, and the file or directory
    each name leads to) become durable at the fsync of that directory, and only then:
    a new file or directory, a rename and an unlink are lost until the directory that
    holds the name is synced, and a rename across directories needs both synced;
  * a rename is atomic: after a cut the name leads to the old file or to the new one;
  * closing a file makes nothing durable; metadata other than the size (mode, times)
    is not modelled.

A power cut is commanded on CONTROL_SOCKET (a Unix stream socket): the line "cut"
freezes the file system (every later operation fails with EIO, as on a machine that
lost its power), writes exactly the durable state into BACKING (what was there
before is replaced) and answers "ok". "cut SEED" does the same but lets a random part
of what was not synced survive, chosen from SEED, as a disk's own writeback may have
written it: each directory whose entries changed since its fsync keeps them as they
were at the fsync or as they are now, and each file whose data changed keeps its
synced contents or a random prefix of its current ones. Mounting BACKING again is the restart after the
cut. "stats" answers one line of counters (JSON). SIGTERM unmounts and ends the process,
as with any libfuse file system.

Hard links, symbolic links and device files are refused (EPERM). Operations are
serialised (libfuse's single-threaded loop, and one lock shared with the control
socket), so a cut falls between two operations, never inside one.
"""

import errno
import json
import os
import random
import shutil
import socket
import stat
import sys
import threading
import time

import fusepy


class Node:
    _next_ino = 2

    def __init__(self, is_dir, mode):
        self.is_dir = is_dir
        self.mode = mode & 0o7777
        self.ino = Node._next_ino
        Node._next_ino += 1
        now = time.time()
        self.mtime = self.ctime = self.atime = now
        # files: current contents and what an fsync made durable
        self.data = bytearray()
        self.synced = b""
        # directories: current entries and what a directory fsync made durable
        self.children = {}
        self.synced_children = {}


def load(path):
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        n = Node(True, st.st_mode)
        for name in sorted(os.listdir(path)):
            child = os.path.join(path, name)
            if stat.S_ISDIR(os.lstat(child).st_mode) or stat.S_ISREG(os.lstat(child).st_mode):
                n.children[name] = load(child)
        n.synced_children = dict(n.children)
    else:
        n = Node(False, st.st_mode)
        with open(path, "rb") as f:
            n.data = bytearray(f.read())
        n.synced = bytes(n.data)
    return n


def store(node, path, rnd=None):
    """Writes the durable state of the directory node into path (emptied first). With
    rnd, some of what was not synced survives too, as a disk's own writeback may have
    written it: each directory whose entries changed is written as it was at its last
    fsync or as it is now (a coin flip), and each file whose data changed keeps its
    synced contents or a random prefix of what it holds now."""
    for name in os.listdir(path):
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)
    entries = node.synced_children
    if rnd is not None and node.children != entries and rnd.random() < 0.5:
        entries = node.children
    for name, child in entries.items():
        p = os.path.join(path, name)
        if child.is_dir:
            os.mkdir(p, child.mode)
            store(child, p, rnd)
            continue
        data = child.synced
        if rnd is not None and bytes(child.data) != data and rnd.random() < 0.5:
            data = bytes(child.data[:rnd.randint(0, len(child.data))])
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, child.mode)


def fail(e):
    raise fusepy.FuseOSError(e)


def split(path):
    parent, _, name = path.rstrip("/").rpartition("/")
    return parent or "/", name


class PowerCut(fusepy.Operations):
    use_ns = True

    def __init__(self, backing):
        self.backing = backing
        self.root = load(backing)
        self.mu = threading.Lock()
        self.frozen = False
        self.handles = {}
        self.next_fh = 1
        self.stats = {"fsync": 0, "fsyncdir": 0, "write": 0, "rename": 0, "cut": 0}

    # -- control -------------------------------------------------------------------

    def cut(self, seed=None):
        with self.mu:
            if not self.frozen:
                self.frozen = True
                self.stats["cut"] += 1
                store(self.root, self.backing,
                      None if seed is None else random.Random(seed))
            return "ok"

    def __call__(self, op, *args):
        with self.mu:
            if self.frozen and op not in ("release", "releasedir", "destroy"):
                fail(errno.EIO)
            return super().__call__(op, *args)

    # -- lookups -------------------------------------------------------------------

    def node(self, path):
        n = self.root
        for part in path.strip("/").split("/"):
            if part == "":
                continue
            if not n.is_dir:
                fail(errno.ENOTDIR)
            n = n.children.get(part)
            if n is None:
                fail(errno.ENOENT)
        return n

    def parent(self, path):
        dirpath, name = split(path)
        d = self.node(dirpath)
        if not d.is_dir:
            fail(errno.ENOTDIR)
        return d, name

    def handle(self, n):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = n
        return fh

    def by_fh(self, path, fh):
        n = self.handles.get(fh)
        return n if n is not None else self.node(path)

    # -- attributes ----------------------------------------------------------------

    def getattr(self, path, fh=None):
        n = self.by_fh(path, fh) if fh else self.node(path)
        if n.is_dir:
            nlink = 2 + sum(1 for c in n.children.values() if c.is_dir)
            mode = stat.S_IFDIR | n.mode
        else:
            nlink, mode = 1, stat.S_IFREG | n.mode
        size = len(n.data) if not n.is_dir else 4096
        return {"st_mode": mode, "st_ino": n.ino, "st_nlink": nlink, "st_size": size,
                "st_uid": os.getuid(), "st_gid": os.getgid(), "st_blocks": (size + 511) // 512,
                "st_atime": int(n.atime * 1e9), "st_mtime": int(n.mtime * 1e9),
                "st_ctime": int(n.ctime * 1e9)}

    def chmod(self, path, mode):
        self.node(path).mode = mode & 0o7777

    def chown(self, path, uid, gid):
        self.node(path)

    def utimens(self, path, times=None):
        n = self.node(path)
        if times:
            n.atime, n.mtime = times[0] / 1e9, times[1] / 1e9
        else:
            n.atime = n.mtime = time.time()

    def access(self, path, amode):
        self.node(path)

    def statfs(self, path):
        v = os.statvfs(self.backing)
        return {k: getattr(v, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree",
                                           "f_bavail", "f_files", "f_ffree", "f_favail",
                                           "f_flag", "f_namemax")}

    def getxattr(self, path, name, position=0):
        fail(errno.ENODATA)

    def listxattr(self, path):
        return []

    # -- directories ---------------------------------------------------------------

    def readdir(self, path, fh):
        return [".", ".."] + list(self.node(path).children)

    def opendir(self, path):
        n = self.node(path)
        if not n.is_dir:
            fail(errno.ENOTDIR)
        return self.handle(n)

    def releasedir(self, path, fh):
        self.handles.pop(fh, None)

    def fsyncdir(self, path, datasync, fh):
        n = self.by_fh(path, fh)
        n.synced_children = dict(n.children)
        self.stats["fsyncdir"] += 1

    def mkdir(self, path, mode):
        d, name = self.parent(path)
        if name in d.children:
            fail(errno.EEXIST)
        d.children[name] = Node(True, mode)
        d.mtime = time.time()

    def rmdir(self, path):
        d, name = self.parent(path)
        n = d.children.get(name)
        if n is None:
            fail(errno.ENOENT)
        if not n.is_dir:
            fail(errno.ENOTDIR)
        if n.children:
            fail(errno.ENOTEMPTY)
        del d.children[name]

    def unlink(self, path):
        d, name = self.parent(path)
        n = d.children.get(name)
        if n is None:
            fail(errno.ENOENT)
        if n.is_dir:
            fail(errno.EISDIR)
        del d.children[name]

    def rename(self, old, new):
        od, oname = self.parent(old)
        nd, nname = self.parent(new)
        n = od.children.get(oname)
        if n is None:
            fail(errno.ENOENT)
        target = nd.children.get(nname)
        if target is n:
            return
        if target is not None:
            if target.is_dir and not n.is_dir:
                fail(errno.EISDIR)
            if n.is_dir and not target.is_dir:
                fail(errno.ENOTDIR)
            if target.is_dir and target.children:
                fail(errno.ENOTEMPTY)
        del od.children[oname]
        nd.children[nname] = n
        self.stats["rename"] += 1

    def link(self, target, source):
        fail(errno.EPERM)

    def symlink(self, target, source):
        fail(errno.EPERM)

    def mknod(self, path, mode, dev):
        fail(errno.EPERM)

    # -- files ---------------------------------------------------------------------

    def create(self, path, mode, fi=None):
        d, name = self.parent(path)
        n = d.children.get(name)
        if n is None:
            n = d.children[name] = Node(False, mode)
        elif n.is_dir:
            fail(errno.EISDIR)
        return self.handle(n)

    def open(self, path, flags):
        n = self.node(path)
        if n.is_dir:
            fail(errno.EISDIR)
        if flags & os.O_TRUNC:
            del n.data[:]
        return self.handle(n)

    def release(self, path, fh):
        self.handles.pop(fh, None)

    def flush(self, path, fh):
        pass

    def read(self, path, size, offset, fh):
        n = self.by_fh(path, fh)
        return bytes(n.data[offset:offset + size])

    def write(self, path, data, offset, fh):
        n = self.by_fh(path, fh)
        if offset > len(n.data):
            n.data.extend(b"\0" * (offset - len(n.data)))
        n.data[offset:offset + len(data)] = data
        n.mtime = time.time()
        self.stats["write"] += 1
        return len(data)

    def truncate(self, path, length, fh=None):
        n = self.by_fh(path, fh) if fh else self.node(path)
        if n.is_dir:
            fail(errno.EISDIR)
        if length < len(n.data):
            del n.data[length:]
        else:
            n.data.extend(b"\0" * (length - len(n.data)))

    def fsync(self, path, datasync, fh):
        n = self.by_fh(path, fh)
        n.synced = bytes(n.data)
        self.stats["fsync"] += 1


def control(fs, sock):
    while True:
        conn, _ = sock.accept()
        with conn:
            f = conn.makefile("rw")
            for line in f:
                cmd = line.strip()
                if cmd == "cut":
                    f.write(fs.cut() + "\n")
                elif cmd.startswith("cut ") and cmd[4:].isdigit():
                    f.write(fs.cut(int(cmd[4:])) + "\n")
                elif cmd == "stats":
                    with fs.mu:
                        f.write(json.dumps(fs.stats) + "\n")
                else:
                    f.write("error: unknown command %r\n" % cmd)
                f.flush()


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: powercut.py BACKING MOUNTPOINT CONTROL_SOCKET")
    backing, mountpoint, ctl = sys.argv[1:]
    fs = PowerCut(os.path.realpath(backing))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(ctl)
    sock.listen(4)
    threading.Thread(target=control, args=(fs, sock), daemon=True).start()
    # nothreads: one operation at a time; attr/entry time-outs 0 so that the kernel
    # asks again instead of trusting what it cached before a change.
    fusepy.FUSE(fs, mountpoint, foreground=True, nothreads=True, use_ino=True,
                attr_timeout=0, entry_timeout=0, negative_timeout=0, fsname="powercut")


if __name__ == "__main__":
    main()
