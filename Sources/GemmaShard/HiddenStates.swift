import Foundation
import GemmaModel
import GemmaQuant

/// The element type of hidden states passed between pipeline stages.
public enum HiddenDType: String, Sendable, CaseIterable, CustomStringConvertible {
    /// IEEE 754 binary32: exact, 4 bytes a value.
    case f32
    /// bfloat16 (the upper half of a binary32, rounded to nearest even): 2 bytes a value, the default.
    case bf16
    /// IEEE 754 binary16 (rounded to nearest even): 2 bytes a value.
    case f16

    /// Bytes per value.
    public var byteWidth: Int { self == .f32 ? 4 : 2 }

    public var description: String { rawValue.uppercased() }
}

/// Hidden states as they travel: `rows` x `columns` values of `dtype`, row-major,
/// little-endian, packed (`data.count == rows * columns * dtype.byteWidth` when well formed).
public struct HiddenStates: Sendable, Equatable {
    public var dtype: HiddenDType
    public var rows: Int
    public var columns: Int
    public var data: Data

    /// Hidden states as given (checked by `ShardEngine` before use).
    public init(dtype: HiddenDType, rows: Int, columns: Int, data: Data) {
        self.dtype = dtype
        self.rows = rows
        self.columns = columns
        self.data = data
    }

    /// Encodes `values` (`rows` x `columns`) as `dtype`; bf16 and f16 round to nearest even.
    public init(encoding values: [Float], rows: Int, columns: Int, as dtype: HiddenDType) {
        precondition(values.count == rows * columns, "\(values.count) values are not \(rows) x \(columns)")
        self.dtype = dtype
        self.rows = rows
        self.columns = columns
        let count = values.count
        var data = Data(count: count * dtype.byteWidth)
        data.withUnsafeMutableBytes { out in
            values.withUnsafeBufferPointer { input in
                switch dtype {
                case .f32:
                    for i in 0 ..< count {
                        out.storeBytes(of: input[i].bitPattern.littleEndian, toByteOffset: i &* 4, as: UInt32.self)
                    }
                case .bf16:
                    for i in 0 ..< count {
                        out.storeBytes(of: HalfPrecision.bf16Bits(input[i]).littleEndian, toByteOffset: i &* 2, as: UInt16.self)
                    }
                case .f16:
                    for i in 0 ..< count {
                        out.storeBytes(of: HalfPrecision.f16Bits(input[i]).littleEndian, toByteOffset: i &* 2, as: UInt16.self)
                    }
                }
            }
        }
        self.data = data
    }

    /// Encodes a matrix of activations.
    public init(encoding matrix: Matrix, as dtype: HiddenDType) {
        self.init(encoding: matrix.storage, rows: matrix.rows, columns: matrix.columns, as: dtype)
    }

    /// The values as f32 (widening bf16 and f16 is exact).
    ///
    /// - Precondition: `data` holds exactly `rows * columns` values (see `ShardEngine`'s checks).
    public func floats() -> [Float] {
        let count = rows * columns
        precondition(data.count == count * dtype.byteWidth, "hidden states hold \(data.count) bytes, not \(rows) x \(columns) \(dtype)")
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            data.withUnsafeBytes { raw in
                switch dtype {
                case .f32:
                    for i in 0 ..< count {
                        buffer[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)))
                    }
                case .bf16:
                    for i in 0 ..< count {
                        buffer[i] = HalfPrecision.float(bf16Bits: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)))
                    }
                case .f16:
                    for i in 0 ..< count {
                        buffer[i] = HalfPrecision.float(f16Bits: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)))
                    }
                }
            }
            initialized = count
        }
    }
}
