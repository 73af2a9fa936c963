import CProcessingShims

/// How a worker exits: 0 when it sent its result, else why it could not report through its
/// channel. The numbers are the C header's `processing_worker_exit`, so that the constructor's
/// exits (before Swift runs) and Swift's are one list.
enum WorkerExitCode {
    case finished
    case channelEnded
    case resultUnsent
    case poolBroken
    case badMarker
    case parentDied
    case noControlChannel
    case channelUnusable
    case noContext
    case buildMismatch

    /// The exit status.
    var status: Int32 {
        switch self {
        case .finished: 0
        case .channelEnded: Int32(PROCESSING_EXIT_CHANNEL_ENDED.rawValue)
        case .resultUnsent: Int32(PROCESSING_EXIT_RESULT_UNSENT.rawValue)
        case .poolBroken: Int32(PROCESSING_EXIT_POOL_BROKEN.rawValue)
        case .badMarker: Int32(PROCESSING_EXIT_BAD_MARKER.rawValue)
        case .parentDied: Int32(PROCESSING_EXIT_PARENT_DIED.rawValue)
        case .noControlChannel: Int32(PROCESSING_EXIT_NO_CONTROL_CHANNEL.rawValue)
        case .channelUnusable: Int32(PROCESSING_EXIT_CHANNEL_UNUSABLE.rawValue)
        case .noContext: Int32(PROCESSING_EXIT_NO_CONTEXT.rawValue)
        case .buildMismatch: Int32(PROCESSING_EXIT_BUILD_MISMATCH.rawValue)
        }
    }
}
