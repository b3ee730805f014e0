// Linux headers the Glibc module does not bring in (signalfd), for the runtime's adapters.
#ifndef DAQLINK_CLINUX_H
#define DAQLINK_CLINUX_H
#include <signal.h>
#include <sys/signalfd.h>

static inline int daqlink_signalfd(const sigset_t *mask) { return signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC); }
#endif
