// Builds GGUF files byte by byte in tests (valid ones, and hostile variants of every field).
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nuance::test {

struct GgufBuilder {
    struct Info {
        std::string name;
        std::vector<uint64_t> ne;
        uint32_t type = 0;
        uint64_t offset = 0;
    };
    uint32_t version = 3;
    uint64_t alignment = 32;
    std::string kv;  // raw key/value bytes
    uint64_t n_kv = 0;
    std::vector<Info> infos;
    std::string data;
    // Overrides of the counts as written (hostile files); -1 = the real count.
    int64_t n_tensors_override = -1, n_kv_override = -1;

    static void put_u32(std::string& b, uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); }
    static void put_u64(std::string& b, uint64_t v) { b.append(reinterpret_cast<const char*>(&v), 8); }
    static void put_str(std::string& b, const std::string& s) { put_u64(b, s.size()); b += s; }

    void kv_raw(const std::string& key, uint32_t type, const std::string& value_bytes) {
        put_str(kv, key);
        put_u32(kv, type);
        kv += value_bytes;
        ++n_kv;
    }
    void kv_u32(const std::string& key, uint32_t v) {
        std::string b;
        put_u32(b, v);
        kv_raw(key, 4, b);
    }
    void kv_string(const std::string& key, const std::string& v) {
        std::string b;
        put_str(b, v);
        kv_raw(key, 8, b);
    }
    void kv_i32_array(const std::string& key, const std::vector<int32_t>& v) {
        std::string b;
        put_u32(b, 5);
        put_u64(b, v.size());
        for (int32_t x : v) b.append(reinterpret_cast<const char*>(&x), 4);
        kv_raw(key, 9, b);
    }
    // A tensor with its bytes appended to the data section (padded to the alignment first).
    void tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, const std::string& bytes) {
        while (data.size() % alignment) data.push_back(0);
        infos.push_back({name, std::move(ne), type, data.size()});
        data += bytes;
    }
    void tensor_f32(const std::string& name, std::vector<uint64_t> ne, const std::vector<float>& v) {
        tensor(name, std::move(ne), 0, std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
    }

    std::string bytes() const {
        std::string b = "GGUF";
        put_u32(b, version);
        put_u64(b, n_tensors_override >= 0 ? (uint64_t)n_tensors_override : infos.size());
        put_u64(b, n_kv_override >= 0 ? (uint64_t)n_kv_override : n_kv);
        b += kv;
        for (const auto& i : infos) {
            put_str(b, i.name);
            put_u32(b, (uint32_t)i.ne.size());
            for (uint64_t n : i.ne) put_u64(b, n);
            put_u32(b, i.type);
            put_u64(b, i.offset);
        }
        while (b.size() % alignment) b.push_back(0);
        return b + data;
    }
    std::shared_ptr<Storage> storage() const {
        const std::string b = bytes();
        auto s = Storage::allocate(b.size());
        std::memcpy(s->data(), b.data(), b.size());
        return s;
    }
};

}  // namespace nuance::test
