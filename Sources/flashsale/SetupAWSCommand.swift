import ArgumentParser
import FlashAWS
import FlashCore
import FlashQueue
import FlashLab
import Foundation

/// `flashsale setup-aws`: the seeds' AWS resources, made idempotently (what their Terraform did):
/// the SNS topic, the SQS payments queue with its dead-letter queue and redrive policy, the queue
/// policy that lets the topic send to it, and the raw-delivery subscription.
struct SetupAWSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "setup-aws",
        abstract: "Create the SNS topic, the SQS payments queue, its dead-letter queue and the subscription (idempotent); print their ARNs and URLs.",
        discussion: """
            Creates <prefix>-orders (SNS), <prefix>-payments and <prefix>-payments-dlq (SQS; redrive after --max-receives \
            receives), lets the topic send to the queue, and subscribes the queue to the topic with raw message delivery. \
            Running it again changes nothing. Credentials come from AWS's usual chain (environment, ~/.aws/credentials with \
            AWS_PROFILE, ECS task role, EC2 instance profile). Then run serve and worker with the printed --queue-url and --topic-arn.
            """)

    @OptionGroup var aws: AWSLocationOptions
    @Option(help: "Prefix of the names made [default flashsale].") var prefix = "flashsale"
    @Option(help: "The queue's visibility timeout [default 30s, as the seeds].") var visibilityTimeout = "30s"
    @Option(help: "Receives before a message goes to the dead-letter queue [default 5].") var maxReceives = 5
    @Option(help: "How long the queue keeps a message, up to 14d [default 4d, as the seeds].") var messageRetention = "4d"
    @Flag(help: "Print JSON instead of lines.") var json = false

    func validate() throws {
        guard prefix.range(of: #"^[A-Za-z0-9_-]{1,60}$"#, options: .regularExpression) != nil else {
            throw ValidationError("--prefix must be 1 to 60 letters, digits, '-' or '_', not '\(prefix)'")
        }
        guard (1...1000).contains(maxReceives) else { throw ValidationError("--max-receives must be 1 to 1000") }
    }

    func run() async throws {
        let configuration = try aws.resolve()
        if let endpoint = configuration.endpoint {
            // AWS's client retries a refused connection for a long time, silently: check first.
            try await Reachability.wait(for: endpoint, within: .seconds(10)) { error, left in
                FileHandle.standardError.write(Data("waiting for the AWS endpoint \(endpoint): \(error); trying again (\(left.shortDescription) left)\n".utf8))
            }
        }
        do {
            try await make(configuration)
        } catch let error as ValidationError {
            throw error
        } catch {
            throw StartupError("setting up AWS at \(configuration.endpoint ?? "AWS (region \(configuration.region))") failed: \(error)")
        }
    }

    private func make(_ configuration: AWSConfiguration) async throws {
        guard let visibility = Duration(parsing: visibilityTimeout), visibility >= .seconds(1), visibility <= QueueLimits.maxVisibilityTimeout else {
            throw ValidationError("--visibility-timeout must be 1s to 12h, not '\(visibilityTimeout)'")
        }
        guard let retention = Duration(parsing: messageRetention), retention >= .seconds(60), retention <= QueueLimits.maxRetention else {
            throw ValidationError("--message-retention must be 60s to 14d, not '\(messageRetention)'")
        }
        let queues = SQSQueues(configuration: configuration)
        let topics = SNSTopics(configuration: configuration)
        let queue = try await queues.create("\(prefix)-payments", attributes: QueueAttributes(
            visibilityTimeout: visibility, maxReceiveCount: maxReceives, retention: retention))
        let topic = try await topics.create("\(prefix)-orders")
        try await queues.allowPublishing(from: topic.arn, to: queue)
        let subscription = try await topics.subscribe(queue, to: topic)
        let made: [(String, String)] = [
            ("topic_arn", topic.arn),
            ("queue_url", queue.url),
            ("queue_arn", try await queue.arn()),
            ("dead_letter_queue_url", queue.deadLetterURL ?? ""),
            ("subscription_arn", subscription),
        ]
        if json {
            let object = Dictionary(uniqueKeysWithValues: made)
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        for (name, value) in made { print("\(name.padding(toLength: 22, withPad: " ", startingAt: 0)) \(value)") }
        let endpoint = configuration.endpoint.map { " --aws-endpoint \($0)" } ?? ""
        print("""

            Run the API and the workers on it:
              flashsale serve  --workers 0 --queue sqs --region \(configuration.region)\(endpoint) --queue-url \(queue.url) --topic-arn \(topic.arn)
              flashsale worker             --queue sqs --region \(configuration.region)\(endpoint) --queue-url \(queue.url) --topic-arn \(topic.arn)
            (Every process relays the outbox it shares; give them all the same --topic-arn.)
            """)
    }
}
