/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Absolute paths, resolved in the kernel by walking dentries (no bpf_d_path: it needs
 * fentry/LSM programs, and only tracepoints exist here).
 *
 * The walk follows d_path's prepend_path(): from a (dentry, vfsmount) pair up through
 * d_parent, and at the root of a mount over to the mount point in the parent mount
 * (struct mount: mnt_parent, mnt_mountpoint), until the task's root (fs->root) or the
 * root of the mount namespace. Components are written backwards into a per-CPU scratch
 * buffer, then the result is copied into the record.
 *
 * Bounds (documented in docs/events.md):
 *  - PATH_WALK_STEPS_MAX steps, one per component and one per mount crossed;
 *  - the directory part at most PATH_SCRATCH_HALF - 1 bytes, the name as passed at most
 *    PATH_SCRATCH_HALF - 1 bytes, the result at most PATH_MAX_LEN - 1 bytes (the record).
 * A walk that stops at a bound keeps the deepest components; a result longer than the
 * record keeps its first bytes. Either way the record gets EVF_TRUNCATED.
 *
 * Names joined to a directory are joined as written: "." and ".." components are not
 * normalized (a successful open reports the opened file's own path, which is).
 *
 * All kernel reads are bpf_probe_read_kernel with CO-RE field offsets: struct mount is
 * reached by container_of from a vfsmount, which a BTF pointer cannot do.
 */
#ifndef COLLECTOR_PATH_H
#define COLLECTOR_PATH_H

#include "common.h"

#define PATH_WALK_STEPS_MAX 32
#define PATH_SCRATCH_HALF 512 /* power of two: offsets are masked with it */
#define PATH_WALK_TRUNCATED 0x10000 /* in walk_path's result, above the offset */
#define PATH_WALK_NO_DIR 0x20000 /* in walk_path's result: the cwd was asked for and is unset */

struct path_scratch {
	char buf[2 * PATH_SCRATCH_HALF];
};

/* One per CPU. The programs that use it (sys_exit, sched_process_exec) run in task
 * context and do not nest on one CPU (BPF tracing programs do not recurse). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_scratch);
} path_scratch SEC(".maps");

#define KREAD(dst, src) bpf_probe_read_kernel(&(dst), sizeof(dst), &(src))

static __always_inline __u64 mount_of(__u64 vfsmnt)
{
	return vfsmnt - __builtin_preserve_field_info(((struct mount *)0)->mnt, BPF_FIELD_BYTE_OFFSET);
}

/* A dentry's d_parent and d_name, as the kernel lays them out (little-endian qstr:
 * hash, then len). */
struct dentry_head {
	__u64 parent;
	__u32 hash;
	__u32 len;
	__u64 name;
};

/* One read when d_name follows d_parent (as in every kernel since 2.6), else three. */
static __always_inline void read_dentry_head(__u64 dentry, struct dentry_head *d)
{
	__u32 off_parent = __builtin_preserve_field_info(((struct dentry *)0)->d_parent, BPF_FIELD_BYTE_OFFSET);
	__u32 off_name = __builtin_preserve_field_info(((struct dentry *)0)->d_name, BPF_FIELD_BYTE_OFFSET);
	__u32 off_len = __builtin_preserve_field_info(((struct qstr *)0)->len, BPF_FIELD_BYTE_OFFSET);
	__u32 off_qname = __builtin_preserve_field_info(((struct qstr *)0)->name, BPF_FIELD_BYTE_OFFSET);
	if (off_name == off_parent + 8 && off_len == 4 && off_qname == 8) {
		bpf_probe_read_kernel(d, sizeof(*d), (void *)(dentry + off_parent));
		return;
	}
	KREAD(d->parent, ((struct dentry *)dentry)->d_parent);
	KREAD(d->len, ((struct dentry *)dentry)->d_name.len);
	KREAD(d->name, ((struct dentry *)dentry)->d_name.name);
}

/*
 * Writes the path of (dentry, vfsmnt) into this CPU's scratch buffer at
 * buf[start, PATH_SCRATCH_HALF), each component preceded by '/', and returns start;
 * "" (start == PATH_SCRATCH_HALF) for the root. PATH_WALK_TRUNCATED is or-ed in when a
 * bound stopped the walk before the root. dentry 0 means the task's cwd (then
 * PATH_WALK_NO_DIR when the task has none). The walk stops at the task's root (d_path's
 * view: a chrooted task sees its root as /).
 *
 * A BPF global function (not static, not inlined, scalar arguments only): the verifier
 * checks it once, on its own, instead of once per call site (six call sites), which is
 * most of the load time otherwise. Hence the shape: it looks up the scratch buffer
 * itself (a global function cannot take a pointer into map memory), and reads the
 * task's root and cwd itself (plain BTF loads give pointers, which a global function
 * cannot take as arguments). Callers read the same per-CPU buffer afterwards and trust
 * the result only through masks: the verifier knows nothing of it.
 */
__noinline __u32 walk_path(__u64 dentry, __u64 vfsmnt)
{
	__u32 zero = 0;
	struct path_scratch *s = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!s)
		return PATH_SCRATCH_HALF | PATH_WALK_TRUNCATED;
	char *buf = s->buf;
	struct task_struct *task = bpf_get_current_task_btf();
	struct fs_struct *fs = task->fs;
	__u64 root_dentry = (__u64)fs->root.dentry;
	__u64 root_mnt = (__u64)fs->root.mnt;
	if (!dentry) {
		dentry = (__u64)fs->pwd.dentry;
		vfsmnt = (__u64)fs->pwd.mnt;
		if (!dentry || !vfsmnt)
			return PATH_SCRATCH_HALF | PATH_WALK_NO_DIR;
	}
	__u32 pos = PATH_SCRATCH_HALF;
	__u32 cut = PATH_WALK_TRUNCATED; /* cleared when the walk reaches a root */
	__u64 mnt = mount_of(vfsmnt);
	__u64 mnt_root = 0;
	KREAD(mnt_root, ((struct vfsmount *)vfsmnt)->mnt_root);

	for (int i = 0; i < PATH_WALK_STEPS_MAX; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt) {
			cut = 0;
			break;
		}
		struct dentry_head d = {};
		read_dentry_head(dentry, &d);
		__u64 parent = d.parent;
		if (dentry == mnt_root || dentry == parent) {
			__u64 mnt_parent = 0;
			KREAD(mnt_parent, ((struct mount *)mnt)->mnt_parent);
			/* A disconnected dentry, or the root of the namespace: done. */
			if (dentry != mnt_root || mnt_parent == mnt || !mnt_parent) {
				cut = 0;
				break;
			}
			KREAD(dentry, ((struct mount *)mnt)->mnt_mountpoint);
			mnt = mnt_parent;
			vfsmnt = mnt + __builtin_preserve_field_info(((struct mount *)0)->mnt, BPF_FIELD_BYTE_OFFSET);
			KREAD(mnt_root, ((struct vfsmount *)vfsmnt)->mnt_root);
		} else {
			__u32 len = d.len;
			__u64 name = d.name;
			if (len + 1 > pos)
				break;
			pos -= len + 1;
			/* pos < PATH_SCRATCH_HALF and len < PATH_SCRATCH_HALF: both masks are no-ops
			 * that show the verifier the write stays inside the scratch buffer. */
			bpf_probe_read_kernel(buf + ((pos + 1) & (PATH_SCRATCH_HALF - 1)),
					      len & (PATH_SCRATCH_HALF - 1), (void *)name);
			buf[pos & (PATH_SCRATCH_HALF - 1)] = '/';
			dentry = parent;
		}
	}
	return pos | cut;
}

/* (dentry, vfsmount) of an open file. */
static __always_inline bool file_path(__u64 file, __u64 *dentry, __u64 *mnt)
{
	if (!file)
		return false;
	struct path p = {};
	KREAD(p, ((struct file *)file)->f_path);
	*dentry = (__u64)p.dentry;
	*mnt = (__u64)p.mnt;
	return *dentry && *mnt;
}

/* (dentry, vfsmount) of the current task's fd `fd`: files->fdt->fd[fd]->f_path. */
static __always_inline bool fd_path(long fd, __u64 *dentry, __u64 *mnt)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 fds = 0, file = 0;
	if (fd < 0)
		return false;
	/* Plain loads through BTF pointers (a fault reads as 0); only the array slot and
	 * what hangs off it need probe reads. */
	struct files_struct *files = task->files;
	if (!files)
		return false;
	struct fdtable *fdt = files->fdt;
	if (!fdt)
		return false;
	__u32 max_fds = fdt->max_fds;
	fds = (__u64)fdt->fd;
	if (fd >= max_fds || !fds)
		return false;
	bpf_probe_read_kernel(&file, sizeof(file), (void *)(fds + fd * sizeof(__u64)));
	return file_path(file, dentry, mnt);
}

static __always_inline char *scratch_buf(void)
{
	__u32 zero = 0;
	struct path_scratch *s = bpf_map_lookup_elem(&path_scratch, &zero);
	return s ? s->buf : NULL;
}

/* Copies buf[start, start + len) into the record's path field (PATH_MAX_LEN bytes,
 * zeroed), cutting at PATH_MAX_LEN - 1 bytes. Returns the length kept. */
static __always_inline __u32 put_path(char *dst, char *buf, __u32 start, __u32 len, __u16 *flags)
{
	/* Hide where len came from: clang would otherwise test `start` instead of `len`,
	 * and the verifier would not see the bound on len. */
	asm volatile("" : "+r"(len));
	if (len > PATH_MAX_LEN - 1) {
		len = PATH_MAX_LEN - 1;
		*flags |= EVF_TRUNCATED;
	}
	bpf_probe_read_kernel(dst, len & (PATH_MAX_LEN - 1), buf + (start & (2 * PATH_SCRATCH_HALF - 1)));
	return len;
}

/* The absolute path of (dentry, mnt) into `dst`; "/" for the root. With dentry 0, the
 * current task's working directory (nothing when it has none). */
static __always_inline __u32 emit_abs_path(char *dst, __u64 dentry, __u64 mnt, __u16 *flags)
{
	char *buf = scratch_buf();
	if (!buf)
		return 0;
	__u32 r = walk_path(dentry, mnt);
	if (r & PATH_WALK_NO_DIR)
		return 0;
	if (r & PATH_WALK_TRUNCATED)
		*flags |= EVF_TRUNCATED;
	if ((r & 0xffff) >= PATH_SCRATCH_HALF) { /* the root itself */
		dst[0] = '/';
		return 1;
	}
	__u32 start = r & (PATH_SCRATCH_HALF - 1);
	return put_path(dst, buf, start, PATH_SCRATCH_HALF - start, flags);
}

/*
 * The absolute path of `name` (user memory) relative to `dirfd` (AT_FDCWD: the cwd) into
 * `dst`. An absolute name is kept as is; an empty name means the directory itself
 * (AT_EMPTY_PATH). When the directory cannot be resolved (a bad dirfd), the name is kept
 * as passed, so a relative path in a record means "not resolved".
 */
static __always_inline __u32 emit_name_path(char *dst, long dirfd, const void *name, __u16 *flags)
{
	char *buf = scratch_buf();
	if (!buf)
		return 0;
	/* The name first, right after the directory part's slot. */
	long n = bpf_probe_read_user_str(buf + PATH_SCRATCH_HALF + 1, PATH_SCRATCH_HALF - 1, name);
	__u32 name_len = str_len(n, PATH_SCRATCH_HALF - 1, flags);
	char first = buf[PATH_SCRATCH_HALF + 1];
	/* The directory: `dirfd`, or (dentry 0) the cwd, which walk_path looks up. */
	__u64 dentry = 0, mnt = 0;
	if ((name_len && first == '/') || ((int)dirfd != AT_FDCWD && !fd_path((int)dirfd, &dentry, &mnt)))
		return put_path(dst, buf, PATH_SCRATCH_HALF + 1, name_len, flags);

	__u32 r = walk_path(dentry, mnt);
	if (r & PATH_WALK_NO_DIR)
		return put_path(dst, buf, PATH_SCRATCH_HALF + 1, name_len, flags);
	if (r & PATH_WALK_TRUNCATED)
		*flags |= EVF_TRUNCATED;
	__u32 start = PATH_SCRATCH_HALF; /* the root: an empty directory part */
	if ((r & 0xffff) < PATH_SCRATCH_HALF)
		start = r & (PATH_SCRATCH_HALF - 1);
	if (!name_len) { /* the directory itself */
		if (start == PATH_SCRATCH_HALF) {
			dst[0] = '/';
			return 1;
		}
		return put_path(dst, buf, start, PATH_SCRATCH_HALF - start, flags);
	}
	buf[PATH_SCRATCH_HALF] = '/';
	return put_path(dst, buf, start, PATH_SCRATCH_HALF - start + 1 + name_len, flags);
}

#endif
