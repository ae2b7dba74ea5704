// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "flashsale",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "flashsale", targets: ["flashsale"]),
        .library(name: "FlashQueue", targets: ["FlashQueue"]),
        .library(name: "FlashBackend", targets: ["FlashBackend"]),
        .library(name: "FlashSQLite", targets: ["FlashSQLite"]),
        .library(name: "FlashPostgres", targets: ["FlashPostgres"]),
        .library(name: "FlashAPI", targets: ["FlashAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/CoreOffice/XMLCoder.git", from: "0.18.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/apple/swift-openapi-runtime.git", from: "1.13.4"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird.git", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-openapi-async-http-client.git", from: "1.5.0"),
    ],
    targets: [
        // Small shared vocabulary: durations, ids, clocks.
        .target(name: "FlashCore", dependencies: [.product(name: "DequeModule", package: "swift-collections")]),
        // The queue contract (SQS/SNS semantics), backend-agnostic.
        .target(name: "FlashQueue", dependencies: [
            "FlashCore",
            .product(name: "DequeModule", package: "swift-collections"),
        ]),
        // Orders, the inventory gate and their store protocols.
        .target(name: "FlashOrders", dependencies: ["FlashCore", "FlashQueue"]),
        // The payment gateway protocol and its simulator.
        .target(name: "FlashPayments", dependencies: ["FlashCore", .product(name: "Metrics", package: "swift-metrics")]),
        // What every flashsale HTTP process wears: request ids, HTTP metrics, a Prometheus registry
        // (the factory swift-metrics records into) and the log format.
        .target(name: "FlashTelemetry", dependencies: [
            "FlashCore",
            .product(name: "Hummingbird", package: "hummingbird"),
            // The HTTP/1 server's channel pipeline, for the connection guard (ConnectionLimits.swift).
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        // What a backend supplies (a Service owning its resources), the fleet registry, /stats.
        .target(name: "FlashBackend", dependencies: [
            "FlashCore", "FlashQueue", "FlashOrders", "FlashPayments",
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // The embedded backend: one SQLite file holds queues, orders, stock, the ledger, the fleet.
        .target(name: "FlashSQLite", dependencies: [
            "FlashCore", "FlashQueue", "FlashOrders", "FlashPayments", "FlashBackend",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // The distributed backend: the same contract on PostgreSQL (postgres-nio), for many machines.
        .target(name: "FlashPostgres", dependencies: [
            "FlashCore", "FlashQueue", "FlashOrders", "FlashPayments", "FlashBackend",
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "_ConnectionPoolModule", package: "postgres-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // AWS SQS and SNS as the queue and topic: Signature V4, credentials, the two protocols.
        .target(name: "FlashAWS", dependencies: [
            "FlashCore", "FlashQueue",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "XMLCoder", package: "XMLCoder"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The transactional outbox: orders commit with their message locally; a relay publishes it
        // to a payments queue in another system (SQS, SNS).
        .target(name: "FlashOutbox", dependencies: [
            "FlashCore", "FlashQueue", "FlashOrders", "FlashBackend",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // The payment gateway as its own HTTP service, and the client that charges through it. Its
        // API is openapi.yaml; Generated/ holds the server stubs and client made from it by
        // scripts/generate-gateway-api (committed: see that script).
        .target(name: "FlashGateway", dependencies: [
            "FlashCore", "FlashPayments", "FlashTelemetry",
            .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
            .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
            .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], exclude: ["openapi.yaml", "openapi-generator-config.yaml", "Generated/openapi.sha256"]),
        // The elastic pool of payment workers (a Service).
        .target(name: "FlashWorkers", dependencies: [
            "FlashCore", "FlashQueue", "FlashOrders", "FlashPayments", "FlashBackend",
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // The HTTP API (Hummingbird 2) over the protocols above.
        .target(name: "FlashAPI", dependencies: [
            "FlashCore", "FlashQueue", "FlashOrders", "FlashPayments", "FlashBackend", "FlashWorkers", "FlashTelemetry",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], resources: [.embedInCode("Resources/openapi.json"), .embedInCode("Resources/dashboard.html")]),
        // The composition root: a backend, the API and/or the workers, from one configuration.
        .target(name: "FlashServer", dependencies: [
            "FlashCore", "FlashQueue", "FlashBackend", "FlashSQLite", "FlashPostgres", "FlashAWS", "FlashOutbox", "FlashGateway", "FlashOrders", "FlashPayments", "FlashWorkers", "FlashAPI", "FlashTelemetry",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        ]),
        // Faults on demand for the chaos checker and tests: a TCP proxy that cuts or stalls.
        .target(name: "FlashFaults", dependencies: [
            "FlashCore",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // The load generator, queue monitor, capacity planner and the lab.
        .target(name: "FlashLab", dependencies: [
            "FlashCore", "FlashBackend", "FlashServer", "FlashWorkers",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "flashsale", dependencies: [
            "FlashServer", "FlashLab", "FlashAWS", "FlashTelemetry", "FlashFaults",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            "FlashCore", "FlashQueue", "FlashBackend", "FlashSQLite", "FlashPostgres", "FlashGateway", "FlashOrders", "FlashPayments", "FlashWorkers", "FlashAPI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // What several test targets share: databases running for one test.
        .target(name: "FlashTestSupport", dependencies: [
            "FlashCore", "FlashOrders", "FlashPostgres", "FlashAWS", .product(name: "Logging", package: "swift-log"),
        ], path: "Tests/FlashTestSupport"),
        // One test target per module, named after it.
        .testTarget(name: "FlashSQLiteTests", dependencies: [
            "FlashSQLite", "FlashQueue", "FlashCore", "FlashBackend", "FlashFaults", "FlashTestSupport",
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        .testTarget(name: "FlashOutboxTests", dependencies: [
            "FlashOutbox", "FlashAWS", "FlashQueue", "FlashOrders", "FlashSQLite", "FlashPayments", "FlashWorkers", "FlashCore", "FlashTestSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "FlashCoreTests", dependencies: ["FlashCore"]),
        .testTarget(name: "FlashGatewayTests", dependencies: [
            "FlashGateway", "FlashPayments",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
        .testTarget(name: "FlashQueueTests", dependencies: ["FlashCore", "FlashQueue", "FlashSQLite", "FlashPostgres", "FlashAWS", "FlashBackend", "FlashFaults", "FlashTestSupport"]),
        // Drives the real `flashsale` binary over loopback: kill -9, SIGTERM, storms of requests.
        .testTarget(name: "FlashEndToEndTests", dependencies: [
            "FlashCore", "FlashBackend", "FlashAWS", "FlashFaults", "FlashQueue", "FlashSQLite",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            // Drives headless chromium over the DevTools protocol (the dashboard test).
            .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
        ]),
        .testTarget(name: "FlashLabTests", dependencies: [
            "FlashCore", "FlashLab", "FlashServer",
            .product(name: "Histogram", package: "hdrhistogram-swift"),
        ]),
        .testTarget(name: "FlashAWSTests", dependencies: [
            "FlashAWS", "FlashQueue", "FlashTestSupport",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "FlashPostgresTests", dependencies: [
            "FlashPostgres", "FlashQueue", "FlashBackend", "FlashOrders", "FlashCore", "FlashTestSupport",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The order-store and inventory contract suite, parameterised over backends.
        .testTarget(name: "FlashOrdersTests", dependencies: ["FlashCore", "FlashQueue", "FlashOrders", "FlashBackend", "FlashSQLite", "FlashPostgres",
                                                            "FlashTestSupport"]),
        .testTarget(name: "FlashWorkersTests", dependencies: [
            "FlashCore", "FlashQueue", "FlashBackend", "FlashSQLite", "FlashOrders", "FlashPayments", "FlashWorkers", "FlashServer",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "FlashAPITests", dependencies: [
            "FlashCore", "FlashQueue", "FlashBackend", "FlashSQLite", "FlashOrders", "FlashPayments", "FlashWorkers", "FlashAPI", "FlashServer", "FlashFaults",
            "FlashTelemetry", .product(name: "Logging", package: "swift-log"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
    ]
)
