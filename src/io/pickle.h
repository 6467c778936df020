// A SAFE unpickler: it interprets the pickle opcodes a torch state dict uses and executes no code.
// GLOBAL/STACK_GLOBAL resolve only names on a caller-given allowlist; calling one (REDUCE, NEWOBJ)
// never runs anything: collections.OrderedDict() becomes a dict, every other call becomes an inert
// Object {callable, args, state} for the caller to interpret (e.g. torch._utils._rebuild_tensor_v2).
// Values live in an arena owned by the result, so cycles and deep nesting cannot leak or overflow
// the stack on destruction; stack, memo and object counts are bounded.
#pragma once
#include <cstdint>
#include <deque>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace nuance {

struct PyValue {
    enum class Kind { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Set, Global, Object, PersistentId };
    Kind kind = Kind::None;
    bool b = false;
    int64_t i = 0;
    double f = 0;
    std::string s;                                  // Str, Bytes; Global/Object: "module.name"
    std::vector<const PyValue*> items;              // Tuple, List, Set
    std::vector<std::pair<const PyValue*, const PyValue*>> dict;  // Dict, in insertion order
    const PyValue* args = nullptr;                  // Object: the argument tuple; PersistentId: the pid
    const PyValue* state = nullptr;                 // Object: what BUILD set (nullptr if none)

    bool is(Kind k) const { return kind == k; }
    bool is_str(const char* v) const { return kind == Kind::Str && s == v; }
    // Dict lookup by string key (the last assignment wins, as in Python); nullptr when absent.
    const PyValue* get(const std::string& key) const;
};

const char* py_kind_name(PyValue::Kind k);

struct PickleLimits {
    size_t max_stack = 1u << 20;      // values on the stack (incl. marks)
    size_t max_marks = 1u << 16;      // nested MARKs
    size_t max_memo = 1u << 21;       // memo entries
    size_t max_objects = 1u << 22;    // values + container elements created (~128 bytes each: <= ~0.5 GiB)
};

// The decoded object graph. Owns every value; `root` is what STOP returned.
struct Pickle {
    std::deque<PyValue> arena;  // deque: element addresses survive growth and moves
    const PyValue* root = nullptr;
    Pickle() = default;
    Pickle(Pickle&&) = default;
    Pickle& operator=(Pickle&&) = default;
    Pickle(const Pickle&) = delete;  // values point into the arena
    Pickle& operator=(const Pickle&) = delete;
};

// `data`/`size`: the pickle bytes. `allowed_globals`: "module.name" strings that GLOBAL may reference
// (anything else throws an Error naming it and `source`). `source` names the file in messages.
// `consumed` (when given) gets the number of bytes up to and including STOP: legacy torch files hold several
// pickles back to back.
Pickle unpickle(const uint8_t* data, size_t size, const std::set<std::string>& allowed_globals,
                const std::string& source, const PickleLimits& limits = {}, size_t* consumed = nullptr);

}  // namespace nuance
