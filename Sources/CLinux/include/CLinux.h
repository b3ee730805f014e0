// Linux headers the Glibc module does not bring in (signalfd), for the runtime's adapters.
#ifndef DAQLINK_CLINUX_H
#define DAQLINK_CLINUX_H
#include <signal.h>
#include <sys/signalfd.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sched.h>
#include <malloc.h>
#include <sys/vfs.h>

static inline int daqlink_signalfd(const sigset_t *mask) { return signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC); }

/// Moves the calling thread to SCHED_IDLE (<linux/sched.h>: 5; glibc's <sched.h> names it only
/// under _GNU_SOURCE): it runs only on CPU time nothing else of normal priority wants.
static inline int daqlink_thread_to_idle_policy(void) {
    struct sched_param param = { .sched_priority = 0 };
    return pthread_setschedparam(pthread_self(), 5, &param);
}

/// Names the calling thread (at most 15 bytes kept: /proc/<pid>/task/<tid>/comm, `top -H`).
/// (glibc's pthread_setname_np needs _GNU_SOURCE.)
static inline int daqlink_thread_set_name(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}

/// glibc's malloc keeps freed blocks of up to `block_bytes` in the heap (not mmap'd one by one)
/// and leaves up to `trim_bytes` of free heap top in place (not returned to the kernel at once):
/// a process that allocates and frees a ~137 KB block per message reuses the same pages instead
/// of faulting fresh zeroed ones in each time. 0 when both settings took.
static inline int daqlink_malloc_keep_freed(int block_bytes, int trim_bytes) {
    int ok = mallopt(M_MMAP_THRESHOLD, block_bytes) && mallopt(M_TRIM_THRESHOLD, trim_bytes);
    return ok ? 0 : -1;
}

/// 1 when `fd` lies on a file system that keeps nothing across a power loss (tmpfs, ramfs:
/// <linux/magic.h>), 0 otherwise or when fstatfs fails.
static inline int daqlink_fd_on_volatile_fs(int fd) {
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return 0;
    return info.f_type == 0x01021994 || info.f_type == 0x858458f6;
}
#endif
