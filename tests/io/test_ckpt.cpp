// Zip reader, safe unpickler and torch checkpoint loader. Fixtures in tests/data/ckpt/ were written by
// tools/make_ckpt_fixtures.py with torch 1.13; the rest are built byte by byte here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <iterator>

#include "../test_util.h"
#include "io/ckpt.h"
#include "io/pickle.h"
#include "io/zip_reader.h"

using namespace nuance;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace {

const std::string kDir = std::string(NUANCE_TEST_DATA) + "/ckpt/";

std::string read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

std::shared_ptr<Storage> bytes_storage(const std::string& s) {
    auto st = Storage::allocate(s.size());
    if (!s.empty()) std::memcpy(st->data(), s.data(), s.size());
    return st;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

// ---- a minimal zip writer: stored or deflated entries, data 64-byte aligned, optional ZIP64 ----
struct Entry {
    std::string name, data;
    bool deflate = false;
};

void put16(std::string& s, uint64_t v) { for (int k = 0; k < 2; ++k) s.push_back((char)(v >> (8 * k))); }
void put32(std::string& s, uint64_t v) { for (int k = 0; k < 4; ++k) s.push_back((char)(v >> (8 * k))); }
void put64(std::string& s, uint64_t v) { for (int k = 0; k < 8; ++k) s.push_back((char)(v >> (8 * k))); }

std::string raw_deflate(const std::string& in) {
    z_stream zs{};
    deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    std::string out(deflateBound(&zs, in.size()), '\0');
    zs.next_in = (Bytef*)in.data();
    zs.avail_in = (uInt)in.size();
    zs.next_out = (Bytef*)out.data();
    zs.avail_out = (uInt)out.size();
    deflate(&zs, Z_FINISH);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

std::string make_zip(const std::vector<Entry>& entries, bool zip64 = false) {
    std::string z, cd;
    for (const Entry& e : entries) {
        const uint32_t crc = (uint32_t)crc32(0, (const Bytef*)e.data.data(), (uInt)e.data.size());
        const std::string payload = e.deflate ? raw_deflate(e.data) : e.data;
        const uint64_t offset = z.size();
        std::string extra;
        if (zip64) {
            put16(extra, 1); put16(extra, 16); put64(extra, e.data.size()); put64(extra, payload.size());
        }
        const size_t base = offset + 30 + e.name.size() + extra.size() + 4;
        const size_t pad = (64 - base % 64) % 64;
        put16(extra, 0x4246); put16(extra, pad); extra.append(pad, 'Z');  // like torch: align the data
        put32(z, 0x04034b50); put16(z, 45); put16(z, 0); put16(z, e.deflate ? 8 : 0); put32(z, 0);
        put32(z, crc);
        put32(z, zip64 ? 0xFFFFFFFF : payload.size());
        put32(z, zip64 ? 0xFFFFFFFF : e.data.size());
        put16(z, e.name.size()); put16(z, extra.size());
        z += e.name + extra + payload;

        std::string cextra;
        if (zip64) {
            put16(cextra, 1); put16(cextra, 24); put64(cextra, e.data.size()); put64(cextra, payload.size());
            put64(cextra, offset);
        }
        put32(cd, 0x02014b50); put16(cd, 45); put16(cd, 45); put16(cd, 0); put16(cd, e.deflate ? 8 : 0);
        put32(cd, 0); put32(cd, crc);
        put32(cd, zip64 ? 0xFFFFFFFF : payload.size());
        put32(cd, zip64 ? 0xFFFFFFFF : e.data.size());
        put16(cd, e.name.size()); put16(cd, cextra.size()); put16(cd, 0); put16(cd, 0); put16(cd, 0); put32(cd, 0);
        put32(cd, zip64 ? 0xFFFFFFFF : offset);
        cd += e.name + cextra;
    }
    const uint64_t cd_offset = z.size();
    z += cd;
    if (zip64) {
        const uint64_t z64 = z.size();
        put32(z, 0x06064b50); put64(z, 44); put16(z, 45); put16(z, 45); put32(z, 0); put32(z, 0);
        put64(z, entries.size()); put64(z, entries.size()); put64(z, cd.size()); put64(z, cd_offset);
        put32(z, 0x07064b50); put32(z, 0); put64(z, z64); put32(z, 1);
    }
    put32(z, 0x06054b50); put16(z, 0); put16(z, 0);
    put16(z, zip64 ? 0xFFFF : entries.size()); put16(z, zip64 ? 0xFFFF : entries.size());
    put32(z, zip64 ? 0xFFFFFFFF : cd.size()); put32(z, zip64 ? 0xFFFFFFFF : cd_offset);
    put16(z, 0);
    return z;
}

// ---- a minimal pickle writer (protocol 2 opcodes) ----
struct P {
    std::string b = "\x80\x02";
    P& op(char c) { b.push_back(c); return *this; }
    P& str(const std::string& s) { b.push_back('X'); put32(b, s.size()); b += s; return *this; }
    P& i(int64_t v) {
        if (v < INT32_MIN || v > INT32_MAX) return i64(v);
        if (v >= 0 && v < 256) { b.push_back('K'); b.push_back((char)v); }
        else { b.push_back('J'); put32(b, (uint32_t)v); }
        return *this;
    }
    P& i64(int64_t v) {  // LONG1 with 8 bytes: any int64
        b.push_back('\x8a');
        b.push_back(8);
        put64(b, (uint64_t)v);
        return *this;
    }
    P& global(const std::string& m, const std::string& n) { b += "c" + m + "\n" + n + "\n"; return *this; }
    P& ints(const std::vector<int64_t>& v) {
        op('(');
        for (int64_t x : v) i(x);
        return op('t');
    }
    // _rebuild_tensor_v2(('storage', type, key, 'cpu', numel), offset, size, stride, False, OrderedDict())
    P& tensor(const std::string& type, const std::string& key, int64_t numel, int64_t offset,
              const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
        global("torch._utils", "_rebuild_tensor_v2").op('(');
        op('(').str("storage").global("torch", type).str(key).str("cpu").i(numel).op('t').op('Q');
        i(offset).ints(size).ints(stride).op('\x89');
        global("collections", "OrderedDict").op(')').op('R');
        return op('t').op('R');
    }
};

std::string f32_bytes(const std::vector<float>& v) { return std::string((const char*)v.data(), v.size() * 4); }

// A torch-style archive: <name>/data.pkl + <name>/data/<key> entries.
std::string make_ckpt(const std::string& pkl, const std::vector<std::pair<std::string, std::string>>& storages,
                      bool zip64 = false) {
    std::vector<Entry> es{{"archive/data.pkl", pkl}};
    for (const auto& [k, v] : storages) es.push_back({"archive/data/" + k, v});
    es.push_back({"archive/version", "3\n"});
    return make_zip(es, zip64);
}

}  // namespace

// ============================== zip ==============================

TEST(ZipReader, StoredEntriesAreAlignedWindowsDeflatedAreInflated) {
    std::string big(100000, '\0');
    for (size_t k = 0; k < big.size(); ++k) big[k] = (char)(k % 251);
    for (bool zip64 : {false, true}) {
        const auto file = bytes_storage(make_zip({{"a/x", "hello"}, {"a/big", big, true}, {"a/empty", ""}}, zip64));
        ZipReader zip(file, "mem.zip");
        ASSERT_EQ(zip.entries().size(), 3u);
        const auto x = zip.read("a/x", true);
        EXPECT_EQ(std::string((const char*)x->data(), x->size()), "hello");
        EXPECT_FALSE(x->owned());  // a window into the file
        EXPECT_GE(x->data(), file->data());
        EXPECT_EQ((x->data() - file->data()) % 64, 0);
        const auto b = zip.read("a/big");
        EXPECT_TRUE(b->owned());
        ASSERT_EQ(b->size(), big.size());
        EXPECT_EQ(std::memcmp(b->data(), big.data(), big.size()), 0);
        EXPECT_EQ(zip.read("a/empty")->size(), 0u);
        EXPECT_EQ(zip.find("nope"), nullptr);
        EXPECT_THAT(error_of([&] { zip.read("nope"); }), HasSubstr("no entry 'nope'"));
    }
}

TEST(ZipReader, CorruptArchivesFailWithMessages) {
    const std::string good = make_zip({{"a/x", "hello world", true}});
    EXPECT_THAT(error_of([&] { ZipReader(bytes_storage("PK"), "tiny.zip"); }), HasSubstr("too small"));
    EXPECT_THAT(error_of([&] { ZipReader(bytes_storage(std::string(100, 'x')), "junk.zip"); }),
                HasSubstr("end of central directory not found"));
    // truncated: the EOCD is gone
    EXPECT_THAT(error_of([&] { ZipReader(bytes_storage(good.substr(0, good.size() / 2)), "cut.zip"); }),
                AllOf(HasSubstr("cut.zip"), HasSubstr("end of central directory not found")));
    // central directory offset pointing at the wrong place / outside the file
    std::string bad = good;
    bad[bad.size() - 6] = 3;
    EXPECT_THAT(error_of([&] { ZipReader(bytes_storage(bad), "bad.zip"); }),
                HasSubstr("bad central directory signature"));
    bad[bad.size() - 3] = 0x7f;
    EXPECT_THAT(error_of([&] { ZipReader(bytes_storage(bad), "bad.zip"); }), HasSubstr("outside the file"));
    // corrupt deflate payload -> inflate error or CRC mismatch, never a crash
    std::string flip = good;
    flip[64] ^= 0x55;
    ZipReader z(bytes_storage(flip), "flip.zip");
    EXPECT_THAT(error_of([&] { z.read("a/x"); }), HasSubstr("flip.zip"));
}

TEST(ZipReader, LocalHeaderPastEndIsRejected) {
    std::string z = make_zip({{"a/x", "data"}});
    // central directory entry's local header offset (last field before the name) -> far away
    const size_t cd = z.find(std::string("PK\x01\x02", 4));
    z[cd + 42 + 3] = 0x40;
    ZipReader r(bytes_storage(z), "far.zip");
    EXPECT_THAT(error_of([&] { r.read("a/x"); }), HasSubstr("outside the file"));
}

// ============================== pickle ==============================

TEST(Pickle, DecodesContainersScalarsAndMemo) {
    P p;
    p.op('}').op('q').op('\0').op('(');
    p.str("n").i(-7);
    p.str("big").op('\x8a').op('\x05');  // LONG1 of 5 bytes: -2**39
    p.b += std::string("\x00\x00\x00\x00\x80", 5);
    p.str("f").op('G');
    p.b += std::string("\x3f\xf8\x00\x00\x00\x00\x00\x00", 8);  // 1.5 big-endian
    p.str("t").op('(').op('N').op('\x88').op('\x89').op('t');
    p.str("l").op(']').op('(').i(1).i(2).op('e');
    p.str("self").op('h').op('\0');  // the dict itself (a cycle), from the memo
    p.op('u').op('.');
    const std::string src = "mem.pkl";
    const Pickle pk = unpickle((const uint8_t*)p.b.data(), p.b.size(), {}, src);
    const PyValue* r = pk.root;
    ASSERT_TRUE(r->is(PyValue::Kind::Dict));
    EXPECT_EQ(r->get("n")->i, -7);
    EXPECT_EQ(r->get("big")->i, -(int64_t(1) << 39));
    EXPECT_DOUBLE_EQ(r->get("f")->f, 1.5);
    ASSERT_EQ(r->get("t")->items.size(), 3u);
    EXPECT_TRUE(r->get("t")->items[1]->b);
    EXPECT_FALSE(r->get("t")->items[2]->b);
    ASSERT_EQ(r->get("l")->items.size(), 2u);
    EXPECT_EQ(r->get("l")->items[1]->i, 2);
    EXPECT_EQ(r->get("self"), r);
}

TEST(Pickle, RefusesDisallowedGlobalsAndBadStreams) {
    auto run = [](const std::string& b, const std::set<std::string>& allow = {}) {
        return error_of([&] { unpickle((const uint8_t*)b.data(), b.size(), allow, "evil.pkl"); });
    };
    P sys;
    sys.global("posix", "system").str("echo hi").op('\x85').op('R').op('.');
    EXPECT_THAT(run(sys.b), AllOf(HasSubstr("posix.system"), HasSubstr("evil.pkl"), HasSubstr("disallowed")));
    P eval;
    eval.str("builtins").str("eval").op('\x93').op('.');  // STACK_GLOBAL
    EXPECT_THAT(run(eval.b), HasSubstr("builtins.eval"));
    // an allowed global is never called: the call is recorded as an inert object
    P ok;
    ok.global("numpy", "dtype").str("f8").op('\x85').op('R').op('.');
    const Pickle pk = unpickle((const uint8_t*)ok.b.data(), ok.b.size(), {"numpy.dtype"}, "ok.pkl");
    EXPECT_TRUE(pk.root->is(PyValue::Kind::Object));
    EXPECT_EQ(pk.root->s, "numpy.dtype");

    EXPECT_THAT(run(std::string("\x80\x02\xff", 3)), HasSubstr("unknown or unsupported opcode 0xff"));
    EXPECT_THAT(run("\x80\x02}"), HasSubstr("no STOP"));
    EXPECT_THAT(run("\x80\x02."), HasSubstr("stack underflow"));
    EXPECT_THAT(run("\x80\x02h\x05."), HasSubstr("memo key 5 not found"));
    EXPECT_THAT(run(std::string("\x80\x02X\xff\xff\x00\x00", 7) + "ab."), HasSubstr("truncated"));
    EXPECT_THAT(run("\x80\x02K\x01K\x02K\x03s."), HasSubstr("SETITEM(S) on a int"));
    EXPECT_THAT(run("\x80\x02(K\x01\x30\x30."), HasSubstr("stack underflow"));  // POP below a MARK
    P bigint;
    bigint.op('\x8a').op('\x09').b += std::string(9, '\x01');
    EXPECT_THAT(run(bigint.b + "."), HasSubstr("does not fit in 64 bits"));
}

TEST(Pickle, LimitsBoundHostileStreams) {
    std::string b = "\x80\x02";
    for (int k = 0; k < 100; ++k) b += "]";  // 100 lists on the stack
    b += ".";
    PickleLimits lim;
    lim.max_stack = 50;
    EXPECT_THAT(error_of([&] { unpickle((const uint8_t*)b.data(), b.size(), {}, "deep.pkl", lim); }),
                HasSubstr("stack deeper than 50"));
    lim = {};
    lim.max_objects = 10;
    EXPECT_THAT(error_of([&] { unpickle((const uint8_t*)b.data(), b.size(), {}, "many.pkl", lim); }),
                HasSubstr("more than 10 objects"));
    // a million nested one-element tuples: no recursion anywhere, destroyed flat
    std::string nest = "\x80\x02N" + std::string(1000000, '\x85') + ".";
    const Pickle pk = unpickle((const uint8_t*)nest.data(), nest.size(), {}, "nest.pkl");
    EXPECT_TRUE(pk.root->is(PyValue::Kind::Tuple));
}

// ============================== ckpt: torch-written fixtures ==============================

TEST(Ckpt, PlainStateDictFromTorch) {
    const WeightFile wf = load_ckpt(kDir + "plain.pt");
    EXPECT_EQ(wf.path, kDir + "plain.pt");
    EXPECT_EQ(wf.metadata.at("format"), "torch_zip");
    ASSERT_EQ(wf.tensors.size(), 10u);  // "step" and "name" are not tensors

    const Tensor& f32 = wf.tensors.at("f32");
    EXPECT_EQ(f32.dtype(), DType::F32);
    EXPECT_EQ(f32.shape(), Shape({2, 3}));
    EXPECT_FALSE(f32.storage()->owned());  // zero-copy window into the mapped file
    EXPECT_EQ(f32.to_vector(), std::vector<float>({-1, -0.5, 0, 0.5, 1, 1.5}));

    const Tensor& f16 = wf.tensors.at("f16");
    EXPECT_EQ(f16.dtype(), DType::F16);
    EXPECT_EQ(f16.shape(), Shape({3, 2}));
    EXPECT_EQ(f16.to_vector(), std::vector<float>({0, 0.25, 0.5, 0.75, 1, 1.25}));
    EXPECT_EQ(wf.tensors.at("bf16").dtype(), DType::BF16);
    EXPECT_EQ(wf.tensors.at("bf16").to_vector(), std::vector<float>({0, -1.5, -3, -4.5}));
    EXPECT_EQ(wf.tensors.at("i64").dtype(), DType::I64);
    EXPECT_EQ(wf.tensors.at("i64").to_ids(), std::vector<int64_t>({1, -2, 3000000000000}));

    // arange(12).reshape(3,4).t(): a permuted view, still zero-copy
    const Tensor& tr = wf.tensors.at("transposed");
    EXPECT_EQ(tr.shape(), Shape({4, 3}));
    EXPECT_EQ(tr.strides(), Shape({1, 4}));
    EXPECT_FALSE(tr.storage()->owned());
    std::vector<float> want;
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 3; ++j) want.push_back((float)(j * 4 + i));
    EXPECT_EQ(tr.to_vector(), want);

    // base = arange(20).reshape(4,5): base[2] (storage offset 10) and base[:, 1:4] (gapped: copied)
    EXPECT_EQ(wf.tensors.at("row").to_vector(), std::vector<float>({10, 11, 12, 13, 14}));
    const Tensor& sl = wf.tensors.at("sliced");
    EXPECT_EQ(sl.shape(), Shape({4, 3}));
    want.clear();
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 3; ++j) want.push_back((float)(i * 5 + j + 1));
    EXPECT_EQ(sl.to_vector(), want);

    EXPECT_EQ(wf.tensors.at("scalar").shape(), Shape({}));
    EXPECT_EQ(wf.tensors.at("scalar").item(), 3.5f);
    const Tensor& flag = wf.tensors.at("flag");
    EXPECT_EQ(flag.dtype(), DType::Bool);
    const uint8_t* fb = static_cast<const uint8_t*>(flag.raw());
    EXPECT_EQ(std::vector<int>({fb[0], fb[1], fb[2]}), std::vector<int>({1, 0, 1}));
    EXPECT_EQ(wf.tensors.at("param").to_vector(), std::vector<float>(4, 7.0f));  // nn.Parameter
}

TEST(Ckpt, NestedLightningCheckpointIsFlattened) {
    const WeightFile wf = load_ckpt(kDir + "nested.ckpt");
    ASSERT_EQ(wf.tensors.size(), 2u);
    const Tensor& w = wf.tensors.at("model.diffusion_model.out.weight");
    EXPECT_EQ(w.dtype(), DType::F16);
    EXPECT_EQ(w.shape(), Shape({2, 4}));
    EXPECT_EQ(w.to_vector(), std::vector<float>({0, 1, 2, 3, 4, 5, 6, 7}));
    EXPECT_FLOAT_EQ(wf.tensors.at("first_stage_model.scale").item(), 0.18215f);
    EXPECT_EQ(wf.metadata.at("epoch"), "3");
    EXPECT_EQ(wf.metadata.at("global_step"), "1234");
}

TEST(Ckpt, EvilPickleIsRefused) {
    const std::string msg = error_of([] { load_ckpt(kDir + "evil.pt"); });
    EXPECT_THAT(msg, AllOf(HasSubstr("posix.system"), HasSubstr("evil.pt"), HasSubstr("disallowed")));
}

TEST(Ckpt, DamagedTorchFilesFailWithMessages) {
    const std::string good = read_all(kDir + "plain.pt");
    ASSERT_GT(good.size(), 1000u);
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(good.substr(0, good.size() - 100)), "cut.pt"); }),
                AllOf(HasSubstr("cut.pt"), HasSubstr("end of central directory")));
    std::string bad = good;  // no archive comment: the EOCD is the last 22 bytes, its cd offset at +16
    bad[bad.size() - 22 + 16] ^= 0x10;
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(bad), "badcd.pt"); }),
                AllOf(HasSubstr("badcd.pt"), HasSubstr("records disagree")));
    bad = good;  // torch always writes a ZIP64 end record too: break the offset there (field at +48)
    const size_t z64 = bad.rfind(std::string("PK\x06\x06", 4));
    ASSERT_NE(z64, std::string::npos);
    bad[z64 + 48] ^= 0x10;
    bad[bad.size() - 22 + 16] ^= 0x10;  // keep the classic record consistent with it
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(bad), "badcd.pt"); }),
                AllOf(HasSubstr("badcd.pt"), HasSubstr("bad central directory signature")));
    EXPECT_THAT(error_of([] { load_ckpt(kDir + "missing.pt"); }), HasSubstr("missing.pt"));
    EXPECT_THAT(error_of([] { load_ckpt(bytes_storage(std::string("\x80\x02}q\x00.", 6)), "old.pt"); }),
                HasSubstr("legacy"));
    EXPECT_THAT(error_of([] { load_ckpt(bytes_storage("hello world"), "text.pt"); }),
                HasSubstr("not a torch zip checkpoint"));
}

// ============================== ckpt: hand-built archives ==============================

TEST(Ckpt, HandBuiltZip64ArchiveWithOffsetAndStrides) {
    P p;
    p.op('}').op('(');
    p.str("a").tensor("FloatStorage", "0", 6, 2, {2, 2}, {1, 2});  // transposed 2x2 starting at element 2
    p.str("b").tensor("FloatStorage", "0", 6, 0, {3}, {2});        // every other element: copied
    p.str("c").tensor("FloatStorage", "0", 6, 1, {2, 3}, {0, 1});  // stride 0 (expand): copied
    p.op('u').op('.');
    for (bool zip64 : {false, true}) {
        const auto file = bytes_storage(make_ckpt(p.b, {{"0", f32_bytes({0, 1, 2, 3, 4, 5})}}, zip64));
        const WeightFile wf = load_ckpt(file, "hand.pt");
        EXPECT_EQ(wf.tensors.at("a").to_vector(), std::vector<float>({2, 4, 3, 5}));
        EXPECT_EQ(wf.tensors.at("b").to_vector(), std::vector<float>({0, 2, 4}));
        EXPECT_EQ(wf.tensors.at("c").to_vector(), std::vector<float>({1, 2, 3, 1, 2, 3}));
    }
}

TEST(Ckpt, HandBuiltErrorCases) {
    const std::string data = f32_bytes({0, 1, 2, 3, 4, 5});
    auto load = [&](const P& p, const std::string& key = "0") {
        return error_of([&] { load_ckpt(bytes_storage(make_ckpt(p.b, {{key, data}})), "hand.pt"); });
    };
    P missing;
    missing.op('}').str("w").tensor("FloatStorage", "7", 6, 0, {6}, {1}).op('s').op('.');
    EXPECT_THAT(load(missing), AllOf(HasSubstr("hand.pt"), HasSubstr("'w'"), HasSubstr("storage '7' is missing"),
                                     HasSubstr("archive/data/7")));
    P too_big;
    too_big.op('}').str("w").tensor("FloatStorage", "0", 6, 0, {7}, {1}).op('s').op('.');
    EXPECT_THAT(load(too_big), AllOf(HasSubstr("'w'"), HasSubstr("storage too small")));
    P bad_offset;
    bad_offset.op('}').str("w").tensor("FloatStorage", "0", 6, 3, {2, 2}, {2, 1}).op('s').op('.');
    EXPECT_THAT(load(bad_offset), HasSubstr("storage too small"));
    P bad_stride;
    bad_stride.op('}').str("w").tensor("FloatStorage", "0", 6, 0, {2, 2}, {5, 1}).op('s').op('.');
    EXPECT_THAT(load(bad_stride), HasSubstr("reach element 6"));
    P broadcast;  // stride 0 within bounds is fine
    broadcast.op('}').str("w").tensor("FloatStorage", "0", 6, 0, {3, 2}, {1, 0}).op('s').op('.');
    EXPECT_EQ(load(broadcast), "(no error)");
    P huge_numel;
    huge_numel.op('}').str("w").tensor("FloatStorage", "0", 1000, 0, {6}, {1}).op('s').op('.');
    EXPECT_THAT(load(huge_numel), HasSubstr("declares 1000 F32 elements"));
    P complex;
    complex.op('}').str("w").tensor("ComplexFloatStorage", "0", 3, 0, {3}, {1}).op('s').op('.');
    EXPECT_THAT(load(complex), HasSubstr("torch.ComplexFloatStorage"));  // not on the allowlist
    P opcode;
    opcode.op('}').op('\xfe').op('.');
    EXPECT_THAT(load(opcode), AllOf(HasSubstr("hand.pt"), HasSubstr("unknown or unsupported opcode 0xfe")));
    P not_dict;
    not_dict.op(']').op('.');
    EXPECT_THAT(load(not_dict), HasSubstr("top-level object is a list"));
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(make_zip({{"x/y", "z"}})), "nopkl.pt"); }),
                HasSubstr("no data.pkl"));
}

TEST(Ckpt, EveryTruncationAndByteFlipFailsCleanly) {
    // Hostile-input sweep over a real torch file: each variant must load or throw nuance::Error, never crash.
    const std::string good = read_all(kDir + "nested.ckpt");
    ASSERT_GT(good.size(), 1000u);
    size_t errors = 0, loaded = 0;
    auto attempt = [&](const std::string& bytes) {
        try {
            const WeightFile wf = load_ckpt(bytes_storage(bytes), "fuzz.ckpt");
            for (const auto& [k, t] : wf.tensors) (void)t.to_vector();  // touch every element
            ++loaded;
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr("fuzz.ckpt"));
            ++errors;
        }
    };
    for (size_t n = 0; n < good.size(); n += 7) attempt(good.substr(0, n));
    for (size_t k = 0; k < good.size(); ++k)
        for (uint8_t x : {0x01, 0x80, 0xff}) {
            std::string bad = good;
            bad[k] = (char)(bad[k] ^ x);
            attempt(bad);
        }
    EXPECT_GT(errors, 0u);
    EXPECT_GT(loaded, 0u);  // flips inside tensor data still load
}

// ============================== hostile checkpoints (issue 12) ==============================

namespace {

std::string write_temp(const std::string& name, const std::string& bytes) {
    const std::string path =
        (std::filesystem::path(NUANCE_SCRATCH_DIR) / ("nuance_hostile_" + std::to_string(::getpid()) + "_" + name)).string();
    std::ofstream(path, std::ios::binary).write(bytes.data(), (std::streamsize)bytes.size());
    return path;
}

std::string one_tensor_ckpt(int64_t numel, int64_t offset, const std::vector<int64_t>& size,
                            const std::vector<int64_t>& stride) {
    P p;
    p.op('}').str("w").tensor("FloatStorage", "0", numel, offset, size, stride).op('s').op('.');
    return make_ckpt(p.b, {{"0", f32_bytes({0, 1, 2, 3, 4, 5})}});
}

}  // namespace

TEST(CkptHostile, StrideZeroViewWhoseByteSizeWrapsIsRefused) {
    // 2^62 + 1 F32 elements viewed with stride 0: numel * 4 wraps to 4 bytes in 64-bit arithmetic. It used to
    // allocate 4 bytes and copy 2^62 elements into them (SIGSEGV in info / generate / the server).
    const int64_t n = (int64_t(1) << 62) + 1;
    const std::string file = one_tensor_ckpt(6, 0, {n}, {0});
    EXPECT_EQ(error_of([&] { load_ckpt(bytes_storage(file), "wrap.ckpt"); }),
              "checkpoint 'wrap.ckpt': tensor 'w': size [4611686018427387905] of F32 overflows (more than 2^63 bytes)");
    // The same through the CLI: one line on stderr, exit 1, no crash.
    const std::string path = write_temp("wrap.ckpt", file);
    const test::CliRun r = test::run_cli("info " + path);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, AllOf(HasSubstr(path), HasSubstr("overflows")));
    std::filesystem::remove(path);

    // Shapes whose element count (or the product of their non-zero dims) overflows int64.
    EXPECT_THAT(error_of([&] {
                    load_ckpt(bytes_storage(one_tensor_ckpt(6, 0, {int64_t(1) << 32, int64_t(1) << 32}, {0, 0})), "a.ckpt");
                }),
                HasSubstr("size [4294967296, 4294967296] of F32 overflows"));
    EXPECT_THAT(error_of([&] {
                    load_ckpt(bytes_storage(one_tensor_ckpt(6, 0, {0, int64_t(1) << 40, int64_t(1) << 40}, {0, 0, 0})),
                              "b.ckpt");
                }),
                HasSubstr("overflows"));
    // Large but representable: bounded by the materialisation limit instead.
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(one_tensor_ckpt(6, 0, {int64_t(1) << 40}, {0})), "c.ckpt"); }),
                AllOf(HasSubstr("'w'"), HasSubstr("would expand to 4398046511104 bytes")));
    // offset + span overflowing int64
    EXPECT_THAT(error_of([&] {
                    load_ckpt(bytes_storage(one_tensor_ckpt(6, INT64_MAX - 1, {3}, {1})), "d.ckpt");
                }),
                HasSubstr("overflows"));
}

TEST(CkptHostile, ManySmallStridedViewsCannotExhaustMemory) {
    // Each stride-0 view is within its own limit (1 MiB), but 100 of them over one 24-byte storage would copy
    // 100 MiB out of a file of a few kB: the total is bounded too.
    P p;
    p.op('}').op('(');
    for (int k = 0; k < 100; ++k) p.str("w" + std::to_string(k)).tensor("FloatStorage", "0", 6, 0, {262144}, {0});
    p.op('u').op('.');
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(make_ckpt(p.b, {{"0", f32_bytes({0, 1, 2, 3, 4, 5})}})), "m.ckpt"); }),
                AllOf(HasSubstr("m.ckpt"), HasSubstr("strided views would expand the checkpoint past")));
}

TEST(CkptHostile, NegativeRankAndOffsetFieldsAreRefused) {
    auto load = [](const std::string& file) { return error_of([&] { load_ckpt(bytes_storage(file), "h.ckpt"); }); };
    EXPECT_EQ(load(one_tensor_ckpt(6, 0, {-1}, {1})),
              "checkpoint 'h.ckpt': tensor 'w': size holds a non-integer or negative value");
    EXPECT_EQ(load(one_tensor_ckpt(6, 0, {2}, {-1})),
              "checkpoint 'h.ckpt': tensor 'w': stride holds a non-integer or negative value");
    EXPECT_EQ(load(one_tensor_ckpt(6, -3, {2}, {1})), "checkpoint 'h.ckpt': tensor 'w': bad storage offset");
    EXPECT_THAT(load(one_tensor_ckpt(6, 100, {0}, {1})), HasSubstr("storage offset 100 is past the storage (6 elements)"));
    EXPECT_THAT(load(one_tensor_ckpt(6, 6, {1}, {1})), HasSubstr("reach element 6 but the storage holds 6 F32 elements"));
    EXPECT_THAT(load(one_tensor_ckpt(-1, 0, {1}, {1})), HasSubstr("bad storage key or numel"));
    EXPECT_THAT(load(one_tensor_ckpt(6, 0, std::vector<int64_t>(9, 1), std::vector<int64_t>(9, 1))),
                HasSubstr("size has rank 9"));
}

TEST(CkptHostile, DeepNestingAndHugeMemoIndicesAreHarmless) {
    // A million nested lists (EMPTY_LIST x N, APPEND x N-1): built and destroyed without recursion.
    std::string deep = "\x80\x02";
    deep += std::string(1000000, ']') + std::string(999999, 'a') + ".";
    EXPECT_EQ(error_of([&] { load_ckpt(bytes_storage(make_ckpt(deep, {})), "deep.ckpt"); }),
              "checkpoint 'deep.ckpt': top-level object is a list, expected a state dict");
    // The same depth inside the state dict, as a non-tensor value: ignored.
    std::string inner("\x80\x02}X\x01\x00\x00\x00x", 9);
    inner += std::string(500000, ']') + std::string(499999, 'a') + "s.";
    EXPECT_EQ(error_of([&] { load_ckpt(bytes_storage(make_ckpt(inner, {})), "inner.ckpt"); }), "(no error)");
    // Unbounded MARK nesting.
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(make_ckpt("\x80\x02" + std::string(100000, '('), {})), "m.ckpt"); }),
                AllOf(HasSubstr("m.ckpt"), HasSubstr("more than 65536 nested MARKs")));
    // LONG_BINPUT / LONG_BINGET at index 2^32-1: a sparse memo, no 4G-entry table.
    const std::string memo = std::string("\x80\x02}r\xff\xff\xff\xff", 8) + "0" + std::string("j\xff\xff\xff\xff", 5) + ".";
    EXPECT_EQ(error_of([&] { load_ckpt(bytes_storage(make_ckpt(memo, {})), "memo.ckpt"); }), "(no error)");
    // BINGET / LONG_BINGET of keys never PUT.
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(make_ckpt(std::string("\x80\x02j\xfe\xff\xff\xff.", 8), {})), "g.ckpt"); }),
                AllOf(HasSubstr("g.ckpt"), HasSubstr("memo key 4294967294 not found")));
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(make_ckpt("\x80\x02}q\x01h\x02.", {})), "g.ckpt"); }),
                HasSubstr("memo key 2 not found"));
}

TEST(CkptHostile, PersistentIdNamingNoStorageIsRefused) {
    P p;
    p.op('}').str("w").tensor("FloatStorage", "../../etc/passwd", 6, 0, {6}, {1}).op('s').op('.');
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(make_ckpt(p.b, {{"0", f32_bytes({0, 1, 2, 3, 4, 5})}})), "p.ckpt"); }),
                AllOf(HasSubstr("p.ckpt"), HasSubstr("storage '../../etc/passwd' is missing from the archive")));
    P q;  // a persistent id that is not a storage tuple
    q.op('}').str("w").global("torch._utils", "_rebuild_tensor_v2").op('(').str("nope").op('Q').i(0).ints({1}).ints({1});
    q.op('\x89').global("collections", "OrderedDict").op(')').op('R').op('t').op('R').op('s').op('.');
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(make_ckpt(q.b, {})), "q.ckpt"); }),
                AllOf(HasSubstr("q.ckpt"), HasSubstr("unrecognised persistent id")));
}

TEST(CkptHostile, DeflatedStoragesAreBoundedPerArchive) {
    // A 2 MB deflated storage claiming 1032x (the most deflate can expand) = 2 GB: more than the archive may
    // inflate to (64x its size + 1 GiB), refused before anything is allocated.
    std::string noise(2u << 20, '\0');
    uint32_t x = 12345;
    for (char& c : noise) c = (char)((x = x * 1103515245u + 12345u) >> 24);
    P p;
    p.op('}').str("w").tensor("FloatStorage", "0", (int64_t)noise.size() / 4, 0, {1}, {1}).op('s').op('.');
    std::string z = make_zip({{"archive/data.pkl", p.b}, {"archive/data/0", noise, true}});
    size_t cd = z.find(std::string("PK\x01\x02", 4));
    cd = z.find(std::string("PK\x01\x02", 4), cd + 4);  // the storage's entry
    ASSERT_NE(cd, std::string::npos);
    uint32_t csize = 0;
    for (int k = 0; k < 4; ++k) csize |= (uint32_t)(uint8_t)z[cd + 20 + k] << (8 * k);
    const uint64_t claim = (uint64_t)csize * 1032;
    for (int k = 0; k < 4; ++k) z[cd + 24 + k] = (char)(claim >> (8 * k));
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(z), "bomb.ckpt"); }),
                AllOf(HasSubstr("bomb.ckpt"), HasSubstr("entry 'archive/data/0' inflates to " + std::to_string(claim))));
}

TEST(ZipHostile, CentralDirectoryLyingAboutSizesAndOffsets) {
    const std::string good = make_zip({{"a/x", "hello world"}});
    const size_t cd = good.find(std::string("PK\x01\x02", 4));
    ASSERT_NE(cd, std::string::npos);
    auto patch32 = [](std::string z, size_t at, uint32_t v) {
        for (int k = 0; k < 4; ++k) z[at + k] = (char)(v >> (8 * k));
        return z;
    };
    // stored entry claiming 2 GiB (both sizes, so they agree)
    std::string big = patch32(patch32(good, cd + 20, 0x7fffffff), cd + 24, 0x7fffffff);
    ZipReader rb(bytes_storage(big), "big.zip");
    EXPECT_THAT(error_of([&] { rb.read("a/x"); }), AllOf(HasSubstr("big.zip"), HasSubstr("data of entry"),
                                                        HasSubstr("outside the file")));
    // stored sizes that disagree
    EXPECT_THAT(error_of([&] { ZipReader(bytes_storage(patch32(good, cd + 24, 5)), "dis.zip"); }),
                HasSubstr("stored entry 'a/x' has compressed size 11 != uncompressed size 5"));
    // EOCD: 65534 entries in a 57-byte directory; a directory larger than the file
    const size_t eocd = good.size() - 22;
    std::string many = good;
    many[eocd + 10] = many[eocd + 8] = (char)0xfe;
    many[eocd + 11] = many[eocd + 9] = (char)0xff;
    EXPECT_THAT(error_of([&] { ZipReader(bytes_storage(many), "many.zip"); }),
                AllOf(HasSubstr("many.zip"), HasSubstr("claims 65534 entries")));
    EXPECT_THAT(error_of([&] { ZipReader(bytes_storage(patch32(good, eocd + 12, 0xfffffff0)), "cd.zip"); }),
                AllOf(HasSubstr("cd.zip"), HasSubstr("central directory at offset")));
    // deflate entry claiming an impossible expansion
    const std::string dz = make_zip({{"a/x", std::string(1000, 'q'), true}});
    const size_t dcd = dz.find(std::string("PK\x01\x02", 4));
    ZipReader rd(bytes_storage(patch32(dz, dcd + 24, 0xfffffff0)), "bomb.zip");
    EXPECT_THAT(error_of([&] { rd.read("a/x"); }), AllOf(HasSubstr("bomb.zip"), HasSubstr("impossible for deflate")));
}

TEST(ZipHostile, Zip64RecordsLyingAboutSizesAndOffsets) {
    const std::string good = make_zip({{"a/x", "hello world"}}, /*zip64=*/true);
    ASSERT_NO_THROW(ZipReader(bytes_storage(good), "ok.zip"));
    auto patch64 = [](std::string z, size_t at, uint64_t v) {
        for (int k = 0; k < 8; ++k) z[at + k] = (char)(v >> (8 * k));
        return z;
    };
    const size_t z64 = good.rfind(std::string("PK\x06\x06", 4));
    const size_t loc = good.rfind(std::string("PK\x06\x07", 4));
    ASSERT_NE(z64, std::string::npos);
    ASSERT_NE(loc, std::string::npos);
    // locator pointing past the end / at 2^64-1
    EXPECT_THAT(error_of([&] { ZipReader(bytes_storage(patch64(good, loc + 8, ~0ull)), "loc.zip"); }),
                AllOf(HasSubstr("loc.zip"), HasSubstr("ZIP64 end of central directory"), HasSubstr("outside the file")));
    // ZIP64 entry count 2^63, directory size 2^64-1, directory offset 2^64-16
    EXPECT_THAT(error_of([&] { ZipReader(bytes_storage(patch64(good, z64 + 32, 1ull << 63)), "n.zip"); }),
                HasSubstr("claims 9223372036854775808 entries"));
    EXPECT_THAT(error_of([&] { ZipReader(bytes_storage(patch64(good, z64 + 40, ~0ull)), "s.zip"); }),
                AllOf(HasSubstr("s.zip"), HasSubstr("outside the file")));
    EXPECT_THAT(error_of([&] { ZipReader(bytes_storage(patch64(good, z64 + 48, ~0ull - 15)), "o.zip"); }),
                AllOf(HasSubstr("o.zip"), HasSubstr("outside the file")));
    // the entry's ZIP64 extra field: sizes and local header offset near 2^64
    const size_t cd = good.find(std::string("PK\x01\x02", 4));
    const size_t extra = cd + 46 + 3;  // name "a/x"
    ZipReader r1(bytes_storage(patch64(patch64(good, extra + 4, ~0ull), extra + 12, ~0ull)), "sz.zip");
    EXPECT_THAT(error_of([&] { r1.read("a/x"); }), AllOf(HasSubstr("sz.zip"), HasSubstr("outside the file")));
    ZipReader r2(bytes_storage(patch64(good, extra + 20, ~0ull - 3)), "lho.zip");
    EXPECT_THAT(error_of([&] { r2.read("a/x"); }), AllOf(HasSubstr("lho.zip"), HasSubstr("local header"),
                                                        HasSubstr("outside the file")));
}

// load_ckpt(..., nested = true) (textual-inversion files): tensors anywhere, keys joined with '.', top-level strings
// and ints as metadata; nesting depth bounded.
TEST(CkptNested, TensorsInNestedDictsAndMetadata) {
    P p;
    p.op('}').op('(');
    p.str("name").str("my-style").str("step").i(1500).str("string_to_param").op('}').str("*");
    p.tensor("FloatStorage", "0", 2, 0, {2}, {1});
    p.op('s').op('u').op('.');
    const std::string z = make_ckpt(p.b, {{"0", f32_bytes({1.5f, -2.0f})}});
    const WeightFile wf = load_ckpt(bytes_storage(z), "ti.pt", true);
    ASSERT_EQ(wf.tensors.size(), 1u);
    EXPECT_EQ(wf.tensors.at("string_to_param.*").to_vector(), std::vector<float>({1.5f, -2.0f}));
    EXPECT_EQ(wf.metadata.at("name"), "my-style");
    EXPECT_EQ(wf.metadata.at("step"), "1500");
    // the flat reader ignores the nested tensor (it is no state dict entry)
    EXPECT_TRUE(load_ckpt(bytes_storage(z), "ti.pt").tensors.empty());
    // 20 levels of dicts: refused by name
    std::string deep = "\x80\x02";
    for (int i = 0; i < 20; ++i) deep += std::string("}X\x01\x00\x00\x00k", 7);
    deep += "}" + std::string(20, 's') + ".";
    EXPECT_THAT(error_of([&] { load_ckpt(bytes_storage(make_ckpt(deep, {})), "deep.pt", true); }),
                AllOf(HasSubstr("deep.pt"), HasSubstr("nested deeper than 16 levels")));
}
