import FlashBackend
import Testing

/// The fleet's shared values (the record of a purge of an external payments queue lives there),
/// run against every backend: what one process sets, another reads; a replacement that expects
/// a value another process has since changed does nothing.
@Suite("Fleet values contract")
struct FleetValuesContractTests {
    @Test(arguments: OrderBackend.allCases)
    func aValueSetByOneProcessIsReadByAnotherAndReplacedOnlyIfUnchanged(_ backend: OrderBackend) async throws {
        let store = try await backend.makeStore()
        try await store.with { first in
            try await store.with { second in
                #expect(try await second.fleet.value(named: "purge") == nil)
                try await first.fleet.setValue("one", named: "purge")
                #expect(try await second.fleet.value(named: "purge") == "one")
                #expect(try await second.fleet.replaceValue(named: "purge", from: "one", to: "two"))
                // The first process's view is stale now: its replacement is refused.
                #expect(try await first.fleet.replaceValue(named: "purge", from: "one", to: "three") == false)
                #expect(try await first.fleet.value(named: "purge") == "two")
                #expect(try await first.fleet.replaceValue(named: "missing", from: "one", to: "two") == false)
                #expect(try await first.fleet.value(named: "missing") == nil)
                try await second.fleet.setValue("four", named: "purge")
                #expect(try await first.fleet.value(named: "purge") == "four")
            }
        }
    }
}
