import FlashCore
import Testing

@Suite("Secure random")
struct SecureRandomTests {
    @Test func wordsNeverRepeatAcrossManyBufferRefillsAndFromManyTasks() async throws {
        // 4 tasks × 5,000 words = 20,000 words, about 40 refills of the 512-word buffer. Among
        // 64-bit random words a repeat is a ~1e-11 event; a buffer handed out twice, or not
        // refilled, repeats at once.
        let words = await withTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    var generator = SecureRandom()
                    return (0..<5_000).map { _ in generator.next() }
                }
            }
            return await group.reduce(into: [UInt64]()) { $0 += $1 }
        }
        #expect(words.count == 20_000)
        #expect(Set(words).count == words.count)
        // Every bit position takes both values (a zeroed or constant buffer would not).
        let ones = (0..<64).map { bit in words.filter { $0 & (1 << UInt64(bit)) != 0 }.count }
        #expect(ones.allSatisfy { (9_000...11_000).contains($0) })
    }

    @Test func idsFromItAreDistinctVersion7UUIDs() {
        let ids = (0..<2_000).map { _ in TimeOrderedID.make() }
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy { $0.count == 36 && $0[$0.index($0.startIndex, offsetBy: 14)] == "7" })
    }
}
