// Header-only shim: see include/CLinux.h.
#include "CLinux.h"
