// libsocketcan (bus state, bitrate) plus the kernel's SocketCAN headers. Macros the Swift importer
// cannot see (CMSG_*) become static inline functions here.
#ifndef DAQLINK_CSOCKETCAN_SHIM_H
#define DAQLINK_CSOCKETCAN_SHIM_H
#include <libsocketcan.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <linux/can.h>
#include <linux/can/raw.h>
#include <linux/can/error.h>
#include <linux/can/netlink.h>
#include <linux/net_tstamp.h>
#include <linux/sockios.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline struct cmsghdr *daqlink_cmsg_firsthdr(struct msghdr *m) { return CMSG_FIRSTHDR(m); }
static inline struct cmsghdr *daqlink_cmsg_nxthdr(struct msghdr *m, struct cmsghdr *c) { return CMSG_NXTHDR(m, c); }
static inline unsigned char *daqlink_cmsg_data(struct cmsghdr *c) { return CMSG_DATA(c); }
static inline size_t daqlink_cmsg_space(size_t len) { return CMSG_SPACE(len); }

// Socket options whose macros select between the _OLD/_NEW variants with a sizeof expression
// (invisible to Swift), and the few calls that need a struct sockaddr_can.
static inline int daqlink_so_timestampns(void) { return SO_TIMESTAMPNS; }
static inline int daqlink_so_timestamping(void) { return SO_TIMESTAMPING; }
static inline int daqlink_scm_timestampns(void) { return SCM_TIMESTAMPNS; }
static inline int daqlink_scm_timestamping(void) { return SCM_TIMESTAMPING; }

/// glibc's struct mmsghdr and recvmmsg(2), which it declares only under _GNU_SOURCE: one system
/// call reads a batch of frames (a recvmsg per frame cost the vcan guest most of its time).
struct daqlink_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};
static inline int daqlink_recvmmsg(int fd, struct daqlink_mmsghdr *vector, unsigned int count, int flags) {
    return (int)syscall(SYS_recvmmsg, fd, vector, count, flags, (void *)0);
}

/// A non-blocking, close-on-exec CAN_RAW socket (-1 and errno on failure).
static inline int daqlink_can_raw_socket(void) {
    return socket(PF_CAN, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, CAN_RAW);
}

/// Binds a CAN socket to one interface by index (0 would mean all interfaces).
static inline int daqlink_can_bind(int fd, int ifindex) {
    struct sockaddr_can address;
    __builtin_memset(&address, 0, sizeof address);
    address.can_family = AF_CAN;
    address.can_ifindex = ifindex;
    return bind(fd, (struct sockaddr *)&address, sizeof address);
}
#endif
