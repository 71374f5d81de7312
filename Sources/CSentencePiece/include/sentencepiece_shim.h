// A small C API over sentencepiece::SentencePieceProcessor (Debian libsentencepiece),
// so that Swift can use it without C++ interop.
//
// Conventions:
// - Fallible calls take `char **error`. On failure they return NULL (or a non-zero
//   status) and, when `error` is not NULL, store a message allocated with malloc that
//   the caller releases with spm_string_free. On success *error is left untouched.
// - Strings go in as pointer + length (UTF-8, may contain NUL bytes) and come out as
//   pointer + length.
// - No C++ exception crosses this boundary.
// - A loaded processor is immutable; all calls taking `const spm_processor *` may run
//   concurrently from several threads.
#ifndef SENTENCEPIECE_SHIM_H
#define SENTENCEPIECE_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An opaque loaded SentencePiece model.
typedef struct spm_processor spm_processor;

/// Loads a serialized ModelProto from the file at `path` (NUL-terminated).
spm_processor *spm_load_file(const char *path, char **error);

/// Loads a model from serialized ModelProto bytes (for example from GGUF metadata).
spm_processor *spm_load_serialized(const void *bytes, size_t length, char **error);

/// Releases a processor. NULL is allowed.
void spm_free(spm_processor *processor);

/// Releases a string or id array returned by this API. NULL is allowed.
void spm_string_free(char *string);
void spm_ids_free(int32_t *ids);

/// Encodes UTF-8 text into ids. On success returns 0 and stores a malloc'd array in
/// *ids (free with spm_ids_free; may be NULL when *count is 0) and its length in *count.
int spm_encode(const spm_processor *processor, const char *text, size_t length,
               int32_t **ids, size_t *count, char **error);

/// Decodes ids into UTF-8 text. Returns a malloc'd NUL-terminated string (free with
/// spm_string_free) and stores its length in *length, or NULL on failure (for example
/// an id out of range).
char *spm_decode(const spm_processor *processor, const int32_t *ids, size_t count,
                 size_t *length, char **error);

/// Number of pieces in the vocabulary.
int32_t spm_vocab_size(const spm_processor *processor);

/// The piece of `id` (bytes owned by the processor, valid until spm_free), or NULL
/// when `id` is out of range.
const char *spm_id_to_piece(const spm_processor *processor, int32_t id, size_t *length);

/// The id of the piece spelled exactly `piece`, or -1 when the vocabulary has no such piece.
int32_t spm_piece_to_id(const spm_processor *processor, const char *piece, size_t length);

/// Score of `id` (0 when out of range).
float spm_score(const spm_processor *processor, int32_t id);

/// Piece types; all are 0 for ids out of range.
int spm_is_control(const spm_processor *processor, int32_t id);
int spm_is_unknown(const spm_processor *processor, int32_t id);
int spm_is_byte(const spm_processor *processor, int32_t id);
int spm_is_unused(const spm_processor *processor, int32_t id);

/// Special ids named by the model's trainer spec, or -1 when the model has none.
int32_t spm_bos_id(const spm_processor *processor);
int32_t spm_eos_id(const spm_processor *processor);
int32_t spm_pad_id(const spm_processor *processor);
int32_t spm_unk_id(const spm_processor *processor);

/// The model's normalizer settings that change how Decode treats a leading U+2581
/// (protobuf defaults apply when a field is absent: both true).
void spm_normalizer_flags(const spm_processor *processor, int *add_dummy_prefix,
                          int *remove_extra_whitespaces);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // SENTENCEPIECE_SHIM_H
