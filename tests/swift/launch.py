#!/usr/bin/env python3
"""Runs one piece of a throw-away Swift cluster for the swiftfed test harness.

Modes:
  server    --conf FILE --swift-conf FILE --app proxy-server|account-server|...
            runs a Swift WSGI server in this process (the conf says workers = 0)
  memcached --port N [--memcached PATH]
            runs memcached as a child process
  rings     --dir DIR --ring NAME=PORT [--ring ...] [--part-power N]
            writes NAME.builder / NAME.ring.gz with one device d1 at 127.0.0.1:PORT
  keystone  --conf FILE --port N
            serves Keystone's public WSGI app on 127.0.0.1:N, one thread per
            request; run with the Python that has Keystone (Debian's python3)

server and memcached take --watch-pid PID: once PID is gone (or we are
re-parented away from it) the launcher kills its child, if any, and exits
within ~0.2 s, so nothing outlives a test process, even a SIGKILLed one.
"""
import argparse
import os
import signal
import subprocess
import sys
import threading
import time

# Bound before Swift imports eventlet and monkey-patches time.sleep: the
# watchdog is a real OS thread and must keep sleeping the real way.
_real_sleep = time.sleep


def start_watchdog(watch_pid, on_gone=lambda: None):
    # A zombie still answers kill(pid, 0), so also notice re-parenting: when
    # the watched process is our parent and dies, getppid() changes at once.
    parent_watched = os.getppid() == watch_pid

    def gone():
        if parent_watched and os.getppid() != watch_pid:
            return True
        try:
            os.kill(watch_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # exists, owned by someone else
        return False

    def loop():
        while not gone():
            _real_sleep(0.2)
        try:
            on_gone()
        finally:
            os._exit(0)  # no atexit or eventlet teardown: just go

    threading.Thread(target=loop, name="watchdog", daemon=True).start()


class _NoSyslog:
    """Stands in for Swift's syslog handler: logs go to stderr only.

    Swift falls back to UDP syslog on localhost when /dev/log is missing;
    the harness wants every line in the server's log file instead, which it
    gets through the console handler (run_wsgi(verbose=True)) on stderr.
    """

    def __new__(cls, *args, **kwargs):
        import logging
        return logging.NullHandler()


def run_server(args):
    start_watchdog(args.watch_pid)

    # Stock Swift reads policies and constraints from /etc/swift/swift.conf
    # at import time, whatever swift_dir says; only the hash path
    # prefix/suffix follow swift_dir. Point everything at this cluster's
    # file before the rest of Swift is imported, then reload to be sure.
    from swift.common import utils
    utils.SWIFT_CONF_FILE = os.path.abspath(args.swift_conf)
    utils.HASH_PATH_PREFIX = utils.HASH_PATH_SUFFIX = b""
    utils.validate_hash_conf()
    from swift.common import constraints, storage_policy
    constraints.reload_constraints()
    # computed once at import from two constraints; keep it consistent
    constraints.MAX_HEADER_COUNT = (constraints.MAX_META_COUNT + 36 +
                                    max(constraints.EXTRA_HEADER_COUNT, 0))
    storage_policy.reload_storage_policies()

    from swift.common.utils import logs
    logs.ThreadSafeSysLogHandler = _NoSyslog

    from swift.common.wsgi import run_wsgi
    # verbose=True adds a stderr handler to every Swift logger; Swift keeps
    # that fd open when it closes stdio, and the harness sends it to a file.
    return run_wsgi(os.path.abspath(args.conf), args.app, verbose=True)


def run_memcached(args):
    cmd = [args.memcached, "-l", "127.0.0.1", "-p", str(args.port),
           "-U", "0", "-m", "64", "-t", "1"]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]  # memcached refuses to run as root
    child = subprocess.Popen(cmd)

    # Only kill here: the handler interrupts child.wait() below, which holds
    # Popen's wait lock, so waiting again in the handler would deadlock.
    stopping = []

    def stop(*_):
        stopping.append(True)
        child.kill()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    start_watchdog(args.watch_pid, child.kill)
    status = child.wait()
    return 0 if stopping else status


def run_keystone(args):
    start_watchdog(args.watch_pid)
    # Keystone's WSGI entry point reads its config files from here.
    os.environ["OS_KEYSTONE_CONFIG_FILES"] = os.path.abspath(args.conf)
    # ... and parses the command line with oslo.config: hide ours from it.
    sys.argv = sys.argv[:1]
    import socketserver
    from wsgiref import simple_server
    from keystone.server import wsgi

    app = wsgi.initialize_public_application()

    class Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
        daemon_threads = True

    class Handler(simple_server.WSGIRequestHandler):
        # One access line per request on stderr (the log file): tests count
        # token requests by them. No query strings or headers: no secrets.
        def log_request(self, code="-", size="-"):
            sys.stderr.write("access %s %s %s\n" % (
                self.command, self.path.split("?")[0], code))

    server = simple_server.make_server("127.0.0.1", args.port, app,
                                       server_class=Server,
                                       handler_class=Handler)
    server.serve_forever()
    return 0


def make_rings(args):
    # One process for all rings: swift-ring-builder costs ~2 s of CPU per
    # ring (create + add + rebalance), this costs one Swift import.
    from swift.common.ring import RingBuilder
    for spec in args.ring:
        name, port = spec.split("=")
        builder = RingBuilder(args.part_power, 1, 1)
        builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1",
                         "port": int(port), "device": "d1", "weight": 100,
                         "meta": ""})
        builder.rebalance()
        builder.get_ring().save(os.path.join(args.dir, name + ".ring.gz"))
        builder.save(os.path.join(args.dir, name + ".builder"))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)

    server = sub.add_parser("server")
    server.add_argument("--conf", required=True)
    server.add_argument("--swift-conf", required=True)
    server.add_argument("--app", required=True)
    server.add_argument("--watch-pid", type=int, required=True)

    memcached = sub.add_parser("memcached")
    memcached.add_argument("--port", type=int, required=True)
    memcached.add_argument("--memcached", default="memcached")
    memcached.add_argument("--watch-pid", type=int, required=True)

    rings = sub.add_parser("rings")
    rings.add_argument("--dir", required=True)
    rings.add_argument("--ring", action="append", required=True)
    rings.add_argument("--part-power", type=int, default=6)

    keystone = sub.add_parser("keystone")
    keystone.add_argument("--conf", required=True)
    keystone.add_argument("--port", type=int, required=True)
    keystone.add_argument("--watch-pid", type=int, required=True)

    args = parser.parse_args()
    mode = {"server": run_server, "memcached": run_memcached,
            "rings": make_rings, "keystone": run_keystone}[args.mode]
    sys.exit(mode(args))


if __name__ == "__main__":
    main()
