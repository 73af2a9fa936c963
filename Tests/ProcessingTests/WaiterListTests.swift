import Testing
@testable import Processing

/// `WaiterList`, the one waiter type of the state machines: ids, cancellation in either order.
@Suite("Waiter list")
struct WaiterListTests {
    @Test("waiters are taken in the order they came; ids are never reused")
    func order() {
        var list = WaiterList<String>()
        let ids = (0..<3).map { _ in list.makeID() }
        #expect(Set(ids).count == 3)
        for (id, name) in zip(ids, ["a", "b", "c"]) { _ = list.register(name, id: id, cancelled: false) }
        #expect(list.takeFirst() == "a")
        #expect(list.takeAll() == ["b", "c"])
        #expect(list.isEmpty && list.takeFirst() == nil)
    }

    @Test("a cancellation before the wait registers refuses it; one after withdraws it, once")
    func cancellation() {
        var list = WaiterList<String>()
        let early = list.makeID()
        #expect(list.withdraw(early) == nil, "the handler ran first and found nothing")
        let registered = list.register("early", id: early, cancelled: true)
        #expect(!registered && list.count == 0)
        let late = list.makeID()
        _ = list.register("late", id: late, cancelled: false)
        #expect(list.withdraw(late) == "late")
        #expect(list.withdraw(late) == nil)
        #expect(list.takeAll().isEmpty)
    }
}
