// Large message buffers reused instead of faulted in afresh (glibc malloc settings).
internal import CLinux

/// The process's malloc settings for a stream of large messages.
///
/// libmosquitto `calloc`s every incoming packet and `malloc`s a copy of each message's payload,
/// and the receiver copies the payload once more: three ~137 KB blocks per uplink part, freed
/// again at once. With glibc's defaults, blocks that size land at the heap's top (or in an mmap
/// of their own), and the freed top is handed back to the kernel when it exceeds twice the
/// largest block seen: the next message faults every page in again, zeroed. Measured on a
/// subscriber taking 1,000 messages of 135 KB: 68 K page faults and 230–300 ms of CPU by
/// default, 1.5 K and 140–200 ms with these settings (docs/benchmarks.md, eighth session).
public enum HeapReuse {
    /// Blocks up to this size come from the heap and are reused there.
    public static let blockBytes: Int32 = 1 << 20
    /// Free heap top kept for reuse before any is handed back to the kernel.
    public static let keptBytes: Int32 = 16 << 20

    /// Applies the settings to this process; call once, first thing. False if glibc refused.
    @discardableResult
    public static func apply() -> Bool {
        daqlink_malloc_keep_freed(blockBytes, keptBytes) == 0
    }
}
