/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * net.*: TCP lifecycle from sock:inet_sock_set_state, retransmits, resets sent and
 * received, and packet drops with the kernel's reason from skb:kfree_skb.
 *
 * Many of these run in softirq context: the header's pid/comm/cgroup are then those of
 * whatever task was interrupted (on loopback, usually the sender). Correlate by
 * sock_cookie and addresses, not by pid, for anything but net.tcp_connect.
 */
#include "common.h"

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7

#define SKB_CONSUMED 1 /* enum skb_drop_reason: 0 not dropped yet, 1 consumed (not a drop) */

static __always_inline void fill_sock(struct tcp_sock_event *t, const struct sock *sk)
{
	t->sock_cookie = bpf_get_socket_cookie((void *)sk);
	t->family = sk->__sk_common.skc_family;
	/* inet_sport survives the port's release on close (skc_num does not). It is
	 * still 0 at SYN_SENT: connect() picks the port after that transition. */
	__be16 sport = 0;
	bpf_probe_read_kernel(&sport, sizeof(sport), &((struct inet_sock *)sk)->inet_sport);
	t->sport = bswap16(sport);
	if (!t->sport)
		t->sport = sk->__sk_common.skc_num;
	t->dport = bswap16(sk->__sk_common.skc_dport);
	if (t->family == AF_INET) {
		__be32 s = sk->__sk_common.skc_rcv_saddr, d = sk->__sk_common.skc_daddr;
		__builtin_memcpy(t->saddr, &s, 4);
		__builtin_memcpy(t->daddr, &d, 4);
	} else if (t->family == AF_INET6) {
		bpf_probe_read_kernel(t->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_probe_read_kernel(t->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* Addresses and ports from a packet's IPv4/IPv6 header; `swap` puts the packet's
 * destination into saddr (a reset answers the packet, so local is its destination). */
struct flow {
	__u16 family;
	__u8 l4_protocol;
	__u16 sport;
	__u16 dport;
	__u8 saddr[16];
	__u8 daddr[16];
};

static __always_inline void parse_skb(struct sk_buff *skb, struct flow *f)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u16 proto = bswap16(skb->protocol);
	__u32 l4_off = 0;

	if (proto == ETH_P_IP) {
		struct iphdr_min ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return;
		f->family = AF_INET;
		f->l4_protocol = ip.protocol;
		__builtin_memcpy(f->saddr, &ip.saddr, 4);
		__builtin_memcpy(f->daddr, &ip.daddr, 4);
		l4_off = nh + (ip.ihl_version & 0xf) * 4;
	} else if (proto == ETH_P_IPV6) {
		struct ipv6hdr_min ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return;
		f->family = AF_INET6;
		f->l4_protocol = ip6.nexthdr;
		__builtin_memcpy(f->saddr, ip6.saddr, 16);
		__builtin_memcpy(f->daddr, ip6.daddr, 16);
		l4_off = nh + sizeof(ip6);
	} else {
		return;
	}
	if (f->l4_protocol == IPPROTO_TCP || f->l4_protocol == IPPROTO_UDP) {
		__u16 ports[2];
		if (bpf_probe_read_kernel(ports, sizeof(ports), head + l4_off) == 0) {
			f->sport = bswap16(ports[0]);
			f->dport = bswap16(ports[1]);
		}
	}
}

static __always_inline int emit_tcp(__u32 kind, const struct sock *sk, __u32 old_state, __u32 new_state,
				    __u32 reason)
{
	void *rb;
	__u32 w = 1;
	if (!admit(kind, CAT_NET, &w))
		return 0;
	struct rec_tcp_sock_event *e = RESERVE(rb, struct rec_tcp_sock_event, kind, w);
	if (!e)
		return 0;
	fill_sock(&e->p, sk);
	e->p.old_state = old_state;
	e->p.new_state = new_state;
	e->p.reason = reason;
	submit(rb, e, sizeof(*e));
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int handle_inet_sock_set_state(__u64 *ctx)
{
	const struct sock *sk = (void *)ctx[0];
	int old_state = (int)ctx[1];
	int new_state = (int)ctx[2];

	if (!category_on(CAT_NET) || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u32 kind;
	if (new_state == TCP_SYN_SENT)
		kind = EK_NET_TCP_CONNECT;
	else if (old_state == TCP_SYN_SENT && new_state == TCP_ESTABLISHED)
		kind = EK_NET_TCP_ESTABLISHED;
	else if (old_state == TCP_SYN_RECV && new_state == TCP_ESTABLISHED)
		kind = EK_NET_TCP_ACCEPT;
	else if (new_state == TCP_CLOSE)
		kind = EK_NET_TCP_CLOSE;
	else
		return 0;
	return emit_tcp(kind, sk, old_state, new_state, 0);
}

SEC("tp_btf/tcp_retransmit_skb")
int handle_tcp_retransmit_skb(__u64 *ctx)
{
	const struct sock *sk = (void *)ctx[0];
	if (!category_on(CAT_NET))
		return 0;
	__u32 state = sk->__sk_common.skc_state;
	return emit_tcp(EK_NET_TCP_RETRANSMIT, sk, state, state, 0);
}

SEC("tp_btf/tcp_receive_reset")
int handle_tcp_receive_reset(__u64 *ctx)
{
	const struct sock *sk = (void *)ctx[0];
	if (!category_on(CAT_NET))
		return 0;
	__u32 state = sk->__sk_common.skc_state;
	return emit_tcp(EK_NET_TCP_RESET_RECEIVED, sk, state, state, 0);
}

static __always_inline int on_send_reset(const struct sock *sk, struct sk_buff *skb, __u32 reason)
{
	void *rb;
	__u32 w = 1;

	if (!category_on(CAT_NET))
		return 0;
	if (sk) {
		__u32 state = sk->__sk_common.skc_state;
		return emit_tcp(EK_NET_TCP_RESET_SENT, sk, state, state, reason);
	}
	/* No socket (e.g. a SYN to a closed port): addresses come from the packet answered. */
	if (!admit(EK_NET_TCP_RESET_SENT, CAT_NET, &w))
		return 0;
	struct rec_tcp_sock_event *e = RESERVE(rb, struct rec_tcp_sock_event, EK_NET_TCP_RESET_SENT, w);
	if (!e)
		return 0;
	struct flow f = {};
	if (skb)
		parse_skb(skb, &f);
	e->p.family = f.family;
	e->p.sport = f.dport;
	e->p.dport = f.sport;
	__builtin_memcpy(e->p.saddr, f.daddr, 16);
	__builtin_memcpy(e->p.daddr, f.saddr, 16);
	e->p.old_state = TCP_CLOSE;
	e->p.new_state = TCP_CLOSE;
	e->p.reason = reason;
	submit(rb, e, sizeof(*e));
	return 0;
}

/* tcp_send_reset(sk, skb, reason): 6.10 and later. */
SEC("tp_btf/tcp_send_reset")
int handle_tcp_send_reset(__u64 *ctx)
{
	return on_send_reset((const struct sock *)ctx[0], (struct sk_buff *)ctx[1], (__u32)ctx[2]);
}

/* tcp_send_reset(sk, skb) of older kernels: no reason (0). */
SEC("tp_btf/tcp_send_reset")
int handle_tcp_send_reset_v1(__u64 *ctx)
{
	return on_send_reset((const struct sock *)ctx[0], (struct sk_buff *)ctx[1], 0);
}

SEC("tp_btf/kfree_skb")
int handle_kfree_skb(__u64 *ctx)
{
	struct sk_buff *skb = (void *)ctx[0];
	void *location = (void *)ctx[1];
	__u32 reason = (__u32)ctx[2];
	void *rb;
	__u32 w = 1;

	if (!category_on(CAT_NET) || reason <= SKB_CONSUMED)
		return 0;
	if (!admit(EK_NET_PACKET_DROP, CAT_NET, &w))
		return 0;
	struct rec_packet_drop *e = RESERVE(rb, struct rec_packet_drop, EK_NET_PACKET_DROP, w);
	if (!e)
		return 0;
	e->p.location = (__u64)location;
	e->p.reason = reason;
	e->p.protocol = bswap16(skb->protocol);
	struct net_device *dev = skb->dev;
	if (dev)
		e->p.ifindex = dev->ifindex;
	struct flow f = {};
	parse_skb(skb, &f);
	e->p.family = f.family;
	e->p.l4_protocol = f.l4_protocol;
	e->p.sport = f.sport;
	e->p.dport = f.dport;
	__builtin_memcpy(e->p.saddr, f.saddr, 16);
	__builtin_memcpy(e->p.daddr, f.daddr, 16);
	submit(rb, e, sizeof(*e));
	return 0;
}
