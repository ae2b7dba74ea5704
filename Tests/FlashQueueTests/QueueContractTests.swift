import FlashCore
import FlashQueue
import Foundation
import Testing

/// The SQS contract (docs/ARCHITECTURE.md, "The queue"), written once and run against every backend.
@Suite("Queue contract")
struct QueueContractTests {
    static let fast = QueueAttributes(visibilityTimeout: .milliseconds(200))

    /// Receives (each message leased for 60 s) until a receive comes back empty: every message
    /// visible now. For a ``ManualTime``, which stands still, so no lease taken here runs out
    /// within the loop; at most 20 rounds, so that a lease that does not hide its message fails
    /// the test rather than hanging it.
    static func receiveAllVisible(_ queue: any MessageQueue) async throws -> [ReceivedMessage] {
        var all: [ReceivedMessage] = []
        for _ in 0..<20 {
            let batch = try await queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(60))
            if batch.isEmpty { break }
            all += batch
        }
        return all
    }

    @Test(arguments: QueueBackend.allCases)
    func sendThenReceiveReturnsTheBodyOnce(_ backend: QueueBackend) async throws {
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("orders", Self.fast)
            let id = try await queue.send("hello ✓ \"quoted\"")
            let received = try await queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30))
            #expect(received.count == 1)
            #expect(received.first?.messageID == id)
            #expect(received.first?.body == "hello ✓ \"quoted\"")
            #expect(received.first?.receiveCount == 1)
            // Leased: not delivered again while the lease runs.
            #expect(try await queue.receive(maxMessages: 10, wait: .zero).isEmpty)
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func expiredLeaseRedeliversWithAHigherReceiveCount(_ backend: QueueBackend) async throws {
        let time = ManualTime()
        try await withHarness(backend, time: time.source) { harness in
            let queue = try await harness.queue("work", Self.fast)
            let id = try await queue.send("job")
            let first = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .milliseconds(100))
            #expect(first.map(\.messageID) == [id])
            let second: [ReceivedMessage]
            if backend == .sqs {
                // SQS keeps its own, real time (the lease is 1 s there): only a lease that never
                // ran out leaves this 20 s long poll empty, however slow the machine.
                second = try await queue.receive(maxMessages: 1, wait: .seconds(20), visibilityTimeout: .seconds(30))
            } else {
                // Hidden until the last millisecond of the lease, visible at its end.
                time.advance(by: .milliseconds(99))
                #expect(try await queue.receive(maxMessages: 1, wait: .zero).isEmpty)
                time.advance(by: .milliseconds(1))
                second = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(30))
            }
            #expect(second.map(\.messageID) == [id])
            #expect(second.first?.receiveCount == 2)
            #expect(second.first?.receiptHandle != first.first?.receiptHandle)
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func statisticsSayWhenTheLastLeaseInFlightEnds(_ backend: QueueBackend) async throws {
        // SQS does not say (its attributes count messages only): nil there.
        let time = ManualTime()
        try await withHarness(backend, time: time.source) { harness in
            let queue = try await harness.queue("leases", Self.fast)
            #expect(try await queue.statistics().leasesEndInSeconds == (backend == .sqs ? nil : 0))
            _ = try await queue.sendBatch([OutgoingMessage("a"), OutgoingMessage("b"), OutgoingMessage("c")])
            _ = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(10))
            _ = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(30))
            guard backend != .sqs else {
                #expect(try await queue.statistics().leasesEndInSeconds == nil)
                return
            }
            #expect(try await queue.statistics().leasesEndInSeconds == 30)
            time.advance(by: .seconds(5))
            #expect(try await queue.statistics().leasesEndInSeconds == 25)
            time.advance(by: .seconds(25))
            // Every lease over: nothing in flight.
            let after = try await queue.statistics()
            #expect(after.inFlight == 0)
            #expect(after.leasesEndInSeconds == 0)
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func staleReceiptCannotDeleteOrExtendTheNewDelivery(_ backend: QueueBackend) async throws {
        // SQS differs: AWS documents only that the latest receipt handle works; an older one may
        // still delete or extend (moto lets it). Consumers on SQS are idempotent for this reason.
        guard backend != .sqs else { return }
        let time = ManualTime()
        try await withHarness(backend, time: time.source) { harness in
            let queue = try await harness.queue("work", Self.fast)
            _ = try await queue.send("job")
            let stale = try #require(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .milliseconds(50)).first)
            time.advance(by: .milliseconds(49))
            #expect(try await queue.receive(maxMessages: 1, wait: .zero).isEmpty)
            time.advance(by: .milliseconds(1))
            let fresh = try #require(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(30)).first)
            await #expect(throws: QueueError.receiptHandleInvalid(stale.receiptHandle.rawValue)) {
                try await queue.delete(stale.receiptHandle)
            }
            await #expect(throws: QueueError.receiptHandleInvalid(stale.receiptHandle.rawValue)) {
                try await queue.changeVisibility(stale.receiptHandle, timeout: .zero)
            }
            let stats = try await queue.statistics()
            #expect(stats.inFlight == 1)
            #expect(stats.visible == 0)
            try await queue.delete(fresh.receiptHandle)
            #expect(try await queue.statistics().total == 0)
            // Deleting twice is refused: the delivery is gone.
            await #expect(throws: QueueError.self) { try await queue.delete(fresh.receiptHandle) }
            await #expect(throws: QueueError.self) { try await queue.delete(ReceiptHandle("garbage")) }
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func bodiesWithCharactersSQSRefusesAreRefusedWhole(_ backend: QueueBackend) async throws {
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("work", Self.fast)
            await #expect(throws: QueueError.invalidMessageContents(offset: 3)) { try await queue.send("abc\u{0}def") }
            await #expect(throws: QueueError.invalidMessageContents(offset: 2)) {
                try await queue.sendBatch([OutgoingMessage("fine"), OutgoingMessage("é\u{1}")])
            }
            _ = try await queue.send("tab\tnewline\n✓ 𝄞")
            #expect(try await queue.statistics().total == 1)
        }
    }

    /// Concurrent calls may share a statement (the PostgreSQL backend groups them): each receive
    /// still gets its own messages under its own lease, and in concurrent deletes a stale receipt
    /// fails while the current receipt of the same message succeeds.
    @Test(arguments: QueueBackend.allCases)
    func concurrentCallsKeepTheirOwnLeasesAndReceipts(_ backend: QueueBackend) async throws {
        // SQS differs: a stale receipt may still act there (see the test above).
        guard backend != .sqs else { return }
        let time = ManualTime()
        try await withHarness(backend, time: time.source) { harness in
            let queue = try await harness.queue("work", Self.fast)
            _ = try await queue.sendBatch((0..<10).map { OutgoingMessage("a\($0)") })
            _ = try await queue.sendBatch((0..<10).map { OutgoingMessage("b\($0)") })
            async let shortLease = queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .milliseconds(300))
            async let longLease = queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(60))
            let (short, long) = try await (shortLease, longLease)
            #expect(short.count == 10)
            #expect(long.count == 10)
            #expect(Set(short.map(\.messageID)).isDisjoint(with: long.map(\.messageID)))

            // Only the short leases run out, at their end: exactly those messages come back.
            time.advance(by: .milliseconds(299))
            #expect(try await queue.receive(maxMessages: 10, wait: .zero).isEmpty)
            time.advance(by: .milliseconds(1))
            let again = try await Self.receiveAllVisible(queue)
            #expect(again.count == 10)
            #expect(Set(again.map(\.messageID)) == Set(short.map(\.messageID)))

            // The first call runs alone; the two after it, stale and current receipts of the same
            // messages, may then share one statement.
            async let longDeletes = queue.deleteBatch(long.map(\.receiptHandle))
            async let staleDeletes = queue.deleteBatch(short.map(\.receiptHandle))
            async let currentDeletes = queue.deleteBatch(again.map(\.receiptHandle))
            let (stale, current, longDone) = try await (staleDeletes, currentDeletes, longDeletes)
            #expect(stale.allSatisfy { if case .failure = $0 { true } else { false } })
            #expect(current.allSatisfy { if case .success = $0 { true } else { false } })
            #expect(longDone.allSatisfy { if case .success = $0 { true } else { false } })
            #expect(try await queue.statistics().total == 0)
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func changeVisibilityToZeroGivesTheMessageBack(_ backend: QueueBackend) async throws {
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("work", Self.fast)
            _ = try await queue.send("job")
            let first = try #require(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(60)).first)
            try await queue.changeVisibility(first.receiptHandle, timeout: .zero)
            let again = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(60))
            #expect(again.first?.receiveCount == 2)
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func heartbeatKeepsTheLease(_ backend: QueueBackend) async throws {
        let time = ManualTime()
        try await withHarness(backend, time: time.source) { harness in
            let queue = try await harness.queue("work", Self.fast)
            _ = try await queue.send("job")
            if backend == .sqs {
                // SQS keeps its own, real time, in whole seconds: a 5 s lease, so the heartbeat
                // lands inside it (one loopback call: a generous allowance on a loaded box), then
                // a sleep longer than that lease, so without the heartbeat the message would be
                // visible again at the check; the heartbeat's 60 s are far from over by then.
                let delivery = try #require(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(5)).first)
                try await queue.changeVisibility(delivery.receiptHandle, timeout: .seconds(60))
                try await Task.sleep(for: .seconds(6))
                #expect(try await queue.receive(maxMessages: 1, wait: .zero).isEmpty)
                try await queue.delete(delivery.receiptHandle)
                return
            }
            let delivery = try #require(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .milliseconds(150)).first)
            // The heartbeat, 100 ms into the 150 ms lease: 60 s from now.
            time.advance(by: .milliseconds(100))
            try await queue.changeVisibility(delivery.receiptHandle, timeout: .seconds(60))
            // The first lease has run out; the heartbeat's holds the message.
            time.advance(by: .milliseconds(50))
            #expect(try await queue.receive(maxMessages: 1, wait: .zero).isEmpty)
            // Still held 1 ms before 60 s after the heartbeat (not after the receive).
            time.advance(by: .milliseconds(59_949))
            #expect(try await queue.receive(maxMessages: 1, wait: .zero).isEmpty)
            // The receipt is still the current one.
            try await queue.delete(delivery.receiptHandle)
            #expect(try await queue.statistics().total == 0)
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func messagesReceivedTooOftenMoveToTheDeadLetterQueue(_ backend: QueueBackend) async throws {
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("work", QueueAttributes(visibilityTimeout: .seconds(30), maxReceiveCount: 2))
            let id = try await queue.send("poison")
            for attempt in 1...2 {
                let delivery = try #require(try await queue.receive(maxMessages: 1, wait: .zero).first)
                #expect(delivery.receiveCount == attempt)
                try await queue.changeVisibility(delivery.receiptHandle, timeout: .zero)
            }
            #expect(try await queue.receive(maxMessages: 10, wait: .zero).isEmpty)
            let stats = try await queue.statistics()
            #expect(stats.deadLettered == 1)
            #expect(stats.total == 0)
            let deadLetters = try await harness.existingQueue("work-dlq")
            let dead = try await deadLetters.receive(maxMessages: 10, wait: .zero)
            #expect(dead.map(\.messageID) == [id])
            #expect(dead.first?.body == "poison")
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func delayedMessagesStayHiddenUntilTheirDelayPasses(_ backend: QueueBackend) async throws {
        // SQS keeps its own time: there the delay is real, and long enough (60 s) that the checks
        // below come before it ends however slow the machine; the delay's end is the next test's.
        let time = ManualTime()
        try await withHarness(backend, time: time.source) { harness in
            let queue = try await harness.queue("work", Self.fast)
            let id = try await queue.send("later", delay: backend == .sqs ? .seconds(60) : .seconds(5))
            #expect(try await queue.receive(maxMessages: 1, wait: .zero).isEmpty)
            // SQS's counts are approximate (AWS: eventually consistent, about a minute): not checked there.
            guard backend != .sqs else { return }
            #expect(try await queue.statistics().delayed == 1)
            time.advance(by: .milliseconds(4_999))
            #expect(try await queue.receive(maxMessages: 1, wait: .zero).isEmpty)
            time.advance(by: .milliseconds(1))
            #expect(try await queue.receive(maxMessages: 1, wait: .zero).map(\.messageID) == [id])
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func aLongPollWakesWhenADelayEndsWithoutAnySend(_ backend: QueueBackend) async throws {
        // Real time: the wake-up itself is what is checked. Only a receiver that never woke for
        // the delay's end (nothing else is sent) comes back empty after its 20 s wait.
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("work", Self.fast)
            let id = try await queue.send("later", delay: .seconds(1))
            let received = try await queue.receive(maxMessages: 1, wait: .seconds(20))
            #expect(received.map(\.messageID) == [id])
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func longPollReturnsAsSoonAsAMessageArrives(_ backend: QueueBackend) async throws {
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("work", Self.fast)
            let clock = ContinuousClock()
            let started = clock.now
            async let received = queue.receive(maxMessages: 10, wait: .seconds(20))
            try await Task.sleep(for: .milliseconds(100))
            let id = try await queue.send("wake up")
            let messages = try await received
            #expect(messages.map(\.messageID) == [id])
            // Well before the 20 s wait ran out: the send woke the receiver.
            #expect(clock.now - started < .seconds(10))
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func longPollReturnsEmptyAfterTheWait(_ backend: QueueBackend) async throws {
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("work", Self.fast)
            let clock = ContinuousClock()
            let started = clock.now
            let messages = try await queue.receive(maxMessages: 10, wait: .milliseconds(300))
            #expect(messages.isEmpty)
            #expect(clock.now - started >= .milliseconds(290))
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func messagesPastRetentionAreDroppedAndCounted(_ backend: QueueBackend) async throws {
        // SQS differs: retention is at least 60 s and SQS drops expired messages itself, uncounted.
        guard backend != .sqs else { return }
        let time = ManualTime()
        try await withHarness(backend, time: time.source) { harness in
            let queue = try await harness.queue("work", QueueAttributes(retention: .seconds(2)))
            _ = try await queue.send("old")
            time.advance(by: .milliseconds(1_500))
            let fresh = try await queue.send("new")
            time.advance(by: .milliseconds(501))
            let received = try await queue.receive(maxMessages: 10, wait: .zero)
            #expect(received.map(\.messageID) == [fresh])
            #expect(try await queue.statistics().expired == 1)
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func purgeEmptiesTheQueue(_ backend: QueueBackend) async throws {
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("work", Self.fast)
            _ = try await queue.sendBatch((1...10).map { OutgoingMessage("m\($0)") })
            // Leased for long enough that they are still in flight at the purge, however slow the box.
            _ = try await queue.receive(maxMessages: 3, wait: .zero, visibilityTimeout: .seconds(60))
            try await queue.purge()
            #expect(try await queue.statistics().total == 0)
            #expect(try await queue.receive(maxMessages: 10, wait: .zero).isEmpty)
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func badInputIsRefusedWithATypedErrorAndWritesNothing(_ backend: QueueBackend) async throws {
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("work", Self.fast)
            let eleven = (1...11).map { OutgoingMessage("m\($0)") }
            await #expect(throws: QueueError.invalidBatchSize(11)) { try await queue.sendBatch(eleven) }
            await #expect(throws: QueueError.invalidBatchSize(0)) { try await queue.sendBatch([]) }
            let big = String(repeating: "x", count: 256 * 1024 + 1)
            await #expect(throws: QueueError.bodyTooLarge(bytes: 256 * 1024 + 1, limit: 256 * 1024)) { try await queue.send(big) }
            // One bad entry refuses the whole batch.
            await #expect(throws: QueueError.self) { try await queue.sendBatch([OutgoingMessage("ok"), OutgoingMessage(big)]) }
            await #expect(throws: QueueError.invalidDelay(.seconds(901))) { try await queue.send("x", delay: .seconds(901)) }
            await #expect(throws: QueueError.invalidWait(.seconds(21))) { try await queue.receive(maxMessages: 1, wait: .seconds(21)) }
            await #expect(throws: QueueError.invalidMaxMessages(11)) { try await queue.receive(maxMessages: 11, wait: .zero) }
            await #expect(throws: QueueError.invalidMaxMessages(0)) { try await queue.receive(maxMessages: 0, wait: .zero) }
            await #expect(throws: QueueError.invalidVisibilityTimeout(.seconds(-1))) {
                try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(-1))
            }
            await #expect(throws: QueueError.invalidVisibilityTimeout(.seconds(43_201))) {
                try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(43_201))
            }
            // A lease shorter than a millisecond is no lease: refused, not rounded to zero.
            await #expect(throws: QueueError.invalidVisibilityTimeout(.microseconds(500))) {
                try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .microseconds(500))
            }
            await #expect(throws: QueueError.queueDoesNotExist("nope")) { try await harness.existingQueue("nope") }
            #expect(try await queue.statistics().total == 0)
            // The message of the error says what is wrong.
            #expect(QueueError.bodyTooLarge(bytes: 5, limit: 4).description.contains("limit of 4 bytes"))
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func bodyLimitIsConfigurableUpToOneMebibyte(_ backend: QueueBackend) async throws {
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("big", QueueAttributes(maxBodyBytes: 1024 * 1024))
            let body = String(repeating: "y", count: 1024 * 1024)
            _ = try await queue.send(body)
            #expect(try await queue.receive(maxMessages: 1, wait: .zero).first?.body.utf8.count == 1024 * 1024)
            await #expect(throws: QueueError.self) { try await harness.queue("huge", QueueAttributes(maxBodyBytes: 1024 * 1024 + 1)) }
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func statisticsCountVisibleInFlightAndDelayed(_ backend: QueueBackend) async throws {
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("work", Self.fast)
            _ = try await queue.sendBatch((1...5).map { OutgoingMessage("m\($0)") })
            _ = try await queue.send("later", delay: .seconds(60))
            _ = try await queue.receive(maxMessages: 2, wait: .zero, visibilityTimeout: .seconds(60))
            let stats = try await queue.statistics()
            #expect(stats.visible == 3)
            #expect(stats.inFlight == 2)
            #expect(stats.delayed == 1)
            #expect(stats.deadLettered == 0)
            #expect(stats.oldestAgeSeconds >= 0)
            #expect(stats.oldestAgeSeconds < 60)
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func batchesSendAndDeleteTogether(_ backend: QueueBackend) async throws {
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("work", Self.fast)
            let ids = try await queue.sendBatch((1...10).map { OutgoingMessage("m\($0)") })
            #expect(Set(ids).count == 10)
            let received = try await queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(60))
            #expect(Set(received.map(\.messageID)) == Set(ids))
            var receipts = received.map(\.receiptHandle)
            receipts[0] = ReceiptHandle("not-a-receipt")
            let results = try await queue.deleteBatch(receipts)
            #expect(results.count == 10)
            #expect(results.filter { (try? $0.get()) != nil }.count == 9)
            #expect(try await queue.statistics().inFlight == 1)
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func reopeningKeepsEveryUnacknowledgedMessage(_ backend: QueueBackend) async throws {
        let time = ManualTime()
        let harness = try await backend.makeHarness(time: time.source)
        let queue = try await harness.queue("durable", QueueAttributes(visibilityTimeout: .milliseconds(100)))
        let ids = try await queue.sendBatch((1...5).map { OutgoingMessage("m\($0)") })
        let leased = try await queue.receive(maxMessages: 2, wait: .zero)
        try #require(!leased.isEmpty)
        try await queue.delete(leased[0].receiptHandle)
        let reopened = try await harness.reopened()
        let again = try await reopened.existingQueue("durable")
        let unacknowledged = Set(ids).subtracting([leased[0].messageID])
        var seen: Set<String> = []
        if backend == .sqs {
            // SQS keeps its own, real time (the lease is 1 s there). Only a message lost (or a
            // lease that never ends) leaves one of these 20 s long polls empty, however slow the
            // machine; a few polls at most, so a broken queue fails the test rather than hangs it.
            var polls = 0
            while seen.count < unacknowledged.count, polls < 10 {
                polls += 1
                let batch = try await again.receive(maxMessages: 10, wait: .seconds(20), visibilityTimeout: .seconds(60))
                if batch.isEmpty { break }
                seen.formUnion(batch.map(\.messageID))
            }
        } else {
            // The messages never received are there at once; the one still leased is not (its
            // lease survived the reopening) until the last millisecond of that lease has passed.
            seen.formUnion(try await Self.receiveAllVisible(again).map(\.messageID))
            #expect(seen == unacknowledged.subtracting(leased.map(\.messageID)))
            time.advance(by: .milliseconds(99))
            #expect(try await again.receive(maxMessages: 10, wait: .zero).isEmpty)
            time.advance(by: .milliseconds(1))
            seen.formUnion(try await Self.receiveAllVisible(again).map(\.messageID))
        }
        #expect(seen == unacknowledged)
        try await reopened.close()
    }

    @Test(arguments: QueueBackend.allCases)
    func topicFansOutToEverySubscribedQueue(_ backend: QueueBackend) async throws {
        // SNS → SQS fan-out has its own tests (SNSTopicTests, and the topology end to end).
        guard backend != .sqs else { return }
        try await withHarness(backend) { harness in
            let payments = try await harness.queue("payments", Self.fast)
            let notifications = try await harness.queue("notifications", Self.fast)
            let topic = try await harness.topic("orders")
            try await topic.subscribe(queue: "payments")
            try await topic.subscribe(queue: "notifications")
            try await topic.subscribe(queue: "payments")
            #expect(Set(try await topic.subscriptions()) == ["payments", "notifications"])
            _ = try await topic.publish("{\"order_id\":\"1\"}")
            for queue in [payments, notifications] {
                let received = try await queue.receive(maxMessages: 10, wait: .zero)
                #expect(received.map(\.body) == ["{\"order_id\":\"1\"}"])
            }
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func concurrentSendersAreAllDeliveredExactlyOnce(_ backend: QueueBackend) async throws {
        try await withHarness(backend) { harness in
            let queue = try await harness.queue("busy", QueueAttributes(visibilityTimeout: .seconds(60)))
            // moto is one Python process whose receive scans the queue: a smaller storm there.
            let (senders, each) = backend == .sqs ? (16, 10) : (64, 20)
            let sent = try await withThrowingTaskGroup(of: [String].self) { group in
                for sender in 0..<senders {
                    group.addTask {
                        var ids: [String] = []
                        for n in 0..<each { ids.append(try await queue.send("\(sender)-\(n)")) }
                        return ids
                    }
                }
                return try await group.reduce(into: [String]()) { $0 += $1 }
            }
            #expect(Set(sent).count == senders * each)
            var received: [String] = []
            while true {
                let batch = try await queue.receive(maxMessages: 10, wait: .zero)
                if batch.isEmpty { break }
                received += batch.map(\.messageID)
                _ = try await queue.deleteBatch(batch.map(\.receiptHandle))
            }
            #expect(received.count == sent.count)
            #expect(Set(received) == Set(sent))
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func aDeliveryReturnedUntriedDoesNotCountTowardsTheDeadLetterQueue(_ backend: QueueBackend) async throws {
        // SQS differs: it counts every receive toward redrive, given back or not (SQSMessageQueue
        // says so); flashsale's outbox store hides never-touched deliveries for a while instead.
        guard backend != .sqs else { return }
        let time = ManualTime()
        try await withHarness(backend, time: time.source) { harness in
            let queue = try await harness.queue("work", QueueAttributes(visibilityTimeout: .seconds(30), maxReceiveCount: 2))
            let dlq = try await harness.existingQueue("work-dlq")
            let id = try await queue.send("job")
            // Received and given back untried five times: still the message's first real delivery.
            for _ in 0..<5 {
                let taken = try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .seconds(30))
                #expect(taken.map(\.messageID) == [id])
                #expect(taken.first?.receiveCount == 1)
                try await queue.returnUntried(taken.map(\.receiptHandle))
            }
            #expect(try await dlq.statistics().total == 0)
            // The returned receipt is retired: it can no longer delete the message.
            let tried = try #require(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .milliseconds(50)).first)
            #expect(tried.receiveCount == 1)
            // Counted deliveries still count: a lease that runs out is a delivery.
            time.advance(by: .milliseconds(49))
            #expect(try await queue.receive(maxMessages: 1, wait: .zero).isEmpty)
            time.advance(by: .milliseconds(1))
            let again = try #require(try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .milliseconds(50)).first)
            #expect(again.receiveCount == 2)
            try await queue.returnUntried([tried.receiptHandle])  // stale: ignored
            // Ignored indeed: the message stays leased to `again` (a return would show it now),
            // up to the last millisecond of that lease.
            #expect(try await queue.receive(maxMessages: 1, wait: .zero).isEmpty)
            time.advance(by: .milliseconds(49))
            #expect(try await queue.receive(maxMessages: 1, wait: .zero).isEmpty)
            #expect(try await dlq.statistics().total == 0)
            // That second counted lease runs out: the next receive dead-letters the message.
            time.advance(by: .milliseconds(1))
            #expect(try await queue.receive(maxMessages: 1, wait: .zero).isEmpty)
            #expect(try await dlq.statistics().total == 1)
        }
    }

    @Test(arguments: QueueBackend.allCases)
    func retentionIsEnforcedWithoutAnyReceive(_ backend: QueueBackend) async throws {
        // SQS differs: SQS enforces its own retention (at least 60 s); there is nothing to sweep.
        guard backend != .sqs else { return }
        let time = ManualTime()
        try await withHarness(backend, time: time.source) { harness in
            let queue = try await harness.queue("short", QueueAttributes(retention: .seconds(2)))
            _ = try await queue.sendBatch((1...5).map { OutgoingMessage("old \($0)") })
            time.advance(by: .milliseconds(2_000))
            _ = try await queue.send("new")
            // Exactly at the end of their retention the old messages are still kept.
            #expect(try await queue.sweepExpired() == 0)
            time.advance(by: .milliseconds(1))
            #expect(try await queue.sweepExpired() == 5)
            #expect(try await queue.sweepExpired() == 0)
            let stats = try await queue.statistics()
            #expect(stats.total == 1)
            #expect(stats.expired == 5)
        }
    }

}
