// Zstandard: the uplink's batch compression (codec 1 alone; codec 2 after the transposing transform).
#ifndef DAQLINK_CZSTD_SHIM_H
#define DAQLINK_CZSTD_SHIM_H
#include <zstd.h>
#endif
