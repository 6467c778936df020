// Zip reader, safe unpickler and torch checkpoint loader. Fixtures in tests/data/ckpt/ were written by
// tools/make_ckpt_fixtures.py with torch 1.13; the rest are built byte by byte here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <fstream>
#include <iterator>

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
        if (v >= 0 && v < 256) { b.push_back('K'); b.push_back((char)v); }
        else { b.push_back('J'); put32(b, (uint32_t)v); }
        return *this;
    }
    P& global(const std::string& m, const std::string& n) { b += "c" + m + "\n" + n + "\n"; return *this; }
    P& ints(const std::vector<int64_t>& v) { op('('); for (int64_t x : v) i(x); return op('t'); }
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
