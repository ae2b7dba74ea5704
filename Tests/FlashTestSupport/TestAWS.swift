import FlashAWS
import Foundation

/// The local AWS endpoint (moto) the test command started (`FLASHSALE_TEST_AWS_ENDPOINT`), if any.
public enum TestAWS {
    public static let endpoint = ProcessInfo.processInfo.environment["FLASHSALE_TEST_AWS_ENDPOINT"]

    /// Clients of the local endpoint, with moto's test credentials.
    public static var configuration: AWSConfiguration {
        AWSConfiguration(region: "us-east-1", endpoint: endpoint,
                         credentials: StaticCredentials(AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing")))
    }

    /// A queue or topic name of its own per test.
    public static func name(_ stem: String) -> String {
        stem + "-" + UUID().uuidString.prefix(8).lowercased()
    }
}
