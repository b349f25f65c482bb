"""An N-process Weir cluster for the interop suite.

``Cluster(n)`` runs ``n`` ``weir server`` processes on this machine, node
``i`` (1..n) on its own loopback address ``127.0.0.{i+1}`` with two free
ports of that address: a client (PLAINTEXT) port and a CONTROLLER port.
By default every node is a voter of the metadata quorum and a broker;
``roles={i: "controller" | "broker" | "broker,controller"}`` separates them
(voters are the controllers; a controller-only node has no client listener,
so its "port" is its CONTROLLER port, and only brokers are asked for
metadata)::

    weir server --node-id I --roles ROLES
        --listeners PLAINTEXT://ADDR:PORT,CONTROLLER://ADDR:CPORT
        --controller-quorum-voters 1@ADDR1:CPORT1,2@ADDR2:CPORT2,...
        --log-dirs <tmp>/nI
        --broker-heartbeat-interval-ms 300 --broker-session-timeout-ms 2000
        --offsets-topic-replication-factor 1 (unless the extra args set it)
        [extra args]

Each node's stdout and stderr go to ``<tmp>/nI.stderr.log`` (appended across
restarts, with a marker line per start and stop).  Every process runs in its
own session/process group, and everything is torn down by ``close()``, which
the ``cluster3`` and ``split_cluster`` fixtures (conftest.py) always call and an ``atexit`` hook
calls for anything left over.

All waits are bounded: starting waits at most ``WEIR_START_TIMEOUT`` seconds
(default 20), a SIGTERM stop escalates to SIGKILL.

Set ``WEIR_INTEROP_KEEP_DATA=1`` to keep the temporary directory (data dirs
and stderr logs) after the cluster is closed; its path is printed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import START_TIMEOUT, WeirProcess, weir_bin

_LIVE_CLUSTERS: "set[Cluster]" = set()


@atexit.register
def _kill_leftover_clusters() -> None:
    for c in list(_LIVE_CLUSTERS):
        try:
            c.close()
        except Exception:
            pass


def _free_ports(addr: str, count: int) -> list[int]:
    """``count`` distinct free TCP ports of ``addr`` (all held open until
    every one is chosen, so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((addr, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_uvarint(data: bytes, off: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[off]
        off += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, off
        shift += 7


def raw_request(addr: str, port: int, request: bytes, what: str, timeout: float) -> bytes:
    """Sends one size-prefixed request on a connection of its own and returns the response
    frame without its size prefix."""
    with socket.create_connection((addr, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(request)) + request)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"{addr}:{port} closed the connection during {what}")
            buf += chunk
    return buf[4:]


def describe_quorum_leader(addr: str, port: int, timeout: float = 3.0) -> int:
    """The active controller (metadata quorum leader) as the node at
    ``addr:port`` sees it, by a raw DescribeQuorum v0 request (no client
    library here offers the API); -1 if it knows none."""
    client_id = b"weir-interop"
    topic = b"__cluster_metadata"
    header = struct.pack(">hhih", 55, 0, 1, len(client_id)) + client_id + _uvarint(0)
    body = (
        _uvarint(2) + _uvarint(len(topic) + 1) + topic  # one topic
        + _uvarint(2) + struct.pack(">i", 0) + _uvarint(0)  # one partition: 0
        + _uvarint(0)  # topic tags
        + _uvarint(0)  # request tags
    )
    data = raw_request(addr, port, header + body, "DescribeQuorum", timeout)
    off = 4  # correlation id
    ntags, off = _read_uvarint(data, off)
    for _ in range(ntags):
        _tag, off = _read_uvarint(data, off)
        size, off = _read_uvarint(data, off)
        off += size
    (err,) = struct.unpack_from(">h", data, off)
    off += 2
    if err:
        raise RuntimeError(f"DescribeQuorum from {addr}:{port}: error code {err}")
    ntopics, off = _read_uvarint(data, off)
    assert ntopics - 1 == 1, f"DescribeQuorum: {ntopics - 1} topics in the response"
    name_len, off = _read_uvarint(data, off)
    off += name_len - 1
    nparts, off = _read_uvarint(data, off)
    assert nparts - 1 == 1, f"DescribeQuorum: {nparts - 1} partitions in the response"
    _index, perr, leader = struct.unpack_from(">ihi", data, off)
    if perr:
        raise RuntimeError(f"DescribeQuorum from {addr}:{port}: partition error code {perr}")
    return leader


class Node(WeirProcess):
    """One ``weir server`` process of a cluster, restartable in place."""

    def __init__(self, cluster: "Cluster", node_id: int, addr: str, roles: str = "broker,controller"):
        port, self.cport, self.http_port = _free_ports(addr, 3)
        self.roles = roles
        self.is_broker = "broker" in roles
        self.is_controller = "controller" in roles
        if not self.is_broker:
            # A controller-only node serves no clients: "listening" means its
            # CONTROLLER listener.
            port = self.cport
        super().__init__(
            cluster.binary,
            cluster.tmp,
            cluster.tmp / f"n{node_id}.stderr.log",
            addr,
            port,
            f"node {node_id}",
        )
        self.cluster = cluster
        self.node_id = node_id
        self.addr = addr
        self.log_dir = cluster.tmp / f"n{node_id}"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        listeners = []
        if self.is_broker:
            listeners.append(f"{self.cluster.broker_listener}://{self.addr}:{self.port}")
        if self.is_controller:
            listeners.append(f"CONTROLLER://{self.addr}:{self.cport}")
        return [
            str(self.binary),
            "server",
            "--node-id", str(self.node_id),
            "--roles", self.roles,
            "--listeners", ",".join(listeners),
            "--controller-quorum-voters", self.cluster.voters,
            "--log-dirs", str(self.log_dir),
            *([f"--http-listeners=http://{self.addr}:{self.http_port}"] if self.is_broker else []),
            "--broker-heartbeat-interval-ms", "300",
            "--broker-session-timeout-ms", "2000",
            # One replica unless the test asks for more (a flag may be given only once).
            *([] if "--offsets-topic-replication-factor" in self.cluster.extra_args
              else ["--offsets-topic-replication-factor", "1"]),
            *self.cluster.extra_args,
            *self.cluster.node_args.get(self.node_id, []),
        ]

    def wait_listening(self, deadline: float, context=None) -> None:
        super().wait_listening(deadline, context or self.cluster.stderr_tails)

    def died_unexpectedly(self) -> int | None:
        """The exit code if the process exited without being stopped by us."""
        if self.proc is not None and self.proc.poll() is not None:
            return self.proc.returncode
        return None

    def stderr_tail(self, max_chars: int = 8000) -> str:
        return super().stderr_tail(max_chars)


def _node_user(i: int) -> tuple[int, int]:
    """The uid and gid of system user ``weirnode<i>``, created if missing."""
    import pwd

    name = f"weirnode{i}"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True,
        )
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


class LinkCuts:
    """Cuts and heals network links between the nodes of a cluster started
    with ``separate_users=True``, with iptables rules in a chain of their own
    (``WEIR-FAULTS``, jumped to from OUTPUT).  Cutting a<->b drops every
    packet node a's processes send to b's address and every packet b's send
    to a's; the test's own clients (root) are untouched.  ``close()`` removes
    the chain; a chain left by an earlier run is flushed first."""

    CHAIN = "WEIR-FAULTS"

    def __init__(self, cluster: "Cluster"):
        self.cluster = cluster
        self.cut: set[tuple[int, int]] = set()
        self._ipt("-N", self.CHAIN, check=False)
        self._ipt("-F", self.CHAIN)
        if self._ipt("-C", "OUTPUT", "-j", self.CHAIN, check=False) != 0:
            self._ipt("-I", "OUTPUT", "-j", self.CHAIN)

    @staticmethod
    def _ipt(*args, check=True) -> int:
        r = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"iptables {' '.join(args)}: {r.stderr.strip()}")
        return r.returncode

    def _rules(self, a: int, b: int):
        na, nb = self.cluster.nodes[a], self.cluster.nodes[b]
        return [
            ("-m", "owner", "--uid-owner", str(na.uid), "-d", nb.addr, "-j", "DROP"),
            ("-m", "owner", "--uid-owner", str(nb.uid), "-d", na.addr, "-j", "DROP"),
        ]

    def verify(self) -> None:
        """Proves the rules work here: node a's user cannot connect to a
        listener on b's address while a<->b is cut, and can once healed."""
        a, b = sorted(self.cluster.nodes)[:2]
        na, nb = self.cluster.nodes[a], self.cluster.nodes[b]
        with socket.socket() as listener:
            listener.bind((nb.addr, 0))
            listener.listen(4)
            port = listener.getsockname()[1]
            probe = [
                "python3", "-c",
                "import socket,sys; s=socket.socket(); s.settimeout(1.0); "
                f"s.connect(({nb.addr!r}, {port}))",
            ]

            def reaches() -> bool:
                r = subprocess.run(probe, user=na.uid, group=na.gid, extra_groups=[],
                                   capture_output=True, timeout=10)
                return r.returncode == 0

            assert reaches(), "a node's user cannot reach another node at all"
            self.cut_link(a, b)
            try:
                assert not reaches(), "iptables did not cut the link (is the owner match available?)"
            finally:
                self.heal_link(a, b)
            assert reaches(), "healing the link did not restore it"

    def cut_link(self, a: int, b: int) -> None:
        key = (min(a, b), max(a, b))
        if key in self.cut:
            return
        for rule in self._rules(*key):
            self._ipt("-A", self.CHAIN, *rule)
        self.cut.add(key)
        for i in key:
            self.cluster.nodes[i].mark(f"link {key[0]}<->{key[1]} cut")

    def heal_link(self, a: int, b: int) -> None:
        key = (min(a, b), max(a, b))
        if key not in self.cut:
            return
        for rule in self._rules(*key):
            self._ipt("-D", self.CHAIN, *rule, check=False)
        self.cut.discard(key)
        for i in key:
            self.cluster.nodes[i].mark(f"link {key[0]}<->{key[1]} healed")

    def _client_rule(self, i: int):
        # The test's own clients run as root; the nodes each as their own user.
        return ("-m", "owner", "--uid-owner", "0", "-d", self.cluster.nodes[i].addr, "-j", "DROP")

    def cut_clients(self, i: int) -> None:
        """Drops every packet the test's clients send to node ``i``."""
        self._ipt("-A", self.CHAIN, *self._client_rule(i))
        self.cluster.nodes[i].mark("clients cut off")

    def heal_clients(self, i: int) -> None:
        self._ipt("-D", self.CHAIN, *self._client_rule(i), check=False)
        self.cluster.nodes[i].mark("clients back")

    def heal_all(self) -> None:
        for key in list(self.cut):
            self.heal_link(*key)
        self._ipt("-F", self.CHAIN, check=False)

    def close(self) -> None:
        self.cut.clear()
        self._ipt("-F", self.CHAIN, check=False)
        self._ipt("-D", "OUTPUT", "-j", self.CHAIN, check=False)
        self._ipt("-X", self.CHAIN, check=False)


class Cluster:
    """N ``weir server`` processes forming one cluster (see module doc).

    Nodes are numbered 1..n; every method taking ``i`` takes a node id.
    """

    def __init__(self, n: int = 3, extra_args=(), binary: Path | None = None, first_host: int = 2,
                 roles: dict[int, str] | None = None, separate_users: bool = False,
                 node_args: dict[int, list[str]] | None = None):
        assert 1 <= n <= 250
        self.binary = Path(binary) if binary is not None else weir_bin()
        self.extra_args = [str(a) for a in extra_args]
        self.node_args = {i: [str(a) for a in args] for i, args in (node_args or {}).items()}
        # The brokers' listener (PLAINTEXT, or SSL with ssl.* settings in the extra args), and
        # the confluent-kafka settings this harness's own clients need to reach it.
        self.broker_listener = "PLAINTEXT"
        self.client_conf: dict = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="weir-cluster-"))
        self.closed = False
        _LIVE_CLUSTERS.add(self)
        try:
            roles = roles or {}
            self.nodes: dict[int, Node] = {
                i: Node(self, i, f"127.0.0.{first_host + i - 1}", roles.get(i, "broker,controller"))
                for i in range(1, n + 1)
            }
        except Exception:
            self.close()
            raise
        self.voters = ",".join(
            f"{i}@{nd.addr}:{nd.cport}" for i, nd in self.nodes.items() if nd.is_controller
        )
        if separate_users:
            # Each node runs as its own system user, so that LinkCuts can tell
            # its packets apart (on loopback every connection leaves from
            # 127.0.0.1, whatever address the node listens on).
            os.chmod(self.tmp, 0o755)
            for i, nd in self.nodes.items():
                nd.uid, nd.gid = _node_user(i)
                os.chown(nd.log_dir, nd.uid, nd.gid)

    # -- addresses ----------------------------------------------------------

    @property
    def ids(self) -> list[int]:
        return list(self.nodes)

    @property
    def broker_ids(self) -> list[int]:
        """Nodes with the broker role."""
        return [i for i, nd in self.nodes.items() if nd.is_broker]

    @property
    def controller_ids(self) -> list[int]:
        """Nodes with the controller role (the voters)."""
        return [i for i, nd in self.nodes.items() if nd.is_controller]

    @property
    def bootstrap(self) -> str:
        """Every broker's client address, comma-separated."""
        return ",".join(nd.bootstrap for nd in self.nodes.values() if nd.is_broker)

    def bootstrap_of(self, *ids: int) -> str:
        """The client addresses of the given nodes, comma-separated."""
        return ",".join(self.nodes[i].bootstrap for i in ids)

    def live_ids(self) -> list[int]:
        """Brokers whose process is running and not paused (the nodes that
        answer clients)."""
        return [i for i, nd in self.nodes.items() if nd.is_broker and nd.alive() and not nd.paused]

    def live_bootstrap(self) -> str:
        return self.bootstrap_of(*self.live_ids())

    def node(self, i: int) -> Node:
        return self.nodes[i]

    # -- lifecycle ----------------------------------------------------------

    def start_all(self, wait_registered: bool = True) -> None:
        """Launch every node, then wait until each accepts TCP on its client
        port (all are launched first: none can finish starting without a
        quorum).  With ``wait_registered`` also wait until metadata lists
        every node as a live broker."""
        for nd in self.nodes.values():
            nd.launch()
        deadline = time.monotonic() + START_TIMEOUT
        for nd in self.nodes.values():
            nd.wait_listening(deadline)
        if wait_registered:
            self.wait_for_brokers(self.broker_ids, timeout=max(1.0, deadline - time.monotonic()))

    def start(self, i: int) -> None:
        """Start a stopped node (same ports and data dir) and wait until it
        accepts TCP on its client port."""
        nd = self.nodes[i]
        nd.launch()
        nd.wait_listening(time.monotonic() + START_TIMEOUT)

    def kill(self, i: int) -> int | None:
        """SIGKILL node ``i`` and reap it."""
        return self.nodes[i].stop(kill9=True)

    def stop(self, i: int, timeout: float = 15.0) -> int | None:
        """SIGTERM node ``i`` and wait for it (SIGKILL after ``timeout``)."""
        return self.nodes[i].stop(timeout=timeout)

    def pause(self, i: int) -> None:
        """SIGSTOP node ``i`` (it stays in place but stops answering)."""
        nd = self.nodes[i]
        assert nd.alive(), f"node {i} is not running"
        nd.signal(signal.SIGSTOP)
        nd.paused = True
        nd.mark("paused (SIGSTOP)")

    def resume(self, i: int) -> None:
        """SIGCONT a paused node."""
        nd = self.nodes[i]
        nd.signal(signal.SIGCONT)
        nd.paused = False
        nd.mark("resumed (SIGCONT)")

    def restart(self, i: int, kill9: bool = False) -> int | None:
        """Stop node ``i`` if it runs (SIGTERM, or SIGKILL with ``kill9``),
        then start it again on the same ports and data dir.  Returns the exit
        code of the stop (``None`` if it was not running)."""
        nd = self.nodes[i]
        rc = nd.stop(kill9=kill9) if nd.proc is not None else None
        self.start(i)
        return rc

    def alive(self, i: int) -> bool:
        return self.nodes[i].alive()

    def unexpected_exits(self) -> dict[int, int]:
        """Nodes that exited on their own (not through kill/stop)."""
        out = {}
        for i, nd in self.nodes.items():
            rc = nd.died_unexpectedly()
            if rc is not None:
                out[i] = rc
        return out

    def close(self) -> None:
        """Kill every node (after SIGCONT, so paused ones die too) and remove
        the temporary directory.  Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            for nd in getattr(self, "nodes", {}).values():
                try:
                    if nd.proc is not None:
                        nd.signal(signal.SIGCONT)
                        nd.stop(kill9=True)
                except Exception:
                    nd._kill_group()
        finally:
            if os.environ.get("WEIR_INTEROP_KEEP_DATA"):
                print(f"weir cluster data kept in {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
            _LIVE_CLUSTERS.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- diagnostics --------------------------------------------------------

    def stderr_tails(self, max_chars: int = 8000) -> str:
        return "\n".join(nd.stderr_tail(max_chars) for nd in self.nodes.values())

    # -- metadata ------------------------------------------------------------

    def quorum_leader(self, via: int) -> int:
        """The active controller as node ``via`` sees it (-1: none known).
        Needs a binary with DescribeQuorum (commit e27889a on); older ones
        close the connection, which raises ConnectionError here."""
        nd = self.nodes[via]
        return describe_quorum_leader(nd.addr, nd.port)

    def wait_for_quorum_leader(self, timeout: float = 15, exclude=()) -> int:
        """Wait until every live node names the same active controller, one
        not in ``exclude``; return its id."""
        deadline = time.monotonic() + timeout
        while True:
            seen = {}
            for v in self.live_ids():
                try:
                    seen[v] = self.quorum_leader(v)
                except (OSError, RuntimeError) as e:
                    seen[v] = f"{type(e).__name__}: {e}"
            leaders = set(seen.values())
            if len(leaders) == 1:
                (leader,) = leaders
                if isinstance(leader, int) and leader in self.nodes and leader not in exclude:
                    return leader
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"live nodes did not agree on an active controller (not in {list(exclude)}) "
                    f"within {timeout}s; last seen per node: {seen}"
                )
            time.sleep(0.1)

    def metadata(self, via: int | None = None, topic: str | None = None, timeout: float = 5):
        """A fresh Metadata response (confluent-kafka ClusterMetadata) from
        node ``via`` (default: the first live node), through a new
        AdminClient bootstrapped at that node only."""
        from confluent_kafka.admin import AdminClient

        if via is None:
            live = self.live_ids()
            assert live, "no live node to ask for metadata"
            via = live[0]
        a = AdminClient({"bootstrap.servers": self.bootstrap_of(via), "socket.timeout.ms": 5000,
                         **self.client_conf})
        return a.list_topics(topic=topic, timeout=timeout)

    def wait_for_brokers(self, ids, timeout: float = 15, via: int | None = None):
        """Wait until metadata (from ``via``, default each live node in turn)
        lists exactly the brokers ``ids``; returns that metadata."""
        from confluent_kafka import KafkaError, KafkaException

        want = set(ids)
        deadline = time.monotonic() + timeout
        last = None
        while True:
            sources = [via] if via is not None else self.live_ids()
            seen = {}
            for v in sources:
                try:
                    md = self.metadata(via=v, timeout=max(1.0, min(5.0, deadline - time.monotonic())))
                    seen[v] = set(md.brokers)
                except KafkaException as e:
                    # A string, not the exception: its traceback would keep
                    # the AdminClient (and its connections) alive.
                    if e.args and e.args[0].code() == KafkaError._PARTIAL:
                        # librdkafka's word for a response with neither
                        # brokers nor topics.
                        seen[v] = "a Metadata response listing no brokers (librdkafka: _PARTIAL)"
                    else:
                        seen[v] = f"KafkaException: {e}"
            last = seen
            if seen and all(s == want for s in seen.values()):
                return md
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"metadata did not list exactly brokers {sorted(want)} within {timeout}s; "
                    f"last seen per node asked: {last}"
                )
            time.sleep(0.2)
