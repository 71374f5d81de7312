import Foundation
import GemmaModel

/// The KV caches of the sequences a stage serves, by sequence id, within a byte budget.
///
/// A sequence's cache grows the way `SequenceKVCache.reserve` grows it (to at least twice its
/// capacity, at least 16 positions; a fresh sequence gets exactly what its first segment needs),
/// and `usedBytes` counts the capacity of every cache. A batch whose growth would take the pool
/// past `capacityBytes` is refused before anything changes; no sequence is ever evicted to make
/// room: only `release` frees.
///
/// The dictionary and the counters are behind a lock (`usedBytes` and `count` may be read from
/// any thread); the caches themselves belong to whoever runs the forward passes.
public final class KVCachePool: @unchecked Sendable {
    /// The budget, in bytes.
    public let capacityBytes: Int
    /// Layers per cache (the stage's layers) and the width of one position's keys (or values).
    public let layerCount: Int
    public let kvWidth: Int

    private let lock = NSLock()
    private var caches: [UInt64: SequenceKVCache] = [:]
    private var used = 0

    /// An empty pool of caches over `layerCount` layers of `kvWidth`-wide keys and values.
    public init(capacityBytes: Int, layerCount: Int, kvWidth: Int) {
        self.capacityBytes = max(0, capacityBytes)
        self.layerCount = layerCount
        self.kvWidth = kvWidth
    }

    /// Bytes the caches hold.
    public var usedBytes: Int { lock.withLock { used } }
    /// Sequences that hold a cache.
    public var count: Int { lock.withLock { caches.count } }
    /// Ids of the sequences that hold a cache, ascending.
    public var sequenceIDs: [UInt64] { lock.withLock { caches.keys.sorted() } }

    /// The cache of sequence `id`, if it has one.
    public func cache(_ id: UInt64) -> SequenceKVCache? {
        lock.withLock { caches[id] }
    }

    /// Cached positions of sequence `id` (nil when unknown).
    public func cachedPositions(_ id: UInt64) -> Int? {
        lock.withLock { caches[id]?.length }
    }

    /// Bytes of a cache that can hold `positions` positions (Int.max if that overflows: the
    /// sizes come from a model file and the positions from the network).
    public func bytes(positions: Int) -> Int {
        var product = 2 * MemoryLayout<Float>.size
        for factor in [layerCount, positions, kvWidth] {
            let (next, overflow) = product.multipliedReportingOverflow(by: factor)
            guard !overflow else { return Int.max }
            product = next
        }
        return product
    }

    /// a + b, or Int.max when that overflows (a batch that large is refused by the budget).
    static func saturatingSum(_ a: Int, _ b: Int) -> Int {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? Int.max : sum
    }

    /// The capacity a cache of `capacity` positions has after `reserve(positions)`.
    static func grownCapacity(_ capacity: Int, toHold positions: Int) -> Int {
        positions <= capacity ? capacity : max(positions, capacity * 2, 16)
    }

    /// What `prepare` hands back: the caches for the segments in order, and the ids it created.
    public struct Prepared {
        public let caches: [SequenceKVCache]
        public let created: [UInt64]
    }

    /// Readies the caches of a batch's segments, or refuses the batch changing nothing.
    ///
    /// For each `(id, start, count, reserve)`: a known sequence must have at least `start`
    /// cached positions (its cache is truncated to `start`, so a repeated segment recomputes the
    /// same values); an unknown one must start at 0 (it gets a new cache). The caches are grown
    /// to hold `max(start + count, reserve)` positions: a sequence whose first segment reserves
    /// its whole length (prompt plus completion) never grows again.
    ///
    /// - Throws: `ShardError.unknownSequence` or `.positionGap` for the first segment that does
    ///   not fit its sequence, `.kvCacheExhausted` when growing would pass the budget.
    public func prepare(_ segments: [(id: UInt64, start: Int, count: Int, reserve: Int)]) throws(ShardError) -> Prepared {
        lock.lock()
        defer { lock.unlock() }
        var extra = 0
        for segment in segments {
            let end = max(segment.start + segment.count, segment.reserve)
            if let cache = caches[segment.id] {
                guard segment.start <= cache.length else {
                    throw .positionGap(id: segment.id, cachedPositions: cache.length, startPosition: segment.start)
                }
                let grown = Self.grownCapacity(cache.capacity, toHold: end)
                extra = Self.saturatingSum(extra, bytes(positions: grown) - bytes(positions: cache.capacity))
            } else {
                guard segment.start == 0 else {
                    throw .unknownSequence(id: segment.id, startPosition: segment.start)
                }
                extra = Self.saturatingSum(extra, bytes(positions: Self.grownCapacity(0, toHold: end)))
            }
        }
        guard Self.saturatingSum(used, extra) <= capacityBytes else {
            throw .kvCacheExhausted(neededBytes: extra, usedBytes: used, capacityBytes: capacityBytes)
        }
        var result: [SequenceKVCache] = []
        var created: [UInt64] = []
        for segment in segments {
            let end = max(segment.start + segment.count, segment.reserve)
            let cache: SequenceKVCache
            if let known = caches[segment.id] {
                cache = known
                used -= known.byteCount
                cache.truncate(to: segment.start)
                cache.reserve(end)
            } else {
                cache = SequenceKVCache(layerCount: layerCount, kvWidth: kvWidth, reserving: end)
                caches[segment.id] = cache
                created.append(segment.id)
            }
            used += cache.byteCount
            result.append(cache)
        }
        return Prepared(caches: result, created: created)
    }

    /// Frees the caches of `ids`; returns how many of them held one (unknown ids are ignored).
    @discardableResult
    public func release(_ ids: [UInt64]) -> Int {
        lock.lock()
        defer { lock.unlock() }
        var released = 0
        for id in Set(ids) {
            if let cache = caches.removeValue(forKey: id) {
                used -= cache.byteCount
                released += 1
            }
        }
        return released
    }
}
