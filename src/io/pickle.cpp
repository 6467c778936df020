// Safe unpickler (see pickle.h). Opcode semantics follow CPython's Lib/pickle.py (_Unpickler.load_*),
// minus everything that would import or call code.
#include "io/pickle.h"

#include <cstring>
#include <unordered_map>

#include "core/error.h"

namespace nuance {

using Kind = PyValue::Kind;

const PyValue* PyValue::get(const std::string& key) const {
    if (kind != Kind::Dict) return nullptr;
    for (auto it = dict.rbegin(); it != dict.rend(); ++it)
        if (it->first->kind == Kind::Str && it->first->s == key) return it->second;
    return nullptr;
}

const char* py_kind_name(Kind k) {
    switch (k) {
        case Kind::None: return "None";
        case Kind::Bool: return "bool";
        case Kind::Int: return "int";
        case Kind::Float: return "float";
        case Kind::Str: return "str";
        case Kind::Bytes: return "bytes";
        case Kind::Tuple: return "tuple";
        case Kind::List: return "list";
        case Kind::Dict: return "dict";
        case Kind::Set: return "set";
        case Kind::Global: return "global";
        case Kind::Object: return "object";
        case Kind::PersistentId: return "persistent id";
    }
    return "?";
}

namespace {

class Unpickler {
public:
    Unpickler(const uint8_t* data, size_t size, const std::set<std::string>& allowed, const std::string& source,
              const PickleLimits& limits)
        : p_(data), n_(size), allowed_(allowed), source_(source), lim_(limits) {}

    Pickle run();
    size_t consumed() const { return pos_; }  // bytes read, through STOP, once run() returned

private:
    template <class... A>
    [[noreturn]] void bad(const A&... a) const {
        fail(ErrorCode::InvalidArgument, "pickle in '", source_, "': ", a..., " (opcode at byte ", op_pos_, ")");
    }
    const uint8_t* take(size_t len) {
        if (len > n_ - pos_) bad("truncated data: need ", len, " bytes, ", n_ - pos_, " left");
        const uint8_t* r = p_ + pos_;
        pos_ += len;
        return r;
    }
    uint64_t le(size_t len) {
        const uint8_t* b = take(len);
        uint64_t v = 0;
        for (size_t k = 0; k < len; ++k) v |= (uint64_t)b[k] << (8 * k);
        return v;
    }
    std::string line() {  // text-protocol argument, without the '\n'
        const void* nl = std::memchr(p_ + pos_, '\n', n_ - pos_);
        if (!nl) bad("truncated data: unterminated line");
        const size_t len = (size_t)(static_cast<const uint8_t*>(nl) - (p_ + pos_));
        std::string s(reinterpret_cast<const char*>(take(len)), len);
        ++pos_;
        return s;
    }
    std::string bytes(uint64_t len) {
        if (len > n_ - pos_) bad("truncated data: string of ", len, " bytes, ", n_ - pos_, " left");
        return std::string(reinterpret_cast<const char*>(take((size_t)len)), (size_t)len);
    }

    PyValue* make(Kind k) {
        if (++objects_ > lim_.max_objects) bad("more than ", lim_.max_objects, " objects");
        PyValue& v = out_.arena.emplace_back();
        v.kind = k;
        return &v;
    }
    PyValue* make_int(int64_t i) { PyValue* v = make(Kind::Int); v->i = i; return v; }
    PyValue* make_str(Kind k, std::string s) { PyValue* v = make(k); v->s = std::move(s); return v; }
    void count(size_t k) {  // container elements count towards the object budget too
        objects_ += k;
        if (objects_ > lim_.max_objects) bad("more than ", lim_.max_objects, " objects");
    }

    void push(PyValue* v) {
        if (stack_.size() >= lim_.max_stack) bad("stack deeper than ", lim_.max_stack);
        stack_.push_back(v);
    }
    PyValue* pop() {
        if (stack_.size() <= floor()) bad("stack underflow");
        PyValue* v = stack_.back();
        stack_.pop_back();
        return v;
    }
    PyValue* top() {
        if (stack_.size() <= floor()) bad("stack underflow");
        return stack_.back();
    }
    size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
    std::vector<PyValue*> pop_mark() {  // everything above the last MARK
        if (marks_.empty()) bad("no MARK on the stack");
        const size_t m = marks_.back();
        marks_.pop_back();
        std::vector<PyValue*> items(stack_.begin() + (std::ptrdiff_t)m, stack_.end());
        stack_.resize(m);
        return items;
    }
    void memo_put(uint64_t idx) {
        PyValue* v = top();
        if (memo_.size() >= lim_.max_memo && !memo_.count(idx)) bad("memo larger than ", lim_.max_memo);
        memo_[idx] = v;
    }
    void memo_get(uint64_t idx) {
        const auto it = memo_.find(idx);
        if (it == memo_.end()) bad("memo key ", idx, " not found");
        push(it->second);
    }
    PyValue* tuple(const std::vector<PyValue*>& items) {
        count(items.size());
        PyValue* t = make(Kind::Tuple);
        t->items.assign(items.begin(), items.end());
        return t;
    }
    void global(const std::string& module, const std::string& name) {
        const std::string full = module + "." + name;
        if (!allowed_.count(full))
            fail(ErrorCode::Unsupported, "pickle in '", source_, "' references the disallowed global '", full,
                 "'; refusing to load it (only torch tensor/state-dict globals are allowed)");
        push(make_str(Kind::Global, full));
    }
    void set_items(PyValue* d, const std::vector<PyValue*>& kv) {
        if (d->kind != Kind::Dict) bad("SETITEM(S) on a ", py_kind_name(d->kind), ", expected a dict");
        if (kv.size() % 2) bad("SETITEMS with an odd number of values");
        count(kv.size());
        for (size_t k = 0; k < kv.size(); k += 2) d->dict.emplace_back(kv[k], kv[k + 1]);
    }
    void append(PyValue* l, const std::vector<PyValue*>& items, Kind want) {
        if (l->kind != want) bad("APPEND/ADDITEMS on a ", py_kind_name(l->kind), ", expected a ", py_kind_name(want));
        count(items.size());
        l->items.insert(l->items.end(), items.begin(), items.end());
    }
    // REDUCE / NEWOBJ of an allowlisted global: never called, only recorded.
    PyValue* call(PyValue* callable, PyValue* args) {
        if (callable->kind != Kind::Global) bad("call of a ", py_kind_name(callable->kind), ", expected a global");
        if (args->kind != Kind::Tuple) bad("call of '", callable->s, "' with a ", py_kind_name(args->kind),
                                           " instead of an argument tuple");
        if (callable->s == "collections.OrderedDict") {
            PyValue* d = make(Kind::Dict);
            // OrderedDict([(k, v), ...]); protocol-2 files of old torch versions (torchvision's and lpips's weights)
            // hold [k, v] lists instead of tuples
            if (!args->items.empty() && args->items[0]->kind == Kind::List) {
                for (const PyValue* kv : args->items[0]->items) {
                    if ((kv->kind != Kind::Tuple && kv->kind != Kind::List) || kv->items.size() != 2)
                        bad("OrderedDict item is not a pair");
                    count(2);
                    d->dict.emplace_back(kv->items[0], kv->items[1]);
                }
            }
            return d;
        }
        PyValue* o = make_str(Kind::Object, callable->s);
        o->args = args;
        return o;
    }
    PyValue* persistent(PyValue* pid) {
        PyValue* v = make(Kind::PersistentId);
        v->args = pid;
        return v;
    }
    int64_t long_bytes(size_t len) {  // LONG1/LONG4: little-endian two's complement
        if (len > 8) fail(ErrorCode::Unsupported, "pickle in '", source_, "': integer of ", len,
                          " bytes does not fit in 64 bits (opcode at byte ", op_pos_, ")");
        if (len == 0) return 0;
        uint64_t v = le(len);
        if (len < 8 && (v >> (8 * len - 1)) & 1) v |= ~0ULL << (8 * len);  // sign-extend
        return (int64_t)v;
    }
    int64_t parse_int(const std::string& s) {
        std::string t = s;
        if (!t.empty() && t.back() == 'L') t.pop_back();
        if (t.empty()) bad("empty integer literal");
        size_t k = (t[0] == '-' || t[0] == '+') ? 1 : 0;
        if (k == t.size()) bad("bad integer literal '", s, "'");
        uint64_t v = 0;
        for (; k < t.size(); ++k) {
            if (t[k] < '0' || t[k] > '9') bad("bad integer literal '", s, "'");
            if (v > (uint64_t)INT64_MAX / 10) fail(ErrorCode::Unsupported, "pickle in '", source_, "': integer '", s,
                                                   "' does not fit in 64 bits");
            v = v * 10 + (uint64_t)(t[k] - '0');
        }
        if (v > (uint64_t)INT64_MAX) fail(ErrorCode::Unsupported, "pickle in '", source_, "': integer '", s,
                                          "' does not fit in 64 bits");
        return t[0] == '-' ? -(int64_t)v : (int64_t)v;
    }

    const uint8_t* p_;
    size_t n_, pos_ = 0, op_pos_ = 0;
    const std::set<std::string>& allowed_;
    const std::string& source_;
    PickleLimits lim_;
    Pickle out_;
    std::vector<PyValue*> stack_;
    std::vector<size_t> marks_;
    std::unordered_map<uint64_t, PyValue*> memo_;
    size_t objects_ = 0;
};

Pickle Unpickler::run() {
    while (true) {
        op_pos_ = pos_;
        if (pos_ >= n_) bad("truncated data: no STOP opcode");
        const uint8_t op = p_[pos_++];
        switch (op) {
            case 0x80: {  // PROTO
                const uint8_t proto = *take(1);
                if (proto > 5) fail(ErrorCode::Unsupported, "pickle in '", source_, "': protocol ", (int)proto);
                break;
            }
            case 0x95: {  // FRAME: a length hint only
                const uint64_t len = le(8);
                if (len > n_ - pos_) bad("truncated data: frame of ", len, " bytes");
                break;
            }
            case '.': {  // STOP
                out_.root = pop();
                return std::move(out_);
            }
            case '(':  // MARK
                if (marks_.size() >= lim_.max_marks) bad("more than ", lim_.max_marks, " nested MARKs");
                marks_.push_back(stack_.size());
                break;
            case '0': pop(); break;                      // POP
            case '1': pop_mark(); break;                 // POP_MARK
            case '2': push(top()); break;                // DUP
            case 'N': push(make(Kind::None)); break;     // NONE
            case 0x88: case 0x89: {                      // NEWTRUE / NEWFALSE
                PyValue* v = make(Kind::Bool);
                v->b = op == 0x88;
                push(v);
                break;
            }
            case 'J': push(make_int((int32_t)(uint32_t)le(4))); break;  // BININT
            case 'K': push(make_int((int64_t)le(1))); break;             // BININT1
            case 'M': push(make_int((int64_t)le(2))); break;             // BININT2
            case 0x8a: { const size_t len = (size_t)le(1); push(make_int(long_bytes(len))); break; }  // LONG1
            case 0x8b: { const uint64_t len = le(4); push(make_int(long_bytes((size_t)len))); break; } // LONG4
            case 'I': {  // INT (text); "00"/"01" are False/True
                const std::string s = line();
                if (s == "00" || s == "01") {
                    PyValue* v = make(Kind::Bool);
                    v->b = s == "01";
                    push(v);
                } else {
                    push(make_int(parse_int(s)));
                }
                break;
            }
            case 'L': push(make_int(parse_int(line()))); break;  // LONG (text)
            case 'G': {  // BINFLOAT: big-endian double
                const uint8_t* b = take(8);
                uint64_t bits = 0;
                for (int k = 0; k < 8; ++k) bits = bits << 8 | b[k];
                PyValue* v = make(Kind::Float);
                std::memcpy(&v->f, &bits, 8);
                push(v);
                break;
            }
            case 'X': { const uint64_t len = le(4); push(make_str(Kind::Str, bytes(len))); break; }     // BINUNICODE
            case 0x8c: { const uint64_t len = le(1); push(make_str(Kind::Str, bytes(len))); break; }    // SHORT_BINUNICODE
            case 0x8d: { const uint64_t len = le(8); push(make_str(Kind::Str, bytes(len))); break; }    // BINUNICODE8
            case 'T': {  // BINSTRING (signed length)
                const int32_t len = (int32_t)(uint32_t)le(4);
                if (len < 0) bad("negative string length");
                push(make_str(Kind::Str, bytes((uint64_t)len)));
                break;
            }
            case 'U': { const uint64_t len = le(1); push(make_str(Kind::Str, bytes(len))); break; }      // SHORT_BINSTRING
            case 'B': { const uint64_t len = le(4); push(make_str(Kind::Bytes, bytes(len))); break; }    // BINBYTES
            case 'C': { const uint64_t len = le(1); push(make_str(Kind::Bytes, bytes(len))); break; }    // SHORT_BINBYTES
            case 0x8e: { const uint64_t len = le(8); push(make_str(Kind::Bytes, bytes(len))); break; }   // BINBYTES8
            case ')': push(make(Kind::Tuple)); break;              // EMPTY_TUPLE
            case 't': push(tuple(pop_mark())); break;              // TUPLE
            case 0x85: { PyValue* a = pop(); push(tuple({a})); break; }                                // TUPLE1
            case 0x86: { PyValue* b = pop(); PyValue* a = pop(); push(tuple({a, b})); break; }         // TUPLE2
            case 0x87: {                                                                               // TUPLE3
                PyValue* c = pop(); PyValue* b = pop(); PyValue* a = pop();
                push(tuple({a, b, c}));
                break;
            }
            case ']': push(make(Kind::List)); break;               // EMPTY_LIST
            case 'l': {                                            // LIST
                auto items = pop_mark();
                PyValue* l = make(Kind::List);
                append(l, items, Kind::List);
                push(l);
                break;
            }
            case 'a': { PyValue* v = pop(); append(top(), {v}, Kind::List); break; }                   // APPEND
            case 'e': { auto items = pop_mark(); append(top(), items, Kind::List); break; }            // APPENDS
            case '}': push(make(Kind::Dict)); break;               // EMPTY_DICT
            case 'd': {                                            // DICT
                auto kv = pop_mark();
                PyValue* d = make(Kind::Dict);
                set_items(d, kv);
                push(d);
                break;
            }
            case 's': { PyValue* v = pop(); PyValue* k = pop(); set_items(top(), {k, v}); break; }     // SETITEM
            case 'u': { auto kv = pop_mark(); set_items(top(), kv); break; }                          // SETITEMS
            case 0x8f: push(make(Kind::Set)); break;               // EMPTY_SET
            case 0x90: { auto items = pop_mark(); append(top(), items, Kind::Set); break; }            // ADDITEMS
            case 0x91: {                                           // FROZENSET
                auto items = pop_mark();
                PyValue* s = make(Kind::Set);
                append(s, items, Kind::Set);
                push(s);
                break;
            }
            case 'p': memo_put((uint64_t)parse_int(line())); break;  // PUT
            case 'q': memo_put(le(1)); break;                         // BINPUT
            case 'r': memo_put(le(4)); break;                         // LONG_BINPUT
            case 0x94: memo_put(memo_.size()); break;                 // MEMOIZE
            case 'g': memo_get((uint64_t)parse_int(line())); break;   // GET
            case 'h': memo_get(le(1)); break;                         // BINGET
            case 'j': memo_get(le(4)); break;                         // LONG_BINGET
            case 'c': {  // GLOBAL "module\nname\n"
                const std::string module = line();
                const std::string name = line();
                global(module, name);
                break;
            }
            case 0x93: {  // STACK_GLOBAL
                PyValue* name = pop();
                PyValue* module = pop();
                if (name->kind != Kind::Str || module->kind != Kind::Str) bad("STACK_GLOBAL expects two strings");
                global(module->s, name->s);
                break;
            }
            case 'R': { PyValue* args = pop(); PyValue* fn = pop(); push(call(fn, args)); break; }     // REDUCE
            case 0x81: { PyValue* args = pop(); PyValue* cls = pop(); push(call(cls, args)); break; }  // NEWOBJ
            case 0x92: {                                                                                // NEWOBJ_EX
                pop();  // kwargs: recorded nowhere, the object is inert anyway
                PyValue* args = pop();
                PyValue* cls = pop();
                push(call(cls, args));
                break;
            }
            case 'b': {  // BUILD
                PyValue* state = pop();
                PyValue* obj = top();
                if (obj->kind == Kind::Object) {
                    obj->state = state;
                } else if (obj->kind == Kind::Dict) {  // OrderedDict state: an attribute dict, usually None
                    if (state->kind != Kind::None && state->kind != Kind::Dict && state->kind != Kind::Tuple)
                        bad("BUILD of a dict with a ", py_kind_name(state->kind));
                } else {
                    bad("BUILD on a ", py_kind_name(obj->kind));
                }
                break;
            }
            case 'Q': push(persistent(pop())); break;                             // BINPERSID
            case 'P': push(persistent(make_str(Kind::Str, line()))); break;       // PERSID
            default:
                fail(ErrorCode::Unsupported, "pickle in '", source_, "': unknown or unsupported opcode 0x",
                     "0123456789abcdef"[op >> 4], "0123456789abcdef"[op & 15], " at byte ", op_pos_);
        }
    }
}

}  // namespace

Pickle unpickle(const uint8_t* data, size_t size, const std::set<std::string>& allowed_globals,
                const std::string& source, const PickleLimits& limits, size_t* consumed) {
    NUANCE_CHECK(data != nullptr || size == 0, "unpickle: null data for '", source, "'");
    Unpickler u(data, size, allowed_globals, source, limits);
    Pickle p = u.run();
    if (consumed) *consumed = u.consumed();
    return p;
}

}  // namespace nuance
