// Implementation of sentencepiece_shim.h. Every entry point catches all exceptions.
#include "sentencepiece_shim.h"

#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

struct spm_processor {
    sentencepiece::SentencePieceProcessor sp;
    bool add_dummy_prefix = true;
    bool remove_extra_whitespaces = true;
};

namespace {

void set_error(char **error, const std::string &message) {
    if (error == nullptr) return;
    char *copy = static_cast<char *>(std::malloc(message.size() + 1));
    if (copy == nullptr) return;
    std::memcpy(copy, message.data(), message.size());
    copy[message.size()] = '\0';
    *error = copy;
}

void set_error_from_exception(char **error) {
    try {
        throw;
    } catch (const std::exception &e) {
        set_error(error, std::string("sentencepiece raised an exception: ") + e.what());
    } catch (...) {
        set_error(error, "sentencepiece raised an unknown exception");
    }
}

bool in_range(const spm_processor *p, int32_t id) {
    return p != nullptr && id >= 0 && id < p->sp.GetPieceSize();
}

// Reads a protobuf varint at `pos`; returns false on malformed input.
bool read_varint(std::string_view data, size_t &pos, uint64_t &value) {
    value = 0;
    for (int shift = 0; shift < 64 && pos < data.size(); shift += 7) {
        const auto byte = static_cast<uint8_t>(data[pos++]);
        value |= static_cast<uint64_t>(byte & 0x7F) << shift;
        if ((byte & 0x80) == 0) return true;
    }
    return false;
}

// Calls visit(field, wire_type, varint_value, payload) for each field of one message.
template <typename Visit>
bool walk_message(std::string_view data, Visit visit) {
    size_t pos = 0;
    while (pos < data.size()) {
        uint64_t key = 0, value = 0;
        if (!read_varint(data, pos, key)) return false;
        const uint32_t field = static_cast<uint32_t>(key >> 3);
        const int wire = static_cast<int>(key & 7);
        std::string_view payload;
        switch (wire) {
        case 0: if (!read_varint(data, pos, value)) return false; break;
        case 1: if (data.size() - pos < 8) return false; pos += 8; break;
        case 5: if (data.size() - pos < 4) return false; pos += 4; break;
        case 2:
            if (!read_varint(data, pos, value) || value > data.size() - pos) return false;
            payload = data.substr(pos, static_cast<size_t>(value));
            pos += static_cast<size_t>(value);
            break;
        default: return false;
        }
        visit(field, wire, value, payload);
    }
    return true;
}

// ModelProto.normalizer_spec is field 3; in NormalizerSpec, add_dummy_prefix is field 3
// and remove_extra_whitespaces is field 4 (sentencepiece_model.proto). Both default to true.
void read_normalizer_flags(std::string_view model_proto, spm_processor &p) {
    walk_message(model_proto, [&](uint32_t field, int wire, uint64_t, std::string_view spec) {
        if (field != 3 || wire != 2) return;
        walk_message(spec, [&](uint32_t f, int w, uint64_t v, std::string_view) {
            if (w != 0) return;
            if (f == 3) p.add_dummy_prefix = v != 0;
            if (f == 4) p.remove_extra_whitespaces = v != 0;
        });
    });
}

spm_processor *finish_load(std::unique_ptr<spm_processor> p, const sentencepiece::util::Status &status,
                           std::string_view serialized, char **error) {
    if (!status.ok()) {
        // libsentencepiece reports a protobuf failure as the failed source line; say what it means.
        const std::string message = status.ToString();
        set_error(error, message.find("ParseFromArray") != std::string::npos
                             ? "not a serialized SentencePiece model (protobuf parsing failed)"
                             : message);
        return nullptr;
    }
    if (p->sp.GetPieceSize() <= 0) {
        set_error(error, "the model has an empty vocabulary");
        return nullptr;
    }
    read_normalizer_flags(serialized, *p);
    return p.release();
}

}  // namespace

extern "C" {

spm_processor *spm_load_file(const char *path, char **error) {
    try {
        if (path == nullptr) {
            set_error(error, "no path given");
            return nullptr;
        }
        auto p = std::make_unique<spm_processor>();
        const auto status = p->sp.Load(path);
        if (!status.ok()) return finish_load(std::move(p), status, {}, error);
        const std::string serialized = p->sp.serialized_model_proto();
        return finish_load(std::move(p), status, serialized, error);
    } catch (...) {
        set_error_from_exception(error);
        return nullptr;
    }
}

spm_processor *spm_load_serialized(const void *bytes, size_t length, char **error) {
    try {
        const std::string_view serialized(static_cast<const char *>(bytes), bytes ? length : 0);
        auto p = std::make_unique<spm_processor>();
        const auto status = p->sp.LoadFromSerializedProto(serialized);
        return finish_load(std::move(p), status, serialized, error);
    } catch (...) {
        set_error_from_exception(error);
        return nullptr;
    }
}

void spm_free(spm_processor *processor) { delete processor; }

void spm_string_free(char *string) { std::free(string); }

void spm_ids_free(int32_t *ids) { std::free(ids); }

int spm_encode(const spm_processor *processor, const char *text, size_t length,
               int32_t **ids, size_t *count, char **error) {
    try {
        *ids = nullptr;
        *count = 0;
        std::vector<int> out;
        const auto status = processor->sp.Encode(std::string_view(text ? text : "", text ? length : 0), &out);
        if (!status.ok()) {
            set_error(error, status.ToString());
            return 1;
        }
        if (out.empty()) return 0;
        auto *buffer = static_cast<int32_t *>(std::malloc(out.size() * sizeof(int32_t)));
        if (buffer == nullptr) {
            set_error(error, "out of memory");
            return 1;
        }
        for (size_t i = 0; i < out.size(); ++i) buffer[i] = static_cast<int32_t>(out[i]);
        *ids = buffer;
        *count = out.size();
        return 0;
    } catch (...) {
        set_error_from_exception(error);
        return 1;
    }
}

char *spm_decode(const spm_processor *processor, const int32_t *ids, size_t count,
                 size_t *length, char **error) {
    try {
        *length = 0;
        const std::vector<int> in(ids, ids + (ids ? count : 0));
        std::string text;
        const auto status = processor->sp.Decode(in, &text);
        if (!status.ok()) {
            set_error(error, status.ToString());
            return nullptr;
        }
        char *out = static_cast<char *>(std::malloc(text.size() + 1));
        if (out == nullptr) {
            set_error(error, "out of memory");
            return nullptr;
        }
        std::memcpy(out, text.data(), text.size());
        out[text.size()] = '\0';
        *length = text.size();
        return out;
    } catch (...) {
        set_error_from_exception(error);
        return nullptr;
    }
}

int32_t spm_vocab_size(const spm_processor *processor) {
    try { return processor->sp.GetPieceSize(); } catch (...) { return 0; }
}

const char *spm_id_to_piece(const spm_processor *processor, int32_t id, size_t *length) {
    try {
        *length = 0;
        if (!in_range(processor, id)) return nullptr;
        const std::string &piece = processor->sp.IdToPiece(id);
        *length = piece.size();
        return piece.c_str();
    } catch (...) {
        return nullptr;
    }
}

int32_t spm_piece_to_id(const spm_processor *processor, const char *piece, size_t length) {
    try {
        const std::string_view wanted(piece ? piece : "", piece ? length : 0);
        const int id = processor->sp.PieceToId(wanted);
        // PieceToId answers unk_id for pieces it does not know; confirm the spelling.
        if (!in_range(processor, id) || processor->sp.IdToPiece(id) != wanted) return -1;
        return id;
    } catch (...) {
        return -1;
    }
}

float spm_score(const spm_processor *processor, int32_t id) {
    try { return in_range(processor, id) ? processor->sp.GetScore(id) : 0.0f; } catch (...) { return 0.0f; }
}

int spm_is_control(const spm_processor *processor, int32_t id) {
    try { return in_range(processor, id) && processor->sp.IsControl(id); } catch (...) { return 0; }
}

int spm_is_unknown(const spm_processor *processor, int32_t id) {
    try { return in_range(processor, id) && processor->sp.IsUnknown(id); } catch (...) { return 0; }
}

int spm_is_byte(const spm_processor *processor, int32_t id) {
    try { return in_range(processor, id) && processor->sp.IsByte(id); } catch (...) { return 0; }
}

int spm_is_unused(const spm_processor *processor, int32_t id) {
    try { return in_range(processor, id) && processor->sp.IsUnused(id); } catch (...) { return 0; }
}

int32_t spm_bos_id(const spm_processor *processor) {
    try { return processor->sp.bos_id(); } catch (...) { return -1; }
}

int32_t spm_eos_id(const spm_processor *processor) {
    try { return processor->sp.eos_id(); } catch (...) { return -1; }
}

int32_t spm_pad_id(const spm_processor *processor) {
    try { return processor->sp.pad_id(); } catch (...) { return -1; }
}

int32_t spm_unk_id(const spm_processor *processor) {
    try { return processor->sp.unk_id(); } catch (...) { return -1; }
}

void spm_normalizer_flags(const spm_processor *processor, int *add_dummy_prefix,
                          int *remove_extra_whitespaces) {
    *add_dummy_prefix = processor->add_dummy_prefix;
    *remove_extra_whitespaces = processor->remove_extra_whitespaces;
}

}  // extern "C"
