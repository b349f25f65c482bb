"""Fixtures for Weir's third-party-client interop suite.

Every test gets a fresh broker (``weir`` fixture): a real ``weir server``
process on a free loopback port with its own temporary log dir.  The binary
comes from ``$WEIR_BIN`` (default ``<repo>/target/debug/weir``).

The broker's stderr goes to ``<tmp>/weir.stderr.log`` (appended across
restarts) and is attached to the pytest report of any failing test.

The ``cluster3`` fixture runs a three-node cluster instead (see cluster.py);
each node's stderr tail is attached the same way.

Extra ``weir server`` arguments for a test (or a whole module, through
``pytestmark``) come from the ``weir_args`` marker, e.g.
``@pytest.mark.weir_args("--group-initial-rebalance-delay-ms", "200")``.
The closest marker wins (a function's marker replaces its module's; they are
not merged, since the server rejects a repeated flag).  Tests without the
marker get exactly the default command line.

Everything here is bounded in time: broker start waits at most
``WEIR_START_TIMEOUT`` seconds (default 20), stops escalate to SIGKILL, and
an autouse watchdog aborts any single test after ``WEIR_TEST_TIMEOUT``
seconds (default 240).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

START_TIMEOUT = float(os.environ.get("WEIR_START_TIMEOUT", "20"))
TEST_TIMEOUT = float(os.environ.get("WEIR_TEST_TIMEOUT", "240"))
NUM_PARTITIONS = 3
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def weir_bin() -> Path:
    p = os.environ.get("WEIR_BIN")
    path = Path(p) if p else REPO / "target" / "debug" / "weir"
    if not path.is_absolute():
        path = REPO / path
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


_LIVE_BROKERS: "set[Broker]" = set()


@atexit.register
def _kill_leftover_brokers() -> None:
    for b in list(_LIVE_BROKERS):
        try:
            b.close()
        except Exception:
            pass


class WeirProcess:
    """One ``weir server`` process: launch, wait until it listens, signal,
    stop and reap it (with its process group), and read its stderr, which is
    appended to across restarts with a marker line at each start and stop.
    Subclasses give the command line."""

    def __init__(self, binary: Path, cwd: Path, stderr_path: Path, host: str, port: int, label: str):
        self.binary = binary
        self.cwd = cwd
        self.stderr_path = stderr_path
        self.host = host
        self.port = port
        self.label = label
        self.proc: subprocess.Popen | None = None
        self.paused = False
        self.starts = 0
        self.exit_codes: list[int | None] = []

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def mark(self, text: str) -> None:
        with open(self.stderr_path, "ab") as err:
            err.write(f"\n===== {time.strftime('%H:%M:%S')} {self.label}: {text}\n".encode())

    def launch(self) -> None:
        """Start the process without waiting for it to listen."""
        assert not self.alive(), f"{self.label} is already running"
        # Drop WEIR_* variables (the binary reads its settings from them, and
        # this suite's own knobs share the prefix); log at info unless
        # WEIR_INTEROP_RUST_LOG or RUST_LOG says otherwise.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
        env["RUST_LOG"] = os.environ.get("WEIR_INTEROP_RUST_LOG") or os.environ.get("RUST_LOG") or "info"
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        self.starts += 1
        self.paused = False
        self.mark(f"start #{self.starts}: {' '.join(self.command())}")
        # A node may run as its own user (see cluster.py's link cuts, which match on it).
        as_user = {}
        uid = getattr(self, "uid", None)
        if uid is not None:
            as_user = {"user": uid, "group": self.gid, "extra_groups": []}
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=str(self.cwd),
                env=env,
                start_new_session=True,
                **as_user,
            )

    def wait_listening(self, deadline: float, context=None) -> None:
        """Wait until the client port accepts connections; on failure raise
        with ``context()`` (default: this process's stderr tail)."""
        context = context or self.stderr_tail
        while time.monotonic() < deadline:
            rc = self.proc.poll() if self.proc is not None else None
            if self.proc is None or rc is not None:
                raise RuntimeError(
                    f"{self.label} exited with code {rc} during startup (start #{self.starts})\n"
                    + context()
                )
            if port_open(self.port, self.host):
                return
            time.sleep(0.05)
        self.signal(signal.SIGKILL)
        self._wait(5)
        raise RuntimeError(
            f"{self.label} did not accept connections on {self.bootstrap} within {START_TIMEOUT}s\n"
            + context()
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig) -> None:
        if self.alive():
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def _wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def _kill_group(self) -> None:
        # The process runs in its own session; make sure nothing it spawned
        # outlives it.  Only ever its own process group, by id.
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, kill9: bool = False, timeout: float = 15.0) -> int | None:
        """SIGKILL (``kill9``) or SIGTERM the process and reap it; returns the
        exit code (``None`` when a SIGTERM stop hung and was escalated)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            how = "already exited"
        elif kill9:
            self.signal(signal.SIGKILL)
            rc = self._wait(10)
            how = "SIGKILL"
        else:
            if self.paused:
                self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            rc = self._wait(timeout)
            how = "SIGTERM"
            if rc is None:
                self.signal(signal.SIGKILL)
                self._wait(10)
                how = f"SIGTERM, still running after {timeout}s, SIGKILL"
        self._kill_group()
        self.exit_codes.append(rc)
        self.mark(f"stopped ({how}): exit code {rc}")
        self.proc = None
        self.paused = False
        return rc

    def stderr_text(self) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return ANSI_ESCAPE.sub("", text)

    def stderr_tail(self, max_chars: int = 20000) -> str:
        text = self.stderr_text()
        if len(text) > max_chars:
            text = "...[truncated]...\n" + text[-max_chars:]
        state = "paused" if self.paused else ("running" if self.alive() else "not running")
        return (
            f"----- {self.label} ({self.bootstrap}, {state}) stderr ({self.stderr_path}) -----\n"
            f"{text}\n----- end {self.label} stderr -----"
        )


class Broker(WeirProcess):
    """One ``weir server`` process plus its data dir, restartable in place."""

    def __init__(self, binary: Path, tmp: Path, extra_args=()):
        super().__init__(binary, tmp, tmp / "weir.stderr.log", "127.0.0.1", free_port(), "weir")
        self.tmp = tmp
        self.log_dir = tmp / "data"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        # /metrics, /health and /ready (each broker on a port of its own).
        self.http_port = free_port()

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "server",
            "--node-id", "0",
            "--listeners", f"PLAINTEXT://{self.bootstrap}",
            "--log-dirs", str(self.log_dir),
            "--num-partitions", str(NUM_PARTITIONS),
            *([] if any(str(a).startswith("--http-listeners") for a in self.extra_args)
              else ["--http-listeners", self.http]),
            *self.extra_args,
        ]

    def start(self) -> None:
        _LIVE_BROKERS.add(self)
        self.launch()
        self.wait_listening(time.monotonic() + START_TIMEOUT)

    def restart(self, kill9: bool = False) -> int | None:
        """Stop (SIGTERM, or SIGKILL with ``kill9``) and start again on the
        same port and log dirs.  Returns the exit code of the stop."""
        rc = self.stop(kill9=kill9)
        self.start()
        return rc

    def close(self) -> None:
        try:
            if self.proc is not None:
                self.stop(kill9=True)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            _LIVE_BROKERS.discard(self)


# -- fixtures -------------------------------------------------------------


@pytest.fixture
def weir(request):
    binary = weir_bin()
    if not binary.is_file() or not os.access(binary, os.X_OK):
        pytest.fail(
            f"weir binary not found at {binary}; build it with `cargo build` "
            "or point WEIR_BIN at it",
            pytrace=False,
        )
    tmp = Path(tempfile.mkdtemp(prefix="weir-interop-"))
    marker = request.node.get_closest_marker("weir_args")
    extra_args = [str(a) for a in marker.args] if marker is not None else []
    broker = Broker(binary, tmp, extra_args=extra_args)
    request.node._weir_broker = broker
    try:
        broker.start()
        yield broker
        # A broker that died on its own during the test is a failure even if
        # the test's assertions happened to pass.
        if broker.proc is not None and broker.proc.poll() is not None:
            pytest.fail(
                f"weir exited unexpectedly with code {broker.proc.returncode}\n"
                + broker.stderr_tail(),
                pytrace=False,
            )
    finally:
        request.node._weir_stderr = broker.stderr_tail()
        broker.close()


def _run_cluster(request, n: int, roles=None, link_cuts: bool = False, secure=None):
    """Start a cluster (tests/interop/cluster.py) for one test, fail the test
    if a node dies on its own, attach every node's stderr, and clean up.
    With ``link_cuts`` every node runs as its own user and ``cluster.links``
    (a LinkCuts) can cut the links between them; the rules go at teardown.
    ``secure`` is (extra args, broker listener, client settings) for a
    secured cluster."""
    from cluster import Cluster, LinkCuts  # here, not at the top: cluster.py imports this module

    binary = weir_bin()
    if not binary.is_file() or not os.access(binary, os.X_OK):
        pytest.fail(
            f"weir binary not found at {binary}; build it with `cargo build` "
            "or point WEIR_BIN at it",
            pytrace=False,
        )
    marker = request.node.get_closest_marker("weir_args")
    extra_args = [str(a) for a in marker.args] if marker is not None else []
    per_node = request.node.get_closest_marker("weir_node_args")
    node_args = per_node.args[0] if per_node is not None else None
    if secure is not None:
        extra_args = extra_args + list(secure[0])
    cluster = Cluster(n, extra_args=extra_args, binary=binary, roles=roles,
                      separate_users=link_cuts, node_args=node_args)
    if secure is not None:
        cluster.broker_listener, cluster.client_conf = secure[1], secure[2]
    request.node._weir_cluster = cluster
    cluster.links = None
    try:
        if link_cuts:
            cluster.links = LinkCuts(cluster)
            cluster.links.verify()
        cluster.start_all()
        yield cluster
        # A node that died on its own (not killed or stopped by the test) is
        # a failure even if the test's assertions passed.
        died = cluster.unexpected_exits()
        if died:
            pytest.fail(
                f"weir node(s) exited unexpectedly (node: exit code) {died}\n"
                + cluster.stderr_tails(),
                pytrace=False,
            )
    finally:
        try:
            if cluster.links is not None:
                cluster.links.close()
            request.node._weir_stderr = cluster.stderr_tails()
        finally:
            cluster.close()


@pytest.fixture
def cluster3(request):
    """A started three-node cluster: every node a controller-quorum voter and
    a broker, all listed in metadata.  The ``weir_args`` marker adds
    arguments to every node's command line."""
    yield from _run_cluster(request, 3)


@pytest.fixture
def cluster4(request):
    """Four nodes like ``cluster3``; the ``weir_node_args`` marker
    ({node: [args]}) adds arguments to single nodes."""
    yield from _run_cluster(request, 4)


@pytest.fixture
def fault_cluster(request):
    """Three nodes like ``cluster3``, each running as its own user so that
    ``cluster.links`` can cut links between them (iptables, needs root)."""
    yield from _run_cluster(request, 3, link_cuts=True)


@pytest.fixture
def secured_fault_cluster(request):
    """``fault_cluster`` with every listener secured: brokers and the metadata
    quorum speak mutual TLS only, with an authorizer whose super users are the
    brokers' certificate and the test's client (CN=alice)."""
    from pki import Pki

    import shutil
    import tempfile

    # Nodes run as users of their own: the certificates must be readable by them, outside
    # pytest's private temporary directory.
    pki_dir = Path(tempfile.mkdtemp(prefix="weir-pki-"))
    request.addfinalizer(lambda: shutil.rmtree(pki_dir, ignore_errors=True))
    pki = Pki(pki_dir / "pki")
    for path in [pki_dir, *pki_dir.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    args = []
    for o in [f"ssl.keystore.location={pki.broker.keystore}",
              f"ssl.truststore.location={pki.ca.path}",
              "ssl.client.auth=required",
              "listener.security.protocol.map=SSL:SSL,CONTROLLER:SSL",
              "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
              "super.users=User:CN=localhost,O=Weir tests;User:CN=alice,OU=eng,O=Weir,C=US"]:
        args += ["--override", o]
    client = {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca.path),
              "ssl.certificate.location": str(pki.alice.cert_path),
              "ssl.key.location": str(pki.alice.key_path)}
    yield from _run_cluster(request, 3, link_cuts=True, secure=(args, "SSL", client))


@pytest.fixture
def split_cluster(request):
    """Five nodes with separate roles: nodes 1-3 controller-only (the
    quorum), nodes 4-5 broker-only."""
    roles = {1: "controller", 2: "controller", 3: "controller", 4: "broker", 5: "broker"}
    yield from _run_cluster(request, 5, roles)


@pytest.fixture(scope="session")
def sarama_bin(tmp_path_factory):
    """Build tests/interop/sarama once per session (GOPATH mode against the
    Debian golang-github-shopify-sarama-dev sources)."""
    return _go_build(tmp_path_factory, "sarama", "sarama-interop")


@pytest.fixture(scope="session")
def sarama_group_bin(tmp_path_factory):
    """Build tests/interop/sarama_group (the Sarama ConsumerGroup check) once
    per session, the same way as ``sarama_bin``."""
    return _go_build(tmp_path_factory, "sarama_group", "sarama-group-interop")


def _go_build(tmp_path_factory, subdir: str, name: str) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.fail("`go` not found; install golang-go (see .ci/run)", pytrace=False)
    gopath = os.environ.get("WEIR_SARAMA_GOPATH", "/usr/share/gocode")
    if not (Path(gopath) / "src/github.com/Shopify/sarama").is_dir():
        pytest.fail(
            f"Sarama sources not found under {gopath}; "
            "install golang-github-shopify-sarama-dev (see .ci/run)",
            pytrace=False,
        )
    out = tmp_path_factory.mktemp(subdir) / name
    env = dict(os.environ)
    env.update(GO111MODULE="off", GOPATH=gopath, GOFLAGS="")
    # A writable build cache that survives between runs on the same machine.
    env.setdefault("GOCACHE", str(Path(tempfile.gettempdir()) / "weir-interop-gocache"))
    try:
        res = subprocess.run(
            [go, "build", "-o", str(out), "."],
            cwd=str(HERE / subdir),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"building the Sarama program in {subdir}/ timed out", pytrace=False)
    if res.returncode != 0:
        pytest.fail(f"go build of {subdir}/ failed:\n{res.stdout}\n{res.stderr}", pytrace=False)
    return out


@pytest.fixture(autouse=True)
def _watchdog(request):
    """Abort a test that runs longer than TEST_TIMEOUT seconds.

    Client calls in the tests all carry their own timeouts; this is the
    backstop so the suite can never hang CI.
    """
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded its time limit (WEIR_TEST_TIMEOUT={TEST_TIMEOUT}s, "
                           "or its weir_timeout marker)")

    marker = request.node.get_closest_marker("weir_timeout")
    limit = float(marker.args[0]) if marker else TEST_TIMEOUT
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    broker = getattr(item, "_weir_broker", None) or getattr(item, "_weir_cluster", None)
    if broker is None:
        return
    # Teardown-phase failures come after close(): use the tails saved before it.
    if report.when == "teardown" and getattr(item, "_weir_stderr", None):
        text = item._weir_stderr
    elif hasattr(broker, "stderr_tails"):
        text = broker.stderr_tails()
    else:
        text = getattr(item, "_weir_stderr", None) or broker.stderr_tail()
    report.sections.append(("weir stderr", text))


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "weir_args(*args): extra `weir server` arguments for the weir and cluster3 fixtures "
        "(closest marker wins)",
    )
    config.addinivalue_line(
        "markers",
        "weir_timeout(seconds): this test's time limit instead of WEIR_TEST_TIMEOUT",
    )
    config.addinivalue_line(
        "markers",
        "weir_node_args(dict): extra `weir server` arguments per node id for cluster fixtures",
    )

    # Turn SIGTERM (e.g. from `timeout` in .ci/test) into KeyboardInterrupt so
    # fixture teardown still kills the brokers and removes their data dirs.
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)


def pytest_report_header(config):
    b = weir_bin()
    return [f"weir binary: {b} ({'present' if b.is_file() else 'MISSING'})"]
