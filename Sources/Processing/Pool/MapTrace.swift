import Dispatch
import Foundation
import Synchronization

/// What a pool map did, worker by worker, for `trace(to:)`: each worker's start (spawn to
/// ready) and each batch it ran (its items, how long, how it ended), written when the map
/// ends as Chrome's trace event JSON (Perfetto and chrome://tracing open it) and as an SVG
/// timeline any browser shows.
final class MapTrace: Sendable {
    /// One bar of the timeline.
    struct Span: Sendable, Equatable {
        enum Kind: String, Sendable {
            case start
            case batch
        }

        let kind: Kind
        let worker: Int32
        /// Microseconds from the map's start.
        let begin: Int64
        let end: Int64
        /// For a batch: the positions of its items in the input.
        var items: ClosedRange<Int>?
        /// For a batch that failed: why.
        var failure: String?
    }

    let path: String
    private let origin: ContinuousClock.Instant
    private let spans = Mutex<(spans: [Span], workers: [Int32])>(([], []))

    init(path: String, origin: ContinuousClock.Instant = .now) {
        self.path = path
        self.origin = origin
    }

    private func offset(_ instant: ContinuousClock.Instant) -> Int64 {
        let (seconds, attoseconds) = (instant - origin).components
        return max(0, seconds * 1_000_000 + attoseconds / 1_000_000_000_000)
    }

    /// A worker ran a batch of this map: the first time, its start is recorded too.
    func saw(worker pid: Int32, launched: ContinuousClock.Instant, ready: ContinuousClock.Instant?) {
        spans.withLock { state in
            guard !state.workers.contains(pid) else { return }
            state.workers.append(pid)
            if let ready, ready > origin {
                state.spans.append(Span(kind: .start, worker: pid, begin: offset(launched), end: offset(ready)))
            }
        }
    }

    func batch(worker pid: Int32, from begin: ContinuousClock.Instant, to end: ContinuousClock.Instant,
               items: ClosedRange<Int>, failure: String?) {
        let span = Span(kind: .batch, worker: pid, begin: offset(begin), end: offset(end), items: items, failure: failure)
        spans.withLock { $0.spans.append(span) }
    }

    /// What was recorded: the spans in the order they ended, and the workers in the order
    /// they first ran a batch.
    var recorded: (spans: [Span], workers: [Int32]) { spans.withLock { $0 } }

    // MARK: Writing

    /// Writes the JSON to `path` and the SVG beside it (`.svg` for its extension), off the
    /// cooperative pool. A failure is logged (`log`), not thrown: the map's results stand.
    func write() async {
        let (json, svg) = (chromeJSON(), svgTimeline())
        let path = path
        let svgPath = (path as NSString).deletingPathExtension + ".svg"
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                do {
                    try json.write(to: URL(fileURLWithPath: path))
                    try Data(svg.utf8).write(to: URL(fileURLWithPath: svgPath))
                } catch {
                    log("the trace of a pool map could not be written to \(path): \(error)", level: .warning)
                }
                continuation.resume()
            }
        }
    }

    private static func label(_ items: ClosedRange<Int>) -> String {
        items.count == 1 ? "item \(items.lowerBound)" : "items \(items.lowerBound)–\(items.upperBound)"
    }

    /// Chrome's trace event format: one process, one thread (lane) per worker.
    func chromeJSON() -> Data {
        let (spans, workers) = recorded
        var events: [[String: Any]] = [["name": "process_name", "ph": "M", "pid": 1, "args": ["name": "pool map"]]]
        for (index, worker) in workers.enumerated() {
            events.append(["name": "thread_name", "ph": "M", "pid": 1, "tid": Int(worker), "args": ["name": "worker \(worker)"]])
            events.append(["name": "thread_sort_index", "ph": "M", "pid": 1, "tid": Int(worker), "args": ["sort_index": index]])
        }
        for span in spans {
            var event: [String: Any] = ["ph": "X", "pid": 1, "tid": Int(span.worker), "ts": span.begin,
                                        "dur": max(1, span.end - span.begin), "cat": span.kind.rawValue]
            switch span.kind {
            case .start:
                event["name"] = "spawn"
            case .batch:
                let items = span.items ?? 0...0
                event["name"] = span.failure == nil ? Self.label(items) : "failed: " + Self.label(items)
                var args: [String: Any] = ["first": items.lowerBound, "last": items.upperBound, "count": items.count]
                if let failure = span.failure { args["failure"] = failure }
                event["args"] = args
            }
            events.append(event)
            if let failure = span.failure {
                events.append(["name": "failure", "ph": "i", "s": "t", "pid": 1, "tid": Int(span.worker), "ts": span.end,
                               "args": ["failure": failure]])
            }
        }
        let object: [String: Any] = ["traceEvents": events, "displayTimeUnit": "ms"]
        return (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])) ?? Data()
    }

    /// The same timeline as an SVG: a lane per worker, starts in grey, batches in blue, failed
    /// batches in red, a time axis in milliseconds.
    func svgTimeline() -> String {
        let (spans, workers) = recorded
        let end = max(1, spans.map(\.end).max() ?? 1)
        let (left, top, laneHeight, width) = (110.0, 30.0, 28.0, 900.0)
        let height = top + Double(workers.count) * laneHeight + 70
        func x(_ microseconds: Int64) -> Double { left + Double(microseconds) / Double(end) * width }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(left + width + 20))" height="\(Int(height))" \
            font-family="Helvetica, Arial, sans-serif" font-size="11">
            <rect width="100%" height="100%" fill="white"/>
            <text x="10" y="18" font-size="13" font-weight="bold">Pool map: \(spans.filter { $0.kind == .batch }.count) batches on \(workers.count) workers, \(String(format: "%.1f", Double(end) / 1000)) ms</text>

            """
        for (lane, worker) in workers.enumerated() {
            let y = top + Double(lane) * laneHeight
            svg += "<text x=\"10\" y=\"\(y + 18)\">worker \(worker)</text>\n"
            svg += "<line x1=\"\(left)\" y1=\"\(y + laneHeight - 2)\" x2=\"\(left + width)\" y2=\"\(y + laneHeight - 2)\" stroke=\"#eee\"/>\n"
            for span in spans where span.worker == worker {
                let color = span.kind == .start ? "#bbbbbb" : span.failure == nil ? "#4a7fd4" : "#d9534f"
                let title = span.kind == .start ? "spawn" : (span.failure.map { "failed: \($0) " } ?? "") + Self.label(span.items ?? 0...0)
                let barWidth = max(0.5, x(span.end) - x(span.begin))
                svg += "<rect x=\"\(x(span.begin))\" y=\"\(y + 4)\" width=\"\(barWidth)\" height=\"\(laneHeight - 10)\" fill=\"\(color)\" stroke=\"white\" stroke-width=\"0.5\">"
                svg += "<title>\(Self.escaped(title)) (\(String(format: "%.2f", Double(span.end - span.begin) / 1000)) ms)</title></rect>\n"
                if let items = span.items, barWidth > 36 {
                    let text = items.count == 1 ? "\(items.lowerBound)" : "\(items.lowerBound)–\(items.upperBound)"
                    svg += "<text x=\"\(x(span.begin) + barWidth / 2)\" y=\"\(y + 17)\" text-anchor=\"middle\" fill=\"white\" font-size=\"10\">\(text)</text>\n"
                }
            }
        }
        let axis = top + Double(workers.count) * laneHeight + 12
        for tick in 0...5 {
            let at = Int64(Double(end) * Double(tick) / 5)
            svg += "<text x=\"\(x(at))\" y=\"\(axis + 12)\" text-anchor=\"middle\" fill=\"#555\">\(String(format: "%.1f", Double(at) / 1000)) ms</text>\n"
            svg += "<line x1=\"\(x(at))\" y1=\"\(top)\" x2=\"\(x(at))\" y2=\"\(axis)\" stroke=\"#ddd\" stroke-dasharray=\"2,3\"/>\n"
        }
        let legend = axis + 30
        for (index, (color, name)) in [("#bbbbbb", "spawn"), ("#4a7fd4", "batch (its items)"), ("#d9534f", "failed batch")].enumerated() {
            let at = left + Double(index) * 150
            svg += "<rect x=\"\(at)\" y=\"\(legend - 10)\" width=\"12\" height=\"12\" fill=\"\(color)\"/>"
            svg += "<text x=\"\(at + 18)\" y=\"\(legend)\">\(name)</text>\n"
        }
        svg += "</svg>\n"
        return svg
    }

    private static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

extension Modifiable where Base: PoolMapping {
    /// The same map, writing its timeline when it ends: Chrome's trace event JSON to `path`
    /// (open it in Perfetto or chrome://tracing), and an SVG of it beside (`path` with the
    /// extension `.svg`). One lane per worker: its start, then each batch with its items;
    /// failed batches say why.
    ///
    /// ```swift
    /// let squares = try await pool.map.trace(to: "squares.json")(1...10_000, Square())
    /// ```
    public func trace(to path: String) -> Modifiable<Base, Form> {
        var settings = base.settings
        settings.tracePath = path
        return Modifiable(base.with(settings), name: name, limit: limit, currentRun: currentRun)
    }
}
