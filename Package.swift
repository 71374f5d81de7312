// swift-tools-version:6.0
import PackageDescription

/// Release builds of the compute code are where the time goes: whole-module optimization (-wmo,
/// with the default -O). Never -Ounchecked: these targets also parse GGUF, safetensors and config
/// bytes from files and the network, and those parsers rely on Swift's overflow and bounds checks
/// as the last line against hostile input. The hot loops are C (CGemmaKernels, -O3), so the checks
/// cost the Swift side little.
let computeFlags: [SwiftSetting] = [.unsafeFlags(["-wmo"], .when(configuration: .release))]

let package = Package(
    name: "GemmaServe",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "GemmaModel", targets: ["GemmaModel"]),
        .library(name: "GemmaTokenizer", targets: ["GemmaTokenizer"]),
        .library(name: "GemmaQuant", targets: ["GemmaQuant"]),
        .library(name: "GemmaConvert", targets: ["GemmaConvert"]),
        .library(name: "GemmaCluster", targets: ["GemmaCluster"]),
        .executable(name: "gemma-quantize", targets: ["gemma-quantize"]),
        .library(name: "GemmaQuantizerService", targets: ["GemmaQuantizerService"]),
        .library(name: "GemmaWire", targets: ["GemmaWire"]),
        .library(name: "GemmaTokenizerService", targets: ["GemmaTokenizerService"]),
        .executable(name: "gemma-tokenizer", targets: ["gemma-tokenizer"]),
        .executable(name: "gemma-wire-bench", targets: ["gemma-wire-bench"]),
        .executable(name: "gemma", targets: ["gemma"]),
        .library(name: "GemmaShard", targets: ["GemmaShard"]),
        .library(name: "GemmaShardService", targets: ["GemmaShardService"]),
        .executable(name: "gemma-shard", targets: ["gemma-shard"]),
        .library(name: "GemmaRouter", targets: ["GemmaRouter"]),
        .executable(name: "gemma-router", targets: ["gemma-router"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        // Thin C modules over Debian's libraries.
        .target(name: "CSentencePiece", path: "Sources/CSentencePiece",
                cxxSettings: [.unsafeFlags(["-std=c++17"])],
                linkerSettings: [.linkedLibrary("sentencepiece"), .linkedLibrary("stdc++")]),

        .systemLibrary(name: "CNNG", path: "Sources/CNNG", providers: [.apt(["libnng-dev"])]),
        .target(name: "CGemmaKernels", path: "Sources/CGemmaKernels",
                cSettings: [.unsafeFlags(["-O3"])],
                linkerSettings: [.linkedLibrary("openblas")]),

        // Libraries.
        .target(name: "GemmaQuant", swiftSettings: computeFlags),
        .target(name: "GemmaModel", dependencies: ["CGemmaKernels", "GemmaQuant"], swiftSettings: computeFlags),
        .target(name: "GemmaTokenizer", dependencies: ["CSentencePiece"]),
        .target(name: "GemmaConvert", dependencies: ["GemmaModel", "GemmaQuant", "GemmaTokenizer"],
                swiftSettings: computeFlags),
        // SHA-256 for fingerprints, shared by the wire and the compute libraries.
        .target(name: "GemmaDigest"),
        .target(name: "GemmaWire", dependencies: [
            "CNNG", "GemmaDigest",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], exclude: ["Generated/SOURCES.sha256"]),
        // The router's engine: cluster config, continuous batching over the pipeline, recovery.
        .target(name: "GemmaCluster", dependencies: [
            "GemmaWire",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The router's HTTP front: an OpenAI-compatible API over the PipelineScheduler.
        .target(name: "GemmaRouter", dependencies: [
            "GemmaCluster", "GemmaWire",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The Tokenizer service's handlers: GemmaTokenizer behind gemma.v1.Tokenizer.
        .target(name: "GemmaTokenizerService", dependencies: [
            "GemmaTokenizer", "GemmaWire",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The Quantizer service: conversion jobs confined to a models directory, and its client.
        .target(name: "GemmaQuantizerService", dependencies: [
            "GemmaConvert", "GemmaQuant", "GemmaWire",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // A pipeline stage: layers of a model, its KV caches, forward and sampling (no networking).
        .target(name: "GemmaShard", dependencies: ["GemmaModel", "GemmaQuant", "GemmaDigest"],
                swiftSettings: computeFlags),
        // The Shard service's handlers: a ShardEngine behind gemma.v1.Shard, on a compute thread.
        .target(name: "GemmaShardService", dependencies: [
            "GemmaShard", "GemmaModel", "GemmaWire",
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Services: thin executables over the libraries.
        .executableTarget(name: "gemma",
                          dependencies: ["GemmaModel", "GemmaTokenizer", "GemmaConvert", "GemmaCluster", "GemmaShard",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Services/gemma"),
        .executableTarget(name: "gemma-quantize",
                          dependencies: ["GemmaConvert", "GemmaModel", "GemmaQuant", "GemmaTokenizer",
                                         "GemmaQuantizerService", "GemmaWire",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Logging", package: "swift-log"),
                                         .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                          path: "Services/gemma-quantize"),
        .executableTarget(name: "gemma-tokenizer",
                          dependencies: ["GemmaTokenizer", "GemmaWire", "GemmaTokenizerService", "GemmaConvert", "GemmaQuant", "GemmaDigest",
                                         "GemmaCluster",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Logging", package: "swift-log"),
                                         .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                          path: "Services/gemma-tokenizer"),

        .executableTarget(name: "gemma-shard",
                          dependencies: ["GemmaShard", "GemmaShardService", "GemmaWire", "GemmaCluster",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Logging", package: "swift-log"),
                                         .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                          path: "Services/gemma-shard"),

        .executableTarget(name: "gemma-router",
                          dependencies: ["GemmaRouter", "GemmaCluster", "GemmaWire",
                                         .product(name: "Hummingbird", package: "hummingbird"),
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Logging", package: "swift-log"),
                                         .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                          path: "Services/gemma-router"),

        // Benchmarks (not tests): run in release.
        .executableTarget(name: "gemma-wire-bench",
                          dependencies: ["GemmaWire", "CNNG",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Benchmarks/gemma-wire-bench"),

        // Tests: one target per library.
        .testTarget(name: "GemmaModelTests", dependencies: ["GemmaModel", "GemmaTokenizer", "GemmaQuant", "CGemmaKernels", "GemmaTestSupport"]),
        .testTarget(name: "GemmaTokenizerTests", dependencies: ["GemmaTokenizer"]),
        .testTarget(name: "GemmaQuantTests", dependencies: ["GemmaQuant"]),
        .testTarget(name: "GemmaConvertTests", dependencies: ["GemmaConvert", "GemmaModel", "GemmaQuant", "GemmaTokenizer"]),
        .target(name: "GemmaTestSupport", dependencies: ["GemmaWire"], path: "Tests/GemmaTestSupport"),
        // Tokenizer and shard services run in the test process (scheduler and router tests).
        .target(name: "GemmaServiceTestSupport", dependencies: ["GemmaTestSupport", "GemmaShard", "GemmaShardService",
                                                               "GemmaTokenizerService", "GemmaWire",
                                                               .product(name: "Logging", package: "swift-log")],
                path: "Tests/GemmaServiceTestSupport"),
        .testTarget(name: "GemmaWireTests", dependencies: ["GemmaWire", "GemmaTokenizer", "GemmaTokenizerService", "GemmaTestSupport"]),
        .testTarget(name: "GemmaShardTests", dependencies: ["GemmaShard", "GemmaShardService", "GemmaModel", "GemmaWire",
                                                           "GemmaQuant", "GemmaTokenizer", "GemmaTestSupport"]),
        .testTarget(name: "GemmaClusterTests", dependencies: ["GemmaCluster", "GemmaWire", "GemmaShard", "GemmaShardService",
                                                              "GemmaTokenizerService", "GemmaTestSupport", "GemmaServiceTestSupport",
                                                              .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "GemmaRouterTests", dependencies: ["GemmaRouter", "GemmaCluster", "GemmaWire", "GemmaShard",
                                                            "GemmaShardService", "GemmaTokenizerService", "GemmaServiceTestSupport",
                                                            .product(name: "Hummingbird", package: "hummingbird"),
                                                            .product(name: "HummingbirdTesting", package: "hummingbird"),
                                                            .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "GemmaQuantizerServiceTests", dependencies: ["GemmaQuantizerService", "GemmaConvert", "GemmaQuant", "GemmaWire",
                                                                       "GemmaTestSupport",
                                                                       .product(name: "Logging", package: "swift-log")]),
        // The Docker Compose deployment (compose/) against the cluster config and docker-compose,
        // and the workers started from a cluster config.
        .testTarget(name: "GemmaDeployTests", dependencies: ["GemmaCluster", "GemmaWire", "GemmaTestSupport"]),
        // Runs the built `gemma` executable the way outside checks call it.
        .testTarget(name: "GemmaCLITests"),
    ],
    swiftLanguageModes: [.v5]
)
