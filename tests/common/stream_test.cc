// Streamed envelopes (common/crypto/stream.h) with real OpenSSL and real files: round trips at
// chunk boundaries and for every key type, every way of tampering with the chunks (each caught
// three times: by the signed digest in transit, by the chunk AEAD when a hostile sender signs the
// tampered stream, and by the per-chunk verifier as chunks arrive), the header and signature, a
// hostile sender's plaintext, and the bounded-memory run on a 256 MiB attachment ([memory], run
// in its own process by ctest).
#include "common/crypto/stream.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/payload.h"
#include "tests/common/agencies.h"
#include "tests/support/sanitizers.h"

namespace bud::test {
namespace {

using crypto::DecryptionKey;
using crypto::StreamLayout;

constexpr uint32_t kSmallChunk = crypto::kMinChunkSize;  // 4 KiB: many chunks from small files

struct File {
  std::string name;
  std::string data;
};

// Content that differs per file and per position, so a misplaced byte shows.
std::string Bytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>(x);
  }
  return s;
}

std::string Slurp(const std::string& path) {
  auto r = ReadFile(path);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return *r;
}

void Spit(const std::string& path, std::string_view data) {
  REQUIRE(WriteFileSynced(path, data).ok());
}

// One sender/receiver pair with a trust store, sealing into and opening from a temp dir.
class Exchange {
 public:
  Exchange() : pki_(TestAgencies()) {
    pki_.ca.WriteCertFile(dir_ / "ca.pem");
    auto trust = crypto::TrustStore::Load(dir_ / "ca.pem");
    REQUIRE(trust.ok());
    trust_ = std::move(*trust);
    REQUIRE(MakeDirs(dir_ / "in").ok());
  }

  const Agencies& pki() const { return pki_; }
  const crypto::TrustStore& trust() const { return trust_; }
  std::string Path(const std::string& name) const { return dir_ / name; }

  // Writes the files under in/<tag>/ and returns them as sources.
  std::vector<crypto::StreamSource> Sources(const std::vector<File>& files,
                                            const std::string& tag = "m") {
    std::string d = dir_ / ("in/" + tag);
    REQUIRE(MakeDirs(d).ok());
    std::vector<crypto::StreamSource> out;
    for (const File& f : files) {
      Spit(JoinPath(d, f.name), f.data);
      out.push_back({f.name, GuessMediaType(f.name), JoinPath(d, f.name)});
    }
    return out;
  }

  // Seals files from A (signing key `sign`) to B (encryption key `enc`) into `spool`.
  std::string Seal(const Message& m, const std::vector<File>& files, const std::string& spool,
                   KeyType sign = KeyType::kEd25519, KeyType enc = KeyType::kEcP256,
                   uint32_t chunk = kSmallChunk, const Agency* to = nullptr) {
    const Agency& receiver = to ? *to : pki_.b;
    wire::Payload manifest = m.payload;
    manifest.clear_attachments();
    crypto::StreamOptions opt;
    opt.chunk_size = chunk;
    auto head =
        crypto::SealStreamToFile(m.header, manifest, Sources(files, spool), pki_.a.Signer(sign),
                                 receiver.Encryption(enc).cert.get(), Path(spool), opt);
    INFO(head.status().ToString());
    REQUIRE(head.ok());
    return *head;
  }

  // Opens as B (keys of both types), expecting the sender A.
  Result<crypto::OpenedStream> Open(const std::string& head, const std::string& spool,
                                    const std::string& out, KeyType sign = KeyType::kEd25519) {
    return OpenAs(head, spool, out, pki_.b, pki_.a, {pki_.a.Signing(sign).cert.get()});
  }

  Result<crypto::OpenedStream> OpenAs(const std::string& head, const std::string& spool,
                                      const std::string& out, const Agency& me,
                                      const Agency& sender, std::vector<X509*> sender_certs) {
    const DecryptionKey keys[] = {me.Decryption(KeyType::kRsa2048),
                                  me.Decryption(KeyType::kEcP256)};
    crypto::StreamParties parties{.me = me.org,
                                  .sender = sender.org,
                                  .sender_certs = sender_certs,
                                  .my_keys = keys,
                                  .trust = trust_,
                                  .at_unix_s = std::nullopt};
    return crypto::OpenStream(head, Path(spool), Path(out), parties);
  }

  Result<crypto::ChunkVerifier> Verifier(const std::string& head,
                                         KeyType sign = KeyType::kEd25519) {
    X509* certs[] = {pki_.a.Signing(sign).cert.get()};
    const DecryptionKey keys[] = {pki_.b.Decryption(KeyType::kRsa2048),
                                  pki_.b.Decryption(KeyType::kEcP256)};
    crypto::StreamParties parties{.me = pki_.b.org,
                                  .sender = pki_.a.org,
                                  .sender_certs = certs,
                                  .my_keys = keys,
                                  .trust = trust_,
                                  .at_unix_s = std::nullopt};
    return crypto::ChunkVerifier::Create(head, parties);
  }

  // The opened directory holds exactly `files`, byte for byte.
  void CheckOpened(const Result<crypto::OpenedStream>& opened, const Message& m,
                   const std::vector<File>& files, const std::string& out) {
    INFO(opened.status().ToString());
    REQUIRE(opened.ok());
    const wire::Payload& p = opened->manifest;
    CHECK(p.message_id() == m.header.message_id());
    CHECK(p.title() == m.payload.title());
    CHECK(p.metadata_json() == m.payload.metadata_json());
    REQUIRE(p.attachments_size() == static_cast<int>(files.size()));
    auto names = ListDir(Path(out));
    REQUIRE(names.ok());
    CHECK(names->size() == files.size());
    for (size_t i = 0; i < files.size(); ++i) {
      INFO("attachment " << i << " '" << files[i].name << "'");
      CHECK(p.attachments(static_cast<int>(i)).name() == files[i].name);
      CHECK(p.attachments(static_cast<int>(i)).size() == files[i].data.size());
      CHECK(p.attachments(static_cast<int>(i)).data().empty());
      CHECK(Slurp(JoinPath(Path(out), files[i].name)) == files[i].data);
    }
  }

 private:
  const Agencies& pki_;
  TempDir dir_;
  crypto::TrustStore trust_;
};

crypto::StreamHead ParseHead(const std::string& head) {
  auto h = crypto::ParseStreamHead(head);
  INFO(h.status().ToString());
  REQUIRE(h.ok());
  return *h;
}

// The records of a spool, split by the layout of its head.
std::vector<std::string> Records(const std::string& head, const std::string& spool_bytes) {
  const StreamLayout l = ParseHead(head).layout;
  REQUIRE(spool_bytes.size() == l.ciphertext_size);
  std::vector<std::string> out;
  for (uint64_t i = 0; i < l.chunk_count; ++i) {
    out.push_back(spool_bytes.substr(l.RecordOffset(i), l.RecordSize(i)));
  }
  return out;
}

std::string Join(const std::vector<std::string>& records) {
  std::string s;
  for (const auto& r : records) s += r;
  return s;
}

// A head re-signed by the sender after `edit` changed its header: what a hostile or broken
// sender can produce. `fit_stream` also makes payload_size and payload_sha256 those of `spool`,
// so the signed digest no longer protects the chunks and only the AEAD is left.
std::string Resign(const std::string& head, const Agency& signer, KeyType sign,
                   const std::function<void(wire::Header&)>& edit,
                   const std::string* spool = nullptr) {
  wire::Envelope env;
  REQUIRE(env.ParseFromString(head));
  wire::Header h;
  REQUIRE(h.ParseFromString(env.header()));
  if (spool != nullptr) {
    h.set_payload_size(spool->size());
    h.set_payload_sha256(crypto::Sha256(*spool));
  }
  edit(h);
  env.set_header(h.SerializeAsString());
  auto sig = crypto::Sign(env.header(), signer.Signing(sign).key.get());
  REQUIRE(sig.ok());
  env.set_signature(*sig);
  env.set_signer_cert_sha256(crypto::CertFingerprint(signer.Signing(sign).cert.get()));
  return env.SerializeAsString();
}

// A header edit that keeps the geometry consistent with `chunks` chunks of which the last holds
// `last_plain` bytes (so only the AEAD can tell).
std::function<void(wire::Header&)> Geometry(uint64_t chunks, uint64_t last_plain) {
  return [=](wire::Header& h) {
    h.set_chunk_count(chunks);
    h.set_plaintext_size((chunks - 1) * h.chunk_size() + last_plain);
    h.set_payload_size(h.plaintext_size() + chunks * crypto::kChunkTagBytes);
  };
}

#define CHECK_CODE(result, want)        \
  do {                                  \
    const ::bud::Status st_ = (result); \
    INFO("got " << st_.ToString());     \
    CHECK(st_.code() == (want));        \
  } while (0)

std::vector<File> SomeFiles(size_t big = 5 * kSmallChunk + 123) {
  return {{"rapport.pdf", Bytes(big, 1)},
          {"tom.txt", ""},
          {"æøå vedlegg – «ÅØÆ».bin", Bytes(3 * kSmallChunk, 2)},
          {"siste.xml", Bytes(17, 3)}};
}

TEST_CASE("ChunkCipher binds each chunk to its key, context, index and final flag", "[stream]") {
  const std::string key = crypto::RandomBytes(crypto::kContentKeyBytes);
  auto cipher = crypto::ChunkCipher::Create(key, "context A");
  REQUIRE(cipher.ok());
  const std::string plain = Bytes(1000, 3);
  std::string record, back;
  REQUIRE(cipher->Seal(7, false, plain, &record).ok());
  CHECK(record.size() == plain.size() + crypto::kChunkTagBytes);
  CHECK(record.find(plain.substr(0, 32)) == std::string::npos);
  REQUIRE(cipher->Open(7, false, record, &back).ok());
  CHECK(back == plain);

  CHECK_CODE(cipher->Open(8, false, record, &back), Code::kDecryptFailed);  // index
  CHECK(back.empty());  // no unauthenticated plaintext is handed out
  CHECK_CODE(cipher->Open(7, true, record, &back), Code::kDecryptFailed);  // final flag
  auto other_context = crypto::ChunkCipher::Create(key, "context B");
  REQUIRE(other_context.ok());
  CHECK_CODE(other_context->Open(7, false, record, &back), Code::kDecryptFailed);
  auto other_key = crypto::ChunkCipher::Create(crypto::RandomBytes(32), "context A");
  REQUIRE(other_key.ok());
  CHECK_CODE(other_key->Open(7, false, record, &back), Code::kDecryptFailed);
  for (size_t i = 0; i < record.size(); i += 97) {
    std::string flipped = record;
    flipped[i] ^= 0x10;
    CHECK_CODE(cipher->Open(7, false, flipped, &back), Code::kDecryptFailed);
  }
  CHECK_CODE(cipher->Open(7, false, record.substr(0, 15), &back), Code::kMalformed);
  CHECK_CODE(crypto::ChunkCipher::Create("short", "c").status(), Code::kInvalidArgument);

  // The same plaintext at two indexes: different ciphertexts (the index is in the nonce).
  std::string record8;
  REQUIRE(cipher->Seal(8, false, plain, &record8).ok());
  CHECK(record8 != record);
}

TEST_CASE("Streamed envelopes round trip for every signing and encryption key type", "[stream]") {
  Exchange x;
  const KeyType sign = GENERATE(KeyType::kRsa2048, KeyType::kEcP256, KeyType::kEd25519);
  const KeyType enc = GENERATE(KeyType::kRsa2048, KeyType::kEcP256);
  CAPTURE(sign, enc);
  const Message m = MakeMessage(x.pki().a.org, x.pki().b.org);
  const auto files = SomeFiles();
  const std::string head = x.Seal(m, files, "spool", sign, enc);

  // The head is small, names no content, and says what the stream is.
  CHECK(head.size() < 4096);
  const crypto::StreamHead parsed = ParseHead(head);
  const wire::Header& h = parsed.header;
  CHECK(h.version() == crypto::kStreamEnvelopeVersion);
  CHECK(h.message_id() == m.header.message_id());
  CHECK(h.chunk_size() == kSmallChunk);
  CHECK(h.chunk_count() == parsed.layout.chunk_count);
  CHECK(h.chunk_count() > 8);
  CHECK(h.recipient_cert_sha256() == crypto::CertFingerprint(x.pki().b.Encryption(enc).cert.get()));
  const std::string spool = Slurp(x.Path("spool"));
  CHECK(h.payload_size() == spool.size());
  CHECK(h.payload_sha256() == crypto::Sha256(spool));
  CHECK(spool.find(kPlaintextMarker) == std::string::npos);
  CHECK(spool.find(files[0].data.substr(0, 64)) == std::string::npos);
  // The content key opens with the receiver's key alone, as CMS.
  auto key = crypto::CmsDecrypt(h.content_key_cms(), x.pki().b.Encryption(enc).key.get(),
                                x.pki().b.Encryption(enc).cert.get());
  REQUIRE(key.ok());
  CHECK(key->size() == crypto::kContentKeyBytes);
  // The existing parser for version 1 refuses a head (no inline payload).
  CHECK_CODE(crypto::ParseEnvelope(head).status(), Code::kMalformed);

  auto opened = x.Open(head, "spool", "out", sign);
  x.CheckOpened(opened, m, files, "out");
  CHECK(opened->signer_fingerprint ==
        crypto::Hex(crypto::CertFingerprint(x.pki().a.Signing(sign).cert.get())));
  CHECK(opened->header.SerializeAsString() == h.SerializeAsString());

  // A second open into the same directory is refused and leaves the first alone.
  CHECK_CODE(x.Open(head, "spool", "out", sign).status(), Code::kAlreadyExists);
  CHECK(Slurp(JoinPath(x.Path("out"), files[0].name)) == files[0].data);
}

TEST_CASE("Streamed envelopes round trip at chunk boundaries", "[stream]") {
  Exchange x;
  const Message m = MakeMessage(x.pki().a.org, x.pki().b.org);
  // The manifest's size for one attachment of (about) this size: the plaintext stream is the
  // length prefix + manifest + the bytes.
  const std::string probe = x.Seal(m, {{"a.bin", Bytes(10000, 9)}}, "probe");
  const uint64_t overhead = ParseHead(probe).layout.plaintext_size - 10000;

  const uint64_t chunks = GENERATE(1, 2, 3);
  const int delta = GENERATE(-1, 0, 1);
  const uint64_t plain = chunks * kSmallChunk + delta;
  if (plain <= overhead) return;  // too small for the manifest
  CAPTURE(chunks, delta);
  const std::vector<File> files = {{"a.bin", Bytes(plain - overhead, 7)}};
  const std::string head = x.Seal(m, files, "spool");
  const crypto::StreamHead h = ParseHead(head);
  REQUIRE(h.layout.plaintext_size == plain);  // the test hits the boundary it means to
  CHECK(h.layout.chunk_count == (delta == 1 ? chunks + 1 : chunks));
  CHECK(h.layout.PlainSize(h.layout.chunk_count - 1) == (delta == 1   ? 1u
                                                         : delta == 0 ? kSmallChunk
                                                                      : kSmallChunk - 1));
  x.CheckOpened(x.Open(head, "spool", "out"), m, files, "out");
}

TEST_CASE("Streamed envelopes carry empty and many attachments", "[stream]") {
  Exchange x;
  const Message m = MakeMessage(x.pki().a.org, x.pki().b.org);

  SECTION("only empty attachments, first and last") {
    const std::vector<File> files = {{"første.txt", ""}, {"b", ""}, {"siste", ""}};
    x.CheckOpened(x.Open(x.Seal(m, files, "spool"), "spool", "out"), m, files, "out");
  }
  SECTION("no attachments at all") {
    x.CheckOpened(x.Open(x.Seal(m, {}, "spool"), "spool", "out"), m, {}, "out");
  }
  SECTION("300 attachments of sizes across chunk boundaries") {
    std::vector<File> files;
    for (uint32_t i = 0; i < 300; ++i) {
      files.push_back({fmt::format("vedlegg-{:03}-ø.dat", i), Bytes((i * 977) % 9000, i)});
    }
    const std::string head = x.Seal(m, files, "spool");
    CHECK(ParseHead(head).layout.chunk_count > 100);
    x.CheckOpened(x.Open(head, "spool", "out"), m, files, "out");
  }
  SECTION("the default chunk size") {
    const std::vector<File> files = {{"stor.bin", Bytes(3 * crypto::kDefaultChunkSize + 5, 4)}};
    const std::string head =
        x.Seal(m, files, "spool", KeyType::kEcP256, KeyType::kRsa2048, crypto::kDefaultChunkSize);
    CHECK(ParseHead(head).layout.chunk_count == 4);
    x.CheckOpened(x.Open(head, "spool", "out", KeyType::kEcP256), m, files, "out");
  }
}

TEST_CASE("SealStream refuses what it cannot send", "[stream]") {
  Exchange x;
  const Message m = MakeMessage(x.pki().a.org, x.pki().b.org);
  wire::Payload manifest = m.payload;
  manifest.clear_attachments();
  auto seal = [&](std::vector<crypto::StreamSource> sources, crypto::StreamOptions opt = {},
                  const wire::Payload* mf = nullptr) {
    return crypto::SealStreamToFile(
               m.header, mf ? *mf : manifest, sources, x.pki().a.Signer(KeyType::kEd25519),
               x.pki().b.Encryption(KeyType::kEcP256).cert.get(), x.Path("spool"), opt)
        .status();
  };
  auto good = x.Sources({{"a.txt", "abc"}});
  CHECK_CODE(seal({{"../a.txt", "text/plain", good[0].path}}), Code::kInvalidArgument);
  CHECK_CODE(seal({good[0], good[0]}), Code::kInvalidArgument);  // the same name twice
  CHECK_CODE(seal({{"b.txt", "text/plain", x.Path("nope")}}), Code::kNotFound);
  CHECK_CODE(seal({{"d", "", x.Path("in")}}), Code::kInvalidArgument);  // a directory
  crypto::StreamOptions small;
  small.max_plaintext = 100;
  CHECK_CODE(seal(good, small), Code::kInvalidArgument);
  crypto::StreamOptions bad_chunk;
  bad_chunk.chunk_size = 100;
  CHECK_CODE(seal(good, bad_chunk), Code::kInvalidArgument);
  wire::Payload other = manifest;
  other.set_message_id(NewUuid());
  CHECK_CODE(seal(good, {}, &other), Code::kInvalidArgument);
  wire::Payload inline_data = m.payload;
  CHECK_CODE(seal(good, {}, &inline_data), Code::kInvalidArgument);
  CHECK_FALSE(Exists(x.Path("spool")));  // a failed seal leaves no spool

  SECTION("a file that grows or shrinks while it is sealed") {
    auto sources = x.Sources({{"a.bin", Bytes(10 * kSmallChunk, 1)}}, "changing");
    const bool grow = GENERATE(true, false);
    std::string changed = Bytes(grow ? 11 * kSmallChunk : 9 * kSmallChunk, 1);
    crypto::StreamOptions opt;
    opt.chunk_size = kSmallChunk;
    auto head = crypto::SealStream(
        m.header, manifest, sources, x.pki().a.Signer(KeyType::kEd25519),
        x.pki().b.Encryption(KeyType::kEcP256).cert.get(),
        [&](uint64_t index, std::string_view) {
          if (index == 2) Spit(sources[0].path, changed);  // after the manifest was made
          return Status::Ok();
        },
        opt);
    CHECK_CODE(head.status(), Code::kIo);
    CHECK_THAT(head.status().message(), Catch::Contains(grow ? "grew" : "shrank"));
  }
}

// --- tampering ---------------------------------------------------------------------------------

// What each way of tampering with the records does, caught three ways (see the file comment).
struct Tamper {
  std::string name;
  std::function<std::vector<std::string>(std::vector<std::string>)> edit;
  Code resigned_code;  // OpenStream when the sender signed the tampered stream's digest
  // A header edit keeping the geometry consistent with the tampered stream, or none.
  std::function<void(wire::Header&)> geometry;
  Code geometry_code;
};

TEST_CASE("Every tampering with the chunks is detected, and nothing is left", "[stream]") {
  Exchange x;
  const Message m = MakeMessage(x.pki().a.org, x.pki().b.org);
  const std::vector<File> files = SomeFiles(6 * kSmallChunk + 100);
  const std::string head = x.Seal(m, files, "spool");
  const std::vector<std::string> good = Records(head, Slurp(x.Path("spool")));
  const size_t n = good.size();
  REQUIRE(n >= 8);
  const uint64_t last_plain = good.back().size() - crypto::kChunkTagBytes;
  REQUIRE(last_plain > 20);
  REQUIRE(last_plain < kSmallChunk);

  // Another message with the same geometry and the same key sizes (but its own content key).
  Message m2 = MakeMessage(x.pki().a.org, x.pki().b.org);
  m2.header.set_message_id(m.header.message_id());  // even the same message id
  m2.payload.set_message_id(m.header.message_id());
  m2.header.set_conversation_id(m.header.conversation_id());
  m2.payload.set_conversation_id(m.header.conversation_id());
  const std::string head2 = x.Seal(m2, files, "spool2");
  const std::vector<std::string> other = Records(head2, Slurp(x.Path("spool2")));
  REQUIRE(other.size() == n);

  const std::vector<Tamper> cases = {
      {"bit flipped in the last chunk",
       [](auto r) {
         r.back()[5] ^= 0x01;
         return r;
       },
       Code::kDecryptFailed, nullptr, Code::kOk},
      {"bit flipped in a tag",
       [](auto r) {
         r[2].back() ^= 0x80;
         return r;
       },
       Code::kDecryptFailed, nullptr, Code::kOk},
      {"chunk dropped",
       [](auto r) {
         r.erase(r.begin() + 3);
         return r;
       },
       Code::kMalformed, Geometry(n - 1, last_plain), Code::kDecryptFailed},
      {"chunk duplicated",
       [](auto r) {
         r.insert(r.begin() + 3, r[3]);
         return r;
       },
       Code::kMalformed, Geometry(n + 1, last_plain), Code::kDecryptFailed},
      {"chunks reordered",
       [](auto r) {
         std::swap(r[1], r[2]);
         return r;
       },
       Code::kDecryptFailed, nullptr, Code::kOk},
      {"stream truncated by a chunk",
       [](auto r) {
         r.pop_back();
         return r;
       },
       Code::kMalformed, Geometry(n - 1, kSmallChunk), Code::kDecryptFailed},
      {"stream truncated inside a chunk",
       [](auto r) {
         r.back().resize(r.back().size() - 20);
         return r;
       },
       Code::kMalformed, Geometry(n, last_plain - 20), Code::kDecryptFailed},
      {"extra chunk appended",
       [](auto r) {
         r.push_back(r[1]);
         return r;
       },
       Code::kMalformed, Geometry(n + 1, last_plain), Code::kDecryptFailed},
      {"chunk swapped in from another message",
       [&](auto r) {
         r[4] = other[4];
         return r;
       },
       Code::kDecryptFailed, nullptr, Code::kOk},
      {"every chunk from another message (under this header)", [&](auto) { return other; },
       Code::kDecryptFailed, nullptr, Code::kOk},
  };

  for (const Tamper& t : cases) {
    DYNAMIC_SECTION(t.name) {
      const std::string bad = Join(t.edit(good));
      Spit(x.Path("bad"), bad);

      // In transit: the signed digest of the stream catches it before any decryption.
      CHECK_CODE(x.Open(head, "bad", "out").status(), Code::kDigestMismatch);
      CHECK_FALSE(Exists(x.Path("out")));

      // A sender signing the tampered stream's digest: the chunk AEAD (or the layout) catches it,
      // also when attachment files were already being written.
      const std::string resigned = Resign(
          head, x.pki().a, KeyType::kEd25519, [](wire::Header&) {}, &bad);
      CHECK_CODE(x.Open(resigned, "bad", "out").status(), t.resigned_code);
      CHECK_FALSE(Exists(x.Path("out")));
      if (t.geometry) {
        const std::string fitted = Resign(head, x.pki().a, KeyType::kEd25519, t.geometry, &bad);
        REQUIRE(crypto::ParseStreamHead(fitted).ok());  // the layout now fits the stream
        CHECK_CODE(x.Open(fitted, "bad", "out").status(), t.geometry_code);
        CHECK_FALSE(Exists(x.Path("out")));
      }

      // As chunks arrive: the verifier (built from the honest head) stops at the first bad one.
      auto v = x.Verifier(head);
      REQUIRE(v.ok());
      const auto got = t.edit(good);
      Status st;
      for (size_t i = 0; i < got.size() && st.ok(); ++i) st = v->Append(i, got[i]);
      if (st.ok()) st = v->Finish();
      INFO("verifier: " << st.ToString() << " after " << v->next_index() << " chunks");
      CHECK_FALSE(st.ok());
      CHECK((st.code() == Code::kDecryptFailed || st.code() == Code::kMalformed));
    }
  }

  SECTION("the untouched stream still opens (the cases above tamper with copies)") {
    x.CheckOpened(x.Open(head, "spool", "out"), m, files, "out");
  }
}

TEST_CASE("The chunk verifier takes chunks in order, rejects bad ones early, and resumes",
          "[stream]") {
  Exchange x;
  const Message m = MakeMessage(x.pki().a.org, x.pki().b.org);
  const std::string head = x.Seal(m, SomeFiles(), "spool");
  const std::vector<std::string> r = Records(head, Slurp(x.Path("spool")));
  auto v = x.Verifier(head);
  REQUIRE(v.ok());
  CHECK(v->header().message_id() == m.header.message_id());
  CHECK(v->layout().chunk_count == r.size());

  // Any order for Verify; the index is bound to the record.
  CHECK(v->Verify(3, r[3]).ok());
  CHECK(v->Verify(0, r[0]).ok());
  CHECK_CODE(v->Verify(1, r[2]), Code::kDecryptFailed);
  CHECK_CODE(v->Verify(r.size(), r[0]), Code::kMalformed);      // beyond the end
  CHECK_CODE(v->Verify(r.size() - 1, r[0]), Code::kMalformed);  // wrong length
  std::string flipped = r[0];
  flipped[0] ^= 1;
  CHECK_CODE(v->Verify(0, flipped), Code::kDecryptFailed);

  // Append: in order only; a duplicate or a gap is refused without spoiling the stream.
  REQUIRE(v->Append(0, r[0]).ok());
  REQUIRE(v->Append(1, r[1]).ok());
  CHECK_CODE(v->Append(1, r[1]), Code::kInvalidArgument);  // duplicate
  CHECK_CODE(v->Append(3, r[3]), Code::kInvalidArgument);  // gap
  CHECK_CODE(v->Append(2, flipped.substr(0, r[2].size())), Code::kDecryptFailed);
  CHECK(v->next_index() == 2);
  CHECK_CODE(v->Finish(), Code::kMalformed);  // not all chunks yet

  // A receiver restarted after chunk 4: a new verifier over the spooled prefix, then the rest.
  auto resumed = x.Verifier(head);
  REQUIRE(resumed.ok());
  for (size_t i = 0; i < 5; ++i) REQUIRE(resumed->Append(i, r[i]).ok());
  CHECK(resumed->next_index() == 5);
  for (size_t i = 5; i < r.size(); ++i) REQUIRE(resumed->Append(i, r[i]).ok());
  CHECK(resumed->Finish().ok());
}

TEST_CASE("Changed headers, other signers and other receivers are refused", "[stream]") {
  Exchange x;
  const Agencies& pki = x.pki();
  const Message m = MakeMessage(pki.a.org, pki.b.org);
  const std::vector<File> files = SomeFiles();
  const std::string head = x.Seal(m, files, "spool");
  wire::Envelope env;
  REQUIRE(env.ParseFromString(head));

  SECTION("any header field changed after signing") {
    const std::vector<std::pair<std::string, std::function<void(wire::Header&)>>> edits = {
        {"receiver", [&](wire::Header& h) { h.set_receiver(pki.c.org.wire()); }},
        {"message id", [](wire::Header& h) { h.set_message_id(NewUuid()); }},
        {"process", [](wire::Header& h) { h.set_process("urn:other"); }},
        {"expiry", [](wire::Header& h) { h.set_expires_unix_ms(h.expires_unix_ms() + 1); }},
        {"chunk size", [](wire::Header& h) { h.set_chunk_size(h.chunk_size() * 2); }},
        {"chunk count", [](wire::Header& h) { h.set_chunk_count(h.chunk_count() - 1); }},
        {"plaintext size", [](wire::Header& h) { h.set_plaintext_size(h.plaintext_size() - 1); }},
        {"stream digest", [](wire::Header& h) { h.mutable_payload_sha256()->at(0) ^= 1; }},
        {"wrapped key", [](wire::Header& h) { h.mutable_content_key_cms()->back() ^= 1; }},
    };
    for (const auto& [what, edit] : edits) {
      DYNAMIC_SECTION(what) {
        wire::Header h;
        REQUIRE(h.ParseFromString(env.header()));
        edit(h);
        wire::Envelope changed = env;
        changed.set_header(h.SerializeAsString());
        CHECK_CODE(x.Open(changed.SerializeAsString(), "spool", "out").status(),
                   Code::kBadSignature);
        CHECK_CODE(x.Verifier(changed.SerializeAsString()).status(), Code::kBadSignature);
        CHECK_FALSE(Exists(x.Path("out")));
      }
    }
  }
  SECTION("a byte of the carried header flipped") {
    for (size_t i = 0; i < env.header().size(); i += 7) {
      wire::Envelope changed = env;
      (*changed.mutable_header())[i] ^= 0x04;
      auto st = x.Open(changed.SerializeAsString(), "spool", "out").status();
      INFO("byte " << i << ": " << st.ToString());
      CHECK((st.code() == Code::kBadSignature || st.code() == Code::kMalformed));
      CHECK_FALSE(Exists(x.Path("out")));
    }
  }
  SECTION("the signature by another key") {
    // C's key under A's certificate fingerprint.
    wire::Envelope forged = env;
    auto sig = crypto::Sign(env.header(), pki.c.Signing(KeyType::kEd25519).key.get());
    REQUIRE(sig.ok());
    forged.set_signature(*sig);
    CHECK_CODE(x.Open(forged.SerializeAsString(), "spool", "out").status(), Code::kBadSignature);
    // A's other key (EC) under its Ed25519 certificate's fingerprint.
    sig = crypto::Sign(env.header(), pki.a.Signing(KeyType::kEcP256).key.get());
    REQUIRE(sig.ok());
    forged.set_signature(*sig);
    CHECK_CODE(x.Open(forged.SerializeAsString(), "spool", "out").status(), Code::kBadSignature);
    // C's own certificate: not one of A's.
    const std::string by_c = Resign(head, pki.c, KeyType::kEd25519, [](wire::Header&) {});
    CHECK_CODE(x.Open(by_c, "spool", "out").status(), Code::kBadSignature);
    CHECK_FALSE(Exists(x.Path("out")));
  }
  SECTION("signature stripping: C re-signs A's stream as its own") {
    const std::string stripped = Resign(head, pki.c, KeyType::kEd25519,
                                        [&](wire::Header& h) { h.set_sender(pki.c.org.wire()); });
    // B believes it comes from C (valid signature by C), but the chunks are bound to sender A.
    auto st = x.OpenAs(stripped, "spool", "out", pki.b, pki.c,
                       {pki.c.Signing(KeyType::kEd25519).cert.get()})
                  .status();
    CHECK_CODE(st, Code::kDecryptFailed);
    CHECK_FALSE(Exists(x.Path("out")));
  }
  SECTION("a sender other than the one expected") {
    auto st =
        x.OpenAs(head, "spool", "out", pki.b, pki.c, {pki.a.Signing(KeyType::kEd25519).cert.get()})
            .status();
    CHECK_CODE(st, Code::kCertOrgMismatch);  // A's certificate is not C's
  }
  SECTION("an untrusted signing certificate") {
    TestCa rogue("Rogue CA");
    Leaf leaf = rogue.IssueSigning(KeyType::kEd25519, "910076787");
    wire::Envelope by_rogue = env;
    auto sig = crypto::Sign(env.header(), leaf.key.get());
    REQUIRE(sig.ok());
    by_rogue.set_signature(*sig);
    by_rogue.set_signer_cert_sha256(crypto::CertFingerprint(leaf.cert.get()));
    auto st =
        x.OpenAs(by_rogue.SerializeAsString(), "spool", "out", pki.b, pki.a, {leaf.cert.get()})
            .status();
    CHECK_CODE(st, Code::kCertUntrusted);
  }
  SECTION("the wrong receiver") {
    // Sealed for C (header and key): B refuses it as not addressed to it.
    const Message to_c = MakeMessage(pki.a.org, pki.c.org);
    const std::string for_c =
        x.Seal(to_c, files, "spool_c", KeyType::kEd25519, KeyType::kEcP256, kSmallChunk, &pki.c);
    CHECK_CODE(x.Open(for_c, "spool_c", "out").status(), Code::kWrongReceiver);
    // Addressed to B but the key wrapped for C: B has no key for it.
    const std::string key_for_c =
        x.Seal(m, files, "spool_kc", KeyType::kEd25519, KeyType::kRsa2048, kSmallChunk, &pki.c);
    CHECK_CODE(x.Open(key_for_c, "spool_kc", "out").status(), Code::kDecryptFailed);
    // And C, with its keys, cannot open B's.
    CHECK_CODE(
        x.OpenAs(head, "spool", "out", pki.c, pki.a, {pki.a.Signing(KeyType::kEd25519).cert.get()})
            .status(),
        Code::kWrongReceiver);
    CHECK_FALSE(Exists(x.Path("out")));
  }
  SECTION("a version 1 envelope, garbage and oversized heads") {
    auto v1 = crypto::Seal(m.header, m.payload, pki.a.Signer(KeyType::kEd25519),
                           pki.b.Encryption(KeyType::kEcP256).cert.get());
    REQUIRE(v1.ok());
    CHECK_CODE(x.Open(*v1, "spool", "out").status(), Code::kMalformed);  // has a payload
    wire::Envelope v1_head;
    REQUIRE(v1_head.ParseFromString(*v1));
    v1_head.clear_payload();
    CHECK_CODE(crypto::ParseStreamHead(v1_head.SerializeAsString()).status(), Code::kUnsupported);
    CHECK_CODE(x.Open("garbage", "spool", "out").status(), Code::kMalformed);
    CHECK_CODE(x.Open("", "spool", "out").status(), Code::kMalformed);
    CHECK_CODE(x.Open(std::string(crypto::kMaxStreamHeadBytes + 1, 'x'), "spool", "out").status(),
               Code::kMalformed);
    CHECK_FALSE(Exists(x.Path("out")));
  }
  SECTION("a missing spool") {
    CHECK_CODE(x.Open(head, "nope", "out").status(), Code::kNotFound);
    CHECK_FALSE(Exists(x.Path("out")));
  }
}

// A hostile (but properly signing) sender's plaintext: SealPlaintextStream takes any bytes.
TEST_CASE("A hostile sender's manifest is refused and nothing is written", "[stream]") {
  Exchange x;
  const Agencies& pki = x.pki();
  const Message m = MakeMessage(pki.a.org, pki.b.org);

  auto seal_raw = [&](const std::string& plaintext) {
    size_t pos = 0;
    std::string spool;
    auto head = crypto::SealPlaintextStream(
        m.header, plaintext.size(),
        [&](size_t n, std::string* out) {
          *out = plaintext.substr(pos, n);
          pos += n;
          return Status::Ok();
        },
        pki.a.Signer(KeyType::kEd25519), pki.b.Encryption(KeyType::kEcP256).cert.get(),
        [&](uint64_t, std::string_view r) {
          spool.append(r);
          return Status::Ok();
        },
        kSmallChunk);
    REQUIRE(head.ok());
    Spit(x.Path("spool"), spool);
    return *head;
  };
  auto frame = [](const wire::Payload& p, std::string_view body) {
    std::string s = p.SerializeAsString(), out;
    for (int shift = 24; shift >= 0; shift -= 8)
      out.push_back(static_cast<char>(s.size() >> shift));
    return out + s + std::string(body);
  };
  auto manifest = [&](std::vector<std::pair<std::string, uint64_t>> atts) {
    wire::Payload p = m.payload;
    p.clear_attachments();
    for (const auto& [name, size] : atts) {
      auto* a = p.add_attachments();
      a->set_name(name);
      a->set_size(size);
    }
    return p;
  };
  auto expect = [&](const std::string& plaintext, Code code) {
    CHECK_CODE(x.Open(seal_raw(plaintext), "spool", "out").status(), code);
    CHECK_FALSE(Exists(x.Path("out")));
    auto names = ListDir(x.Path(""));
    REQUIRE(names.ok());
    CHECK(names->size() == 3);  // ca.pem, in, spool: no stray files beside the target either
  };

  const std::string body = Bytes(3 * kSmallChunk, 5);
  SECTION("well formed (the control)") {
    auto opened = x.Open(seal_raw(frame(manifest({{"a", 10}, {"b", body.size() - 10}}), body)),
                         "spool", "out");
    REQUIRE(opened.ok());
    CHECK(Slurp(x.Path("out/b")) == body.substr(10));
  }
  SECTION("a path in an attachment name") {
    expect(frame(manifest({{"../../evil", body.size()}}), body), Code::kInvalidArgument);
  }
  SECTION("a hidden name and a reserved one") {
    expect(frame(manifest({{".bashrc", body.size()}}), body), Code::kInvalidArgument);
    expect(frame(manifest({{"message.json", body.size()}}), body), Code::kInvalidArgument);
  }
  SECTION("the same name twice") {
    expect(frame(manifest({{"a", 1}, {"a", body.size() - 1}}), body), Code::kInvalidArgument);
  }
  SECTION("sizes that do not add up") {
    expect(frame(manifest({{"a", body.size() + 1}}), body), Code::kMalformed);
    expect(frame(manifest({{"a", body.size() - 1}}), body), Code::kMalformed);
    expect(frame(manifest({{"a", UINT64_MAX}, {"b", 2}}), body), Code::kMalformed);
  }
  SECTION("ids that differ from the signed header") {
    wire::Payload p = manifest({{"a", body.size()}});
    p.set_sender(pki.c.org.wire());
    expect(frame(p, body), Code::kPayloadMismatch);
    p = manifest({{"a", body.size()}});
    p.set_message_id(NewUuid());
    expect(frame(p, body), Code::kPayloadMismatch);
  }
  SECTION("inline data in the manifest") {
    wire::Payload p = manifest({{"a", body.size()}});
    p.mutable_attachments(0)->set_data("x");
    expect(frame(p, body), Code::kMalformed);
  }
  SECTION("a manifest length out of range, and garbage") {
    expect(std::string("\xff\xff\xff\xff", 4) + body, Code::kMalformed);
    expect(std::string("\0\0\0\0", 4) + body, Code::kMalformed);
    expect(std::string("\0\0\x01\0", 4) + std::string(256, '\xff') + body,
           Code::kMalformed);        // not a Payload
    expect("ab", Code::kMalformed);  // ends inside the length
  }
}

// --- bounded memory ----------------------------------------------------------------------------

// A field of /proc/self/status in KiB ("VmHWM", "VmRSS").
int64_t ProcStatusKiB(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  FAIL("no " << field << " in /proc/self/status");
  return -1;
}

// Resets the peak RSS to the current RSS (Linux >= 4.0). False when not allowed.
bool ResetPeakRss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return f.good();
}

// SHA-256 of a file, read in blocks.
std::string FileSha256(const std::string& path) {
  crypto::MdCtx ctx(EVP_MD_CTX_new());
  REQUIRE(EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1);
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::string buf(1 << 20, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

// 256 MiB through seal and open; the peak RSS must grow by well under the 64 MiB each process
// may use in all. Run alone (ctest: common_tests_memory), so other tests' peaks do not count.
// BUD_STREAM_MEMORY_MIB changes the size (e.g. 2048 for a longer run).
TEST_CASE("Sealing and opening 256 MiB stays in bounded memory", "[stream][memory]") {
  const char* env_mib = std::getenv("BUD_STREAM_MEMORY_MIB");
  const uint64_t mib = env_mib ? std::stoull(env_mib) : 256;
  Exchange x;  // keys made before measuring
  const Message m = MakeMessage(x.pki().a.org, x.pki().b.org);
  wire::Payload manifest = m.payload;
  manifest.clear_attachments();
  REQUIRE(MakeDirs(x.Path("in/big")).ok());
  const std::string big = x.Path("in/big/stor.bin");
  {
    // Written in 1 MiB blocks, never held whole.
    std::ofstream out(big, std::ios::binary);
    std::string block;
    for (uint64_t i = 0; i < mib; ++i) {
      block = Bytes(1 << 20, static_cast<uint32_t>(i));
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
    REQUIRE(out.good());
  }
  const std::string want = FileSha256(big);
  const std::vector<crypto::StreamSource> sources = {{"stor.bin", "application/octet-stream", big}};

  const bool reset = ResetPeakRss();
  const int64_t rss_before = reset ? ProcStatusKiB("VmRSS") : ProcStatusKiB("VmHWM");
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  auto head =
      crypto::SealStreamToFile(m.header, manifest, sources, x.pki().a.Signer(KeyType::kEcP256),
                               x.pki().b.Encryption(KeyType::kRsa2048).cert.get(), x.Path("spool"));
  auto t1 = Clock::now();
  INFO(head.status().ToString());
  REQUIRE(head.ok());
  auto opened = x.Open(*head, "spool", "out", KeyType::kEcP256);
  auto t2 = Clock::now();
  INFO(opened.status().ToString());
  REQUIRE(opened.ok());
  const int64_t peak = ProcStatusKiB("VmHWM");
  const int64_t growth_kib = peak - rss_before;

  const double mb = static_cast<double>(mib) * 1048576.0 / 1e6;
  const double seal_s = std::chrono::duration<double>(t1 - t0).count();
  const double open_s = std::chrono::duration<double>(t2 - t1).count();
  std::printf(
      "stream %llu MiB (chunk %u KiB): seal %.2f s (%.0f MB/s), open %.2f s (%.0f MB/s), "
      "peak RSS %lld KiB, growth %lld KiB (%s)\n",
      static_cast<unsigned long long>(mib), crypto::kDefaultChunkSize / 1024, seal_s, mb / seal_s,
      open_s, mb / open_s, static_cast<long long>(peak), static_cast<long long>(growth_kib),
      reset ? "peak reset through clear_refs" : "peak not resettable: growth over earlier peak");
  BUD_CHECK_RSS(growth_kib < 16 * 1024);  // two 1 MiB chunk buffers, a 1 MiB hash buffer, slack
  BUD_CHECK_RSS(peak < 64 * 1024);  // the whole process, test binary and keys included

  CHECK(FileSha256(x.Path("out/stor.bin")) == want);
  auto size = ParseHead(*head).layout;
  CHECK(size.plaintext_size > mib << 20);
  CHECK(size.chunk_count == mib + 1);  // the manifest pushes the last bytes into one more chunk
}

}  // namespace
}  // namespace bud::test
