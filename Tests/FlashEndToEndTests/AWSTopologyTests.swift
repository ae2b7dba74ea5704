import AsyncHTTPClient
import FlashAWS
import FlashBackend
import Foundation
import Testing

/// The seeds' AWS topology with the real binary against a local AWS endpoint (moto_server,
/// started by the test command): `setup-aws`, then `serve --queue sqs` publishing through its
/// outbox to SNS, SNS delivering to SQS, and `worker --queue sqs` processes reading it.
@Suite("SNS → SQS topology on a local AWS endpoint", .serialized, .enabled(if: AWSTopology.endpoint != nil))
struct AWSTopologyTests {
    @Test func anAPIAndTwoWorkersProcessEveryOrderOnceAndDeadLettersAreSettled() async throws {
        let setup = try AWSTopology.setUp(maxReceives: 2)
        let data = ServerProcess.temporaryDataPath()
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let api = try await ServerProcess(dataPath: data, arguments: ["--workers", "0"] + setup.apiArguments, environment: AWSTopology.environment)
            let client = APIClient(http: http, base: api.baseURL)
            var workers: [ServerProcess] = []
            for _ in 0..<2 {
                workers.append(try await ServerProcess("worker", dataPath: data, arguments: ["--workers", "8", "--payment-latency", "20ms"] + setup.workerArguments,
                                                       environment: AWSTopology.environment))
            }
            // 300 orders from 16 clients: every one is published (outbox → SNS → SQS), charged once, completed.
            let total = 300
            let accepted = Acknowledged()
            try await AWSTopology.send(total, prefix: "a", to: client, accepted: accepted)
            #expect(accepted.count == total)
            try await expectEventually(timeout: .seconds(90)) { try await FleetTests.stats(client).orders.completed == total }
            var stats = try await FleetTests.stats(client)
            #expect(stats.orders == SystemStats.Orders(total: total, pending: 0, processing: 0, completed: total, failed: 0))
            #expect(stats.payments.charges == total)
            #expect(stats.outbox == SystemStats.Outbox(pending: 0, lagSeconds: 0))
            for id in accepted.ids.shuffled().prefix(20) {
                #expect(try await client.call(.GET, "/orders/\(id)").string("status") == "completed")
            }

            // Workers whose every charge fails transiently: each message is received twice, then
            // SQS's redrive policy moves it to the dead-letter queue, where the reconciler finds it
            // and settles its order as failed, with no charge.
            for worker in workers { #expect(try await worker.terminate() == 0) }
            workers = []
            for _ in 0..<2 {
                workers.append(try await ServerProcess("worker", dataPath: data, arguments: [
                    "--workers", "4", "--payment-latency", "5ms", "--payment-error-rate", "1", "--retry-backoff", "100ms",
                ] + setup.workerArguments, environment: AWSTopology.environment))
            }
            let doomed = Acknowledged()
            try await AWSTopology.send(10, prefix: "d", to: client, accepted: doomed)
            // (Generous: this phase has taken 7 s to 67 s here. moto's long polls have been seen to
            // miss messages that became visible again or were moved by redrive until the poll
            // ended, 20 s later, where AWS answers at once.)
            try await expectEventually(timeout: .seconds(150)) { try await FleetTests.stats(client).orders.failed == 10 }
            stats = try await FleetTests.stats(client)
            #expect(stats.orders.completed == total)
            #expect(stats.payments.charges == total)
            #expect(stats.reconciler.failed == 10)
            // (As generous as the wait above, for the same reason: moto moves a message to the
            // dead-letter queue only when a later receive on the queue finds it over its limit.)
            try await expectEventually(timeout: .seconds(150)) { try await FleetTests.stats(client).queue.deadLetter == 10 }
            for id in doomed.ids {
                let order = try await client.call(.GET, "/orders/\(id)")
                #expect(order.string("status") == "failed")
            }
            // SQS shows a message only to a receive: the console's dead-letter list says so and
            // what to use instead.
            let letters = try await client.call(.GET, "/admin/dead-letters")
            #expect(letters.status == 501)
            #expect(letters.string("error", "message")?.contains("cannot list or move") == true)
            for worker in workers { _ = try await worker.terminate() }
            #expect(try await api.terminate() == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test func twoElasticWorkersOnSQSTogetherSettleNearTheNeed() async throws {
        // moto answers a few dozen SQS calls a second: a small sale of long charges (need 9).
        let setup = try AWSTopology.setUp(maxReceives: 5)
        try await ElasticWorkersTests.twoWorkers(rate: 3, seconds: 12, payment: "3s", shared: [], api: setup.apiArguments,
                                                 worker: setup.workerArguments, environment: AWSTopology.environment)
    }

    @Test func ordersAcceptedWhileSNSIsGoneAreDeliveredAfterAKill9() async throws {
        let setup = try AWSTopology.setUp(maxReceives: 5)
        let data = ServerProcess.temporaryDataPath()
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let api = try await ServerProcess(dataPath: data, arguments: ["--workers", "0"] + setup.apiArguments, environment: AWSTopology.environment)
            let client = APIClient(http: http, base: api.baseURL)
            // The topic disappears: every order still commits with its outbox row and gets its
            // 202; the relay cannot publish, so the outbox holds them.
            try await SNSTopics(configuration: AWSTopology.configuration).delete(SNSTopics(configuration: AWSTopology.configuration).topic(arn: setup.topicARN))
            let accepted = Acknowledged()
            try await AWSTopology.send(100, prefix: "k", to: client, accepted: accepted)
            #expect(accepted.count == 100)
            let held = try await FleetTests.stats(client)
            #expect(held.outbox?.pending == 100)
            #expect(held.queue.visible == 0)
            // kill -9 between the commit and the publish; the topic comes back (same name, same ARN).
            api.kill9()
            _ = try AWSTopology.setUp(maxReceives: 5, prefix: setup.prefix)
            // A worker process relays the outbox it shares with the dead API, and processes it.
            let worker = try await ServerProcess("worker", dataPath: data, arguments: ["--workers", "8", "--payment-latency", "10ms"] + setup.workerArguments,
                                                 environment: AWSTopology.environment)
            let side = APIClient(http: http, base: worker.baseURL)
            try await expectEventually(timeout: .seconds(90)) { try await FleetTests.stats(side).orders.completed == 100 }
            let stats = try await FleetTests.stats(side)
            #expect(stats.orders == SystemStats.Orders(total: 100, pending: 0, processing: 0, completed: 100, failed: 0))
            // Once per order, from the consumer's side: one charge each.
            #expect(stats.payments.charges == 100)
            #expect(stats.outbox?.pending == 0)
            // A process in the other queue mode would fail these orders as orphans: it refuses to start.
            await #expect { _ = try await ServerProcess(dataPath: data, arguments: ["--workers", "0"]) } throws: { error in
                "\(error)".contains("--queue sqs")
            }
            _ = try await worker.terminate()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}

/// The local AWS endpoint and the resources `flashsale setup-aws` makes on it.
enum AWSTopology {
    static let endpoint = ProcessInfo.processInfo.environment["FLASHSALE_TEST_AWS_ENDPOINT"]
    /// Credentials and region as a user would give them, through the environment.
    static let environment = [
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    ]
    static var configuration: AWSConfiguration {
        AWSConfiguration(region: "us-east-1", endpoint: endpoint,
                         credentials: StaticCredentials(AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing")))
    }

    struct Resources {
        var prefix: String
        var topicARN: String
        var queueURL: String
        var common: [String] { ["--queue", "sqs", "--aws-endpoint", AWSTopology.endpoint ?? "", "--queue-url", queueURL, "--visibility-timeout", "5s"] }
        var apiArguments: [String] { common + ["--topic-arn", topicARN] }
        var workerArguments: [String] { common + ["--reconcile-interval", "200ms"] }
    }

    /// Runs `flashsale setup-aws --json` (a fresh prefix unless one is given) and reads what it made.
    static func setUp(maxReceives: Int, prefix: String? = nil) throws -> Resources {
        let prefix = prefix ?? "fs" + UUID().uuidString.prefix(8).lowercased()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ServerProcess.binary)
        process.arguments = ["setup-aws", "--aws-endpoint", endpoint ?? "", "--prefix", prefix, "--max-receives", "\(maxReceives)",
                             "--visibility-timeout", "5s", "--json"]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        _ = process.blockUntilEnded(within: .seconds(120))
        guard process.endStatus == 0,
              let object = try JSONSerialization.jsonObject(with: data) as? [String: String],
              let topic = object["topic_arn"], let queue = object["queue_url"]
        else { throw ServerError("setup-aws failed: \(String(decoding: data, as: UTF8.self))") }
        return Resources(prefix: prefix, topicARN: topic, queueURL: queue)
    }

    /// Sends `count` async orders from 16 clients; records the accepted ids.
    static func send(_ count: Int, prefix: String, to client: APIClient, accepted: Acknowledged) async throws {
        let sending = Sending()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    while true {
                        let n = sending.next.add(1, ordering: .relaxed).oldValue
                        guard n < count else { return }
                        let reply = try await client.call(.POST, "/orders/async",
                                                          json: #"{"customer_id":"\#(prefix)\#(n)","items":[{"product_id":"P1","quantity":1,"price":10}]}"#)
                        if reply.status == 202, let id = reply.string("order_id") { accepted.add(id) }
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}
