/// The shapes of the SQS JSON protocol calls flashsale makes (field names as AWS spells them).
enum SQS {
    struct Empty: Codable {}

    struct QueueOnly: Codable {
        var QueueUrl: String
    }

    struct CreateQueue: Codable {
        var QueueName: String
        var Attributes: [String: String]
    }

    struct SetQueueAttributes: Codable {
        var QueueUrl: String
        var Attributes: [String: String]
    }

    struct GetQueueUrl: Codable {
        var QueueName: String
    }

    struct QueueURLResult: Codable {
        var QueueUrl: String
    }

    struct GetQueueAttributes: Codable {
        var QueueUrl: String
        var AttributeNames: [String]
    }

    struct AttributesResult: Codable {
        var Attributes: [String: String]?
    }

    struct SendMessage: Codable {
        var QueueUrl: String
        var MessageBody: String
        var DelaySeconds: Int
    }

    struct SendMessageResult: Codable {
        var MessageId: String
    }

    struct SendMessageBatch: Codable {
        struct Entry: Codable {
            var Id: String
            var MessageBody: String
            var DelaySeconds: Int
        }

        var QueueUrl: String
        var Entries: [Entry]
    }

    struct BatchResult: Codable {
        struct Success: Codable {
            var Id: String
            var MessageId: String?
        }

        struct Failure: Codable {
            var Id: String
            var Code: String
            var Message: String?
        }

        var Successful: [Success]?
        var Failed: [Failure]?
    }

    struct ReceiveMessage: Codable {
        var QueueUrl: String
        var MaxNumberOfMessages: Int
        var WaitTimeSeconds: Int
        var VisibilityTimeout: Int?
        /// The current name of the attribute list; `AttributeNames` is the older one, which some
        /// compatible servers still read.
        var MessageSystemAttributeNames: [String]
        var AttributeNames: [String]
    }

    struct ReceiveMessageResult: Codable {
        struct Message: Codable {
            var MessageId: String
            var ReceiptHandle: String
            var Body: String
            var Attributes: [String: String]?
        }

        var Messages: [Message]?
    }

    struct ChangeMessageVisibility: Codable {
        var QueueUrl: String
        var ReceiptHandle: String
        var VisibilityTimeout: Int
    }

    struct DeleteMessage: Codable {
        var QueueUrl: String
        var ReceiptHandle: String
    }

    struct ReceiptEntry: Codable {
        var Id: String
        var ReceiptHandle: String
    }

    struct DeleteMessageBatch: Codable {
        var QueueUrl: String
        var Entries: [ReceiptEntry]
    }

    struct VisibilityEntry: Codable {
        var Id: String
        var ReceiptHandle: String
        var VisibilityTimeout: Int
    }

    struct ChangeMessageVisibilityBatch: Codable {
        var QueueUrl: String
        var Entries: [VisibilityEntry]
    }
}
