// One MQTT 5 connection over TLS 1.3 with a client certificate, driven by the caller's poll loop
// (mosquitto_socket / want_write / loop_read / loop_write / loop_misc): no libmosquitto thread.
// A connection is used once: after a disconnect, make a new one. libmosquitto would otherwise
// resend its whole internal queue on reconnect (with DUP set even for never-sent messages), and
// the delivery state machine already decides exactly what to resend.
internal import CMosquitto
import DAQCore
import Delivery
#if canImport(Glibc)
import Glibc
#endif

/// Files for mutual TLS.
public struct MQTTTLSFiles: Sendable, Hashable {
    public var caFile: String
    public var certificateFile: String
    public var keyFile: String

    public init(caFile: String, certificateFile: String, keyFile: String) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }
}

/// Something that happened on the connection, recorded by libmosquitto's callbacks and handed to
/// the loop by `drainEvents()`.
public enum MQTTEvent: Sendable, Equatable {
    /// CONNACK with its reason code (0 = accepted).
    case connected(reasonCode: Int32)
    /// The connection ended (rc 0 = we asked for it).
    case disconnected(reasonCode: Int32)
    /// PUBACK for message `mid` with its MQTT 5 reason code.
    case published(mid: Int32, reasonCode: Int32)
    case subscribed(mid: Int32)
    case message(topic: String, payload: [UInt8])
}

/// A single-use MQTT 5 client connection.
public final class MQTTConnection {
    private let handle: OpaquePointer
    private var events: [MQTTEvent] = []
    public let clientID: String

    /// Creates the client; nothing touches the network until `connect`.
    /// - Parameters:
    ///   - cleanStart: false with `sessionExpiry` > 0 keeps a durable session (the collector).
    public init(clientID: String, tls: MQTTTLSFiles?, cleanStart: Bool = true) throws(DAQError) {
        MQTTLibrary.initialize()
        self.clientID = clientID
        guard let handle = mosquitto_new(clientID, cleanStart, nil) else {
            throw DAQError(.system, "mosquitto_new failed for client \(clientID)")
        }
        self.handle = handle
        mosquitto_user_data_set(handle, Unmanaged.passUnretained(self).toOpaque())
        // The user data is this object, unretained: it lives as long as the handle, which deinit destroys.
        try check(mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5), "protocol version")
        _ = mosquitto_int_option(handle, MOSQ_OPT_TCP_NODELAY, 1)
        if let tls {
            try check(mosquitto_tls_set(handle, tls.caFile, nil, tls.certificateFile, tls.keyFile, nil), "TLS files (\(tls.certificateFile))")
            try check(mosquitto_tls_opts_set(handle, 1, "tlsv1.3", nil), "TLS 1.3")
            try check(mosquitto_tls_insecure_set(handle, false), "TLS hostname check")
        }
        mosquitto_connect_v5_callback_set(handle) { _, context, rc, _, _ in
            let connection = MQTTConnection.from(context)
            if rc == 0 { connection.isAccepted = true }
            connection.events.append(.connected(reasonCode: rc))
        }
        mosquitto_disconnect_v5_callback_set(handle) { _, context, rc, _ in
            MQTTConnection.from(context).events.append(.disconnected(reasonCode: rc))
        }
        mosquitto_publish_v5_callback_set(handle) { _, context, mid, rc, _ in
            MQTTConnection.from(context).events.append(.published(mid: mid, reasonCode: rc))
        }
        mosquitto_subscribe_callback_set(handle) { _, context, mid, _, _ in
            MQTTConnection.from(context).events.append(.subscribed(mid: mid))
        }
        mosquitto_message_v5_callback_set(handle) { _, context, message, _ in
            guard let message = message?.pointee else { return }
            let topic = String(cString: message.topic)
            let payload = message.payloadlen > 0 && message.payload != nil
                ? Array(UnsafeRawBufferPointer(start: message.payload, count: Int(message.payloadlen)))
                : []
            MQTTConnection.from(context).events.append(.message(topic: topic, payload: payload))
        }
    }

    deinit { mosquitto_destroy(handle) }

    private static func from(_ context: UnsafeMutableRawPointer?) -> MQTTConnection {
        Unmanaged<MQTTConnection>.fromOpaque(context!).takeUnretainedValue()
    }

    private func check(_ rc: Int32, _ what: String) throws(DAQError) {
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            let code = errno
            // The broker ended the TLS handshake or closed the socket (a refused certificate on a
            // link fast enough for connect to finish at once): as when it happens later.
            let closed = rc == MOSQ_ERR_ERRNO.rawValue && [EPROTO, ECONNRESET, EPIPE].contains(code)
            throw DAQError(closed ? .closedByPeer : .system, "\(what): \(Self.describeFailure(rc, errno: code))")
        }
    }

    /// A libmosquitto error in words. `MOSQ_ERR_ERRNO` carries `errno`, and libmosquitto sets
    /// EPROTO for any OpenSSL failure: a link cut under a TLS session reads "Protocol error" in
    /// `strerror`'s words, which sends a user looking for an MQTT fault that is not there.
    public static func describeFailure(_ rc: Int32, errno code: Int32) -> String {
        switch rc {
        case MOSQ_ERR_ERRNO.rawValue where code == EPROTO:
            return "the TLS session broke (the connection under it was reset or closed, or the peer sent a TLS alert)"
        case MOSQ_ERR_ERRNO.rawValue where code == ECONNRESET || code == EPIPE:
            return "the connection was reset or closed"
        case MOSQ_ERR_ERRNO.rawValue:
            return String(cString: strerror(code))
        case MOSQ_ERR_CONN_LOST.rawValue:
            return "the connection was lost"
        case MOSQ_ERR_NO_CONN.rawValue:
            return "not connected"
        // libmosquitto 2.0.11's mosquitto_strerror has no words for these ("Unknown error").
        case MOSQ_ERR_KEEPALIVE.rawValue:
            return "no answer from the broker within 1.5 keepalive periods (the link went silent, a dead spot, or the broker stopped answering)"
        case MOSQ_ERR_MALFORMED_PACKET.rawValue:
            return "the broker sent a malformed MQTT packet"
        case MOSQ_ERR_LOOKUP.rawValue:
            return "the broker's host name did not resolve"
        case MOSQ_ERR_DUPLICATE_PROPERTY.rawValue:
            return "the broker sent an MQTT property twice"
        case MOSQ_ERR_TIMEOUT.rawValue:
            return "timed out"
        case MOSQ_ERR_RETAIN_NOT_SUPPORTED.rawValue:
            return "the broker does not support retained messages"
        case MOSQ_ERR_TOPIC_ALIAS_INVALID.rawValue:
            return "the broker sent an invalid topic alias"
        case MOSQ_ERR_ADMINISTRATIVE_ACTION.rawValue:
            return "an administrator closed the connection at the broker"
        default:
            return String(cString: mosquitto_strerror(rc)).trimmingSuffixDot()
        }
    }

    /// Starts connecting without waiting for the broker (TCP connect to an IP literal does not
    /// block; the TLS handshake and CONNACK proceed in `handleReadable`/`handleWritable`).
    public func connectAsync(host: String, port: Int, keepalive: Int = 30) throws(DAQError) {
        try check(mosquitto_connect_async(handle, host, Int32(port), Int32(keepalive)), "connect to \(BrokerAddress.text(host: host, port: port))")
    }

    /// Connects with a durable MQTT 5 session (clean start off, session expiry set). Blocks for the
    /// TCP connect and TLS handshake: for the fleet-side collector, not the device loop.
    public func connectDurable(host: String, port: Int, sessionExpiry: UInt32, keepalive: Int = 30) throws(DAQError) {
        var properties: OpaquePointer? = nil
        defer { mosquitto_property_free_all(&properties) }
        _ = mosquitto_property_add_int32(&properties, Int32(MQTT_PROP_SESSION_EXPIRY_INTERVAL.rawValue), sessionExpiry)
        try check(mosquitto_connect_bind_v5(handle, host, Int32(port), Int32(keepalive), nil, properties), "connect to \(BrokerAddress.text(host: host, port: port))")
    }

    /// The socket to poll, or nil when not connected.
    public var socket: Int32? {
        let fd = mosquitto_socket(handle)
        return fd >= 0 ? fd : nil
    }

    /// True while libmosquitto has bytes to write (poll for POLLOUT).
    ///
    /// During the TLS handshake only what the handshake waits to write counts (and the TCP
    /// connect's completion, which is writability): the CONNECT packet queued behind it cannot go
    /// before the handshake is done, and polling a writable socket for it spun the loop at 100 %
    /// CPU until the broker's answer came, up to the connect timeout when a broker (or a box on
    /// the way) took the connection and never answered (a review).
    public var wantsWrite: Bool {
        if !isAccepted, let fd = socket {
            switch daqlink_mosquitto_handshake_wants_write(handle) {
            case 1: return true
            case 0: return !Self.isConnected(fd)
            default: break
            }
        }
        return mosquitto_want_write(handle)
    }

    /// Whether `fd`'s TCP connection is established (it has a peer).
    private static func isConnected(_ fd: Int32) -> Bool {
        var peer = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) == 0 }
        }
    }

    /// Whether the broker accepted the connection (a CONNACK with reason 0 was read).
    public private(set) var isAccepted = false

    /// Call when the socket is readable; `hungUp` when poll also said POLLHUP or POLLERR. Returns
    /// false when the connection failed. A hang-up before the broker accepted the connection is a
    /// failure whatever libmosquitto says: 2.0.11 retries a TLS handshake on a socket the peer
    /// closed forever, returning success each time (upstream #2594) — a 100 % CPU loop until the
    /// connect timeout, measured when a proxy accepted and closed every connection. What the
    /// socket still held (a CONNACK refusing us, say) is read first.
    @discardableResult
    public func handleReadable(hungUp: Bool = false) -> Bool {
        // A TCP connect that failed (refused, unreachable) never got a peer (getpeername fails;
        // SO_ERROR names why when the kernel still holds it, which on loopback was measured to be
        // never by the time poll says hang-up); one that got through and was then closed is the
        // TLS handshake or the CONNECT being refused.
        var noTCP: String?
        if hungUp && !isAccepted, let fd = socket {
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            let connected = Self.isConnected(fd)
            if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0, error != 0 {
                noTCP = String(cString: strerror(error))
            } else if !connected {
                noTCP = "no TCP connection (refused or unreachable: is the broker listening on that port?)"
            }
        }
        let rc = mosquitto_loop_read(handle, 16)
        if let noTCP {
            lastFailure = noTCP
            return false
        }
        if rc != MOSQ_ERR_SUCCESS.rawValue { return failed(rc) }
        if hungUp && !isAccepted {
            lastFailure = "the broker closed the connection before accepting it (the TLS handshake refused: a certificate it does not trust, or revoked?)"
            return false
        }
        return true
    }

    /// What a `.disconnected(reasonCode:)` means: below 0x80 libmosquitto's own error codes (the
    /// connection reset, lost, a keepalive missed), from 0x80 the broker's MQTT 5 DISCONNECT reason.
    public static func describeDisconnect(_ code: Int32) -> String {
        if code >= 0x80 { return "closed by the broker: \(MQTTReasonCode.describe(Int(code)))" }
        // errno no longer tells what broke by the time the callback runs.
        return describeFailure(code, errno: ECONNRESET)
    }

    /// Why the connection failed, in words, once one of the handle… calls returned false.
    public private(set) var lastFailure: String?

    private func failed(_ rc: Int32) -> Bool {
        let text = Self.describeFailure(rc, errno: errno)
        lastFailure = isAccepted ? text : "\(text) (before the broker accepted the connection)"
        return false
    }

    /// Call when the socket is writable. Returns false when the connection failed.
    ///
    /// Before the broker accepted the connection this first goes on with the TLS handshake:
    /// libmosquitto 2.0.11 starts it (SSL_connect) right after its non-blocking TCP connect,
    /// and over any real network that connect is still under way, so the ClientHello's write
    /// finds no connection yet and waits for the socket to be writable. Only
    /// `mosquitto_loop_read` goes on with a pending handshake (libmosquitto's own loop calls
    /// the handshake on writability); `mosquitto_loop_write` writes nothing while it is pending.
    /// Without this the device polled a writable socket that never carried the ClientHello,
    /// at 100 % CPU, until its connect timeout, at every attempt: it reached no broker that was
    /// not on its own host (on loopback the kernel completes the connect inside connect()).
    @discardableResult
    public func handleWritable() -> Bool {
        if !isAccepted {
            // Once the handshake is done this reads what the socket holds, if anything.
            let rc = mosquitto_loop_read(handle, 1)
            if rc != MOSQ_ERR_SUCCESS.rawValue { return failed(rc) }
        }
        let rc = mosquitto_loop_write(handle, 16)
        return rc == MOSQ_ERR_SUCCESS.rawValue || failed(rc)
    }

    /// Keepalive and timeouts; call about once a second. Returns false when the connection is gone.
    @discardableResult
    public func handlePeriodic() -> Bool {
        let rc = mosquitto_loop_misc(handle)
        return rc == MOSQ_ERR_SUCCESS.rawValue || failed(rc)
    }

    /// Queues a QoS 1 publish; returns its message id.
    public func publish(topic: String, payload: UnsafeRawBufferPointer, qos: Int32 = 1) throws(DAQError) -> Int32 {
        var mid: Int32 = 0
        try check(mosquitto_publish_v5(handle, &mid, topic, Int32(payload.count), payload.baseAddress, qos, false, nil),
                  "publish to \(topic)")
        return mid
    }

    public func subscribe(_ pattern: String, qos: Int32 = 1) throws(DAQError) {
        try check(mosquitto_subscribe_v5(handle, nil, pattern, qos, 0, nil), "subscribe to \(pattern)")
    }

    public func disconnect() { _ = mosquitto_disconnect_v5(handle, 0, nil) }

    /// Events recorded since the last call, in order.
    public func drainEvents() -> [MQTTEvent] {
        defer { events.removeAll(keepingCapacity: true) }
        return events
    }
}

/// Process-wide libmosquitto initialisation (idempotent; safe to call from the one loop thread).
enum MQTTLibrary {
    static func initialize() {
        _ = initialized
    }

    private static let initialized: Bool = {
        mosquitto_lib_init()
        return true
    }()
}

private extension String {
    func trimmingSuffixDot() -> String { hasSuffix(".") ? String(dropLast()) : self }
}

extension DAQError.Code {
    /// A connection the broker closed or whose TLS handshake it ended (`MQTTConnection`).
    public static let closedByPeer = DAQError.Code("closed-by-peer")
}
