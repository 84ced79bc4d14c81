// Fuzz target: the decoders of streamed envelopes (common/crypto/stream.h) with the fixed
// identities of fuzz_identity.h: we are the receiver, the head claims to come from the sender.
//
// Input: one mode byte, then
//   mode 0 (as received):  be16 head length || head || chunk records
//   mode 1 (re-signed):    the same, but the head's header is re-signed with the sender's real
//                          key, with its digest fields set to match the records, so mutated
//                          headers reach everything after the signature check (a fuzzer cannot
//                          forge signatures)
//   mode 2 (plaintext):    a plaintext stream, sealed here properly (SealPlaintextStream), so the
//                          manifest decoder and the attachment writer of OpenStream see mutated
//                          plaintext a hostile sender could produce
// For modes 0 and 1: ParseStreamHead, then ChunkVerifier::Create and Append of each record, then
// OpenStream of the records as a spool. For mode 2: OpenStream.
//
// Contracts: every failure has a stream error code; a head that parses has a layout whose
// records tile its ciphertext exactly; a verifier that accepted every record and the digest means
// OpenStream fails only on the manifest; OpenStream never leaves its target directory behind on
// failure, and on success wrote exactly the manifest's files with the manifest's sizes.
// Files go to /dev/shm when it exists (fsync there costs nothing).
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/crypto/stream.h"
#include "common/fs.h"
#include "common/payload.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_identity.h"

namespace {

using namespace bud;

constexpr uint64_t kMaxPlaintext = 1u << 20;  // keeps absurd headers from costing anything

// A head may also be refused for its signing certificate.
bool IsHeadError(Code c) {
  switch (c) {
    case Code::kCertUntrusted:
    case Code::kCertExpired:
    case Code::kCertNotYetValid:
    case Code::kCertWrongUsage:
    case Code::kCertOrgMismatch:
      return true;
    default:
      return fuzz::IsEnvelopeError(c);
  }
}

bool IsManifestError(Code c) {
  return c == Code::kMalformed || c == Code::kPayloadMismatch || c == Code::kInvalidArgument;
}

const std::string& WorkDir() {
  static const std::string dir = [] {
    std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string d = base + "/bud-fuzz-stream-" + std::to_string(::getpid());
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

crypto::StreamOptions Options() {
  crypto::StreamOptions o;
  o.max_plaintext = kMaxPlaintext;
  o.max_attachments = 50;
  return o;
}

void CheckLayout(const crypto::StreamHead& head) {
  const crypto::StreamLayout& l = head.layout;
  BUD_FUZZ_CHECK(l.chunk_count >= 1 && l.plaintext_size >= 1, "empty layout accepted");
  BUD_FUZZ_CHECK(l.plaintext_size <= kMaxPlaintext, "layout beyond the limit accepted");
  BUD_FUZZ_CHECK(l.ciphertext_size == head.header.payload_size(), "layout size != header");
  const uint64_t last = l.chunk_count - 1;
  BUD_FUZZ_CHECK(l.RecordOffset(last) + l.RecordSize(last) == l.ciphertext_size,
                 "records do not tile the ciphertext stream");
  BUD_FUZZ_CHECK(l.PlainSize(last) >= 1 && l.PlainSize(last) <= l.chunk_size,
                 "last chunk size out of range");
}

// OpenStream of `records` as a spool; returns its status after checking the contracts.
Status OpenAndCheck(std::string_view head, std::string_view records,
                    const crypto::StreamParties& parties) {
  const std::string spool = WorkDir() + "/spool";
  const std::string out = WorkDir() + "/out";
  BUD_FUZZ_CHECK(WriteFileSynced(spool, records).ok(), "cannot write the spool (harness)");
  auto opened = crypto::OpenStream(head, spool, out, parties, Options());
  fuzz::CheckOpenSslQueueEmpty("OpenStream");
  if (!opened.ok()) {
    BUD_FUZZ_CHECK(IsHeadError(opened.status().code()) || IsManifestError(opened.status().code()),
                   "OpenStream: not a stream error code");
    BUD_FUZZ_CHECK(!Exists(out), "OpenStream failed but left its target directory");
    return opened.status();
  }
  const wire::Payload& m = opened->manifest;
  auto names = ListDir(out);
  BUD_FUZZ_CHECK(names.ok() && names->size() == static_cast<size_t>(m.attachments_size()),
                 "OpenStream wrote other files than the manifest's");
  for (const auto& a : m.attachments()) {
    BUD_FUZZ_CHECK(ValidateAttachmentName(a.name()).ok(), "OpenStream accepted a bad name");
    struct stat st;
    BUD_FUZZ_CHECK(::lstat(JoinPath(out, a.name()).c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
                       static_cast<uint64_t>(st.st_size) == a.size(),
                   "an attachment file does not have the manifest's size");
  }
  BUD_FUZZ_CHECK(RemoveAll(out).ok(), "cannot clean up (harness)");
  return Status::Ok();
}

void HeadAndRecords(std::string_view head, std::string_view records,
                    const crypto::StreamParties& parties) {
  auto parsed = crypto::ParseStreamHead(head, kMaxPlaintext);
  if (!parsed.ok()) {
    BUD_FUZZ_CHECK(
        parsed.status().code() == Code::kMalformed || parsed.status().code() == Code::kUnsupported,
        "ParseStreamHead: wrong error code");
  } else {
    CheckLayout(*parsed);
  }

  auto verifier = crypto::ChunkVerifier::Create(head, parties, Options());
  fuzz::CheckOpenSslQueueEmpty("ChunkVerifier::Create");
  if (!verifier.ok()) {
    BUD_FUZZ_CHECK(IsHeadError(verifier.status().code()), "ChunkVerifier: wrong error code");
    BUD_FUZZ_CHECK(!OpenAndCheck(head, records, parties).ok(),
                   "OpenStream opened a head the verifier refused");
    return;
  }
  BUD_FUZZ_CHECK(parsed.ok(), "ChunkVerifier accepted a head ParseStreamHead refused");
  const crypto::StreamLayout& l = verifier->layout();
  Status st;
  uint64_t pos = 0;
  for (uint64_t i = 0; i < l.chunk_count && st.ok(); ++i) {
    const uint64_t n = std::min<uint64_t>(l.RecordSize(i), records.size() - pos);
    st = verifier->Append(i, records.substr(pos, n));
    pos += n;
    if (st.ok()) {
      BUD_FUZZ_CHECK(n == l.RecordSize(i), "Append accepted a record of the wrong length");
    } else {
      BUD_FUZZ_CHECK(st.code() == Code::kMalformed || st.code() == Code::kDecryptFailed,
                     "Append: wrong error code");
    }
  }
  if (st.ok()) {
    st = verifier->Finish();
    if (!st.ok()) {
      BUD_FUZZ_CHECK(st.code() == Code::kDigestMismatch, "Finish: wrong error code");
    }
  }
  Status opened = OpenAndCheck(head, records, parties);
  if (st.ok() && pos == records.size()) {
    BUD_FUZZ_CHECK(opened.ok() || IsManifestError(opened.code()),
                   "every record verified, yet OpenStream refused the stream itself");
  }
}

std::string Resign(std::string_view head, std::string_view records, const fuzz::Identity& id) {
  wire::Envelope env;
  if (!env.ParseFromArray(head.data(), static_cast<int>(head.size()))) return "";
  wire::Header h;
  if (!h.ParseFromString(env.header())) return "";
  h.set_payload_size(records.size());
  h.set_payload_sha256(crypto::Sha256(records));
  env.set_header(h.SerializeAsString());
  auto sig = crypto::Sign(env.header(), id.sender.signing_key.get());
  BUD_FUZZ_CHECK(sig.ok(), "cannot sign with the fixed sender key (harness bug)");
  env.set_signature(*sig);
  env.set_signer_cert_sha256(crypto::CertFingerprint(id.sender.signing_cert.get()));
  env.clear_payload();
  return env.SerializeAsString();
}

wire::Header PlainHeader(const fuzz::Identity& id) {
  wire::Header h;
  h.set_message_id("6f1c2a4e-8b3d-4f5a-9c7e-1d2b3a4c5e6f");
  h.set_conversation_id("0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d");
  h.set_sender(id.sender.org.wire());
  h.set_receiver(id.receiver.org.wire());
  return h;
}

void Plaintext(std::string_view plaintext, const crypto::StreamParties& parties,
               const fuzz::Identity& id) {
  if (plaintext.empty()) return;
  const fuzz::SealedStream sealed = fuzz::SealStreamFromSender(PlainHeader(id), plaintext);
  Status st = OpenAndCheck(sealed.head, sealed.records, parties);
  BUD_FUZZ_CHECK(st.ok() || IsManifestError(st.code()),
                 "a properly sealed stream failed for another reason than its manifest");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bud::fuzz::QuietProtobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const fuzz::Identity& id = fuzz::FixedIdentity();
  X509* sender_certs[] = {id.sender.signing_cert.get()};
  const crypto::DecryptionKey keys[] = {
      {id.receiver.encryption_key.get(), id.receiver.encryption_cert.get()}};
  const crypto::StreamParties parties{.me = id.receiver.org,
                                      .sender = id.sender.org,
                                      .sender_certs = sender_certs,
                                      .my_keys = keys,
                                      .trust = fuzz::FixedTrustStore(),
                                      .at_unix_s = std::nullopt};
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const int mode = data[0] % 3;
  if (mode == 2) {
    Plaintext(bytes, parties, id);
    return 0;
  }
  if (bytes.size() < 2) return 0;
  const size_t head_len = std::min<size_t>(
      (static_cast<uint8_t>(bytes[0]) << 8) | static_cast<uint8_t>(bytes[1]), bytes.size() - 2);
  std::string_view head = bytes.substr(2, head_len);
  std::string_view records = bytes.substr(2 + head_len);
  if (mode == 0) {
    HeadAndRecords(head, records, parties);
  } else {
    const std::string resigned = Resign(head, records, id);
    if (!resigned.empty()) HeadAndRecords(resigned, records, parties);
  }
  return 0;
}
