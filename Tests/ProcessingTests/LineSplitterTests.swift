import Testing
@testable import Processing

/// `LineSplitter`: lines from bytes in any split, bounded.
@Suite("Line splitter")
struct LineSplitterTests {
    /// Feeds `chunks`, then finishes; the lines it gave.
    static func lines(_ chunks: [String]) -> [String] {
        var splitter = LineSplitter()
        var lines: [String] = []
        let collect = { (line: UnsafeRawBufferPointer) in lines.append(String(decoding: line, as: UTF8.self)) }
        for chunk in chunks { Array(chunk.utf8).withUnsafeBytes { splitter.feed($0, line: collect) } }
        splitter.finish(line: collect)
        return lines
    }

    @Test("lines in one chunk, across chunks, and a last one without a newline")
    func splits() {
        #expect(Self.lines(["a\nbb\nccc\n"]) == ["a\n", "bb\n", "ccc\n"])
        #expect(Self.lines(["a", "b\nc", "d\n", "\n"]) == ["ab\n", "cd\n", "\n"])
        #expect(Self.lines(["x\ny"]) == ["x\n", "y\n"])
        #expect(Self.lines([]) == [])
    }

    @Test("a line longer than the limit comes out in pieces of the limit, each ended")
    func longLine() {
        let long = String(repeating: "z", count: LineSplitter.lineLimit * 2 + 5)
        let chunks = stride(from: 0, to: long.count, by: 1000).map { start in
            String(long.dropFirst(start).prefix(1000))
        } + ["\n"]
        let lines = Self.lines(chunks)
        #expect(lines.map(\.count) == [LineSplitter.lineLimit + 1, LineSplitter.lineLimit + 1, 6])
        #expect(lines.allSatisfy { $0.hasSuffix("\n") })
        let exact = String(repeating: "e", count: LineSplitter.lineLimit) + "\n"
        #expect(Self.lines([exact]).count == 1, "a line of exactly the limit left an empty one behind")
        #expect(Self.lines([String(exact.dropLast()), "\n"]).count == 1)
    }
}
