// zlib: deflate for MDF4 ##DZ data blocks.
#ifndef DAQLINK_CZLIB_SHIM_H
#define DAQLINK_CZLIB_SHIM_H
#include <zlib.h>
#endif
