// swift-tools-version: 6.0
// DAQLink: an ECU data-acquisition agent (daqlink) and its fleet-side tools (daqctl).
// The targets follow the data path: frames → logs / SocketCAN → DBC decoding → (later) sampling,
// journal, uplink, OTA. Pure modules import no Glibc and do no I/O; adapters are thin.
import PackageDescription

let package = Package(
    name: "DAQLink",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "daqlink", targets: ["daqlink"]),
        .executable(name: "daqctl", targets: ["daqctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // C libraries (system-library targets: module.modulemap + shim.h).
        .systemLibrary(name: "CSocketCAN", pkgConfig: "libsocketcan", providers: [.apt(["libsocketcan-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),

        // Pure core: frames, errors, time. No Glibc, no I/O.
        .target(name: "DAQCore"),
        // Pure: candump / Vector ASC / PCAN TRC readers and the candump writer.
        .target(name: "CANLogs", dependencies: ["DAQCore"]),
        // Pure: DBC parser and signal decoder.
        .target(name: "DBC", dependencies: ["DAQCore"]),

        // Pure: channel groups, record layout (MDF4-shaped), the raster/event sampler.
        .target(name: "Acquisition", dependencies: ["DAQCore"]),

        // Experiment files (TOML) and their binding to DBC signals.
        .target(name: "Experiment", dependencies: ["DAQCore", "Acquisition", .product(name: "TOMLKit", package: "TOMLKit")]),

        // Adapters.
        .target(name: "SystemIO", dependencies: ["DAQCore"]),
        .target(name: "CLinux"),
        .target(name: "Runtime", dependencies: ["DAQCore", "CLinux"]),
        .target(name: "SocketCAN", dependencies: ["DAQCore", "CSocketCAN"]),
        .target(name: "Uplink", dependencies: ["DAQCore", "CMosquitto", "COpenSSL"]),
        // Internal PKI over OpenSSL's C API (CA, server/device/collector certs, CRL) and the
        // mosquitto broker configuration generated for it.
        .target(name: "PKI", dependencies: ["DAQCore", "COpenSSL"]),

        // Executables: thin shells.
        .executableTarget(name: "daqlink", dependencies: [
            "DAQCore", "CANLogs", "DBC", "SocketCAN", "Uplink", "SystemIO", "Runtime", "Acquisition", "Experiment",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "daqctl", dependencies: [
            "DAQCore", "CANLogs", "DBC", "SocketCAN", "Uplink", "SystemIO", "Runtime", "Acquisition", "Experiment",
            "PKI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "DAQCoreTests", dependencies: ["DAQCore"]),
        .testTarget(name: "CANLogsTests", dependencies: ["TestSupport", "DAQCore", "CANLogs"]),
        .testTarget(name: "AcquisitionTests", dependencies: ["DAQCore", "Acquisition"]),
        .testTarget(name: "ExperimentTests", dependencies: ["DAQCore", "Experiment", "TestSupport"]),
        .testTarget(name: "RuntimeTests", dependencies: ["DAQCore", "Runtime"]),
        .testTarget(name: "DBCTests", dependencies: ["TestSupport", "DAQCore", "DBC"]),
        .testTarget(name: "SocketCANTests", dependencies: ["TestSupport", "DAQCore", "SocketCAN", "CANLogs"]),
        .testTarget(name: "PKITests", dependencies: ["PKI", "DAQCore", "TestSupport"]),
        .testTarget(name: "OracleTests", dependencies: ["TestSupport", "DAQCore", "CANLogs", "DBC", "SystemIO"]),
    ],
    swiftLanguageModes: [.v6]
)
