"""The API server's side of kubectl exec and attach: the remote command protocols
(websocket.py and spdy.py carry them, channels.py has what they share), and
run_command(), which runs a command for them.

kubectl 1.30+ asks for a WebSocket first (GET, RFC 6455, subprotocol
v5.channel.k8s.io) and falls back to SPDY/3.1 on any answer but 101; kubectl 1.27-1.29
use SPDY (POST, `Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version: v4.channel.k8s.io`
and older). Both carry the same channels: 0 stdin, 1 stdout, 2 stderr, 3 error (the
command's end as a `Status`), 4 resize (JSON {"Width", "Height"} of the client's
terminal); WebSocket v5 adds 255 (a client message [255, n] closes its channel n,
which ends the command's stdin). SPDY carries each channel on a stream the client
opens with a `streamtype` header (error, stdin, stdout, stderr, resize).

How the API server calls it, for
`GET|POST /api/v1/namespaces/<ns>/pods/<name>/exec?command=…&stdin=…&stdout=…&stderr=…
&tty=…&container=…` and `…/attach` (same parameters, no command): once it has read the
request line and headers, and checked the pod (404 when there is none, 400 when it is
not running or the container is not one of its own: answered by the API server, as
Status objects, before any upgrade), from do_GET and do_POST of its
BaseHTTPRequestHandler in a ThreadingHTTPServer (serve blocks for the session's life):

    code = remotecommand.serve(self.connection, self.rfile, self.command, self.headers,
                               query, run, attach=path.endswith("/attach"))
    self.close_connection = True

`self.connection` is the socket (serve writes to it directly: nothing may be waiting
in wfile), `self.rfile` the buffered reader positioned after the request's headers (a
client may send frames right behind its request, so they can already be buffered
there), `self.headers` the request's headers, query the raw query string (or
urllib.parse.parse_qs's dict). serve answers the request itself: 101 and the session,
or a `Status` (400 for a request it cannot take, 403 when no stream protocol matches)
and the connection closes. It returns the command's exit code, or None when there was
no session or run raised RemoteCommandError; it returns once the command has ended and
the client has closed (or after linger_s): the connection must not be used again.
Keywords: attach (no command needed), websocket=False (a WebSocket request gets 400,
as from a server without it: kubectl 1.30+ then falls back to SPDY), and Limits'.

`run(session)` runs the command (see Session) in the caller's thread and returns its
exit code: kubectl prints "command terminated with exit code N" and exits with N. It
may raise RemoteCommandError(message): kubectl prints "error: <message>" and exits 1.
run_command() runs a local command line for a session; pod_commands.pod_exec(c, pod,
session) runs the exec's command in a pod of the simulated cluster (nsenter, or podman
exec), so the exec route's run is `lambda s: pod_exec(c, pod, s)`. An attach's run
connects the session to the container's own stdin and output (kubectl run -it --rm
attaches with tty=true and sends the terminal's size on the resize channel) and, when
session.gone is set, detaches without stopping the process.

Flow control: both transports stop reading the socket while the command has not taken
`max_stdin_buffer` bytes of its stdin, so a client that sends faster than the command
reads is held back by TCP; the command's output is held back by TCP as the client
reads (SPDY's windows: spdy.py).
"""

import errno
import fcntl
import os
import queue
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from urllib.parse import parse_qs

from .channels import Limits, RemoteCommandError, Session, header_values, http_status
from .spdy import SpdyTransport
from .util import tool
from .websocket import WebSocketTransport


def parse_bool(name, values):
    # Go's strconv.ParseBool, as the API server reads its query
    v = values[-1] if values else "false"
    if v in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if v in ("0", "f", "F", "false", "FALSE", "False", ""):
        return False
    raise RemoteCommandError("%s: invalid boolean value %r" % (name, v))


def serve(sock, rfile, method, headers, query, run, attach=False, websocket=True, **limits):
    """Serves one exec or attach request (see the module's docstring): the upgrade,
    run(session), the status, the close. websocket=False answers a WebSocket request
    with 400, as a server without it does (kubectl 1.30+ then falls back to SPDY)."""
    lim = Limits(**limits)
    if isinstance(query, str):
        query = parse_qs(query, keep_blank_values=True)
    try:
        command = list(query.get("command", []))
        flags = {k: parse_bool(k, query.get(k, [])) for k in ("stdin", "stdout", "stderr",
                                                               "tty")}
        containers = query.get("container", [])
        if not attach and not command:
            raise RemoteCommandError("you must specify at least 1 command")
        if not (flags["stdin"] or flags["stdout"] or flags["stderr"]):
            raise RemoteCommandError("you must specify at least 1 of stdin, stdout, stderr")
    except RemoteCommandError as e:
        http_status(sock, 400, "BadRequest", str(e))
        return None
    upgrade = [u.lower() for u in header_values(headers, "Upgrade")]
    if "websocket" in upgrade and not websocket:
        http_status(sock, 400, "BadRequest", "exec and attach are not served over WebSocket "
                    "here: use SPDY/3.1")
        return None
    if "websocket" in upgrade:
        transport = WebSocketTransport.handshake(sock, rfile, method, headers, lim)
    elif "spdy/3.1" in upgrade:
        transport = SpdyTransport.handshake(sock, rfile, headers, lim)
    else:
        http_status(sock, 400, "BadRequest", "Upgrade request required")
        return None
    if transport is None:
        return None
    s = Session(command, containers[-1] if containers else None, flags["tty"], attach)
    return transport.session(s, flags, run)


def run_command(argv, session, cwd=None, env=None, drain_s=2.0, first_size_s=1.0):
    """A run() for serve(): argv as a local process, its stdin, stdout and stderr the
    session's, on a new pseudo-terminal when session.tty (its window resized as the
    client's is). The process gets a session of its own and is killed (its process
    group) when the client goes away. Returns its exit code (128 + the signal's number
    when a signal ended it). drain_s: how long output is still read once it exited (a
    child of its may keep the output open); first_size_s: how long a terminal waits
    for the client's size before the process starts on it (kubectl sends it at once)."""
    proc, master, outs, stdin_fd = spawn(argv, session, cwd, env, first_size_s)
    stop = threading.Event()

    def kill():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def end_stdin():
        # The end of stdin because the client went away is no EOF of the client's: the
        # command is killed, never left to end on its own as if its input were done.
        if session.gone.is_set():
            kill()
            return
        if proc.stdin:
            try:
                proc.stdin.close()
            except OSError:
                pass

    threads = [threading.Thread(target=pump_out, args=(fd, box, stop, kill), daemon=True)
               for fd, box in outs]
    if session.stdin is not None and stdin_fd is not None:
        threads.append(threading.Thread(target=pump_in, daemon=True, args=(
            session.stdin, stdin_fd, stop, end_stdin)))
    if master is not None and session.resizes is not None:
        threads.append(threading.Thread(target=resize_terminal, daemon=True,
                                        args=(session.resizes, master, stop)))
    for t in threads:
        t.start()
    try:
        while proc.poll() is None:
            if session.gone.wait(0.1):
                kill()
                proc.wait()
        deadline = time.monotonic() + drain_s
        for t in threads[:len(outs)]:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        stop.set()
        if proc.poll() is None:
            kill()
            proc.wait()
        for t in threads:
            t.join(1)
        if master is not None:
            os.close(master)
        for p in (proc.stdin, proc.stdout, proc.stderr):
            if p:
                try:
                    p.close()
                except OSError:
                    pass
    return 128 - proc.returncode if proc.returncode < 0 else proc.returncode


def spawn(argv, session, cwd, env, first_size_s):
    """argv started on a terminal or pipes, as the session asks: (the process, the
    terminal's master or None, [(output fd, Outbox)], the fd of its stdin or None)."""
    if not session.tty:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, start_new_session=True, close_fds=True,
            stdin=subprocess.PIPE if session.stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if session.stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE if session.stderr else subprocess.DEVNULL)
        outs = [(p.fileno(), box) for p, box in ((proc.stdout, session.stdout),
                                                 (proc.stderr, session.stderr)) if p]
        return proc, None, outs, proc.stdin.fileno() if proc.stdin else None
    master, slave = os.openpty()
    try:
        if session.resizes is not None:
            try:  # the process starts on a terminal of the client's size
                set_size(master, *session.resizes.get(timeout=first_size_s))
            except queue.Empty:
                pass
        # setsid -c: the terminal becomes the process's controlling terminal (Ctrl-C,
        # SIGWINCH), without running Python code between fork and exec
        proc = subprocess.Popen([tool("setsid"), "-c", "--"] + list(argv), stdin=slave,
                                stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    outs = [(master, session.stdout)] if session.stdout is not None else []
    return proc, master, outs, master


def pump_out(fd, box, stop, kill):
    """The command's output to the client, until its end; the command is killed when
    the client is gone."""
    p = select.poll()
    p.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while not stop.is_set():
        if not p.poll(200):
            continue
        try:
            data = os.read(fd, 65536)
        except OSError as e:
            if e.errno == errno.EIO:  # the terminal's last holder closed it
                return
            raise
        if not data:
            return
        try:
            box.write(data)
        except ConnectionError:
            kill()
            return


def pump_in(inbox, fd, stop, end):
    """The client's stdin to the command, then end() at its end."""
    while not stop.is_set():
        data = inbox.read(65536, timeout=0.2)
        if data is None:
            continue
        if not data:
            break
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError:
            break
    end()


def resize_terminal(resizes, master, stop):
    while not stop.is_set():
        try:
            cols, rows = resizes.get(timeout=0.2)
        except queue.Empty:
            continue
        set_size(master, cols, rows)


def set_size(fd, cols, rows):
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    except (OSError, struct.error):
        pass  # a size out of range changes nothing
