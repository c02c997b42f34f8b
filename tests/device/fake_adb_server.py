#!/usr/bin/env python3
"""A protocol-level stand-in for an adb server with one device attached (stdlib only).

The real Debian `adb` client (1.0.41) talks to it over the adb "smart socket" protocol as it would talk to the adb
server on port 5037 (point it here with ADB_SERVER_SOCKET=tcp:127.0.0.1:PORT). The "device" is a directory
(`--devroot`, an aarch64 userland) and a shell runner (`--shell-runner`, a program that runs `argv[1]` as a shell
command inside that userland, e.g. under proot + qemu-user).

Implemented (what adb 1.0.41 sends for `devices`, `shell`, `push`, `pull`, `get-state`):
  host services   host:version (0x29; anything else makes the client restart the server), host:devices,
                  host:devices-l, host:kill, host-serial:S:features, host-serial:S:get-state,
                  host-serial:S:wait-for-*, host:transport:S, host:tport:serial:S (replies the 8-byte transport id),
                  host:transport-any, host:tport:any
  device services shell:CMD (v1: raw stdout+stderr, no exit code), shell,v2,...:CMD (packets: stdin 0, stdout 1,
                  stderr 2, exit 3, close-stdin 4), exec:CMD (raw in/out), sync: STAT LIST SEND/DATA/DONE RECV QUIT
Not implemented (not advertised, so the client falls back): pty shells, stat_v2/ls_v2/sendrecv_v2, install, logcat,
root, reverse, forward. A closed client connection does not kill the device process (a worst-case device: cleaning
up is the host tool's job).

    python3 fake_adb_server.py --port 15037 --serial emu-1 --devroot ROOTFS --shell-runner arm-dev
"""
from __future__ import annotations

import argparse
import os
import socket
import socketserver
import stat
import struct
import subprocess
import sys
import threading

ADB_SERVER_VERSION = 0x29
FEATURES = "shell_v2,cmd"
SYNC_DATA_MAX = 64 * 1024


class Device:
    def __init__(self, *, serial: str, devroot: str, shell_runner: str):
        self.serial = serial
        self.devroot = os.path.abspath(devroot)
        self.shell_runner = shell_runner

    def host_path(self, device_path: str) -> str:
        """Map an absolute device path into devroot (no escaping above it)."""
        norm = os.path.normpath("/" + device_path.lstrip("/"))
        return os.path.join(self.devroot, norm.lstrip("/"))

    def spawn(self, command: str) -> subprocess.Popen:
        return subprocess.Popen([self.shell_runner, command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return bytes(buf)


def send_okay(sock, payload: bytes | None = None) -> None:
    msg = b"OKAY"
    if payload is not None:
        msg += b"%04x" % len(payload) + payload
    sock.sendall(msg)


def send_fail(sock, reason: str) -> None:
    data = reason.encode()
    sock.sendall(b"FAIL" + b"%04x" % len(data) + data)


class Handler(socketserver.BaseRequestHandler):
    device: Device  # set on the class by main()

    def handle(self) -> None:
        sock = self.request
        try:
            while True:
                length = int(recv_exact(sock, 4), 16)
                request = recv_exact(sock, length).decode()
                if not self.dispatch_host(sock, request):
                    return
        except (ConnectionError, OSError, ValueError):
            return

    # host services: return True when the connection stays open for another request
    def dispatch_host(self, sock, request: str) -> bool:
        dev = self.device
        if request == "host:version":
            send_okay(sock, b"%04x" % ADB_SERVER_VERSION)
            return False
        if request == "host:devices":
            send_okay(sock, f"{dev.serial}\tdevice\n".encode())
            return False
        if request == "host:devices-l":
            line = (f"{dev.serial:<22} device product:edgeport_a72 model:edgeport_emulated_a72 "
                    f"device:qemu_a72 transport_id:1\n")
            send_okay(sock, line.encode())
            return False
        if request == "host:kill":
            send_okay(sock)
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return False
        for prefix in (f"host-serial:{dev.serial}:", "host:", "host-local:", "host-usb:"):
            if request.startswith(prefix) and not request.startswith(("host:transport", "host:tport")):
                sub = request[len(prefix):]
                if sub == "features":
                    send_okay(sock, FEATURES.encode())
                    return False
                if sub == "get-state":
                    send_okay(sock, b"device")
                    return False
                if sub == "get-serialno":
                    send_okay(sock, dev.serial.encode())
                    return False
                if sub.startswith("wait-for-"):
                    send_okay(sock)
                    send_okay(sock)
                    return False
        if request.startswith("host-serial:") and request.count(":") >= 2:
            serial = request.split(":")[1]
            send_fail(sock, f"device '{serial}' not found")
            return False
        if request in (f"host:transport:{dev.serial}", "host:transport-any"):
            send_okay(sock)
            return self.device_service(sock)
        if request in (f"host:tport:serial:{dev.serial}", "host:tport:any"):
            sock.sendall(b"OKAY" + struct.pack("<Q", 1))
            return self.device_service(sock)
        if request.startswith(("host:transport:", "host:tport:serial:")):
            send_fail(sock, f"device '{request.rsplit(':', 1)[1]}' not found")
            return False
        send_fail(sock, f"unsupported service {request!r}")
        return False

    def device_service(self, sock) -> bool:
        length = int(recv_exact(sock, 4), 16)
        service = recv_exact(sock, length).decode()
        if service.startswith("shell,"):
            args, _, command = service.partition(":")
            if "v2" not in args.split(","):
                send_fail(sock, "only shell,v2 is supported with options")
                return False
            return self.shell_v2(sock, command)
        if service.startswith("shell:"):
            return self.raw_exec(sock, service[len("shell:"):], merge_stderr=True)
        if service.startswith("exec:"):
            return self.raw_exec(sock, service[len("exec:"):], merge_stderr=False)
        if service == "sync:":
            send_okay(sock)
            return self.sync(sock)
        send_fail(sock, f"unsupported device service {service!r}")
        return False

    # ---- shell / exec ------------------------------------------------------------------------------------------
    def raw_exec(self, sock, command: str, *, merge_stderr: bool) -> bool:
        if not command.strip():
            send_fail(sock, "interactive shells are not supported by this stand-in")
            return False
        proc = self.device.spawn(command)
        send_okay(sock)

        def pump_in():
            try:
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    proc.stdin.write(data)
                    proc.stdin.flush()
            except OSError:
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        def pump(stream):
            for chunk in iter(lambda: stream.read1(65536), b""):
                try:
                    sock.sendall(chunk)
                except OSError:
                    break

        threading.Thread(target=pump_in, daemon=True).start()
        threads = [threading.Thread(target=pump, args=(proc.stdout,))]
        if merge_stderr:
            threads.append(threading.Thread(target=pump, args=(proc.stderr,)))
        else:
            threads.append(threading.Thread(target=lambda: proc.stderr.read()))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        proc.wait()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return False

    def shell_v2(self, sock, command: str) -> bool:
        if not command.strip():
            send_fail(sock, "interactive shells are not supported by this stand-in")
            return False
        proc = self.device.spawn(command)
        send_okay(sock)
        lock = threading.Lock()

        def packet(kind: int, data: bytes) -> None:
            with lock:
                sock.sendall(struct.pack("<BI", kind, len(data)) + data)

        def pump_in():
            try:
                while True:
                    kind, n = struct.unpack("<BI", recv_exact(sock, 5))
                    data = recv_exact(sock, n) if n else b""
                    if kind == 0:
                        proc.stdin.write(data)
                        proc.stdin.flush()
                    elif kind == 4:
                        break
            except (OSError, ConnectionError, struct.error):
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        def pump(stream, kind):
            for chunk in iter(lambda: stream.read1(65536), b""):
                try:
                    packet(kind, chunk)
                except OSError:
                    break

        threading.Thread(target=pump_in, daemon=True).start()
        outs = [threading.Thread(target=pump, args=(proc.stdout, 1)), threading.Thread(target=pump, args=(proc.stderr, 2))]
        for t in outs:
            t.start()
        for t in outs:
            t.join()
        code = proc.wait()
        try:
            packet(3, bytes([code & 0xFF]))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return False

    # ---- sync ----------------------------------------------------------------------------------------------------
    def sync(self, sock) -> bool:
        dev = self.device
        while True:
            ident, n = struct.unpack("<4sI", recv_exact(sock, 8))
            if ident == b"QUIT":
                return False
            arg = recv_exact(sock, n).decode() if n else ""
            if ident == b"STAT":
                try:
                    st = os.stat(dev.host_path(arg))
                    sock.sendall(b"STAT" + struct.pack("<III", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                                       int(st.st_mtime)))
                except OSError:
                    sock.sendall(b"STAT" + struct.pack("<III", 0, 0, 0))
            elif ident == b"LIST":
                path = dev.host_path(arg)
                try:
                    names = [".", ".."] + sorted(os.listdir(path))
                except OSError:
                    names = []
                for name in names:
                    try:
                        st = os.lstat(os.path.join(path, name))
                    except OSError:
                        continue
                    raw = name.encode()
                    sock.sendall(b"DENT" + struct.pack("<IIII", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                                       int(st.st_mtime), len(raw)) + raw)
                sock.sendall(b"DONE" + b"\0" * 16)
            elif ident == b"SEND":
                self.sync_send(sock, arg)
            elif ident == b"RECV":
                self.sync_recv(sock, arg)
            else:
                send_fail(sock, f"unknown sync request {ident!r}")
                return False

    def sync_send(self, sock, arg: str) -> None:
        path, _, mode = arg.rpartition(",")
        if not path:
            path, mode = arg, "33188"
        target = self.device.host_path(path)
        error = None
        fh = None
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fh = open(target, "wb")
        except OSError as exc:
            error = f"{path}: {exc.strerror}"
        while True:
            ident, n = struct.unpack("<4sI", recv_exact(sock, 8))
            if ident == b"DATA":
                data = recv_exact(sock, n)
                if fh is not None and error is None:
                    try:
                        fh.write(data)
                    except OSError as exc:
                        error = f"{path}: {exc.strerror}"
            elif ident == b"DONE":  # n is the mtime
                break
            else:
                error = error or f"unexpected {ident!r} during SEND"
                break
        if fh is not None:
            try:
                fh.close()
            except OSError as exc:
                error = error or f"{path}: {exc.strerror}"
        if error is None:
            try:
                os.chmod(target, stat.S_IMODE(int(mode)))
                os.utime(target, (n, n))
            except (OSError, ValueError):
                pass
            sock.sendall(b"OKAY" + b"\0" * 4)
        else:
            data = error.encode()
            sock.sendall(b"FAIL" + struct.pack("<I", len(data)) + data)

    def sync_recv(self, sock, path: str) -> None:
        try:
            with open(self.device.host_path(path), "rb") as fh:
                while True:
                    chunk = fh.read(SYNC_DATA_MAX)
                    if not chunk:
                        break
                    sock.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
            sock.sendall(b"DONE" + b"\0" * 4)
        except OSError as exc:
            data = f"{path}: {exc.strerror}".encode()
            sock.sendall(b"FAIL" + struct.pack("<I", len(data)) + data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=15037)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--serial", default="emu-1")
    parser.add_argument("--devroot", required=True)
    parser.add_argument("--shell-runner", required=True)
    args = parser.parse_args(argv)
    Handler.device = Device(serial=args.serial, devroot=args.devroot, shell_runner=args.shell_runner)
    with Server((args.host, args.port), Handler) as server:
        print(f"fake adb server on {args.host}:{args.port}, device {args.serial}", flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
