// Standalone: Dispatch read sources on sockets whose peers hang up, cancelled from their
// handlers, descriptors closed in the cancel handlers and their numbers reused at once;
// the pattern of a process runtime whose children exit. Counts rounds done; a crash of
// libdispatch's manager thread ends the process with SIGSEGV.
//
//     swiftc -O Scripts/dispatch-churn.swift -o churn && ./churn 100000
//
// Exits 0 when every round finished, 3 when one stalled (a source that never fired again, or
// a cancel handler that never ran), 139 on a crash. BENCHMARKS.md, "Runtime", has the counts.
import Dispatch
import Glibc

let rounds = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 20_000
let lanes = 8
let done = DispatchGroup()
let counter = UnsafeMutablePointer<Int>.allocate(capacity: lanes)
counter.initialize(repeating: 0, count: lanes)

func round(lane: Int, queue: DispatchQueue, left: Int) {
    guard left > 0 else { return done.leave() }
    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0 else { fatalError("socketpair") }
    let (ours, peer) = (fds[0], fds[1])
    let reader = DispatchSource.makeReadSource(fileDescriptor: ours, queue: queue)
    let writer = DispatchSource.makeWriteSource(fileDescriptor: ours, queue: queue)
    reader.setEventHandler {
        // Read until the socket is empty: after a hang-up Linux Dispatch does not fire again
        // for the end of file still to be read (a read that stops early waits for ever).
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let count = read(ours, &buffer, buffer.count)
            if count > 0 { continue }
            if count == 0 || errno != EAGAIN { reader.cancel(); writer.cancel() }
            return
        }
    }
    writer.setEventHandler { writer.cancel() }   // writable once, as a send that went out
    let closer = DispatchGroup()
    closer.enter(); closer.enter()
    reader.setCancelHandler { closer.leave() }
    writer.setCancelHandler { closer.leave() }
    closer.notify(queue: queue) {
        close(ours)
        counter[lane] += 1
        round(lane: lane, queue: queue, left: left - 1)
    }
    reader.activate()
    writer.activate()
    DispatchQueue.global().async {
        let bytes: [UInt8] = [1, 2, 3]
        _ = write(peer, bytes, bytes.count)
        close(peer)   // hang up: the reader sees EOF, or EPOLLHUP first
    }
}

for lane in 0..<lanes {
    done.enter()
    let queue = DispatchQueue(label: "lane \(lane)")
    queue.async { round(lane: lane, queue: queue, left: rounds / lanes) }
}
let finished = done.wait(timeout: .now() + 120)
var total = 0
for lane in 0..<lanes { total += counter[lane] }
print(finished == .success ? "finished: \(total) rounds" : "stuck after \(total) rounds (a source never fired or never cancelled)")
exit(finished == .success ? 0 : 3)
