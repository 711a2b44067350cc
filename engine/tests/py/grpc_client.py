"""A client of the engine's gRPC API written outside the project's Rust: Python grpcio
with stubs generated from engine/proto/kevent.proto at test time (engine/tests/grpc.rs).

    grpc_client.py STUBS_DIR ADDR TOKEN WORKDIR functional|slowfast

Each scenario asserts what it gets against the workload it runs itself, and exits
non-zero (with the reason on stderr) when something is off.
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import kevent_pb2 as pb  # noqa: E402
import kevent_pb2_grpc as rpc  # noqa: E402

ADDR, TOKEN, WORK, SCENARIO = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
AUTH = [("authorization", "Bearer " + TOKEN)]
TRUE = os.path.realpath("/bin/true")


def fail(msg):
    # os._exit: streams still open must not hold the interpreter's exit.
    sys.stderr.write("grpc_client: " + msg + "\n")
    sys.stderr.flush()
    os._exit(1)


class Sub:
    """One Subscribe stream: requests from a queue, responses read by a thread."""

    def __init__(self, stub, first, metadata=AUTH, read=True):
        self.requests = queue.Queue()
        self.responses = queue.Queue()
        self.error = None
        self.requests.put(pb.ClientMessage(subscribe=first))
        self.call = stub.Subscribe(self._gen(), metadata=metadata)
        self.thread = threading.Thread(target=self._read, daemon=True)
        if read:
            self.thread.start()

    def start_reading(self):
        self.thread.start()

    def _gen(self):
        while True:
            m = self.requests.get()
            if m is None:
                return
            yield m

    def _read(self):
        try:
            for m in self.call:
                self.responses.put(m)
        except grpc.RpcError as e:
            self.error = e
        self.responses.put(None)

    def send(self, **kw):
        self.requests.put(pb.ClientMessage(**kw))

    def next(self, timeout, skip_heartbeats=True):
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                return None
            try:
                m = self.responses.get(timeout=left)
            except queue.Empty:
                return None
            if m is None:
                self.responses.put(None)
                return None
            if skip_heartbeats and m.WhichOneof("msg") == "heartbeat":
                continue
            return m

    def events(self, want, timeout):
        """Raw events until `want` have come or `timeout` passes."""
        got = []
        deadline = time.time() + timeout
        while len(got) < want and time.time() < deadline:
            m = self.next(deadline - time.time())
            if m is None:
                break
            kind = m.WhichOneof("msg")
            if kind == "events":
                got.extend(m.events.events)
            elif kind == "drops":
                fail("unexpected drop notice: %s" % m.drops)
        return got

    def close(self):
        self.requests.put(None)
        self.call.cancel()


def status_code(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return None, None


def stream_error(stub, first, then=None, metadata=AUTH):
    s = Sub(stub, first, metadata)
    if then is not None:
        s.next(5)  # subscribed
        s.send(**then)
    deadline = time.time() + 10
    while s.error is None and time.time() < deadline:
        s.next(0.2)
    s.close()
    if s.error is None:
        fail("the stream did not end with an error")
    return s.error.code(), s.error.details()


def run_true(n):
    pids = []
    for _ in range(n):
        p = subprocess.Popen([TRUE, "kevent-grpc-test"])
        pids.append(p.pid)
        p.wait()
    return pids


def functional(stub):
    # Authentication: no token, a wrong one.
    code, _ = status_code(lambda: stub.Status(pb.StatusRequest()))
    if code != grpc.StatusCode.UNAUTHENTICATED:
        fail("Status without a token: %s" % code)
    code, _ = status_code(
        lambda: stub.Status(pb.StatusRequest(), metadata=[("authorization", "Bearer nope")])
    )
    if code != grpc.StatusCode.UNAUTHENTICATED:
        fail("Status with a wrong token: %s" % code)
    code, _ = stream_error(stub, pb.Subscription(raw_events=True), metadata=[])
    if code != grpc.StatusCode.UNAUTHENTICATED:
        fail("Subscribe without a token: %s" % code)

    st = stub.Status(pb.StatusRequest(), metadata=AUTH)
    if st.abi < 3 or not st.version or not st.cores or "[export.grpc]" not in st.config_toml:
        fail("status: %s" % st)
    # Which kernel hook supplies each kind, and what is not captured (none here).
    hooks = {h.kind: h.hook for h in st.hooks}
    if hooks.get("process.exec") != "tp_btf/sched_process_exec" or not hooks.get("net.tcp_connect"):
        fail("status hooks: %s" % hooks)
    if list(st.unavailable):
        fail("status unavailable: %s" % list(st.unavailable))

    # Bad requests name their field.
    for first, then, field in [
        (pb.Subscription(kinds=["file.nope"]), None, "subscription.kinds"),
        (pb.Subscription(min_importance=2.0), None, "subscription.min_importance"),
        (pb.Subscription(exes=["true"]), None, "subscription.exes"),
        (pb.Subscription(containers=["zz"]), None, "subscription.containers"),
        (pb.Subscription(credits=-4), None, "subscription.credits"),
        (pb.Subscription(raw_events=True), {"credits": pb.Credits(messages=-1)}, "credits.messages"),
        (pb.Subscription(paths=["/" + "x" * 100000]), None, "larger than"),
    ]:
        code, details = stream_error(stub, first, then)
        if code != grpc.StatusCode.INVALID_ARGUMENT or field not in details:
            fail("%s: %s %s" % (field, code, details))

    # Filters and credits: 20 execs of true among other execs; 3 credits first, one
    # event per message.
    s = Sub(
        stub,
        pb.Subscription(
            raw_events=True, kinds=["process.exec"], exes=[TRUE], credits=3, max_batch=1
        ),
    )
    m = s.next(10)
    if m is None or m.WhichOneof("msg") != "subscribed":
        fail("no Subscribed: %s" % m)
    time.sleep(0.5)
    pids = run_true(20)
    subprocess.run(["/bin/sh", "-c", "exit 0"])
    first = s.events(3, 10)
    if len(first) != 3:
        fail("3 credits: %d events" % len(first))
    extra = s.events(1, 1.5)
    if extra:
        fail("sent beyond the credits: %s" % extra)
    s.send(credits=pb.Credits(messages=100))
    rest = s.events(17, 10)
    got = first + rest
    if len(got) != 20:
        fail("20 execs of true, got %d" % len(got))
    for e in got:
        if e.kind != "process.exec" or e.exe != TRUE or e.pid not in pids:
            fail("an event the filters should not pass: %s" % e)
        j = json.loads(e.json)
        if j["kind"] != "process.exec" or "kevent-grpc-test" not in j["argv"]:
            fail("event json: %s" % e.json)
    if sorted(e.pid for e in got) != sorted(pids):
        fail("not each exec once")

    # Pause and resume.
    s.send(pause=pb.Pause())
    time.sleep(0.3)
    paused_pids = run_true(5)
    if s.events(1, 1.5):
        fail("events while paused")
    s.send(resume=pb.Resume())
    after = s.events(5, 10)
    if sorted(e.pid for e in after) != sorted(paused_pids):
        fail("after resume: %s" % [e.pid for e in after])

    # Reconfigure: file opens under the work directory.
    s.send(reconfigure=pb.Subscription(raw_events=True, kinds=["file.open"], paths=[WORK]))
    time.sleep(0.5)
    for i in range(10):
        with open(os.path.join(WORK, "f%d" % i), "w") as f:
            f.write("x")
    opens = s.events(10, 10)
    if len(opens) != 10 or any(not json.loads(e.json)["path"].startswith(WORK) for e in opens):
        fail("reconfigured to opens under %s: %s" % (WORK, [e.json for e in opens]))
    s.close()

    # Window summaries and notable events (an exec by root is notable).
    s = Sub(stub, pb.Subscription(summaries=True, notable_events=True, credits=1000))
    summary = notable = None
    deadline = time.time() + 20
    while (summary is None or notable is None) and time.time() < deadline:
        run_true(1)
        m = s.next(1)
        if m is None:
            continue
        if m.WhichOneof("msg") == "summary":
            summary = json.loads(m.summary.json)
        if m.WhichOneof("msg") == "notable":
            notable = m.notable
    s.close()
    if summary is None or summary["type"] != "window" or "kinds" not in summary:
        fail("no window summary: %s" % summary)
    if notable is None or json.loads(notable.event.json)["type"] != "notable":
        fail("no notable event: %s" % notable)
    print("functional ok")


def slowfast(stub):
    storm = os.path.join(WORK, "storm")
    os.makedirs(storm, exist_ok=True)
    fast = Sub(
        stub,
        pb.Subscription(
            raw_events=True, kinds=["file.open"], paths=[storm + "/"], credits=1 << 40,
            max_batch=4096,
        ),
    )
    # The slow client does not read at all during the storm.
    slow = Sub(stub, pb.Subscription(raw_events=True, credits=1 << 40), read=False)
    m = fast.next(10)
    if m is None or m.WhichOneof("msg") != "subscribed":
        fail("no Subscribed")
    deadline = time.time() + 10
    while stub.Status(pb.StatusRequest(), metadata=AUTH).subscribers < 2:
        if time.time() > deadline:
            fail("the slow client did not subscribe")
        time.sleep(0.1)
    counted = {"fast": 0, "fast_drops": 0}

    def read_fast():
        while True:
            m = fast.next(30)
            if m is None:
                return
            if m.WhichOneof("msg") == "events":
                counted["fast"] += len(m.events.events)
            elif m.WhichOneof("msg") == "drops":
                counted["fast_drops"] += m.drops.total

    t = threading.Thread(target=read_fast, daemon=True)
    t.start()
    time.sleep(0.5)
    n = 10000
    for i in range(n):
        with open(os.path.join(storm, "s%d" % i), "w"):
            pass
        if i % 500 == 499:
            time.sleep(0.05)
    deadline = time.time() + 30
    while time.time() < deadline and counted["fast"] < n:
        time.sleep(0.1)
    # Now the slow client reads: what was buffered, then the notice.
    slow.start_reading()
    slow_drops = []
    deadline = time.time() + 30
    while time.time() < deadline and not slow_drops:
        m = slow.next(1)
        if m is not None and m.WhichOneof("msg") == "drops":
            slow_drops.append(m.drops)
    fast.close()
    slow.close()
    if counted["fast"] != n or counted["fast_drops"]:
        fail("the fast client got %d of %d (drops %d)" % (counted["fast"], n, counted["fast_drops"]))
    if not slow_drops or not any(
        d.reason == "client_queue_full" and d.count > 0 for n_ in slow_drops for d in n_.drops
    ):
        fail("the slow client got no drop notice: %s" % slow_drops)
    print("slowfast ok: fast %d, slow told of %d dropped" % (counted["fast"], sum(d.total for d in slow_drops)))


def cycles(stub):
    """Many clients that subscribe, take a message and vanish mid-stream."""
    for i in range(300):
        s = Sub(stub, pb.Subscription(raw_events=True, summaries=True, credits=10))
        if s.next(10) is None:
            fail("cycle %d: no Subscribed" % i)
        s.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        st = stub.Status(pb.StatusRequest(), metadata=AUTH)
        if st.subscribers == 0:
            print("cycles ok")
            return
        time.sleep(0.1)
    fail("subscribers left after the cycles: %d" % st.subscribers)


def tls(stub):
    """Over TLS (the channel is secure; WORK holds the CA certificate)."""
    st = stub.Status(pb.StatusRequest(), metadata=AUTH)
    if not st.cores:
        fail("status over TLS: %s" % st)
    s = Sub(stub, pb.Subscription(raw_events=True, kinds=["process.exec"], exes=[TRUE], credits=100))
    if s.next(10) is None:
        fail("no Subscribed over TLS")
    time.sleep(0.3)
    pids = run_true(3)
    got = s.events(3, 10)
    s.close()
    if sorted(e.pid for e in got) != sorted(pids):
        fail("over TLS: %s" % got)
    print("tls ok")


def main():
    options = [("grpc.max_receive_message_length", 64 << 20)]
    if SCENARIO == "tls":
        with open(os.path.join(WORK, "cert.pem"), "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        options.append(("grpc.ssl_target_name_override", "localhost"))
        channel = grpc.secure_channel(ADDR, creds, options=options)
        stub = rpc.CollectorStub(channel)
        tls(stub)
        return
    channel = grpc.insecure_channel(ADDR, options=options)
    stub = rpc.CollectorStub(channel)
    {"functional": functional, "slowfast": slowfast, "cycles": cycles}[SCENARIO](stub)


main()
sys.stdout.flush()
os._exit(0)
