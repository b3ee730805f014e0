// swift-tools-version: 6.0
// DAQLink: an ECU data-acquisition agent (daqlink) and its fleet-side tools (daqctl).
// The targets follow the data path: frames → logs / SocketCAN → DBC decoding → (later) sampling,
// journal, uplink, OTA. Pure modules import no Glibc and do no I/O; adapters are thin.
import PackageDescription

/// Every stage the two executables are built from.
let stages: [Target.Dependency] = [
    "DAQCore", "CANLogs", "DBC", "SocketCAN", "Uplink", "SystemIO", "Runtime", "Acquisition", "Experiment",
    "Delivery", "MDF", "Journal", "JournalStore", "Agent", "Collector", "PKI", "FaultInjection", "ECUSimulation", "MDFFiles", "OTA", "OTADevice",
    .product(name: "ArgumentParser", package: "swift-argument-parser"),
    .product(name: "Logging", package: "swift-log"),
    .product(name: "TOMLKit", package: "TOMLKit"),
]

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
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),

        // Pure core: frames, errors, time. No Glibc, no I/O.
        .target(name: "DAQCore"),
        // Pure: candump / Vector ASC / PCAN TRC readers and the candump writer.
        .target(name: "CANLogs", dependencies: ["DAQCore"]),
        // Pure: DBC parser and signal decoder.
        .target(name: "DBC", dependencies: ["DAQCore"]),
        // Pure: journal format (CRC32C, entry framing, segment header, recovery scan, group commit).
        .target(name: "Journal", dependencies: ["DAQCore", "CRC32CHardware"]),
        // The CPU's CRC32C instruction for the journal's checksums (no I/O; C only because Swift
        // cannot name the instruction).
        .target(name: "CRC32CHardware"),

        // Pure: channel groups, record layout (MDF4-shaped), the raster/event sampler.
        .target(name: "Acquisition", dependencies: ["DAQCore"]),

        // Pure: ASAM MDF 4.1 measurement files built from measurement layouts and records.
        .target(name: "MDF", dependencies: ["DAQCore", "Acquisition"]),

        // Pure: once-and-only-once delivery state machines (device sender, collector stream).
        // Optimised in debug builds too: the tests run debug daqlink and daqctl as real devices and
        // collectors, and the unoptimised batch codec took most of their CPU (a device replaying at
        // 0.25× spent 5.9 s of CPU in 13.6 s on it), enough to starve a loaded CI machine.
        .target(name: "Delivery", dependencies: ["DAQCore", "Journal"],
                swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),

        // Experiment files (TOML) and their binding to DBC signals.
        .target(name: "Experiment", dependencies: ["DAQCore", "Acquisition", "DBC", .product(name: "TOMLKit", package: "TOMLKit")]),

        // Pure: the ECU simulator (DBC messages at their cycle times with modelled signal values).
        .target(name: "ECUSimulation", dependencies: ["DAQCore", "DBC"]),

        // Adapters.
        .target(name: "SystemIO", dependencies: ["DAQCore", "CANLogs"]),
        .target(name: "CLinux"),
        .target(name: "Runtime", dependencies: ["DAQCore", "CLinux"]),
        .target(name: "SocketCAN", dependencies: ["DAQCore", "CSocketCAN"]),
        .target(name: "Uplink", dependencies: ["DAQCore", "Delivery", "Runtime", "CMosquitto", "COpenSSL", "CZstd"]),
        // Adapter: the journal on disk (segments, fsync, ack cursor, quota, reader, verify).
        .target(name: "JournalStore", dependencies: ["DAQCore", "Journal", "Runtime", "CLinux"]),

        // Adapter: streaming MDF4 files on disk (device and collector write the same bytes).
        .target(name: "MDFFiles", dependencies: ["DAQCore", "Acquisition", "MDF", "CZlib"]),

        // The device agent's composition: experiment loading, frame sources, the acquisition loop.
        .target(name: "Agent", dependencies: [
            "DAQCore", "CANLogs", "DBC", "SystemIO", "Runtime", "Acquisition", "Experiment", "Journal",
            "JournalStore", "SocketCAN", "Delivery", "Uplink", "MDFFiles", "OTADevice", "PKI",
            .product(name: "Logging", package: "swift-log"),
        ]),

        // The fleet-side collector: durable MQTT session → checked batches → rebuilt journals.
        .target(name: "Collector", dependencies: [
            "DAQCore", "Delivery", "Journal", "JournalStore", "Runtime", "Uplink", "Acquisition", "MDFFiles", "OTA", "PKI",
        ]),

        // Internal PKI over OpenSSL's C API (CA, server/device/collector certs, CRL) and the
        // mosquitto broker configuration generated for it.
        .target(name: "PKI", dependencies: ["DAQCore", "COpenSSL"]),

        // Pure: OTA manifests, signature envelopes, the acceptance rules, the A/B slot state machine
        // and the nginx update-server configuration. (Release-key signing lives in PKI.)
        .target(name: "OTA", dependencies: ["DAQCore"]),

        // Adapter: HTTPS mTLS fetches and resumable downloads (libcurl multi on the event loop), for OTA.
        .target(name: "HTTPFetch", dependencies: ["DAQCore", "Runtime", "CCurl"]),

        // The device's OTA task: update directory (A/B slots, boot state), bootchooser, polling,
        // downloads, installs, health check, credential rotation, status outbox.
        .target(name: "OTADevice", dependencies: [
            "DAQCore", "OTA", "PKI", "Uplink", "HTTPFetch", "Runtime", .product(name: "Logging", package: "swift-log"),
        ]),

        // Test and demo rig: a TCP proxy that cuts, blackholes or resets the link on demand.
        .target(name: "FaultInjection", dependencies: ["DAQCore"]),

        // Executables: thin shells.
        .executableTarget(name: "daqlink", dependencies: stages),
        .executableTarget(name: "daqctl", dependencies: stages),

        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "DAQCoreTests", dependencies: ["DAQCore"]),
        .testTarget(name: "CANLogsTests", dependencies: ["TestSupport", "DAQCore", "CANLogs"]),
        .testTarget(name: "AcquisitionTests", dependencies: ["DAQCore", "Acquisition", "TestSupport"]),
        .testTarget(name: "ExperimentTests", dependencies: ["DAQCore", "Experiment", "TestSupport"]),
        .testTarget(name: "RuntimeTests", dependencies: ["DAQCore", "Runtime"]),
        .testTarget(name: "MDFTests", dependencies: ["DAQCore", "Acquisition", "MDF", "MDFFiles", "TestSupport"]),
        .testTarget(name: "DeliveryTests", dependencies: ["DAQCore", "Delivery"]),
        .testTarget(name: "AgentTests", dependencies: ["TestSupport", "Agent", "FaultInjection"]),
        .testTarget(name: "UplinkTests", dependencies: ["TestSupport", "FaultInjection", "Uplink", "Collector", "Delivery", "Journal", "JournalStore", "DAQCore", "Runtime"]),
        .testTarget(name: "DBCTests", dependencies: ["TestSupport", "DAQCore", "DBC"]),
        .testTarget(name: "SocketCANTests", dependencies: ["TestSupport", "DAQCore", "SocketCAN", "CANLogs"]),
        .testTarget(name: "JournalTests", dependencies: ["DAQCore", "Journal", "TestSupport"]),
        .testTarget(name: "JournalStoreTests", dependencies: ["TestSupport", "DAQCore", "Journal", "JournalStore"]),
        .testTarget(name: "PKITests", dependencies: ["PKI", "DAQCore", "TestSupport"]),
        .testTarget(name: "ECUSimulationTests", dependencies: ["ECUSimulation", "DBC", "DAQCore", "TestSupport"]),
        .testTarget(name: "OTATests", dependencies: ["OTA", "PKI", "DAQCore", "TestSupport"]),
        .testTarget(name: "OTADeviceTests", dependencies: ["OTA", "OTADevice", "PKI", "DAQCore", "FaultInjection", "TestSupport", "Uplink", "HTTPFetch"]),
        .testTarget(name: "HTTPFetchTests", dependencies: ["HTTPFetch", "Runtime", "DAQCore", "FaultInjection", "TestSupport"],
                    exclude: ["faulty_https_server.py"]),
        .testTarget(name: "OracleTests", dependencies: ["TestSupport", "DAQCore", "CANLogs", "DBC", "SystemIO"]),
    ],
    swiftLanguageModes: [.v6]
)
