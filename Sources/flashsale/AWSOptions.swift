import ArgumentParser
import FlashAWS
import FlashServer
import Foundation

/// Where AWS is: `--region` and `--aws-endpoint`, shared by `setup-aws`, `serve` and `worker`.
struct AWSLocationOptions: ParsableArguments {
    @Option(help: "AWS region [FLASHSALE_REGION, then AWS_REGION, then AWS_DEFAULT_REGION].") var region: String?
    @Option(help: "A compatible endpoint for every AWS call, e.g. a local moto_server: http://127.0.0.1:5000 [FLASHSALE_AWS_ENDPOINT, then AWS_ENDPOINT_URL; default AWS's own].") var awsEndpoint: String?

    /// The region and endpoint, with the credentials of AWS's usual chain (environment, shared
    /// file and AWS_PROFILE, ECS task role, EC2 instance profile).
    func resolve() throws -> AWSConfiguration {
        guard let region = Settings.value(region, env: "FLASHSALE_REGION") ?? Settings.value(nil, env: "AWS_REGION")
            ?? Settings.value(nil, env: "AWS_DEFAULT_REGION") else {
            throw ValidationError("--region (or AWS_REGION) is required with AWS")
        }
        guard region.range(of: #"^[a-z0-9-]{2,32}$"#, options: .regularExpression) != nil else {
            throw ValidationError("--region must be an AWS region such as us-east-1, not '\(region)'")
        }
        let endpoint = Settings.value(awsEndpoint, env: "FLASHSALE_AWS_ENDPOINT") ?? Settings.value(nil, env: "AWS_ENDPOINT_URL")
        if let endpoint {
            guard let url = URL(string: endpoint), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                throw ValidationError("--aws-endpoint must be an http(s) URL, not '\(endpoint)'")
            }
        }
        return AWSConfiguration(region: region, endpoint: endpoint, credentials: AWSCredentialChain())
    }
}

/// `--queue sqs` and where the SQS queue and SNS topic are: for `serve` and `worker`.
struct QueueOptions: ParsableArguments {
    @Option(help: "Where the payments queue is: 'local' (the backend's own) or 'sqs' (AWS SQS, fed through an outbox; SNS with --topic-arn) [FLASHSALE_QUEUE, default local].") var queue: String?
    @Option(help: "With --queue sqs: the SQS queue the workers read, as `flashsale setup-aws` printed it [FLASHSALE_QUEUE_URL].") var queueURL: String?
    @Option(help: "With --queue sqs: the SNS topic orders are published to (SNS delivers them to the queue); unset: straight to the queue [FLASHSALE_TOPIC_ARN].") var topicARN: String?
    @Option(help: "With --queue sqs: publishing batches (of 10) the outbox relay keeps in flight [FLASHSALE_RELAY_CONCURRENCY, default 8].") var relayConcurrency: String?
    @OptionGroup var aws: AWSLocationOptions

    func resolve(into config: inout FlashConfiguration) throws {
        let kind = Settings.string(queue, env: "FLASHSALE_QUEUE", default: "local").lowercased()
        let url = Settings.value(queueURL, env: "FLASHSALE_QUEUE_URL")
        let topic = Settings.value(topicARN, env: "FLASHSALE_TOPIC_ARN")
        switch kind {
        case "local":
            if url != nil || topic != nil { throw ValidationError("--queue-url and --topic-arn need --queue sqs") }
        case "sqs":
            guard let url else { throw ValidationError("--queue sqs needs --queue-url (see `flashsale setup-aws`)") }
            guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
                throw ValidationError("--queue-url must be an SQS queue URL, not '\(url)'")
            }
            if let topic, !topic.hasPrefix("arn:") { throw ValidationError("--topic-arn must be an ARN (arn:aws:sns:…), not '\(topic)'") }
            var sqs = SQSConfiguration(aws: try aws.resolve(), queueURL: url, topicARN: topic)
            sqs.relayConcurrency = try Settings.int(relayConcurrency, env: "FLASHSALE_RELAY_CONCURRENCY", default: sqs.relayConcurrency, range: 1...256)
            config.sqs = sqs
        default:
            throw ValidationError("--queue must be 'local' or 'sqs', not '\(kind)'")
        }
    }
}
