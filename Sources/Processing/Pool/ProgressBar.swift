import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A ready-made progress display for a pool map (`progressBar(_:)`), drawn on stderr: on a
/// terminal, one bar redrawn in place (`squares  [██████······]  250/1000 25%  ETA 9s  83.2 items/s`), at
/// most ten times a second and once at the end; otherwise plain lines, one per tenth done
/// and one at the end, so a log file gets a few lines rather than a thousand.
///
/// Written through the library's stderr forwarder: a stderr nobody reads never holds the map.
final class ProgressBar: Sendable {
    private struct State {
        var lastDraw: ContinuousClock.Instant?
        var lastTenth = -1
        var finished = false
    }

    private let title: String
    private let start = ContinuousClock.now
    private let isTerminal: Bool
    private let width: Int
    private let state = Mutex(State())

    init(title: String, isTerminal: Bool = Syscall.isTerminal(STDERR_FILENO), width: Int = Syscall.terminalWidth(STDERR_FILENO) ?? 80) {
        self.title = title
        self.isTerminal = isTerminal
        self.width = width
    }

    /// Shows `progress` (from the map's progress handler).
    func update(_ progress: PoolProgress, now: ContinuousClock.Instant = .now) {
        let text: String? = state.withLock { state in
            guard !state.finished else { return nil }
            let done = progress.total.map { progress.completed >= $0 } ?? false
            if isTerminal {
                if !done, let last = state.lastDraw, now - last < .milliseconds(100) { return nil }
                state.lastDraw = now
                state.finished = done
                return "\r\u{1B}[K" + line(progress, now: now) + (done ? "\n" : "")
            }
            let tenth = progress.fractionCompleted.map { Int($0 * 10) } ?? (progress.completed / 1000)
            guard done || tenth > state.lastTenth else { return nil }
            state.lastTenth = tenth
            state.finished = done
            return line(progress, now: now) + "\n"
        }
        guard let text else { return }
        Array(text.utf8).withUnsafeBytes { OutputForwarder.standardError.forward($0, whole: true) }
    }

    /// `squares  [██████······]  250/1000 25%  ETA 9s  83.2 items/s`.
    func line(_ progress: PoolProgress, now: ContinuousClock.Instant) -> String {
        let elapsed = (now - start).seconds
        let rate = elapsed > 0 ? Double(progress.completed) / elapsed : 0
        var parts = [title.isEmpty ? nil : title]
        if let fraction = progress.fractionCompleted, let total = progress.total {
            let barWidth = max(10, min(40, width - title.count - 40))
            let filled = min(barWidth, Int((fraction * Double(barWidth)).rounded(.down)))
            parts.append("[" + String(repeating: "█", count: filled) + String(repeating: "·", count: barWidth - filled) + "]")
            parts.append("\(progress.completed)/\(total) \(Int(fraction * 100))%")
            if progress.completed < total, rate > 0 {
                parts.append("ETA " + Self.duration(Double(total - progress.completed) / rate))
            }
        } else {
            parts.append("\(progress.completed)/?")
        }
        parts.append(String(format: "%.1f items/s", rate))
        if progress.failed > 0 { parts.append("\(progress.failed) failed") }
        return parts.compactMap { $0 }.joined(separator: "  ")
    }

    /// `9s`, `4m05s`, `2h03m`.
    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded(.up))
        if whole < 60 { return "\(whole)s" }
        if whole < 3600 { return "\(whole / 60)m" + String(format: "%02d", whole % 60) + "s" }
        return "\(whole / 3600)h" + String(format: "%02d", whole % 3600 / 60) + "m"
    }
}

extension Modifiable where Base: PoolMapping {
    /// The same map, showing a progress bar on stderr: redrawn in place on a terminal (done,
    /// total, rate, time left), a line per tenth done otherwise. Replaces a `progress` handler.
    ///
    /// ```swift
    /// let squares = try await pool.map.progressBar("squares")(1...10_000, Square())
    /// ```
    public func progressBar(_ title: String = "") -> Modifiable<Base, Form> {
        var settings = base.settings
        settings.progressBarTitle = title
        return Modifiable(base.with(settings), name: name, limit: limit, currentRun: currentRun)
    }
}
