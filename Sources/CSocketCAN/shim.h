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

static inline struct cmsghdr *daqlink_cmsg_firsthdr(struct msghdr *m) { return CMSG_FIRSTHDR(m); }
static inline struct cmsghdr *daqlink_cmsg_nxthdr(struct msghdr *m, struct cmsghdr *c) { return CMSG_NXTHDR(m, c); }
static inline unsigned char *daqlink_cmsg_data(struct cmsghdr *c) { return CMSG_DATA(c); }
static inline size_t daqlink_cmsg_space(size_t len) { return CMSG_SPACE(len); }
#endif
