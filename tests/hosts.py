"""Several hosts on one machine, for the fault tests: network namespaces joined by a bridge, each with its own
address and its own host name, and a PostgreSQL server that can live in one of them.

A namespace shares the machine's processes and files but has its own network stack; a worker started in one
by :meth:`Hosts.spawn` also gets its own host name (a UTS namespace), so that archsearch sees it as a worker on
another host (``worker_alive`` is None: only the heartbeat can tell it died). :meth:`Hosts.vanish` is a power
cut: every process of the namespace killed, its link taken down.

Needs root and ``ip``/``unshare``; :func:`hosts_unavailable` says why not, for the tests to skip with.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Hosts", "PgServer", "hosts_unavailable", "postgres_bindir"]


def _run(cmd: list[str], *, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def hosts_unavailable() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing"
    probe = f"asprobe{os.getpid()}"
    made = _run(["ip", "netns", "add", probe], check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _run(["ip", "netns", "del", probe], check=False)
    return None


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (Debian layout)."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name, reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


class Hosts:
    """``n`` namespaces ``h0 .. h{n-1}`` on one bridge, with addresses 10.X.Y.1 .. 10.X.Y.n (/24); the test
    process (the machine itself) is 10.X.Y.254 on the bridge. :meth:`close` removes everything."""

    def __init__(self, n: int) -> None:
        tag = f"{os.getpid() % 10000}{int(time.time() * 10) % 1000}"
        self.tag = tag
        octets = int(tag) % 250 + 1, (int(tag) // 250) % 250 + 1
        self._net = f"10.{octets[0]}.{octets[1]}"
        self.bridge = f"asb{tag}"[:15]
        self.names = [f"as{tag}h{i}" for i in range(n)]
        self._veths = [f"asv{tag}h{i}"[:15] for i in range(n)]
        self._procs: list[subprocess.Popen[Any]] = []
        try:
            _run(["ip", "link", "add", self.bridge, "type", "bridge"])
            _run(["ip", "addr", "add", f"{self._net}.254/24", "dev", self.bridge])
            _run(["ip", "link", "set", self.bridge, "up"])
            for i, (ns, veth) in enumerate(zip(self.names, self._veths, strict=True)):
                _run(["ip", "netns", "add", ns])
                _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
                _run(["ip", "link", "set", veth, "master", self.bridge])
                _run(["ip", "link", "set", veth, "up"])
                _run(["ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0"])
                _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        except BaseException:
            self.close()
            raise

    def address(self, i: int) -> str:
        return f"{self._net}.{i + 1}"

    def exec_prefix(self, i: int) -> list[str]:
        """Run a command in namespace ``i`` (same host name as the machine)."""
        return ["ip", "netns", "exec", self.names[i]]

    def spawn(self, i: int, argv: list[str], *, cwd: Path, env: dict[str, str] | None = None,
              log: Path | None = None) -> subprocess.Popen[Any]:
        """Start ``argv`` in namespace ``i`` under the host name ``host{i}``, in a process group of its own."""
        script = f'hostname host{i}-{self.tag} && exec "$@"'
        out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 (closed by the child)
        proc = subprocess.Popen(
            [*self.exec_prefix(i), "unshare", "--uts", "sh", "-c", script, "sh", *argv],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if log is not None:
            out.close()  # type: ignore[union-attr]
        self._procs.append(proc)
        return proc

    def pids(self, i: int) -> list[int]:
        out = _run(["ip", "netns", "pids", self.names[i]], check=False).stdout
        return [int(p) for p in out.split()]

    def vanish(self, i: int) -> None:
        """Power cut of host ``i``: SIGKILL to every process in its namespace, then its link down."""
        for _ in range(5):  # a process may fork while we kill
            pids = self.pids(i)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        _run(["ip", "link", "set", self._veths[i], "down"])

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=900)
        for i, ns in enumerate(self.names):
            for pid in self.pids(i):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _run(["ip", "netns", "del", ns], check=False)
        _run(["ip", "link", "del", self.bridge], check=False)


class PgServer:
    """A throw-away PostgreSQL cluster with an ``archsearch`` database, run as the ``postgres`` user, on
    ``host`` (in namespace ``netns`` of ``hosts`` where given, else on loopback)."""

    def __init__(self, *, hosts: Hosts | None = None, netns: int | None = None) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries are not installed (Debian: apt-get install postgresql)")
        self.bindir = bindir
        self.prefix = (hosts.exec_prefix(netns) if hosts is not None and netns is not None else [])
        self.host = hosts.address(netns) if hosts is not None and netns is not None else "127.0.0.1"
        self.port = _free_port() if not self.prefix else 5432
        self.tmp = Path(tempfile.mkdtemp(prefix="archsearch-pg-"))
        shutil.chown(self.tmp, "postgres", "postgres")
        self.data = self.tmp / "data"
        self._as_postgres(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                           "--no-sync"])
        with open(self.data / "pg_hba.conf", "a", encoding="ascii") as f:
            f.write("host all all 0.0.0.0/0 trust\n")
        self.start()
        self._as_postgres(["createdb", "-h", self.host, "-p", str(self.port), "-U", "postgres", "archsearch"])

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@{self.host}:{self.port}/archsearch"

    def _as_postgres(self, argv: list[str], *, timeout: float = 900) -> None:
        _run([*self.prefix, "runuser", "-u", "postgres", "--", str(self.bindir / argv[0]), *argv[1:]],
             timeout=timeout)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.tmp} -c listen_addresses={self.host} -c fsync=off"
        self._as_postgres(["pg_ctl", "-D", str(self.data), "-l", str(self.tmp / "server.log"), "-o", options,
                           "-w", "-t", "60", "start"])

    def stop(self) -> None:
        self._as_postgres(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"])

    def restart(self) -> None:
        self._as_postgres(["pg_ctl", "-D", str(self.data), "-l", str(self.tmp / "server.log"), "-m", "fast", "-w",
                           "-t", "60", "restart"])

    def close(self) -> None:
        try:
            self.stop()
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
