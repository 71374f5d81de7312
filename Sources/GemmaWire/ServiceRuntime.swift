import Logging
import ServiceLifecycle

/// What every service executable does around its own work: check and apply `--log-level`
/// (lines to standard error), and run its services until SIGTERM or SIGINT, then shut them
/// down gracefully.
public enum ServiceRuntime {
    /// nil when `name` is a log level, else the message for `--log-level` listing the levels.
    public static func logLevelProblem(_ name: String) -> String? {
        Logger.Level(rawValue: name) == nil
            ? "--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))" : nil
    }

    /// Sends every logger's lines at `levelName` (a checked level; info otherwise) and above to
    /// standard error, and returns the process's logger.
    public static func bootstrapLogging(levelName: String, label: String) -> Logger {
        let level = Logger.Level(rawValue: levelName) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }

    /// Runs `services` until SIGTERM or SIGINT, then shuts them down gracefully.
    public static func runUntilSignalled(_ services: [any Service], logger: Logger) async throws {
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
