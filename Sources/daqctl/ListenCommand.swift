// `daqctl listen`: prints frames from one or more SocketCAN interfaces in candump -l form, with
// kernel timestamps, and a summary (kernel drops, bus state, bitrate) on stderr when it ends.
import ArgumentParser
import DAQCore
import SocketCAN
import Runtime
#if canImport(Glibc)
import Glibc
#endif

struct ListenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "listen",
        abstract: "Print frames received on SocketCAN interfaces (candump -l form, kernel timestamps).",
        discussion: """
            Stops after --count frames, after --duration seconds, or on SIGINT/SIGTERM; then \
            prints one summary line per interface on stderr:
              summary IFACE frames=N errors=N drops=N rcvbuf=BYTES timestamps=SOURCE
                      state=S bitrate=B berr=TX/RX
            (one line). drops is the kernel's count of frames lost because the socket's queue \
            was full (SO_RXQ_OVFL).
            """
    )

    @Option(name: .customLong("on"), help: "Interfaces to listen on, comma-separated (vcan0,vcan1).")
    var interfaces: String

    @Option(help: "Stop after this many frames (all interfaces together).")
    var count: Int?

    @Option(help: "Stop after this many seconds.")
    var duration: Double?

    @Option(name: .customLong("filter"),
            help: "Accept ids matching ID:MASK (or not matching ID~MASK), hex; repeatable. 8-digit ids are 29-bit.")
    var filters: [String] = []

    @Flag(inversion: .prefixedNo, help: "Receive CAN FD frames as well as classic ones.")
    var fd = true

    @Option(name: .customLong("error-mask"), help: "Error classes to receive as error frames (hex, linux/can/error.h; 0 = none).")
    var errorMask: String = "1FFFFFFF"

    @Option(name: .customLong("rcvbuf"), help: "Socket receive buffer to ask for, in bytes.")
    var receiveBuffer: Int?

    @Flag(name: .customLong("hardware-timestamps"), help: "Prefer the controller's receive timestamps.")
    var hardwareTimestamps = false

    func validate() throws {
        if let count, count <= 0 { throw ValidationError("--count must be positive") }
        if let duration, !(duration > 0) { throw ValidationError("--duration must be positive") }
        if interfaceNames.isEmpty { throw ValidationError("--on needs at least one interface") }
        for text in filters where CANIDFilter(argument: text) == nil {
            throw ValidationError("--filter '\(text)' is not ID:MASK or ID~MASK in hex")
        }
        guard UInt32(errorMask, radix: 16) != nil else { throw ValidationError("--error-mask must be hex") }
        if let receiveBuffer, receiveBuffer <= 0 { throw ValidationError("--rcvbuf must be positive") }
    }

    private var interfaceNames: [String] {
        interfaces.split(separator: ",").map { String($0.filter { $0 != " " }) }.filter { !$0.isEmpty }
    }

    func run() throws {
        var options = SocketCANBus.Configuration()
        options.canFD = fd
        options.errorMask = UInt32(errorMask, radix: 16) ?? CANFrame.extendedMask
        options.filters = filters.isEmpty ? nil : filters.compactMap(CANIDFilter.init(argument:))
        options.receiveBufferBytes = receiveBuffer
        options.preferHardwareTimestamps = hardwareTimestamps

        StopSignal.install()
        let buses = try SocketCANBusSet(interfaces: interfaceNames, configuration: options)
        for bus in buses.buses {
            printError("daqctl listen: listening on \(bus.interface) (\(bus.timestampSource.rawValue), rcvbuf \(bus.receiveBufferBytes) B)")
        }

        let deadline = duration.map { SystemClock.monotonicNow() + waitNanoseconds(seconds: $0) }
        var remaining = count ?? Int.max
        var frames: [CANFrame] = []
        frames.reserveCapacity(256)
        var output = ""
        loop: while remaining > 0 && !StopSignal.isRaised {
            var timeout: Int64? = nil
            if let deadline {
                timeout = deadline - SystemClock.monotonicNow()
                if timeout! <= 0 { break loop }
            }
            let ready = try buses.wait(timeoutNanoseconds: timeout)
            for index in ready.readable where remaining > 0 {
                frames.removeAll(keepingCapacity: true)
                remaining -= try buses.buses[index].receive(into: &frames, limit: min(remaining, 256))
                for frame in frames {
                    output += frame.candumpLine
                    output += "\n"
                }
            }
            if !output.isEmpty {
                writeAll(output, to: STDOUT_FILENO)
                output.removeAll(keepingCapacity: true)
            }
        }

        for bus in buses.buses {
            let c = bus.counters
            let link = CANLinkInfo.read(interface: bus.interface)
            printError("summary \(bus.interface) frames=\(c.framesReceived) errors=\(c.errorFramesReceived) "
                       + "drops=\(c.kernelDrops) rcvbuf=\(bus.receiveBufferBytes) "
                       + "timestamps=\(bus.timestampSource.rawValue) \(link)")
        }
    }
}

/// One line on stderr.
func printError(_ line: String) {
    writeAll(line + "\n", to: STDERR_FILENO)
}

/// Writes all of `text` to `fd` unbuffered (our output must be complete when a signal ends us),
/// retrying interrupted and partial writes. Output errors (a closed pipe) end the output silently.
func writeAll(_ text: String, to fd: Int32) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}
