/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The few kernel types and BPF helpers the collector uses, written by hand so
 * that the build needs clang and nothing else (no vmlinux.h, no libbpf headers).
 *
 * Kernel structs carry only the fields we read and are marked
 * preserve_access_index: field offsets are CO-RE relocated at load time against
 * the running kernel's BTF, so the layout here need not match the kernel's.
 */
#ifndef COLLECTOR_KERNEL_H
#define COLLECTOR_KERNEL_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

/* ---- map and program definition macros (libbpf BTF-defined map conventions) ---- */
#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]
#define __always_inline inline __attribute__((always_inline))
#define __noinline __attribute__((noinline))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

#define BPF_ANY 0
#define BPF_F_NO_PREALLOC 1
#define BPF_LOCAL_STORAGE_GET_F_CREATE 1
#define BPF_NOEXIST 1
#define BPF_EXIST 2
#define BPF_RB_NO_WAKEUP 1
#define BPF_RB_FORCE_WAKEUP 2
#define BPF_RB_AVAIL_DATA 0

/* ---- helpers (ids from include/uapi/linux/bpf.h, stable ABI) ---- */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u32 (*bpf_get_smp_processor_id)(void) = (void *)8;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static __u64 (*bpf_get_current_uid_gid)(void) = (void *)15;
static long (*bpf_get_current_comm)(void *buf, __u32 size_of_buf) = (void *)16;
static __u64 (*bpf_get_current_cgroup_id)(void) = (void *)80;
static long (*bpf_probe_read_user)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)113;
static long (*bpf_probe_read_user_str)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)114;
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)115;
static struct task_struct *(*bpf_get_current_task_btf)(void) = (void *)158;
static void *(*bpf_task_storage_get)(void *map, struct task_struct *task, void *value, __u64 flags) = (void *)156;
static __u64 (*bpf_get_socket_cookie)(void *sk) = (void *)46;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;
#define BPF_FIELD_BYTE_OFFSET 0
static __u64 (*bpf_ringbuf_query)(void *ringbuf, __u64 flags) = (void *)134;

struct task_struct;

/* ---- kernel types (CO-RE) ---- */
#define __core __attribute__((preserve_access_index))

struct pt_regs {
	unsigned long r10;
	unsigned long r9;
	unsigned long r8;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long ip;
} __core;

typedef struct {
	int counter;
} atomic_t;
typedef struct {
	__s64 counter;
} atomic64_t;
typedef struct {
	__u32 val;
} kuid_t;
typedef struct {
	__u32 val;
} kgid_t;

struct cred {
	kuid_t uid;
	kgid_t gid;
	kuid_t euid;
	kgid_t egid;
} __core;

/* ---- the path walk (path.bpf.h): dentries, mounts, fd tables ---- */
struct qstr {
	union {
		struct {
			__u32 hash;
			__u32 len;
		};
		__u64 hash_len;
	};
	const unsigned char *name;
} __core;

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} __core;

struct vfsmount {
	struct dentry *mnt_root;
} __core;

/* fs/mount.h: the vfsmount is embedded in it (container_of). */
struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __core;

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __core;

struct fs_struct {
	struct path root;
	struct path pwd;
} __core;

struct file {
	struct path f_path;
} __core;

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __core;

struct files_struct {
	struct fdtable *fdt;
} __core;

struct mm_struct {
	struct file *exe_file;
	unsigned long total_vm;
	unsigned long arg_start;
	unsigned long arg_end;
} __core;

struct signal_struct {
	atomic_t live;
	short oom_score_adj;
} __core;

struct socket {
	struct sock *sk;
} __core;

struct oom_control {
	struct task_struct *chosen;
} __core;

struct gendisk {
	int major;
	int first_minor;
	char disk_name[32];
} __core;

struct request_queue {
	struct gendisk *disk;
} __core;

struct request {
	struct request_queue *q;
	unsigned int cmd_flags;
	unsigned int __data_len;
	__u64 __sector;
} __core;

struct cgroup;

struct css_set {
	struct cgroup *dfl_cgrp;
} __core;

struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	__u64 start_time;
	struct task_struct *real_parent;
	struct mm_struct *mm;
	struct fs_struct *fs;
	struct files_struct *files;
	const struct cred *cred;
	struct signal_struct *signal;
	struct css_set *cgroups;
	struct task_struct *group_leader;
	char comm[16];
} __core;

struct linux_binprm {
	unsigned int have_execfd : 1, execfd_creds : 1, secureexec : 1;
	struct file *file;
	const char *filename;
	int argc;
} __core;

/* A bitfield of a kernel struct, read at the offset and shifts of the running kernel
 * (CO-RE field relocations; libbpf's BPF_CORE_READ_BITFIELD_PROBED, little-endian). */
#define CORE_BITFIELD(s, field)                                                               \
	({                                                                                    \
		unsigned long long __v = 0;                                                   \
		bpf_probe_read_kernel(&__v, __builtin_preserve_field_info((s)->field, 1),     \
				      (const char *)(s) + __builtin_preserve_field_info((s)->field, 0)); \
		__v <<= __builtin_preserve_field_info((s)->field, 4);                         \
		__v >>= __builtin_preserve_field_info((s)->field, 5);                         \
		__v;                                                                          \
	})

struct in6_addr {
	__u8 s6_addr[16];
} __core;

struct sock_common {
	union {
		__u64 skc_addrpair;
		struct {
			__be32 skc_daddr;
			__be32 skc_rcv_saddr;
		};
	};
	union {
		__u32 skc_portpair;
		struct {
			__be16 skc_dport;
			__u16 skc_num;
		};
	};
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	atomic64_t skc_cookie;
} __core;

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
} __core;

struct inet_sock {
	__be16 inet_sport;
} __core;

struct tcp_sock {
	__u64 bytes_received;
	__u64 bytes_acked;
	__u32 srtt_us; /* smoothed RTT << 3, microseconds */
} __core;

struct net_device {
	int ifindex;
} __core;

struct sk_buff {
	struct net_device *dev;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	unsigned char *head;
} __core;

struct kernfs_node {
	__u64 id;
} __core;

struct cgroup_root {
	int hierarchy_id;
} __core;

struct cgroup {
	int level;
	struct kernfs_node *kn;
	struct cgroup_root *root;
} __core;

struct kernel_siginfo {
	struct {
		int si_signo;
		int si_errno;
		int si_code;
	};
} __core;

/* IP header pieces read from packet memory (plain reads, not CO-RE: wire formats). */
struct iphdr_min {
	__u8 ihl_version;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6hdr_min {
	__u8 priority_version;
	__u8 flow_lbl[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

#define bswap16(x) __builtin_bswap16(x)

#endif
