// Zstandard: the uplink's batch compression (fast, and ≤ 0.3× on sampled ECU records).
#ifndef DAQLINK_CZSTD_SHIM_H
#define DAQLINK_CZSTD_SHIM_H
#include <zstd.h>
#endif
