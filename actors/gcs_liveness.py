"""Whether the process behind a GCS address on this machine is alive and running: the second opinion GcsWatch asks
before it calls a silent GCS lost.

Silence alone misjudged a healthy cluster: on a badly overloaded machine the GCS answered no greeting for 20 s, and
the watch stopped a campaign that Ray would have carried on (exit 3). A vanished head and an overloaded one look
the same from a socket (the kernel accepts the connection, nobody answers), but not from /proc: a SIGSTOPped
process is in state T, a dead one has gone (or is a zombie), an overloaded one is R or S. So when the address
listens on this machine and the listening process is ours to see, its state decides; otherwise (a remote head,
another user's process, no /proc) the answer is None and the watch judges by silence alone, scaled by how slowly
the GCS has been answering. Linux's /proc only; everything here is a few reads, done only once a GCS is silent.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Literal

State = Literal["running", "stopped", "gone"]


def gcs_process_state(address: str) -> State | None:
    """"running", "stopped" (SIGSTOP, or traced) or "gone" (exited, a zombie) for the process listening at
    ``address`` ("host:port") on this machine; None when none of this machine's processes that this user can see
    listens there."""
    host, _, port_text = address.rpartition(":")
    try:
        port = int(port_text)
        ip = ipaddress.ip_address(socket.gethostbyname(host.strip("[]") or "127.0.0.1"))
    except (ValueError, OSError):
        return None
    inodes = _listening_inodes(port, ip)
    if not inodes:
        return None
    pid = _owner(inodes)
    return None if pid is None else _state(pid)


def _listening_inodes(port: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> set[str]:
    """The socket inodes listening on ``port`` at ``ip`` or at every address (/proc/net/tcp, tcp6)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: TCP_LISTEN
                continue
            local_ip, _, local_port = fields[1].partition(":")
            if int(local_port, 16) == port and _matches(local_ip, ip):
                found.add(fields[9])
    return found


def _matches(hex_ip: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """/proc/net/tcp writes an address as 32-bit words in host (little-endian) byte order."""
    try:
        raw = b"".join(bytes.fromhex(hex_ip[i:i + 8])[::-1] for i in range(0, len(hex_ip), 8))
        there = ipaddress.ip_address(raw)
    except ValueError:
        return False
    if isinstance(there, ipaddress.IPv6Address) and there.ipv4_mapped is not None:
        there = there.ipv4_mapped
    return there.is_unspecified or there == ip


def _owner(inodes: set[str]) -> int | None:
    """The pid holding one of the sockets (only this user's processes can be looked into, which is what a local
    head started by this user is)."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) in wanted:
                        return int(entry.name)
                except OSError:
                    continue
    return None


def _state(pid: int) -> State:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return "gone"
    code = stat[stat.rfind(")") + 2:][:1]  # the field after the command name, which may hold spaces or ')'
    if code in ("T", "t"):
        return "stopped"
    if code in ("Z", "X", ""):
        return "gone"
    return "running"
