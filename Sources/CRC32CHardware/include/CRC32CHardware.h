// CRC32C with the CPU's own instruction (x86-64 SSE4.2 `crc32`, AArch64 CRC32 `crc32c`), for the
// journal's checksums: no I/O, only an instruction Swift cannot name. Callers check
// daqlink_crc32c_hardware_available() once and otherwise use their table-driven code.
#ifndef DAQLINK_CRC32C_HARDWARE_H
#define DAQLINK_CRC32C_HARDWARE_H
#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has a CRC32C instruction the function below uses, else 0.
int daqlink_crc32c_hardware_available(void);

/// Advances a CRC32C register (reflected, polynomial 0x82F63B78, no inversion in or out) over
/// `count` bytes. Only call it when daqlink_crc32c_hardware_available() returned 1.
uint32_t daqlink_crc32c_hardware(uint32_t state, const void *bytes, size_t count);
#endif
