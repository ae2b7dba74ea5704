@testable import FlashAWS
import Foundation
import Testing

/// The signer against AWS's published Signature Version 4 test suite (aws-sig-v4-test-suite:
/// service `service`, region `us-east-1`, 2015-08-30T12:36:00Z, key AKIDEXAMPLE), and the
/// signing-key example of AWS's documentation.
@Suite("AWS Signature Version 4")
struct SigV4SignerTests {
    static let credentials = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    static let date = Date(timeIntervalSince1970: 1_440_938_160)

    struct Vector: Sendable, CustomTestStringConvertible {
        var name: String
        var method: String
        var path: String
        var query: [(String, String)]
        var signature: String
        var testDescription: String { name }
    }

    static let vectors: [Vector] = [
        Vector(name: "get-vanilla", method: "GET", path: "/", query: [],
               signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(name: "get-vanilla-query-order-key-case", method: "GET", path: "/", query: [("Param2", "value2"), ("Param1", "value1")],
               signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        Vector(name: "get-vanilla-query-unreserved", method: "GET", path: "/",
               query: [("-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")],
               signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"),
        Vector(name: "get-vanilla-empty-query-key", method: "GET", path: "/", query: [("Param1", "value1")],
               signature: "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"),
        Vector(name: "get-utf8", method: "GET", path: "/ሴ", query: [],
               signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
        Vector(name: "get-space-normalized", method: "GET", path: "/example space/", query: [],
               signature: "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"),
        Vector(name: "post-vanilla", method: "POST", path: "/", query: [],
               signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        Vector(name: "post-vanilla-query", method: "POST", path: "/", query: [("Param1", "value1")],
               signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
    ]

    @Test(arguments: vectors)
    func signsAsAWSPublished(_ vector: Vector) {
        let signer = SigV4Signer(region: "us-east-1", service: "service")
        let request = SigV4Signer.Request(method: vector.method, path: vector.path, query: vector.query,
                                          headers: [("Host", "example.amazonaws.com")])
        let headers = Dictionary(uniqueKeysWithValues: signer.sign(request, credentials: Self.credentials, at: Self.date))
        #expect(headers["X-Amz-Date"] == "20150830T123600Z")
        #expect(headers["Authorization"] ==
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=\(vector.signature)")
        #expect(headers["X-Amz-Security-Token"] == nil)
    }

    @Test func derivesTheSigningKeyOfAWSsExample() {
        let key = SigV4Signer(region: "us-east-1", service: "iam").signingKey(secret: Self.credentials.secretAccessKey, day: "20150830")
        #expect(key.withUnsafeBytes { SigV4Signer.hex($0) } == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9")
    }

    @Test func temporaryCredentialsSignTheirSessionToken() {
        var credentials = Self.credentials
        credentials.sessionToken = "token/with+chars"
        let signer = SigV4Signer(region: "us-east-1", service: "sqs")
        let request = SigV4Signer.Request(method: "POST", headers: [("Host", "sqs.us-east-1.amazonaws.com"),
                                                                    ("Content-Type", "application/x-amz-json-1.0")], body: Array("{}".utf8))
        let headers = Dictionary(uniqueKeysWithValues: signer.sign(request, credentials: credentials, at: Self.date))
        #expect(headers["X-Amz-Security-Token"] == "token/with+chars")
        #expect(headers["Authorization"]?.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,") == true)
        #expect(!"\(credentials)".contains("token/with+chars") && !"\(credentials)".contains(credentials.secretAccessKey))
    }
}
