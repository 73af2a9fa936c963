import Synchronization

/// Copies of the bytes this process's channels send and receive, while someone records them:
/// how the tests check that a secret never enters a frame. In debug builds (the tests'), it
/// costs one relaxed atomic load per frame sent and per read when no one records; in release
/// builds `isRecording` is a constant false, and the hot paths carry nothing of it.
enum FrameTap {
    private static let recorders = Atomic<Int>(0)
    private static let recorded = Mutex<[UInt8]>([])

    #if DEBUG
    /// Whether this build can record (a test that needs it is skipped otherwise).
    static let isAvailable = true
    static var isRecording: Bool { recorders.load(ordering: .relaxed) > 0 }
    #else
    static let isAvailable = false
    @inline(__always) static var isRecording: Bool { false }
    #endif

    static func record(_ bytes: UnsafeRawBufferPointer) {
        recorded.withLock { $0.append(contentsOf: bytes) }
    }

    /// Runs `body` and returns every byte any channel of this process sent or received
    /// meanwhile (other work running at the same time included).
    static func recording<T>(_ body: () async throws -> T) async rethrows -> (T, [UInt8]) {
        recorders.add(1, ordering: .relaxed)
        defer {
            if recorders.subtract(1, ordering: .relaxed).newValue == 0 { recorded.withLock { $0 = [] } }
        }
        let value = try await body()
        return (value, recorded.withLock { $0 })
    }
}
