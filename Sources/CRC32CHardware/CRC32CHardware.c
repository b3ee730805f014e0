// CRC32C with the CPU's instruction; see include/CRC32CHardware.h.
#include "CRC32CHardware.h"
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
int daqlink_crc32c_hardware_available(void) { return __builtin_cpu_supports("sse4.2") ? 1 : 0; }
#define CRC_TARGET __attribute__((target("sse4.2")))
#define CRC_WORD(crc, word) ((uint32_t)_mm_crc32_u64((crc), (word)))
#define CRC_BYTE(crc, byte) _mm_crc32_u8((crc), (byte))

#elif defined(__aarch64__) && defined(__linux__)
#include <arm_acle.h>
#include <asm/hwcap.h>
#include <sys/auxv.h>
int daqlink_crc32c_hardware_available(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) ? 1 : 0; }
#define CRC_TARGET __attribute__((target("crc")))
#define CRC_WORD(crc, word) __crc32cd((crc), (word))
#define CRC_BYTE(crc, byte) __crc32cb((crc), (byte))

#else
int daqlink_crc32c_hardware_available(void) { return 0; }
#endif

#ifdef CRC_TARGET
CRC_TARGET
uint32_t daqlink_crc32c_hardware(uint32_t state, const void *bytes, size_t count) {
    const unsigned char *p = bytes;
    uint32_t crc = state;
    for (; count >= 8; p += 8, count -= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        crc = CRC_WORD(crc, word);
    }
    for (; count > 0; p += 1, count -= 1) crc = CRC_BYTE(crc, *p);
    return crc;
}
#else
uint32_t daqlink_crc32c_hardware(uint32_t state, const void *bytes, size_t count) {
    (void)bytes;
    (void)count;
    return state;
}
#endif
