//! net.tcp_* on the real kernel: connect, established, accept and close over 127.0.0.1
//! and ::1, a refused connect (reset sent and received, the SYN dropped with its
//! reason), with addresses and ports.

use std::net::IpAddr;

use bpf::abi::TcpSockEvent;
use bpf::{Category, IdFilter, Kind};
use tests::{Capture, Workload, bpf_available, payload};

const TCP_ESTABLISHED: u32 = 1;
const TCP_SYN_SENT: u32 = 2;
const TCP_SYN_RECV: u32 = 3;
const TCP_CLOSE: u32 = 7;

fn addr(family: u16, a: &[u8; 16]) -> IpAddr {
    match family {
        2 => IpAddr::from([a[0], a[1], a[2], a[3]]),
        10 => IpAddr::from(*a),
        f => panic!("unexpected family {f}"),
    }
}

fn local(t: &TcpSockEvent) -> (IpAddr, u16) {
    (addr(t.family, &t.saddr), t.sport)
}

fn remote(t: &TcpSockEvent) -> (IpAddr, u16) {
    (addr(t.family, &t.daddr), t.dport)
}

const SCRIPT: &str = r#"
import socket
for fam, host, tag in ((socket.AF_INET, "127.0.0.1", "v4"), (socket.AF_INET6, "::1", "v6")):
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.bind((host, 0)); srv.listen(1)
    port = srv.getsockname()[1]
    cli = socket.socket(fam, socket.SOCK_STREAM)
    cli.connect((host, port))
    conn, peer = srv.accept()
    print(tag + "_listen", port)
    print(tag + "_client", cli.getsockname()[1])
    cli.close(); conn.close(); srv.close()
# A port nobody listens on: bind one, close it, connect to it.
s = socket.socket(); s.bind(("127.0.0.1", 0)); closed = s.getsockname()[1]; s.close()
c = socket.socket()
try:
    c.connect(("127.0.0.1", closed))
except ConnectionRefusedError:
    print("refused", closed)
print("refused_client", c.getsockname()[1] if c.fileno() >= 0 else 0)
"#;

#[test]
fn tcp_lifecycle_over_ipv4_and_ipv6_and_a_refused_connect() {
    if !bpf_available("tcp_lifecycle_over_ipv4_and_ipv6_and_a_refused_connect") {
        return;
    }
    // No tgid filter: most of these fire in softirq context, usually on the workload's
    // time but under load in ksoftirqd. Events are matched by their (unique) ports.
    let mut cap = Capture::start(&[Category::Net], |c| c.tgid_filter = IdFilter::Off);
    let done = cap.run_unfollowed(Workload::python(SCRIPT, &[]), true);
    done.assert_success();

    for (tag, host) in [("v4", "127.0.0.1"), ("v6", "::1")] {
        let ip: IpAddr = host.parse().unwrap();
        let listen: u16 = done.num(&format!("{tag}_listen"));
        let client: u16 = done.num(&format!("{tag}_client"));
        let family = if ip.is_ipv4() { 2 } else { 10 };

        let connect = cap
            .of(Kind::NetTcpConnect)
            .map(|e| (e, payload!(e, Tcp)))
            .find(|(_, t)| remote(t) == (ip, listen))
            .unwrap_or_else(|| panic!("{tag}: net.tcp_connect to {host}:{listen}"));
        assert_eq!(
            connect.0.header.pid, done.pid,
            "{tag}: connect is in the caller's context"
        );
        assert_eq!(
            (connect.1.family, connect.1.old_state, connect.1.new_state),
            (family, TCP_CLOSE, TCP_SYN_SENT)
        );
        let cookie = connect.1.sock_cookie;
        assert_ne!(cookie, 0, "{tag}: the socket has a cookie");

        let est = cap
            .of(Kind::NetTcpEstablished)
            .map(|e| payload!(e, Tcp))
            .find(|t| t.sock_cookie == cookie)
            .unwrap_or_else(|| panic!("{tag}: net.tcp_established"));
        assert_eq!(
            local(est),
            (ip, client),
            "{tag}: established has the client's port"
        );
        assert_eq!(
            (est.old_state, est.new_state),
            (TCP_SYN_SENT, TCP_ESTABLISHED)
        );

        let accept = cap
            .of(Kind::NetTcpAccept)
            .map(|e| payload!(e, Tcp))
            .find(|t| local(t) == (ip, listen) && remote(t) == (ip, client))
            .unwrap_or_else(|| panic!("{tag}: net.tcp_accept on {listen} from {client}"));
        assert_eq!(
            (accept.old_state, accept.new_state),
            (TCP_SYN_RECV, TCP_ESTABLISHED)
        );

        let close = cap
            .of(Kind::NetTcpClose)
            .map(|e| payload!(e, Tcp))
            .find(|t| t.sock_cookie == cookie)
            .unwrap_or_else(|| panic!("{tag}: net.tcp_close of the client"));
        assert_eq!(
            local(close),
            (ip, client),
            "{tag}: close keeps the source port"
        );
        assert_eq!(remote(close), (ip, listen));
        assert_eq!(close.new_state, TCP_CLOSE);
    }

    let refused: u16 = done.num("refused");
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let failed = cap
        .of(Kind::NetTcpClose)
        .map(|e| payload!(e, Tcp))
        .find(|t| remote(t) == (lo, refused))
        .expect("net.tcp_close of the refused connect");
    assert_eq!(
        failed.old_state, TCP_SYN_SENT,
        "closed straight from SYN_SENT: connect failed"
    );

    let rst_in = cap
        .of(Kind::NetTcpResetReceived)
        .map(|e| payload!(e, Tcp))
        .find(|t| remote(t) == (lo, refused))
        .expect("net.tcp_reset_received");
    assert_eq!(rst_in.old_state, TCP_SYN_SENT);

    // Nobody owned the closed port: the reset was sent without a socket; its addresses
    // come from the SYN it answered.
    let rst_out = cap
        .of(Kind::NetTcpResetSent)
        .map(|e| payload!(e, Tcp))
        .find(|t| local(t) == (lo, refused))
        .expect("net.tcp_reset_sent from the closed port");
    assert_eq!(rst_out.sock_cookie, 0);
    assert_eq!(remote(rst_out).0, lo);

    // The SYN to the closed port was dropped, with the kernel's reason (NO_SOCKET).
    let drop = cap
        .of(Kind::NetPacketDrop)
        .map(|e| payload!(e, PacketDrop))
        .find(|d| d.dport == refused && d.l4_protocol == 6)
        .expect("net.packet_drop of the SYN to the closed port");
    assert_eq!(drop.family, 2);
    assert_eq!(drop.protocol, 0x0800, "IPv4 ethertype");
    assert_eq!(drop.reason, 3, "SKB_DROP_REASON_NO_SOCKET");
    assert_ne!(drop.location, 0);
}
