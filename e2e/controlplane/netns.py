#!/usr/bin/env python3
"""A network namespace of one local cluster, for servers the kube-apiserver must reach through a Service.

The kube-apiserver refuses Endpoints and EndpointSlices in 127.0.0.0/8, so an APIService (the aggregation
layer) cannot point at a server on loopback. Such a server runs inside a namespace made here instead: a veth
pair, <prefix>.1/30 on the host side and <prefix>.2 inside, from 10.231.0.0/16. The namespace's name and its
/30 are derived from the cluster's run folder, so two clusters on one machine do not clash; `delete` removes
both. Those two addresses are the only non-loopback ones the harness uses.

From inside, the host's loopback is out of reach; a bridge process (``netns.py bridge NAME PORT...``) listens
on the namespace's 127.0.0.1:PORT and forwards each connection to the host's 127.0.0.1:PORT (one socket opened
in each namespace: a thread's setns(2) selects where the next socket is made). So a kubeconfig for
https://127.0.0.1:<apiserver port> works unchanged inside.

    python e2e/controlplane/netns.py {create|delete|show} --run-dir DIR
    python e2e/controlplane/netns.py bridge NAME PORT [PORT...]
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

SUPERNET = ipaddress.ip_network("10.231.0.0/16")
BLOCKS = SUPERNET.num_addresses // 4  # /30 blocks
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


class NetnsError(RuntimeError):
    pass


@dataclass(frozen=True)
class Netns:
    name: str          # ip netns name (also /run/netns/<name>)
    host_if: str       # veth end on the host
    inside_if: str     # veth end inside
    host_ip: str
    inside_ip: str

    def to_json(self) -> dict:
        return asdict(self)


def _digest(run_dir: Path) -> str:
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()


def plan(run_dir: Path, taken: set[str] = frozenset()) -> Netns:
    """The namespace of one run folder: a name and a /30 derived from its path, moved to the next free /30
    while the derived one is in `taken` (addresses in use on the host, by another cluster's namespace)."""
    digest = _digest(run_dir)
    tag = digest[:8]
    start = int(digest[8:16], 16) % BLOCKS
    for step in range(BLOCKS):
        block = (start + step) % BLOCKS
        base = int(SUPERNET.network_address) + 4 * block
        host_ip, inside_ip = str(ipaddress.ip_address(base + 1)), str(ipaddress.ip_address(base + 2))
        if host_ip not in taken and inside_ip not in taken:
            return Netns(f"mlp-{tag}", f"mlp{tag}h", f"mlp{tag}i", host_ip, inside_ip)
    raise NetnsError(f"no free /30 left in {SUPERNET}")


def ip_binary() -> str:
    """`ip` (iproute2), installed with apt-get when missing (the test command provides what it needs)."""
    found = shutil.which("ip")
    if found:
        return found
    if os.geteuid() != 0:
        raise NetnsError("`ip` (iproute2) is missing and installing it needs root: apt-get install iproute2")
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "iproute2"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("ip")
    if not found:
        raise NetnsError("apt-get install iproute2 did not provide `ip`")
    return found


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([ip_binary(), *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def host_addresses(except_if: str = "") -> set[str]:
    out = json.loads(_ip("-j", "addr", "show").stdout or "[]")
    return {a["local"] for link in out if link.get("ifname") != except_if for a in link.get("addr_info", [])}


def for_run_dir(run_dir: Path) -> Netns:
    """plan() against the addresses in use on this host, but for this run folder's own veth."""
    return plan(run_dir, host_addresses(except_if=f"mlp{_digest(run_dir)[:8]}h"))


def exists(ns: Netns) -> bool:
    return (NETNS_DIR / ns.name).exists()


def ready(ns: Netns) -> bool:
    """The namespace, both veth ends and their addresses are in place."""
    if not exists(ns):
        return False
    inside = _ip("-n", ns.name, "-j", "addr", "show", "dev", ns.inside_if, check=False)
    host = _ip("-j", "addr", "show", "dev", ns.host_if, check=False)
    return (inside.returncode == 0 and ns.inside_ip in inside.stdout
            and host.returncode == 0 and ns.host_ip in host.stdout)


def create(ns: Netns) -> None:
    """Idempotent: a half-made namespace is removed and made again."""
    if ready(ns):
        return
    delete(ns)
    _ip("netns", "add", ns.name)
    _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.inside_if)
    _ip("link", "set", ns.inside_if, "netns", ns.name)
    _ip("addr", "add", f"{ns.host_ip}/30", "dev", ns.host_if)
    _ip("link", "set", ns.host_if, "up")
    _ip("-n", ns.name, "addr", "add", f"{ns.inside_ip}/30", "dev", ns.inside_if)
    _ip("-n", ns.name, "link", "set", ns.inside_if, "up")
    _ip("-n", ns.name, "link", "set", "lo", "up")


def pids_inside(ns: Netns) -> list[int]:
    if not exists(ns):
        return []
    return [int(p) for p in _ip("netns", "pids", ns.name, check=False).stdout.split()]


def delete(ns: Netns) -> None:
    """The veth pair and the namespace (the processes inside must be stopped first: a namespace that a
    process still holds outlives `ip netns del`, and so does its veth pair)."""
    if _ip("link", "show", ns.host_if, check=False).returncode == 0:
        _ip("link", "del", ns.host_if, check=False)
    if exists(ns):
        _ip("netns", "del", ns.name, check=False)


def exec_prefix(ns: Netns) -> list[str]:
    """argv prefix that runs a program inside (ip netns exec execs it: the pid is the program's)."""
    return [ip_binary(), "netns", "exec", ns.name]


# ------------------------------------------------------------------------------------------ the bridge

_libc = ctypes.CDLL(None, use_errno=True)


def listen_inside(name: str, port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port of the namespace `name`, made from a thread that joined it."""
    made: dict = {}

    def run() -> None:
        try:
            with open(NETNS_DIR / name) as f:
                if _libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {name}")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(64)
            made["socket"] = s
        except OSError as e:
            made["error"] = e

    t = threading.Thread(target=run)  # the thread ends in the namespace; no other work runs on it
    t.start()
    t.join()
    if "error" in made:
        raise made["error"]
    return made["socket"]


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _forward(listener: socket.socket, port: int) -> None:
    while True:
        conn, _ = listener.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
            upstream.settimeout(None)
        except OSError:
            conn.close()
            continue
        threading.Thread(target=_pump, args=(conn, upstream), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, conn), daemon=True).start()


def bridge(name: str, ports: list[int]) -> None:
    listeners = [(listen_inside(name, port), port) for port in ports]
    print(f"bridging {name}:127.0.0.1:{ports} -> host 127.0.0.1", flush=True)
    threads = [threading.Thread(target=_forward, args=lp, daemon=True) for lp in listeners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in ("create", "delete", "show"):
        sub.add_parser(cmd).add_argument("--run-dir", required=True)
    b = sub.add_parser("bridge")
    b.add_argument("name")
    b.add_argument("ports", nargs="+", type=int)
    args = parser.parse_args(argv)
    if args.cmd == "bridge":
        bridge(args.name, args.ports)
        return 0
    ns = for_run_dir(Path(args.run_dir))
    if args.cmd == "create":
        create(ns)
    elif args.cmd == "delete":
        delete(ns)
    print(json.dumps({**ns.to_json(), "ready": ready(ns)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
