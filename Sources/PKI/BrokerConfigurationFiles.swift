// Writes a BrokerConfiguration to disk: mosquitto.conf, acl and the persistence directory.
import DAQCore

extension BrokerConfiguration {
    /// Writes `mosquitto.conf` and the ACL into `directory` (created if needed) and creates the
    /// persistence directory; returns the path of mosquitto.conf (`mosquitto -c <path>`).
    @discardableResult
    public func write(into directory: String) throws -> String {
        try validate()
        try AtomicFile.makeDirectory(directory, mode: 0o755)
        try AtomicFile.makeDirectory(persistenceDirectory, mode: 0o700)
        let configuration = directory + "/mosquitto.conf"
        try AtomicFile.write(Array(accessControlList().utf8), to: aclFile, mode: AtomicFile.publicMode)
        try AtomicFile.write(Array(mosquittoConf().utf8), to: configuration, mode: AtomicFile.publicMode)
        return configuration
    }
}
