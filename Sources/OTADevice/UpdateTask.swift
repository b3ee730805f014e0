// The OTA task in daqlink's cooperative loop: polls the update server (HTTPS, mutual TLS) on an
// interval with jitter, checks each offered manifest (signature, hardware, expiry, floor,
// replay), downloads accepted artifacts into their staging area with resume, verifies them and
// installs them: firmware into the inactive A/B slot followed by a "reboot" into a trial, an
// experiment at the next clean record boundary, a certificate bundle for the next connection.
// It also runs the trial's health check. Every state change is persisted before the next step
// and reported through the status outbox.
#if canImport(Glibc)
import Glibc
#endif
import DAQCore
import HTTPFetch
import Logging
import OTA
import PKI
import Runtime

/// What the OTA task needs to know.
public struct UpdateOptions: Sendable {
    /// Base URL the device's files are under, e.g. `https://updates.example:8443/ota/`.
    public var baseURL: String
    /// This device's id (its certificate's CN).
    public var deviceID: String
    /// The hardware id manifests must name.
    public var hardwareID: String
    /// The update directory.
    public var directory: SlotDirectory
    /// The slot `daqlink boot` started this process from.
    public var runningSlot: Slot
    /// Public key files of the trusted release keys.
    public var trustedKeyFiles: [String]
    /// The CA that server and device certificates chain to.
    public var caFile: String
    /// Seconds between polls, ± `pollJitter` of it.
    public var pollInterval: Double = 300
    public var pollJitter: Double = 0.2
    /// Seconds a trial slot has to connect and get a batch acknowledged end to end.
    public var healthTimeout: Double = 120
    /// Boot attempts of a trial slot.
    public var trialAttempts: UInt8 = 3
    /// Bytes that must stay free on the update directory's file system after a download.
    public var freeSpaceMargin: UInt64 = 1 << 20
    /// Failed connections with a new certificate before it is checked against the one in use
    /// (`PendingCheck`), or, with that one expired, given up…
    public var certificateAttempts = 3
    /// …spread over at least this many seconds: a broker restarting (as `pki revoke` advises)
    /// refuses every connection for a second or two, and three quick refusals rolled back, for
    /// good, every certificate update waiting for its first connection.
    public var certificateFailureSpan: Double = 10
    /// Download bandwidth cap in bytes/s (nil: none), so updates never starve the measurement uplink.
    public var maxDownloadRate: Int?
    /// Where renewed certificates are served without a client certificate, e.g.
    /// `https://updates:8444/renewal/` (nil: never asked). See "Certificate renewal" in docs/ota.md.
    public var renewalURL: String?
    /// Days before the end of the certificate in use from which each poll asks for its renewal.
    public var renewalWindowDays = 30
    /// A bundle the broker took is committed only once the update server takes it too
    /// (`checkUpdateServer`). Off: committed on CONNACK alone, as before (the unit tests of the
    /// broker's side, which run without an update server).
    public var askUpdateServerBeforeCommit = true

    public init(baseURL: String, deviceID: String, hardwareID: String, directory: SlotDirectory, runningSlot: Slot,
                trustedKeyFiles: [String], caFile: String) {
        self.baseURL = baseURL.hasSuffix("/") ? baseURL : baseURL + "/"
        self.deviceID = deviceID
        self.hardwareID = hardwareID
        self.directory = directory
        self.runningSlot = runningSlot
        self.trustedKeyFiles = trustedKeyFiles
        self.caFile = caFile
    }
}

/// The device-side OTA task.
public final class UpdateTask {
    public let options: UpdateOptions
    private let loop: EventLoop
    private let trust: ReleaseTrustStore
    private var store: SlotStore
    public let credentials: CredentialStore
    public let outbox: StatusOutbox
    private var fetcher: HTTPFetcher?
    private let logger = Logger(label: "daqlink.ota")
    private var pollTimer: EventLoop.TimerID?
    private var healthTimer: EventLoop.TimerID?
    private var busy = false
    private var queue: [UpdateKind] = []
    private var stopped = false
    private var jitter: Jitter
    /// Refusals already reported (manifest digest), so a bad manifest is reported once.
    private var reportedRefusals: Set<String> = []
    /// Failed connections with the pending credentials, by their certificate file (a new
    /// pending bundle or renewal starts from none).
    private var certificateFailures: (certificate: String, count: Int, since: Int64, last: Int64)?
    /// Where a check of failed pending credentials against the ones in use stands (nil: none).
    private var pendingCheck: PendingCheck?
    /// The renewal listener's client (no client certificate), kept while its request runs.
    private var renewalFetcher: HTTPFetcher?
    /// The last renewal refused as invalid (reported once per distinct bytes) and the last
    /// "nothing published" said.
    private var refusedRenewalBytes: [UInt8]?
    private var saidNoRenewal = false
    private var saidRefusedRenewal: String?

    /// Checks an experiment file before it is installed (throws naming file, line and field).
    public var validateExperiment: ((String) throws -> Void)?
    /// Applies an installed experiment at the next clean record boundary.
    public var applyExperiment: ((String) -> Void)?
    /// New credentials are pending: reconnect so the next connection uses them.
    public var credentialsChanged: (() -> Void)?
    /// Stop acquisition cleanly and re-execute through `daqlink boot`.
    public var reboot: ((String) -> Void)?
    /// Status reports were appended (the uplink may publish them).
    public var reportsAdded: (() -> Void)?
    /// Unix seconds now (expiry checks, report times).
    public var wallClock: () -> Int64 = { SystemClock.realtime() / 1_000_000_000 }

    public init(options: UpdateOptions, loop: EventLoop, credentials: CredentialStore, seed: UInt64) throws {
        self.options = options
        self.loop = loop
        self.credentials = credentials
        jitter = Jitter(seed: seed)
        try options.directory.prepare()
        trust = try ReleaseTrustStore(publicKeyPaths: options.trustedKeyFiles)
        guard let state = try options.directory.loadBootState() else {
            throw DAQError(.unsupported, "no boot state in \(options.directory.root): start daqlink through `daqlink boot`")
        }
        store = SlotStore(state: state, trialAttempts: options.trialAttempts, running: options.runningSlot)
        outbox = try StatusOutbox(directory: options.directory.statusPath)
        // A report that cannot be written (a full card) never stops the device (research item 9).
        do {
            if let recovered = try outbox.recoverFirmwareReport(persistedGeneration: state.generation, time: wallClock()) {
                logger.notice("firmware report '\(recovered.status)' of \(recovered.version), lost in a power cut, is in the outbox again")
            }
        } catch {
            logger.error("cannot put back the firmware report a power cut took: \(error)")
        }
        recoverInterruptedSteps()
    }

    /// What a power cut interrupted in experiment and certificate updates: a promotion finished,
    /// a report put back. Neither stops acquisition when it fails (said, and tried at next start).
    private func recoverInterruptedSteps() {
        let staged = options.directory.stagedManifest(.certificates)
        do {
            if let promoted = try credentials.finishInterruptedPromotion(floor: { version in staged.map { $0.version == version ? $0.floor : 0 } ?? 0 }) {
                logger.notice("certificates \(promoted): the promotion a power cut interrupted is finished")
            }
        } catch {
            logger.error("cannot finish the certificate promotion a power cut interrupted: \(error)")
        }
        rearmReplacedBundle(after: "a restart (a power cut came between a renewal's end and this step)", reconnect: false)
        // Certificate renewals: the reports of the steps the links and the rolled-back serials
        // (refused, or set aside while the certificate in use had expired) prove.
        do {
            let rolledBack = credentials.refusedRenewals.union(credentials.setAsideRenewals.keys)
            for recovered in try outbox.recoverRenewalReports(pending: credentials.pendingRenewal?.serial, current: credentials.currentRenewal,
                                                              rolledBack: rolledBack, time: wallClock()) {
                logger.notice("renewal report '\(recovered.status)' of serial \(recovered.serial ?? "?"), lost in a power cut, is in the outbox again")
            }
        } catch {
            logger.error("cannot put back the renewal report a power cut took: \(error)")
        }
        // Experiments and certificate bundles: the report of the last step their state proves.
        for kind in [UpdateKind.experiment, .certificates] {
            guard let versions = try? options.directory.versions(of: kind),
                  let proven = ProvenReport(kind: kind, versions: versions, failed: options.directory.failedVersion(kind),
                                            pendingInstalled: kind == .certificates && credentials.pending != nil) else { continue }
            do {
                if let recovered = try outbox.recoverStateReport(of: kind, proven, time: wallClock()) {
                    logger.notice("\(kind.rawValue) report '\(recovered.status)' of \(recovered.version), lost in a power cut, is in the outbox again")
                }
            } catch {
                logger.error("cannot put back the \(kind.rawValue) report a power cut took: \(error)")
            }
        }
    }

    /// The firmware version running now (the trial's while on trial).
    public var runningVersion: UInt64 { store.runningTrial?.version ?? store.state.committedVersion }

    /// Starts polling (after a short delay) and, on a trial slot, the health-check deadline.
    public func start() {
        if let trial = store.runningTrial {
            logger.notice("running trial firmware \(trial.version) from slot \(trial.slot.rawValue): health check within \(options.healthTimeout) s")
            healthTimer = loop.schedule(at: loop.clock.now() + waitNanoseconds(seconds: options.healthTimeout)) { [weak self] in
                self?.healthFailed("no end-to-end acknowledged batch within \(self?.options.healthTimeout ?? 0) s")
            }
        }
        schedulePoll(after: 1)
    }

    private var saidTrialHolds = false

    public func stop() {
        stopped = true
        if let pollTimer { loop.cancel(pollTimer) }
        if let healthTimer { loop.cancel(healthTimer) }
        fetcher = nil
        serverCheckFetcher = nil
    }

    // MARK: health and credentials (called by the uplink)

    /// The uplink connected and the collector acknowledged a batch sent by this process.
    public func uplinkHealthy() {
        guard let trial = store.runningTrial else { return }
        if let healthTimer { loop.cancel(healthTimer) }
        healthTimer = nil
        logger.notice("trial firmware \(trial.version) passed its health check")
        execute(store.on(.healthPassed))
    }

    private func healthFailed(_ reason: String) {
        healthTimer = nil
        guard !stopped, store.runningTrial != nil else { return }
        logger.error("trial firmware failed its health check: \(reason)")
        execute(store.on(.healthFailed(reason: reason)))
    }

    /// The CA certificates in use: those the current bundle brought, else the provisioned ones.
    private var trustFile: String { credentials.current.caFile ?? options.caFile }

    /// Pending credentials that failed their attempts are not rolled back at once: a broker that
    /// is down or restarting refuses every connection, and a long outage rolled back, for good,
    /// every certificate update waiting for its first connection. The credentials in use are tried
    /// first. If the broker refuses them too, the failures were the broker's and the new ones stay
    /// pending; if it takes them, the new ones get one more attempt, and a failure right after
    /// the ones in use connected is theirs. Each step is one attempt: one that ends without an
    /// answer (a timeout) says nothing, and the new ones are counted afresh. (Not while the
    /// certificate in use has expired: the broker refuses it whatever the new ones' fault, and a
    /// bad bundle would stay pending for ever, in the way of a renewal.)
    private enum PendingCheck: Equatable {
        /// The next connection goes with the credentials in use (the pending ones: `certificate`);
        /// `made`: that attempt has started.
        case tryingCurrent(certificate: String, made: Bool)
        /// The credentials in use connected: the pending ones' next attempt decides.
        case lastAttempt(certificate: String, made: Bool)

        var certificate: String {
            switch self { case .tryingCurrent(let file, _), .lastAttempt(let file, _): file }
        }
    }

    /// The credentials waiting for their first connection: a bundle, else a renewal.
    private var pendingFiles: CredentialFiles? { credentials.pending?.files ?? credentials.pendingRenewal?.files }

    /// The credentials the next connection will use, without taking a step of a check (the
    /// uplink's daily look at when its certificate ends; `credentialsForNextConnection` is for a
    /// connection attempt only).
    public var nextCredentials: CredentialFiles {
        guard let candidate = pendingFiles else { return credentials.current }
        if case .tryingCurrent(let certificate, false)? = pendingCheck, certificate == candidate.certificateFile { return credentials.current }
        return candidate
    }

    /// Credentials for the next connection attempt: a pending bundle or renewal first, else the
    /// current ones (and those while failed pending ones are checked against them). Called once
    /// per attempt: each call takes a step of a check.
    public func credentialsForNextConnection() -> CredentialFiles {
        guard let candidate = pendingFiles else {
            pendingCheck = nil
            return credentials.current
        }
        // A check of other pending credentials (replaced since) says nothing of these.
        if pendingCheck?.certificate != candidate.certificateFile { pendingCheck = nil }
        switch pendingCheck {
        case .tryingCurrent(let certificate, false)?:
            pendingCheck = .tryingCurrent(certificate: certificate, made: true)
            return credentials.current
        case .lastAttempt(let certificate, false)?:
            pendingCheck = .lastAttempt(certificate: certificate, made: true)
            return candidate
        case .tryingCurrent?, .lastAttempt?:
            // The step's attempt ended without an answer (a timeout): it says nothing.
            logger.notice("the check of the new certificate got no answer: it is tried again and counted afresh")
            pendingCheck = nil
            return candidate
        case nil:
            return candidate
        }
    }

    /// A connection made with `used` succeeded (CONNACK success).
    public func connectionSucceeded(with used: CredentialFiles) {
        if case .tryingCurrent(let certificate, true)? = pendingCheck, credentials.current.wereUsed(in: used) {
            pendingCheck = .lastAttempt(certificate: certificate, made: false)
            logger.notice("the broker accepts the certificate in use: one more attempt with the new one, which is rolled back if it fails")
            credentialsChangedSoon()
            return
        }
        if let renewal = credentials.pendingRenewal, renewal.files.wereUsed(in: used) {
            certificateFailures = nil
            pendingCheck = nil
            do {
                try credentials.promoteRenewal()
                logger.notice("connected with the renewed certificate (serial \(renewal.serial)): it is the one in use now")
                report(.certificates, "renewed", version: 0, reason: "connected with the renewed certificate, serial \(renewal.serial)", serial: renewal.serial)
            } catch {
                logger.error("cannot promote the renewed certificate: \(error)")
                return
            }
            rearmReplacedBundle(after: "the renewal connected")
            return
        }
        guard let pending = credentials.pending, pending.files.wereUsed(in: used) else { return }
        certificateFailures = nil
        pendingCheck = nil
        // The update server must take it too (`checkUpdateServer`), unless the certificate in
        // use has expired: nothing to go back to.
        if !options.askUpdateServerBeforeCommit || hasEnded(currentCertificateEnd()) {
            return commitPending(pending.version, "connected with the new certificate")
        }
        brokerAccepted = pending.version
        checkUpdateServer()
    }

    private func commitPending(_ version: UInt64, _ reason: String) {
        let floor = options.directory.stagedManifest(.certificates).map { $0.version == version ? $0.floor : 0 } ?? 0
        do {
            try credentials.promotePending(version: version, floor: floor)
            logger.notice("certificates \(version) committed: the new certificate is the one in use now")
            report(.certificates, "committed", version: version, reason: reason)
        } catch {
            logger.error("cannot promote the new certificate: \(error)")
        }
    }

    // MARK: the update server's word on a new bundle

    /// The pending bundle the broker took, waiting for the update server's word.
    private var brokerAccepted: UInt64?
    /// The HTTPS client of the check under way (nil: none).
    private var serverCheckFetcher: HTTPFetcher?

    /// What the update server said to a client certificate.
    enum ServerAnswer: Equatable {
        /// Any HTTP answer but 400 (a manifest, 404): nginx checked the certificate and took it.
        case accepted
        /// HTTP 400 (nginx's answer to a client certificate it refuses: unknown CA, revoked,
        /// expired), 403, or a failed TLS handshake (either side refused the other, or the
        /// connection was cut during it: hence the last request, `checkUpdateServer`).
        case refused(String)
        /// No answer (unreachable, timeout, cut): says nothing of the certificate.
        case none(String)

        init(_ outcome: HTTPOutcome<[UInt8]>) {
            switch outcome {
            case .complete: self = .accepted
            case .failed(let failure):
                switch failure.reason {
                // 403: the generated nginx configuration's answer to a certificate without a
                // device id in its subject.
                case .httpStatus(400), .httpStatus(403), .tls: self = .refused("\(failure)")
                case .httpStatus: self = .accepted
                default: self = .none("\(failure)")
                }
            }
        }
    }

    /// A bundle the broker took is committed only once the update server takes it too: one the
    /// update server refuses (its client CA file left out of a change of CA, the bundle's trust
    /// anchors missing the server's CA) cut the device off from every later update, the broker
    /// link working. One GET of the firmware manifest with the new credentials: taken, it is
    /// committed; refused, the same GET with the credentials in use tells whose fault it is.
    /// Those taken, the new ones are rolled back like a bundle the broker refuses; those refused
    /// too, the update server is at fault and the new ones stay pending (in use on the broker
    /// link) until a later poll finds them taken. No answer: asked again at the next poll.
    private func checkUpdateServer() {
        guard !stopped, serverCheckFetcher == nil, let version = brokerAccepted,
              let pending = credentials.pending, pending.version == version else { return }
        // Expired meanwhile (the check waited on the server): nothing to go back to.
        if hasEnded(currentCertificateEnd()) {
            brokerAccepted = nil
            return commitPending(version, "connected with the new certificate (the one in use has expired)")
        }
        // A check's answer belongs to the bundle it asked for: one installed since is not it,
        // and gets its own check.
        let stillPending = { [weak self] () -> Bool in
            guard let self else { return false }
            guard self.credentials.pending?.version == version else {
                self.serverCheckFetcher = nil
                if self.brokerAccepted == version { self.brokerAccepted = nil }
                self.checkUpdateServer()
                return false
            }
            return true
        }
        let files = pending.files
        let noAnswer = { [weak self] (why: String) in
            guard let self else { return }
            self.endServerCheck(version, .waiting)
            if self.saidServerSilent != version {
                self.saidServerSilent = version
                self.logger.notice("the update server did not answer the check of the new certificate (bundle \(version): \(why)): it stays pending, asked again at each poll")
            }
        }
        ask(with: files) { [weak self] answer in
            guard let self, stillPending() else { return }
            switch answer {
            case .accepted:
                self.endServerCheck(version, .taken)
            case .none(let why):
                noAnswer(why)
            case .refused(let why):
                self.ask(with: self.credentials.current) { [weak self] inUse in
                    guard let self, stillPending() else { return }
                    switch inUse {
                    case .accepted:
                        // One more request with the new ones: a refusal right after the ones in
                        // use were taken is theirs (a connection cut during the handshake, on
                        // 4G, is not).
                        self.ask(with: files) { [weak self] last in
                            guard let self, stillPending() else { return }
                            switch last {
                            case .accepted:
                                self.endServerCheck(version, .taken)
                            case .refused(let again):
                                self.endServerCheck(version, .refused("the update server refuses the new certificate (bundle \(version): \(again)) and takes the one in use"))
                            case .none(let why):
                                noAnswer(why)
                            }
                        }
                    case .refused(let both):
                        self.endServerCheck(version, .waiting)
                        if self.saidServerRefusesBoth != version {
                            self.saidServerRefusesBoth = version
                            self.logger.error("the update server refuses the new certificate (bundle \(version): \(why)) and the one in use (\(both)): the fault is the server's (its client CA file, its CRL?); the new certificate stays pending, asked again at each poll")
                        }
                    case .none(let why):
                        noAnswer(why)
                    }
                }
            }
        }
    }

    /// How a check of bundle `version` ends.
    private enum CheckEnd {
        /// The update server takes the new credentials: committed.
        case taken
        /// It refuses them and takes the ones in use: rolled back, for this reason.
        case refused(String)
        /// No verdict (no answer, or the server refuses both): the bundle stays pending, in use
        /// on the broker link, and is asked about again at the next poll.
        case waiting
    }

    /// Ends the check under way: its client goes; a verdict ends the wait for one.
    private func endServerCheck(_ version: UInt64, _ end: CheckEnd) {
        serverCheckFetcher = nil
        switch end {
        case .waiting:
            return
        case .taken:
            brokerAccepted = nil
            logger.notice("the update server takes the new certificate (bundle \(version)) too")
            commitPending(version, "connected with the new certificate, and the update server takes it")
        case .refused(let why):
            brokerAccepted = nil
            rollBackPending(version, why)
        }
    }

    private var saidServerRefusesBoth: UInt64?
    private var saidServerSilent: UInt64?

    /// One GET of the firmware manifest with `files`, answered on the loop.
    private func ask(with files: CredentialFiles, _ completion: @escaping (ServerAnswer) -> Void) {
        do {
            serverCheckFetcher = try HTTPFetcher(loop: loop, configuration: HTTPFetchConfiguration(
                tls: HTTPClientTLS(caFile: files.caFile ?? options.caFile, certificateFile: files.certificateFile, keyFile: files.keyFile)))
        } catch {
            serverCheckFetcher = nil
            logger.error("cannot set up the HTTPS client for the check of the new certificate: \(error)")
            return
        }
        // A transfer that cannot start still answers (as no answer), and that clears the client.
        _ = serverCheckFetcher?.get(options.baseURL + UpdateDirectoryLayout.manifestName(.firmware), maxBytes: UpdateManifest.maximumSize) {
            [weak self] outcome in
            guard let self, !self.stopped else { return }
            completion(ServerAnswer(outcome))
        }
    }

    /// Pending bundle `version` is refused: disarmed, never fetched or installed again, and the
    /// uplink goes back to the credentials in use.
    private func rollBackPending(_ version: UInt64, _ why: String) {
        pendingCheck = nil
        // Never fetched or installed again: the poll resumed the "unfinished" download of the
        // accepted version, found it complete and installed it again, cutting the working link
        // every poll interval, for ever. (Marked failed before the link goes: a power cut
        // between the two leaves a bundle tried once more, not fetched and installed again.)
        try? options.directory.clearStaging(.certificates)
        try? options.directory.markFailed(.certificates, version: version)
        credentials.discardPending()
        credentialsChangedSoon()
        logger.error("\(why): back to the one in use, and bundle \(version) is not tried again")
        report(.certificates, "rolled-back", version: version, reason: "\(why); kept the old one")
    }

    /// A connection made with `used` failed before CONNACK success.
    public func connectionFailed(with used: CredentialFiles) {
        if case .tryingCurrent(_, true)? = pendingCheck, credentials.current.wereUsed(in: used) {
            pendingCheck = nil
            logger.notice("the broker refused the certificate in use too: the failures were the broker's (down, restarting), and the new certificate stays pending, counted afresh")
            return
        }
        let renewal = credentials.pendingRenewal.flatMap { $0.files.wereUsed(in: used) ? $0 : nil }
        let pending = renewal == nil ? credentials.pending.flatMap { $0.files.wereUsed(in: used) ? $0 : nil } : nil
        guard renewal != nil || pending != nil else { return }
        let lastAttempt = pendingCheck == .lastAttempt(certificate: used.certificateFile, made: true)
        let span = lastAttempt ? nil : failedAgain(with: used)
        guard lastAttempt || span != nil else { return }
        // With the certificate in use expired there is nothing to check against (see `PendingCheck`).
        let expired = hasEnded(currentCertificateEnd())
        let how = lastAttempt ? "while the one in use connected"
            : String(format: "in %d attempts over %.1f s, with the one in use expired", options.certificateAttempts, span ?? 0)
        if let renewal {
            if !lastAttempt, !expired { return checkAgainstCurrent(used, "the renewed certificate (serial \(renewal.serial))", span: span ?? 0) }
            pendingCheck = nil
            // Expired, there is nothing to keep either: the failures may be the broker's
            // (restarted, its CRL lapsed), so the renewal is asked for again.
            do { try credentials.discardRenewal(serial: renewal.serial, retryAfter: expired ? wallClock() + Self.setAsideSeconds : nil) } catch {
                logger.error("cannot record the rolled-back renewal: \(error)")
            }
            let next = expired ? "; it has expired, so the renewal is tried again in an hour" : ", and this renewal is not tried again"
            logger.error("no connection with the renewed certificate (serial \(renewal.serial)) \(how): back to the one before\(next)")
            if let bundle = credentials.pending?.version {
                logger.notice("bundle \(bundle), whose place the renewal took, is pending again")
            }
            credentialsChangedSoon()
            reportRenewal("renewal-rolled-back", serial: renewal.serial,
                   reason: "no connection with the renewed certificate, serial \(renewal.serial), \(how); kept the old one")
            return
        }
        guard let pending else { return }
        if !lastAttempt, expired {
            // Nothing to go back to: the certificate in use can never connect again, and the
            // failures may be the broker's (a bundle with a new key rolled back here left the
            // device with no way out: `pki renew` signs the new key by then). It stays pending,
            // and a renewal may be asked for meanwhile (`renewalDue`), which then takes its place.
            if saidExpiredPending != pending.version {
                logger.error("no connection with the new certificate (bundle \(pending.version)) \(how): it stays pending, as there is nothing to go back to; a renewal is asked for meanwhile")
            }
            saidExpiredPending = pending.version
            return
        }
        if !lastAttempt { return checkAgainstCurrent(used, "the new certificate (bundle \(pending.version))", span: span ?? 0) }
        rollBackPending(pending.version, "no connection with the new certificate (bundle \(pending.version)) \(how)")
    }

    /// Arms again the bundle a renewal took the place of (while the certificate in use had
    /// expired), once that renewal connected or was rolled back (`CredentialStore.rearmReplacedBundle`);
    /// the uplink then tries it. Before, it was dropped: its version accepted, never fetched again.
    /// `reconnect`: the uplink is told (at a start, its first connection picks it up).
    private func rearmReplacedBundle(after event: String, reconnect: Bool = true) {
        do {
            guard let version = try credentials.rearmReplacedBundle() else { return }
            // Its new attempts are said afresh.
            saidExpiredPending = nil
            saidServerSilent = nil
            saidServerRefusesBoth = nil
            logger.notice("bundle \(version), whose place a renewal took, is pending again after \(event): the next connection tries it")
            if reconnect { credentialsChangedSoon() }
        } catch {
            logger.error("cannot arm again the bundle a renewal took the place of: \(error)")
        }
    }

    /// The pending bundle last said to stay pending with the certificate in use expired.
    private var saidExpiredPending: UInt64?

    /// Pending credentials `used` failed their attempts: the next connection tries the ones in use,
    /// at once (see `PendingCheck`).
    private func checkAgainstCurrent(_ used: CredentialFiles, _ what: String, span: Double) {
        pendingCheck = .tryingCurrent(certificate: used.certificateFile, made: false)
        logger.notice("no connection with \(what) in \(options.certificateAttempts) attempts over \(String(format: "%.1f", span)) s: trying the certificate in use, to tell a refused certificate from a broker that is down")
        credentialsChangedSoon()
    }

    /// Reports a renewal's step once per serial and process: a renewal retried at every poll
    /// (the certificate in use expired, the broker refusing it) is not reported every poll.
    private func reportRenewal(_ status: String, serial: String, reason: String) {
        guard reportedRenewalSteps.insert("\(status) \(serial)").inserted else { return }
        report(.certificates, status, version: 0, reason: reason, serial: serial)
    }

    private var reportedRenewalSteps: Set<String> = []

    /// Back to the credentials before: the uplink connects with them at once, at the loop's next
    /// turn (this runs inside its report of the failed attempt).
    private func credentialsChangedSoon() {
        _ = loop.schedule(at: loop.clock.now()) { [weak self] in self?.credentialsChanged?() }
    }

    /// Counts a failed connection with the pending credentials `used`; the seconds the failures
    /// spanned once they have failed `certificateAttempts` times over at least
    /// `certificateFailureSpan` seconds (and the count starts again), else nil.
    private func failedAgain(with used: CredentialFiles) -> Double? {
        let now = loop.clock.now()
        // The same credentials, failing lately: one failure long ago (then timeouts, which do not
        // count) and two in a later broker restart are no three refusals.
        let span = waitNanoseconds(seconds: options.certificateFailureSpan)
        let same = certificateFailures.map { $0.certificate == used.certificateFile && now - $0.last <= 2 * span } ?? false
        let count = (same ? certificateFailures?.count ?? 0 : 0) + 1
        let since = same ? certificateFailures?.since ?? now : now
        guard count >= options.certificateAttempts, now - since >= span else {
            certificateFailures = (used.certificateFile, count, since, now)
            return nil
        }
        certificateFailures = nil
        return Double(now - since) / 1e9
    }

    /// The end of the certificate in use (seconds since the epoch); nil, said once, when it
    /// cannot be read.
    private func currentCertificateEnd() -> Int? {
        let file = credentials.current.certificateFile
        do {
            let end = try CredentialLifetime.certificateEnd(path: file)
            saidUnreadableCertificate = false
            return end
        } catch {
            if !saidUnreadableCertificate { logger.error("cannot read the certificate in use to see when it ends: \(error)") }
            saidUnreadableCertificate = true
            return nil
        }
    }

    private var saidUnreadableCertificate = false

    /// Whether a certificate ending at `end` (nil: unknown) has ended.
    private func hasEnded(_ end: Int?) -> Bool { end.map { Int64($0) <= wallClock() } ?? false }

    // MARK: polling

    private func schedulePoll(after seconds: Double) {
        guard !stopped else { return }
        if let pollTimer { loop.cancel(pollTimer) }
        pollTimer = loop.schedule(at: loop.clock.now() + waitNanoseconds(seconds: seconds)) { [weak self] in
            self?.pollTimer = nil
            self?.poll()
        }
    }

    private func nextPollDelay() -> Double {
        let unit = jitter.next() * 2 - 1
        return max(0.1, options.pollInterval * (1 + options.pollJitter * unit))
    }

    /// One poll: each kind in turn, one request at a time.
    public func poll() {
        guard !stopped, !busy else { return }
        checkUpdateServer()  // a bundle the broker took, whose check got no answer
        do {
            // A fresh client per poll: a rotated certificate is used from the next poll on.
            let files = credentials.current
            fetcher = try HTTPFetcher(loop: loop, configuration: HTTPFetchConfiguration(
                tls: HTTPClientTLS(caFile: files.caFile ?? options.caFile, certificateFile: files.certificateFile, keyFile: files.keyFile),
                maxReceiveBytesPerSecond: options.maxDownloadRate))
        } catch {
            logger.error("cannot set up the HTTPS client: \(error)")
            schedulePoll(after: nextPollDelay())
            return
        }
        busy = true
        // On trial, experiments and certificates wait for the commit: one installed now stays
        // when the trial rolls back, and the firmware before may not read it (it failed to start).
        queue = store.runningTrial == nil ? [.firmware, .experiment, .certificates] : [.firmware]
        if store.runningTrial != nil, !saidTrialHolds {
            saidTrialHolds = true
            logger.notice("experiment and certificate updates wait until the trial firmware commits")
        }
        // nginx refuses an expired certificate as the broker does: asking would be three refusals
        // a poll. Only the renewal listener can help then.
        let end = currentCertificateEnd()
        if hasEnded(end) {
            if !saidExpiredPolls {
                let remedy = options.renewalURL == nil ? " (no --ota-renewal-url: only a new certificate put on the device helps)" : ""
                logger.warning("the certificate in use has expired: updates are not asked for until it is renewed\(remedy)")
            }
            saidExpiredPolls = true
            queue = []
        } else {
            saidExpiredPolls = false
        }
        if let url = renewalDue(end: end) { fetchRenewal(url) } else { nextKind() }
    }

    private var saidExpiredPolls = false

    // MARK: certificate renewal

    /// The renewal to ask for at this poll: with a renewal URL, no certificate waiting for its
    /// first connection, and the certificate in use ending within the window, or ended. (The
    /// uplink's alarm and the collector say it, but until now only a certificate bundle fetched
    /// over mTLS could replace it, and nginx refuses an expired certificate as the broker does.)
    /// `end`: the certificate in use's (`currentCertificateEnd`).
    private func renewalDue(end: Int?) -> String? {
        // A bundle waiting for its first connection goes first, unless the certificate in use has
        // expired: then a renewal may take its place (a bundle the broker refuses would otherwise
        // hold the device for good, since it is not rolled back to a certificate that ended).
        guard let base = options.renewalURL, credentials.pending == nil || hasEnded(end), credentials.pendingRenewal == nil,
              let end, Int64(end) - wallClock() <= Int64(options.renewalWindowDays) * 86_400 else { return nil }
        let name: String
        do {
            name = try DeviceCredentialBundle.renewalName(certificatePath: credentials.current.certificateFile)
        } catch {
            logger.error("cannot name the renewal to ask for (the SHA-256 of the public key in use): \(error)")
            return nil
        }
        return (base.hasSuffix("/") ? base : base + "/") + name + ".crt"
    }

    /// Asks the renewal listener for this device's renewed certificate, without a client
    /// certificate (the server's is verified against the CA), then goes on with the poll.
    private func fetchRenewal(_ url: String) {
        do {
            renewalFetcher = try HTTPFetcher(loop: loop, configuration: HTTPFetchConfiguration(tls: .withoutClientCertificate(caFile: trustFile)))
        } catch {
            logger.error("cannot set up the HTTPS client for renewals: \(error)")
            return nextKind()
        }
        renewalFetcher?.get(url, maxBytes: DeviceCredentialBundle.maximumRenewalSize) { [weak self] outcome in
            guard let self, !self.stopped else { return }
            switch outcome {
            case .failed(let failure) where failure.reason == .httpStatus(404):
                if !self.saidNoRenewal { self.logger.notice("no renewed certificate is published at \(url) yet") }
                self.saidNoRenewal = true
            case .failed(let failure):
                self.logger.warning("renewal \(url): \(failure)")
            case .complete(let bytes):
                self.renewalFetched(bytes, from: url)
            }
            self.nextKind()
        }
    }

    /// A renewed certificate came: checked with the key in use, armed for the next connection
    /// when it ends later than the one in use and the broker has not refused it before.
    private func renewalFetched(_ bytes: [UInt8], from url: String) {
        let current = credentials.current
        var renewal: (credentials: DeviceCredentials, serial: String, end: Int)
        do {
            renewal = try DeviceCredentialBundle.validateRenewal(bytes, keyFile: current.keyFile, deviceID: options.deviceID,
                                                                caFile: trustFile, file: url)
        } catch {
            guard refusedRenewalBytes != bytes else { return }
            refusedRenewalBytes = bytes
            logger.error("the renewed certificate at \(url) is refused: \(error)")
            report(.certificates, "renewal-refused", version: 0, reason: "invalid-certificate: \(error)")
            return
        }
        // The one in use (the server still serves it after the device took it), an older one, or
        // one the broker refused: nothing to do.
        let end = currentCertificateEnd()
        guard renewal.end > end ?? Int.min else { return }
        // With the certificate in use expired, a renewal refused before (perhaps while the broker
        // was at fault) is tried again: there is nothing left to keep. Once an hour at most.
        let expired = hasEnded(end)
        if expired, let after = credentials.setAsideRenewals[renewal.serial], !Self.setAsideIsOver(until: after, now: wallClock()) { return }
        guard expired || !credentials.refusedRenewals.contains(renewal.serial) else {
            if saidRefusedRenewal != renewal.serial {
                logger.notice("the renewal at \(url) (serial \(renewal.serial)) is one the broker refused before: not tried again; publish another")
            }
            saidRefusedRenewal = renewal.serial
            return
        }
        do {
            // The trust anchors in use stay with it.
            renewal.credentials.authoritiesPEM = try current.caFile.map { try AtomicFile.read($0) }
            try credentials.installRenewal(renewal.credentials, serial: renewal.serial)
        } catch {
            logger.error("cannot install the renewed certificate: \(error)")
            return
        }
        let until = CredentialLifetime.stamp(renewal.end)
        logger.notice("renewed certificate serial \(renewal.serial), valid until \(until): used from the next connection")
        reportRenewal("renewal-installed", serial: renewal.serial, reason: "serial \(renewal.serial), valid until \(until); used from the next connection")
        credentialsChanged?()
    }

    /// Whether a renewal set aside `until` may be tried again at `now` (Unix seconds): its hour
    /// has passed, or `until` lies more than an hour ahead, which only a clock that was wrong
    /// when it was set (days ahead, then put right by NTP) gives: waited out, it kept an expired
    /// device from its renewal for those days.
    static func setAsideIsOver(until: Int64, now: Int64) -> Bool {
        now >= until || until - now > setAsideSeconds
    }

    /// How long a renewal that failed while the certificate in use had expired is set aside.
    static let setAsideSeconds: Int64 = 3600

    private func nextKind() {
        guard !stopped else { return }
        guard !queue.isEmpty else {
            busy = false
            schedulePoll(after: nextPollDelay())
            return
        }
        let kind = queue.removeFirst()
        // A download in progress resumes, unless the server now offers a newer release: then that
        // one is judged (and supersedes it when accepted). Before, the manifest was not asked for
        // while a download was unfinished: one the server could no longer serve (its file removed,
        // the device moved to another group) blocked every later release for good.
        let staged = unfinishedDownload(kind)
        let url = options.baseURL + UpdateDirectoryLayout.manifestName(kind)
        fetcher?.get(url, maxBytes: UpdateManifest.maximumSize) { [weak self] outcome in
            guard let self, !self.stopped else { return }
            switch outcome {
            case .failed(let failure):
                if failure.reason != .httpStatus(404) { self.logger.warning("poll \(kind.rawValue): \(failure)") }
                if let staged { return self.download(kind, staged) }
                self.nextKind()
            case .complete(let manifest):
                if let staged {
                    let offered = (try? UpdateManifest.parse(manifest, file: url))?.version ?? 0
                    guard offered > staged.version else { return self.download(kind, staged) }
                    self.logger.notice("the server offers \(kind.rawValue) \(offered), newer than the unfinished download of \(staged.version)")
                }
                self.fetcher?.get(self.options.baseURL + UpdateDirectoryLayout.signatureName(kind), maxBytes: SignatureEnvelope.maximumSize) { [weak self] outcome in
                    guard let self, !self.stopped else { return }
                    switch outcome {
                    case .complete(let signature): self.offer(kind, manifest: manifest, signature: signature)
                    case .failed(let failure) where failure.reason == .httpStatus(404): self.offer(kind, manifest: manifest, signature: nil)
                    case .failed(let failure):
                        self.logger.warning("poll \(kind.rawValue) signature: \(failure)")
                        self.nextKind()
                    }
                }
            }
        }
    }

    /// The version of `kind` this device accepted and has not finished downloading: firmware in
    /// state `downloading`; an experiment or bundle accepted above the installed one that neither
    /// failed for good nor waits, installed, for its first connection.
    private func downloadingVersion(_ kind: UpdateKind) -> UInt64? {
        switch kind {
        case .firmware:
            if case .downloading(let version, _) = store.state.inactive { return version }
            return nil
        case .experiment, .certificates:
            guard let versions = try? options.directory.versions(of: kind), versions.accepted > versions.installed,
                  options.directory.failedVersion(kind) != versions.accepted,
                  kind != .certificates || credentials.pending == nil else { return nil }
            return versions.accepted
        }
    }

    /// The staged manifest of the download in progress, resumed without asking the server.
    private func unfinishedDownload(_ kind: UpdateKind) -> UpdateManifest? {
        guard let staged = options.directory.stagedManifest(kind), staged.version == downloadingVersion(kind) else { return nil }
        return staged
    }

    /// The download in progress whose staged manifest a power cut lost: none staged, or one of
    /// an earlier release (installing a release renames its artifact out of staging and leaves its
    /// manifest there; a cut right after the next one's acceptance was recorded, before staging was
    /// cleared, left that release `downloading` and refused as a replay for good, a review found).
    private func acceptedButUnstaged(_ kind: UpdateKind) -> UInt64? {
        guard let downloading = downloadingVersion(kind) else { return nil }
        return options.directory.stagedManifest(kind)?.version == downloading ? nil : downloading
    }

    private func deviceState(_ kind: UpdateKind) throws -> DeviceUpdateState {
        let now = wallClock()
        switch kind {
        case .firmware:
            let state = store.state
            return DeviceUpdateState(hardwareID: options.hardwareID, installedVersion: state.committedVersion, floor: state.floor,
                                     lastAcceptedVersion: state.lastAcceptedVersion, now: now)
        case .experiment, .certificates:
            return try options.directory.versions(of: kind).deviceState(hardwareID: options.hardwareID, now: now)
        }
    }

    /// Decides on an offered manifest and starts its download when accepted.
    private func offer(_ kind: UpdateKind, manifest bytes: [UInt8], signature: [UInt8]?) {
        let url = options.baseURL + UpdateDirectoryLayout.manifestName(kind)
        let status = SignatureStatus.check(envelope: signature, manifest: bytes, trustedKeyIDs: trust.keyIDs) { key, signature, message in
            trust.verify(keyID: key, signature: signature, message: message)
        }
        let manifest: UpdateManifest
        do {
            manifest = try UpdateManifest.parse(bytes, file: url)
        } catch {
            refuse(kind, version: 0, code: "malformed-manifest", reason: "\(error)", digest: bytes)
            return nextKind()
        }
        var device: DeviceUpdateState
        do { device = try deviceState(kind) } catch {
            logger.error("cannot read the \(kind.rawValue) state: \(error)")
            return nextKind()
        }
        // A release accepted earlier whose staged manifest a power cut lost: judge it as if not yet
        // accepted (every other rule still applies) and continue its download.
        let resuming = manifest.version == acceptedButUnstaged(kind)
        if resuming { device.lastAcceptedVersion = manifest.version - 1 }
        switch UpdateAcceptance.decide(manifest, signature: status, device: device, expectedKind: kind) {
        case .refuse(.replayed(let version, _)) where version == device.installedVersion || version == device.lastAcceptedVersion:
            // The server still offers what this device already has (or already tried): up to date.
            return nextKind()
        case .refuse(let refusal):
            refuse(kind, version: manifest.version, code: refusal.code, reason: refusal.description, digest: bytes)
            return nextKind()
        case .accept:
            break
        }
        logger.notice("\(resuming ? "resuming" : "accepted") \(kind.rawValue) \(manifest.version) (\(manifest.length) bytes, signed by a trusted key)")
        do {
            switch kind {
            case _ where resuming:
                try options.directory.clearStaging(kind)
                try options.directory.stage(manifest: bytes, signature: signature ?? [], for: kind)
            case .firmware:
                // While a trial runs (or an install waits) the slot store takes no new release: try again later.
                let actions = store.on(.updateAccepted(version: manifest.version, floor: manifest.floor))
                guard actions.contains(where: { if case .persist = $0 { true } else { false } }) else {
                    logger.info("firmware \(manifest.version) waits: the inactive slot is \(store.state.inactive)")
                    return nextKind()
                }
                guard execute(actions, staging: (bytes, signature ?? [])) else { return nextKind() }
            case .experiment, .certificates:
                var versions = try options.directory.versions(of: kind)
                try options.directory.clearStaging(kind)
                try options.directory.stage(manifest: bytes, signature: signature ?? [], for: kind)
                versions.accepted = manifest.version
                try options.directory.persist(versions, of: kind)
                report(kind, "downloading", version: manifest.version)
            }
        } catch {
            logger.error("cannot stage \(kind.rawValue) \(manifest.version): \(error)")
            return nextKind()
        }
        download(kind, manifest)
    }

    private func refuse(_ kind: UpdateKind, version: UInt64, code: String, reason: String, digest bytes: [UInt8]) {
        let key = kind.rawValue + ":" + String(bytes.hashValue)
        guard reportedRefusals.insert(key).inserted else { return }
        logger.error("refused \(kind.rawValue) manifest \(version): \(reason)")
        report(kind, "refused", version: version, reason: "\(code): \(reason)")
    }

    // MARK: download and install

    private func download(_ kind: UpdateKind, _ manifest: UpdateManifest) {
        let path = options.directory.stagedArtifactPath(kind)
        let have = SlotDirectory.size(of: path)
        if let free = SlotDirectory.freeBytes(at: options.directory.stagingPath(kind)),
           free < manifest.length - min(have, manifest.length) + options.freeSpaceMargin {
            failDownload(kind, manifest, reason: "disk-full: \(manifest.length - min(have, manifest.length)) bytes needed, \(free) free (margin \(options.freeSpaceMargin))")
            return nextKind()
        }
        if have > 0 { logger.notice("resuming \(kind.rawValue) \(manifest.version) at byte \(have) of \(manifest.length)") }
        fetcher?.download(options.baseURL + manifest.artifactName, to: path, expectedLength: Int(clamping: manifest.length)) { [weak self] outcome in
            guard let self, !self.stopped else { return }
            switch outcome {
            case .complete:
                self.downloaded(kind, manifest)
            case .failed(let failure):
                switch failure.reason {
                case .oversize, .lengthMismatch:
                    self.failDownload(kind, manifest, reason: "\(failure.reason.code): \(failure.message)")
                default:
                    // Outage, server error, bad range: keep what is consistent and resume at the next poll.
                    self.logger.warning("download of \(kind.rawValue) \(manifest.version) stopped (\(failure.keptBytes) bytes kept): \(failure)")
                }
                self.nextKind()
            }
        }
    }

    private func downloaded(_ kind: UpdateKind, _ manifest: UpdateManifest) {
        let path = options.directory.stagedArtifactPath(kind)
        guard SlotDirectory.matches(path, manifest) else {
            failDownload(kind, manifest, reason: "hash-mismatch: the download does not match the signed length and SHA-256")
            return nextKind()
        }
        logger.notice("\(kind.rawValue) \(manifest.version) downloaded and verified")
        switch kind {
        case .firmware:
            execute(store.on(.downloadVerified(version: manifest.version)))
            // A reboot stops the loop; otherwise continue with the other kinds.
            if !stopped { nextKind() }
        case .experiment:
            installExperiment(manifest)
            nextKind()
        case .certificates:
            installCertificates(manifest)
            nextKind()
        }
    }

    private func failDownload(_ kind: UpdateKind, _ manifest: UpdateManifest, reason: String) {
        logger.error("\(kind.rawValue) \(manifest.version) failed: \(reason)")
        try? options.directory.clearStaging(kind)
        switch kind {
        case .firmware:
            execute(store.on(.downloadFailed(reason: reason)))
        case .experiment, .certificates:
            // Remembered so the release is never fetched again (it stays "accepted", not installed).
            try? options.directory.markFailed(kind, version: manifest.version)
            report(kind, "download-failed", version: manifest.version, reason: reason)
        }
    }

    private func installExperiment(_ manifest: UpdateManifest) {
        let staged = options.directory.stagedArtifactPath(.experiment)
        let target = options.directory.experimentPath(version: manifest.version)
        do {
            try AtomicFile.write(try AtomicFile.read(staged), to: target, mode: AtomicFile.publicMode)
            do { try validateExperiment?(target) } catch {
                unlink(target)
                failDownload(.experiment, manifest, reason: "invalid-experiment: \(error)")
                return
            }
            var versions = try options.directory.versions(of: .experiment)
            versions.installed = manifest.version
            versions.floor = max(versions.floor, manifest.floor)
            try options.directory.persist(versions, of: .experiment)
            try options.directory.clearStaging(.experiment)
            report(.experiment, "installed", version: manifest.version)
            applyExperiment?(target)
        } catch {
            logger.error("cannot install experiment \(manifest.version): \(error)")
        }
    }

    private func installCertificates(_ manifest: UpdateManifest) {
        let staged = options.directory.stagedArtifactPath(.certificates)
        do {
            let bundle = try AtomicFile.read(staged)
            var checked: DeviceCredentials
            do {
                checked = try DeviceCredentialBundle.validate(bundle, deviceID: options.deviceID, caFile: trustFile, file: staged)
            } catch {
                failDownload(.certificates, manifest, reason: "invalid-certificate: \(error)")
                return
            }
            // A bundle without CA certificates keeps the anchors in use: a routine bundle after a
            // change of CA went back to the provisioned CA file, which the broker no longer matched.
            if checked.authoritiesPEM == nil, let anchors = credentials.current.caFile { checked.authoritiesPEM = try AtomicFile.read(anchors) }
            try credentials.installPending(checked, version: manifest.version)
            report(.certificates, "installed", version: manifest.version, reason: "used from the next connection")
            credentialsChanged?()
        } catch {
            logger.error("cannot install certificates \(manifest.version): \(error)")
        }
    }

    // MARK: slot actions

    /// Runs the slot store's actions in order; false when one failed (later ones are skipped).
    /// An install runs after the rest of its list (the "verified" report), then its own actions.
    @discardableResult
    private func execute(_ actions: [SlotAction], staging: (manifest: [UInt8], signature: [UInt8])? = nil) -> Bool {
        var install: (Slot, UInt64)?
        var persisted: UInt64?
        for (index, action) in actions.enumerated() {
            do {
                switch action {
                case .persist(let state):
                    try outbox.persist(state, action: index, of: actions, in: options.directory)
                    persisted = state.generation
                case .prepareStaging:
                    try options.directory.clearStaging(.firmware)
                    if let staging { try options.directory.stage(manifest: staging.manifest, signature: staging.signature, for: .firmware) }
                case .resumeDownload, .start:
                    break  // the next poll resumes a download; only `daqlink boot` starts slots
                case .install(let slot, let version):
                    install = (slot, version)
                case .reboot:
                    stop()
                    reboot?("firmware update: \(store.state.inactive)")
                case .report(let slotReport):
                    report(.firmware, slotReport.status, version: slotReport.version, slot: slotReport.slot, reason: slotReport.reason,
                           bootGeneration: persisted)
                case .ignored(let why):
                    logger.info("slot store: \(why)")
                }
            } catch {
                logger.error("OTA step \(action) failed: \(error)")
                return false
            }
        }
        guard let (slot, version) = install else { return true }
        do {
            try SlotInstaller.install(directory: options.directory, slot: slot, version: version)
        } catch {
            return execute(store.on(.downloadFailed(reason: "install failed: \(error)")))
        }
        return execute(store.on(.installed(version: version)))
    }

    private func report(_ kind: UpdateKind, _ status: String, version: UInt64, slot: Slot? = nil, reason: String? = nil,
                        bootGeneration: UInt64? = nil, serial: String? = nil) {
        do {
            try outbox.append(kind: kind, status: status, version: version, slot: slot, reason: reason, time: wallClock(),
                              bootGeneration: bootGeneration, serial: serial)
            reportsAdded?()
        } catch {
            logger.error("cannot record OTA status \(status): \(error)")
        }
    }
}
