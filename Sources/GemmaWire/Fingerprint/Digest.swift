// SHA-256 lives in GemmaDigest so that compute libraries (GemmaShard) can hash without
// linking the wire; users of GemmaWire keep seeing it as before.
@_exported import GemmaDigest
