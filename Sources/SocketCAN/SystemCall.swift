// The one place where errno is read: runs a system call, retries EINTR, and turns failures into
// DAQError(.system) naming the call and the interface. "Would block" is an outcome, not an error.
import DAQCore
#if canImport(Glibc)
import Glibc
#endif

/// The result of a system call that may find a non-blocking socket not ready.
enum SystemCallOutcome<Value> {
    case done(Value)
    case wouldBlock
}

/// Runs `call` (which returns -1 and sets errno on failure) until it is not interrupted.
/// Errors in `wouldBlockErrors` (EAGAIN/EWOULDBLOCK by default) become `.wouldBlock`; any other
/// failure throws `DAQError(.system, "IFACE: WHAT: strerror")`.
@inline(__always)
func systemCall<Value: FixedWidthInteger>(
    _ what: @autoclosure () -> String, interface: String,
    wouldBlockErrors: [Int32] = [EAGAIN, EWOULDBLOCK],
    _ call: () -> Value
) throws(DAQError) -> SystemCallOutcome<Value> {
    while true {
        let result = call()
        if result != -1 { return .done(result) }
        let code = errno
        if code == EINTR { continue }
        if wouldBlockErrors.contains(code) { return .wouldBlock }
        throw systemError(what(), interface: interface, errno: code)
    }
}

/// Like `systemCall`, for calls on which "would block" cannot happen (setsockopt, bind, …).
@inline(__always)
func checkedSystemCall<Value: FixedWidthInteger>(
    _ what: @autoclosure () -> String, interface: String, _ call: () -> Value
) throws(DAQError) -> Value {
    switch try systemCall(what(), interface: interface, wouldBlockErrors: [], call) {
    case .done(let value): return value
    case .wouldBlock: preconditionFailure("no would-block errors were allowed for \(what())")
    }
}

/// A `.system` error with the interface, the failed operation and errno's text.
func systemError(_ what: String, interface: String, errno code: Int32) -> DAQError {
    let text = String(cString: strerror(code))
    // The one failure a newcomer meets first: a kernel built without CAN.
    let hint = code == EAFNOSUPPORT
        ? "; this kernel has no CAN support: run the command inside the vcan guest with ./vcan-setup.sh --run -- …"
        : code == ENODEV ? "; no such interface (is the CAN adapter connected and its driver loaded? `ip link show` lists the "
            + "interfaces there are; on a test machine ./vcan-setup.sh --iface \(interface) makes a virtual one)" : ""
    return DAQError(.system, "\(interface): \(what): \(text) (errno \(code))\(hint)")
}
