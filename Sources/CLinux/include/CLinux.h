// Linux headers the Glibc module does not bring in (signalfd), for the runtime's adapters.
#ifndef DAQLINK_CLINUX_H
#define DAQLINK_CLINUX_H
#include <signal.h>
#include <sys/signalfd.h>
#include <pthread.h>
#include <sched.h>

static inline int daqlink_signalfd(const sigset_t *mask) { return signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC); }

/// Moves the calling thread to SCHED_IDLE (<linux/sched.h>: 5; glibc's <sched.h> names it only
/// under _GNU_SOURCE): it runs only on CPU time nothing else of normal priority wants.
static inline int daqlink_thread_to_idle_policy(void) {
    struct sched_param param = { .sched_priority = 0 };
    return pthread_setschedparam(pthread_self(), 5, &param);
}
#endif
