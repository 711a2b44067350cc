/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * file.open, file.unlink, file.rename, file.chmod: built at sys_exit from the call
 * recorded at sys_enter (syscalls.bpf.c), so each record carries the result.
 * Paths are absolute (path.bpf.h): a successful open reports the path of the file it
 * opened (fd table at exit); otherwise the name from the caller's memory (read at exit,
 * the same pointer the kernel used) is joined to the path of its dirfd or of the cwd.
 */
#include "common.h"
#include "path.bpf.h"

#define AT_REMOVEDIR 0x200
#define CREAT_FLAGS 0x241 /* O_CREAT | O_WRONLY | O_TRUNC */

struct open_how_min {
	__u64 flags;
	__u64 mode;
};

static __always_inline void emit_file_op(struct pending_call *c, long ret, __u32 kind)
{
	void *rb;
	struct rec_file_op *e = RESERVE(rb, struct rec_file_op, kind, c->weight);
	if (!e)
		return;
	e->p.ret = ret;
	e->p.latency_ns = e->h.ts_ns - c->ts;
	e->p.syscall_nr = c->id;
	e->p.dirfd = AT_FDCWD;

	const void *path = NULL;
	switch (c->id) {
	case 2: /* open(path, flags, mode) */
		path = (void *)c->args[0];
		e->p.flags = c->args[1];
		e->p.mode = c->args[2];
		break;
	case 85: /* creat(path, mode) */
		path = (void *)c->args[0];
		e->p.flags = CREAT_FLAGS;
		e->p.mode = c->args[1];
		break;
	case 257: /* openat(dirfd, path, flags, mode) */
		e->p.dirfd = c->args[0];
		path = (void *)c->args[1];
		e->p.flags = c->args[2];
		e->p.mode = c->args[3];
		break;
	case 437: { /* openat2(dirfd, path, how, size) */
		struct open_how_min how = {};
		e->p.dirfd = c->args[0];
		path = (void *)c->args[1];
		if (bpf_probe_read_user(&how, sizeof(how), (void *)c->args[2]) == 0) {
			e->p.flags = how.flags;
			e->p.mode = how.mode;
		}
		break;
	}
	case 87: /* unlink(path) */
		path = (void *)c->args[0];
		break;
	case 84: /* rmdir(path) */
		path = (void *)c->args[0];
		e->p.flags = AT_REMOVEDIR;
		break;
	case 263: /* unlinkat(dirfd, path, flags) */
		e->p.dirfd = c->args[0];
		path = (void *)c->args[1];
		e->p.flags = c->args[2];
		break;
	case 90: /* chmod(path, mode) */
		path = (void *)c->args[0];
		e->p.mode = c->args[1];
		break;
	case 91: /* fchmod(fd, mode): no path */
		e->p.dirfd = c->args[0];
		e->p.mode = c->args[1];
		break;
	case 268: /* fchmodat(dirfd, path, mode) */
	case 452: /* fchmodat2(dirfd, path, mode, flags) */
		e->p.dirfd = c->args[0];
		path = (void *)c->args[1];
		e->p.mode = c->args[2];
		if (c->id == 452)
			e->p.flags = c->args[3];
		break;
	}
	__u64 dentry = 0, mnt = 0;
	if (kind == EK_FILE_OPEN && ret >= 0 && fd_path(ret, &dentry, &mnt))
		e->p.path_len = emit_abs_path(e->p.path, dentry, mnt, &e->h.flags);
	else if (path)
		e->p.path_len = emit_name_path(e->p.path, e->p.dirfd, path, &e->h.flags);
	else if (fd_path(e->p.dirfd, &dentry, &mnt)) /* fchmod: the fd's own path */
		e->p.path_len = emit_abs_path(e->p.path, dentry, mnt, &e->h.flags);
	submit(rb, e, sizeof(*e));
}

static __always_inline void emit_file_rename(struct pending_call *c, long ret)
{
	void *rb;
	struct rec_file_rename *e = RESERVE(rb, struct rec_file_rename, EK_FILE_RENAME, c->weight);
	if (!e)
		return;
	e->p.ret = ret;
	e->p.latency_ns = e->h.ts_ns - c->ts;
	e->p.syscall_nr = c->id;

	const void *old_path, *new_path;
	if (c->id == 82) { /* rename(old, new) */
		e->p.old_dirfd = AT_FDCWD;
		e->p.new_dirfd = AT_FDCWD;
		old_path = (void *)c->args[0];
		new_path = (void *)c->args[1];
	} else { /* renameat(olddfd, old, newdfd, new), renameat2(..., flags) */
		e->p.old_dirfd = c->args[0];
		old_path = (void *)c->args[1];
		e->p.new_dirfd = c->args[2];
		new_path = (void *)c->args[3];
		if (c->id == 316)
			e->p.flags = c->args[4];
	}
	e->p.old_path_len = emit_name_path(e->p.old_path, e->p.old_dirfd, old_path, &e->h.flags);
	e->p.new_path_len = emit_name_path(e->p.new_path, e->p.new_dirfd, new_path, &e->h.flags);
	submit(rb, e, sizeof(*e));
}
