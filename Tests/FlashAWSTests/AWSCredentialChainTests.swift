@testable import FlashAWS
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization
import Testing

/// The credential chain, each source against real files and real HTTP endpoints on loopback
/// (the ECS container endpoint and EC2's IMDSv2 speak plain HTTP; these servers answer as AWS
/// documents they do).
@Suite("AWS credential chain")
struct AWSCredentialChainTests {
    /// An environment with no credentials anywhere: an empty home, no metadata service.
    static func bareEnvironment() throws -> [String: String] {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("aws-home-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: home + "/.aws", withIntermediateDirectories: true)
        return ["HOME": home, "AWS_EC2_METADATA_DISABLED": "true"]
    }

    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    static func credentialsJSON(_ key: String, expiresIn seconds: TimeInterval) -> String {
        #"{"AccessKeyId":"\#(key)","SecretAccessKey":"secret-\#(key)","Token":"token-\#(key)","Expiration":"\#(iso(Date().addingTimeInterval(seconds)))","Code":"Success"}"#
    }

    @Test func theEnvironmentComesFirst() async throws {
        var environment = try Self.bareEnvironment()
        try "[default]\naws_access_key_id = FILE\naws_secret_access_key = s\n".write(toFile: environment["HOME"]! + "/.aws/credentials", atomically: true, encoding: .utf8)
        environment["AWS_ACCESS_KEY_ID"] = "ENV"
        environment["AWS_SECRET_ACCESS_KEY"] = "envsecret"
        environment["AWS_SESSION_TOKEN"] = "envtoken"
        let chain = AWSCredentialChain(environment: environment)
        #expect(try await chain.credentials() == AWSCredentials(accessKeyID: "ENV", secretAccessKey: "envsecret", sessionToken: "envtoken"))
        #expect(try await chain.sourceName() == "environment")
        // Half a pair is a mistake to report, not a reason to look elsewhere.
        environment["AWS_SECRET_ACCESS_KEY"] = nil
        await #expect(throws: AWSError.self) { try await AWSCredentialChain(environment: environment).credentials() }
    }

    @Test func theSharedFilesGiveTheProfileNamedByAWSProfile() async throws {
        var environment = try Self.bareEnvironment()
        let home = environment["HOME"]!
        try """
            # a comment
            [default]
            aws_access_key_id = DEFAULTKEY
            aws_secret_access_key = defaultsecret

            [prod]
            aws_access_key_id=PRODKEY
              aws_secret_access_key  =  prodsecret
            aws_session_token = prodtoken ; not a comment in values
            """.write(toFile: home + "/.aws/credentials", atomically: true, encoding: .utf8)
        try """
            [profile fromconfig]
            region = eu-west-1
            aws_access_key_id = CONFIGKEY
            aws_secret_access_key = configsecret
            """.write(toFile: home + "/.aws/config", atomically: true, encoding: .utf8)
        #expect(try await AWSCredentialChain(environment: environment).credentials().accessKeyID == "DEFAULTKEY")
        environment["AWS_PROFILE"] = "prod"
        let prod = try await AWSCredentialChain(environment: environment).credentials()
        #expect(prod == AWSCredentials(accessKeyID: "PRODKEY", secretAccessKey: "prodsecret", sessionToken: "prodtoken ; not a comment in values"))
        #expect(try await AWSCredentialChain(environment: environment).sourceName() == "profile prod")
        environment["AWS_PROFILE"] = "fromconfig"
        #expect(try await AWSCredentialChain(environment: environment).credentials().accessKeyID == "CONFIGKEY")
        // A profile asked for by name that no file has is an error, not a silent fallback.
        environment["AWS_PROFILE"] = "nosuch"
        await #expect { try await AWSCredentialChain(environment: environment).credentials() } throws: { error in
            (error as? AWSError)?.message.contains("nosuch") == true
        }
        // AWS_SHARED_CREDENTIALS_FILE moves the file.
        let elsewhere = home + "/other-credentials"
        try "[default]\naws_access_key_id = MOVED\naws_secret_access_key = s\n".write(toFile: elsewhere, atomically: true, encoding: .utf8)
        environment["AWS_PROFILE"] = nil
        environment["AWS_SHARED_CREDENTIALS_FILE"] = elsewhere
        #expect(try await AWSCredentialChain(environment: environment).credentials().accessKeyID == "MOVED")
    }

    @Test func nothingConfiguredIsAClearError() async throws {
        await #expect { try await AWSCredentialChain(environment: try Self.bareEnvironment()).credentials() } throws: { error in
            (error as? AWSError)?.code == "NoCredentials"
        }
    }

    @Test func theECSContainerEndpointIsAskedWithItsTokenAndRefreshedBeforeExpiry() async throws {
        let requests = Mutex<[String?]>([])
        let failing = Atomic<Bool>(false)
        // Credentials that expire in 4 minutes: inside the 5-minute refresh window.
        let router = Router()
        router.get("/v2/credentials/task") { request, _ -> Response in
            let n = requests.withLock { list in
                list.append(request.headers[.authorization])
                return list.count
            }
            if failing.load(ordering: .relaxed) { return Response(status: .internalServerError) }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: Self.credentialsJSON("TASK\(n)", expiresIn: 240))))
        }
        try await LoopbackServer.run(router) { port in
            var environment = try Self.bareEnvironment()
            environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://127.0.0.1:\(port)/v2/credentials/task"
            environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "Basic abc"
            let chain = AWSCredentialChain(environment: environment)
            let first = try await chain.credentials()
            #expect(first.accessKeyID == "TASK1")
            #expect(first.secretAccessKey == "secret-TASK1")
            #expect(first.sessionToken == "token-TASK1")
            #expect(try await chain.sourceName() == "ECS container")
            // Inside the refresh window: asked again.
            #expect(try await chain.credentials().accessKeyID == "TASK2")
            #expect(requests.withLock { $0 } == ["Basic abc", "Basic abc"])
            // The endpoint fails: credentials that still work are kept.
            failing.store(true, ordering: .relaxed)
            #expect(try await chain.credentials().accessKeyID == "TASK2")
        }
        // Far from expiry, credentials are cached.
        let calls = Atomic<Int>(0)
        let steady = Router()
        steady.get("/creds") { _, _ -> Response in
            calls.add(1, ordering: .relaxed)
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: Self.credentialsJSON("STEADY", expiresIn: 3600))))
        }
        try await LoopbackServer.run(steady) { port in
            var environment = try Self.bareEnvironment()
            environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://127.0.0.1:\(port)/creds"
            let chain = AWSCredentialChain(environment: environment)
            for _ in 0..<3 { #expect(try await chain.credentials().accessKeyID == "STEADY") }
            #expect(calls.load(ordering: .relaxed) == 1)
            // Told that the token expired: fetched again.
            await chain.invalidate()
            _ = try await chain.credentials()
            #expect(calls.load(ordering: .relaxed) == 2)
        }
    }

    @Test func aContainerURIOverPlainHTTPToAnotherHostIsRefused() async throws {
        var environment = try Self.bareEnvironment()
        environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://example.com/creds"
        await #expect { try await AWSCredentialChain(environment: environment).credentials() } throws: { error in
            (error as? AWSError)?.code == "InvalidConfiguration"
        }
    }

    @Test func instanceMetadataIsReadWithAnIMDSv2SessionToken() async throws {
        let tokenless = Atomic<Int>(0)
        let router = Router()
        router.put("/latest/api/token") { request, _ -> Response in
            guard request.headers[HTTPField.Name("X-aws-ec2-metadata-token-ttl-seconds")!] == "21600" else { return Response(status: .badRequest) }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "session-token-1")))
        }
        router.get("/latest/meta-data/iam/security-credentials/") { request, _ -> Response in
            guard request.headers[HTTPField.Name("X-aws-ec2-metadata-token")!] == "session-token-1" else {
                tokenless.add(1, ordering: .relaxed)
                return Response(status: .unauthorized)
            }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "flashsale-worker-role\n")))
        }
        router.get("/latest/meta-data/iam/security-credentials/flashsale-worker-role") { request, _ -> Response in
            guard request.headers[HTTPField.Name("X-aws-ec2-metadata-token")!] == "session-token-1" else {
                tokenless.add(1, ordering: .relaxed)
                return Response(status: .unauthorized)
            }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: Self.credentialsJSON("INSTANCE", expiresIn: 3600))))
        }
        try await LoopbackServer.run(router) { port in
            var environment = try Self.bareEnvironment()
            environment["AWS_EC2_METADATA_DISABLED"] = nil
            environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:\(port)"
            // The SDKs' 1 s default is for a metadata service next to the instance; this one shares a loaded CI box.
            environment["AWS_METADATA_SERVICE_TIMEOUT"] = "10"
            let chain = AWSCredentialChain(environment: environment)
            let credentials = try await chain.credentials()
            #expect(credentials.accessKeyID == "INSTANCE")
            #expect(credentials.sessionToken == "token-INSTANCE")
            #expect(credentials.expiration.map { $0 > Date().addingTimeInterval(3000) } == true)
            #expect(try await chain.sourceName() == "IMDSv2")
            #expect(tokenless.load(ordering: .relaxed) == 0)
        }
    }

    @Test func anExpiredTokenAnswerFetchesNewCredentialsAndTriesOnceMore() async throws {
        let calls = Mutex<[String]>([])
        let router = Router()
        router.post("/") { request, _ -> Response in
            let authorization = request.headers[.authorization] ?? ""
            let key = authorization.range(of: "Credential=").map { String(authorization[$0.upperBound...].prefix(while: { $0 != "/" })) } ?? ""
            let n = calls.withLock { list in
                list.append(key)
                return list.count
            }
            if n == 1 {
                return Response(status: .badRequest, body: .init(byteBuffer: ByteBuffer(string: #"{"__type":"com.amazonaws.sqs#ExpiredToken","message":"The security token included in the request is expired"}"#)))
            }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: #"{"QueueUrl":"http://example/q"}"#)))
        }
        try await LoopbackServer.run(router) { port in
            let provider = RotatingCredentials()
            let client = AWSJSONClient(configuration: AWSConfiguration(region: "us-east-1", endpoint: "http://127.0.0.1:\(port)", credentials: provider),
                                       service: "sqs", targetPrefix: "AmazonSQS")
            let answer = try await client.call("GetQueueUrl", SQS.GetQueueUrl(QueueName: "q"), as: SQS.QueueURLResult.self)
            #expect(answer.QueueUrl == "http://example/q")
            #expect(calls.withLock { $0 } == ["KEY1", "KEY2"])
        }
    }
}

/// Hands out KEY1, then KEY2 after each invalidation.
final class RotatingCredentials: AWSCredentialsProvider {
    private let generation = Atomic<Int>(1)
    func credentials() async throws -> AWSCredentials {
        AWSCredentials(accessKeyID: "KEY\(generation.load(ordering: .relaxed))", secretAccessKey: "s")
    }
    func invalidate() async { generation.add(1, ordering: .relaxed) }
}

/// A real HTTP server on a free loopback port for the length of `body`.
enum LoopbackServer {
    static func run(_ router: Router<BasicRequestContext>, _ body: @Sendable (Int) async throws -> Void) async throws {
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "loopback")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) }, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            do {
                try await body(port)
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
        }
    }
}
