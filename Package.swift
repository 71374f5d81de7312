// swift-tools-version:6.0
import PackageDescription

/// Release builds of the compute code are where the time goes; everything else stays default.
let computeFlags: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "GemmaServe",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "GemmaModel", targets: ["GemmaModel"]),
        .library(name: "GemmaTokenizer", targets: ["GemmaTokenizer"]),
        .library(name: "GemmaQuant", targets: ["GemmaQuant"]),
        .library(name: "GemmaConvert", targets: ["GemmaConvert"]),
        .executable(name: "gemma-quantize", targets: ["gemma-quantize"]),
        .executable(name: "gemma", targets: ["gemma"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Thin C modules over Debian's libraries.
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS",
                       providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CSentencePiece", path: "Sources/CSentencePiece",
                cxxSettings: [.unsafeFlags(["-std=c++17"])],
                linkerSettings: [.linkedLibrary("sentencepiece"), .linkedLibrary("stdc++")]),

        .target(name: "CGemmaKernels", path: "Sources/CGemmaKernels",
                cSettings: [.unsafeFlags(["-O3"])]),

        // Libraries.
        .target(name: "GemmaQuant", swiftSettings: computeFlags),
        .target(name: "GemmaModel", dependencies: ["COpenBLAS", "CGemmaKernels", "GemmaQuant"], swiftSettings: computeFlags),
        .target(name: "GemmaTokenizer", dependencies: ["CSentencePiece"]),
        .target(name: "GemmaConvert", dependencies: ["GemmaModel", "GemmaQuant", "GemmaTokenizer"],
                swiftSettings: computeFlags),

        // Services: thin executables over the libraries.
        .executableTarget(name: "gemma",
                          dependencies: ["GemmaModel", "GemmaTokenizer", "GemmaConvert",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Services/gemma"),
        .executableTarget(name: "gemma-quantize",
                          dependencies: ["GemmaConvert", "GemmaModel", "GemmaQuant", "GemmaTokenizer",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Services/gemma-quantize"),

        // Tests: one target per library.
        .testTarget(name: "GemmaModelTests", dependencies: ["GemmaModel", "GemmaTokenizer", "GemmaQuant", "CGemmaKernels"]),
        .testTarget(name: "GemmaTokenizerTests", dependencies: ["GemmaTokenizer"]),
        .testTarget(name: "GemmaQuantTests", dependencies: ["GemmaQuant"]),
        .testTarget(name: "GemmaConvertTests", dependencies: ["GemmaConvert", "GemmaModel", "GemmaQuant", "GemmaTokenizer"]),
        // Runs the built `gemma` executable the way outside checks call it.
        .testTarget(name: "GemmaCLITests"),
    ],
    swiftLanguageModes: [.v5]
)
