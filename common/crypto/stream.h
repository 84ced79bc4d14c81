// Streamed envelopes (format version 2): payloads too large for one frame or for memory, sealed
// and opened chunk by chunk. See docs/protocol.md "Streamed envelopes" for the format and
// docs/large-messages.md for how a transfer uses it.
//
// Operation. A streamed message is a *head* and a *ciphertext stream*:
//   head   = a wire::Envelope whose `payload` is empty: the signed Header (version 2), the
//            signature and the signer's certificate fingerprint. The Header carries the stream's
//            geometry (plaintext_size, chunk_size, chunk_count), the SHA-256 and size of the whole
//            ciphertext stream (payload_sha256, payload_size), and the random per-message content
//            key wrapped for the receiver's encryption certificate with CMS (content_key_cms).
//   stream = chunk records, back to back: record i = AES-256-GCM(content key, nonce(i),
//            AAD(header context, i, final), plaintext chunk i) || 16-byte tag. Every chunk but the
//            last holds chunk_size plaintext bytes, so record i starts at i * (chunk_size + 16).
// The plaintext stream is: be32 length of the manifest || manifest (a wire::Payload whose
// attachments carry name, media type and size, no data) || each attachment's bytes, in order.
//
// Each chunk is bound to its message (AAD: message id, sender, receiver, geometry), to its index
// (nonce and AAD) and to whether it is the last (AAD), so a chunk flipped, dropped, duplicated,
// reordered, cut off, added or taken from another message fails its tag; the signed digest of
// the whole stream catches the same before anything is decrypted.
//
// Memory: sealing and opening hold O(chunk_size) bytes (two chunk buffers) plus the manifest (at
// most kMaxManifestBytes), whatever the payload size. Nothing is memory-mapped.
//
// Small messages keep using Seal/Open (envelope.h, version 1, one frame): the CMS payload there is
// readable with `openssl cms -decrypt`, and one frame is simpler for the common case. A sender
// picks version 2 when the payload is larger than it wants to hold in memory (see
// docs/large-messages.md); a receiver opens whichever version the head says.
//
// Concurrency: the functions are reentrant; a ChunkCipher or ChunkVerifier is used by one thread
// at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/crypto/certs.h"
#include "common/crypto/envelope.h"
#include "common/crypto/openssl.h"
#include "common/orgnr.h"
#include "common/status.h"
#include "proto/envelope.pb.h"

namespace bud::crypto {

inline constexpr uint32_t kStreamEnvelopeVersion = 2;
inline constexpr uint32_t kDefaultChunkSize = 1u << 20;  // 1 MiB
inline constexpr uint32_t kMinChunkSize = 4096;
inline constexpr uint32_t kMaxChunkSize = 16u << 20;
inline constexpr size_t kChunkTagBytes = 16;
inline constexpr size_t kContentKeyBytes = 32;
inline constexpr size_t kMaxManifestBytes = 1u << 20;
inline constexpr uint64_t kDefaultMaxStreamPayload = 5ull << 30;  // 5 GiB of plaintext
// Upper bound for a serialised head accepted by ParseStreamHead (the header holds a CMS key
// blob, a few hundred bytes; a signature is at most 512 bytes).
inline constexpr size_t kMaxStreamHeadBytes = 64u << 10;

// Where the chunks of a stream start and how long each one is. Derived from a header only
// through Of(), which checks that the geometry is consistent.
struct StreamLayout {
  uint64_t plaintext_size = 0;
  uint32_t chunk_size = 0;
  uint64_t chunk_count = 0;
  uint64_t ciphertext_size = 0;

  // For a plaintext of `plaintext_size` (> 0) bytes cut into `chunk_size` chunks.
  // kInvalidArgument when out of range.
  static Result<StreamLayout> For(uint64_t plaintext_size, uint32_t chunk_size);
  // From a (version 2) header: kMalformed when the fields disagree with each other or are out of
  // range, kUnsupported when plaintext_size exceeds `max_plaintext`.
  static Result<StreamLayout> Of(const wire::Header& header,
                                 uint64_t max_plaintext = kDefaultMaxStreamPayload);

  uint64_t PlainSize(uint64_t index) const;  // plaintext bytes in chunk `index` (< chunk_count)
  uint64_t RecordSize(uint64_t index) const { return PlainSize(index) + kChunkTagBytes; }
  uint64_t RecordOffset(uint64_t index) const { return index * (chunk_size + kChunkTagBytes); }
  bool IsFinal(uint64_t index) const { return index + 1 == chunk_count; }
};

// The bytes every chunk's AAD starts with: a label, the header's message id, sender and receiver
// (length-prefixed) and the geometry. Fixed before any chunk is encrypted.
std::string StreamContext(const wire::Header& header);

// AES-256-GCM over one chunk at a time, with the chunk's index in the nonce and the index and the
// final flag in the AAD. Holds the content key, which it wipes when destroyed. Not copyable.
class ChunkCipher {
 public:
  // `key` must be kContentKeyBytes long (kInvalidArgument otherwise).
  static Result<ChunkCipher> Create(std::string_view key, std::string context);
  ChunkCipher(ChunkCipher&&) noexcept;
  ChunkCipher& operator=(ChunkCipher&&) noexcept;
  ChunkCipher(const ChunkCipher&) = delete;
  ChunkCipher& operator=(const ChunkCipher&) = delete;
  ~ChunkCipher();

  // Encrypts `plain` as chunk `index` into `*record` (resized to plain.size() + 16; its capacity
  // is reused across calls).
  Status Seal(uint64_t index, bool final, std::string_view plain, std::string* record);
  // Authenticates and decrypts a record into `*plain`. kDecryptFailed when the tag does not
  // verify (wrong key, index, final flag, context, or altered bytes): `*plain` is then cleared.
  Status Open(uint64_t index, bool final, std::string_view record, std::string* plain);

 private:
  struct Impl;
  explicit ChunkCipher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// --- sealing ------------------------------------------------------------------------------

struct StreamSource {
  std::string name;  // attachment name (ValidateAttachmentName)
  std::string media_type;
  std::string path;  // regular file read from start to end; must not change meanwhile
};

struct StreamOptions {
  uint32_t chunk_size = kDefaultChunkSize;
  uint64_t max_plaintext = kDefaultMaxStreamPayload;
  size_t max_attachments = 1000;
};

// Receives chunk records in order (index 0, 1, ...). A non-ok Status stops sealing.
using ChunkSink = std::function<Status(uint64_t index, std::string_view record)>;

// Seals a streamed envelope. `header` supplies the routing fields (as for Seal); `manifest`
// supplies title, metadata_json and the ids (which must equal the header's) and no attachments:
// they come from `sources`, read one at a time. Chunk records go to `sink` as they are made; the
// serialised head (a wire::Envelope with an empty payload) is returned at the end, since it signs
// the digest of all of them. kInvalidArgument for bad names/ids/sizes, kNotFound/kIo for files, a
// file that changes size while read is kIo.
Result<std::string> SealStream(wire::Header header, const wire::Payload& manifest,
                               std::span<const StreamSource> sources, const SignerKeys& signer,
                               X509* receiver_encryption_cert, const ChunkSink& sink,
                               const StreamOptions& options = {});

// SealStream writing the records to `spool_path` (created or truncated, mode 0640, fsynced).
// On failure the file is removed.
Result<std::string> SealStreamToFile(wire::Header header, const wire::Payload& manifest,
                                     std::span<const StreamSource> sources,
                                     const SignerKeys& signer, X509* receiver_encryption_cert,
                                     const std::string& spool_path,
                                     const StreamOptions& options = {});

// Fills `*out` with exactly `n` bytes: the next piece of a plaintext stream.
using PlaintextSource = std::function<Status(size_t n, std::string* out)>;

// The layer under SealStream, for tests and tools: seals `plaintext_size` bytes taken from `read`
// as they are, whether or not they follow the manifest layout (a receiver refuses them if they
// do not). Fills the same header fields as SealStream and returns the serialised head.
Result<std::string> SealPlaintextStream(wire::Header header, uint64_t plaintext_size,
                                        const PlaintextSource& read, const SignerKeys& signer,
                                        X509* receiver_encryption_cert, const ChunkSink& sink,
                                        uint32_t chunk_size = kDefaultChunkSize);

// --- opening ------------------------------------------------------------------------------

// Parses a head and its header WITHOUT verifying anything (routing, resume bookkeeping): the
// head must be a wire::Envelope with header, signature and no payload, at most
// kMaxStreamHeadBytes (kMalformed), of version 2 (kUnsupported), with a consistent layout
// (StreamLayout::Of). Never trust these fields for anything else.
struct StreamHead {
  wire::Envelope envelope;
  wire::Header header;
  StreamLayout layout;
};
Result<StreamHead> ParseStreamHead(std::string_view head_bytes,
                                   uint64_t max_plaintext = kDefaultMaxStreamPayload);

// Who may have sent the message and who we are, for verifying a head.
struct StreamParties {
  const Orgnr& me;
  const Orgnr& sender;
  std::span<X509* const> sender_certs;     // the sender's signing certificates (current, next)
  std::span<const DecryptionKey> my_keys;  // our decryption keys (current, next)
  const TrustStore& trust;                 // the signer's certificate is checked against it
  std::optional<int64_t> at_unix_s;        // time for the certificate check; now when empty
};

// Verifies a head, in this order, each with its own code: parse (kMalformed); the certificate
// named by signer_cert_sha256 is one of sender_certs (kBadSignature) and passes
// trust.Verify(kSigning, sender) (kCertUntrusted, kCertExpired, ...); the signature over the
// header bytes as carried (kBadSignature); version (kUnsupported) and layout (kMalformed /
// kUnsupported); the header's sender is `sender` (kBadSignature); its receiver is `me`
// (kWrongReceiver).
struct VerifiedHead {
  StreamHead head;
  std::string signer_fingerprint;  // hex SHA-256 of the signing certificate that verified it
};
Result<VerifiedHead> VerifyStreamHead(std::string_view head_bytes, const StreamParties& parties,
                                      const StreamOptions& options = {});

// Unwraps the content key of a verified header with the key its recipient_cert_sha256 names:
// kDecryptFailed when none of ours, or when the CMS does not open or holds no 32-byte key.
Result<ChunkCipher> UnwrapContentKey(const wire::Header& verified_header,
                                     std::span<const DecryptionKey> my_keys);

struct OpenedStream {
  wire::Header header;
  wire::Payload manifest;          // ids, title, metadata_json; attachments: name, type, size
  std::string signer_fingerprint;  // hex SHA-256 of the signing certificate used
};

// Opens a streamed message whose records are in `spool_path` into the new directory
// `target_dir` (which must not exist: kAlreadyExists; its parent must), one file per attachment
// (mode 0640, fsynced, and the directory fsynced). Before anything is decrypted: VerifyStreamHead,
// then the spool's size and SHA-256 against the signed header (kDigestMismatch), then the key
// (kDecryptFailed). Then chunk by chunk: tag (kDecryptFailed), manifest (kMalformed), its ids
// against the header (kPayloadMismatch), its attachment names and count (kInvalidArgument), its
// sizes against plaintext_size (kMalformed). On any failure target_dir is removed: nothing
// partial is left. The caller renames target_dir into place.
Result<OpenedStream> OpenStream(std::string_view head_bytes, const std::string& spool_path,
                                const std::string& target_dir, const StreamParties& parties,
                                const StreamOptions& options = {});

// For a receiver taking chunks as they arrive: rejects a bad chunk at once instead of after the
// whole stream. Built from a head (verified as VerifyStreamHead does, key unwrapped).
class ChunkVerifier {
 public:
  static Result<ChunkVerifier> Create(std::string_view head_bytes, const StreamParties& parties,
                                      const StreamOptions& options = {});

  const wire::Header& header() const { return head_.head.header; }
  const StreamLayout& layout() const { return head_.head.layout; }
  const std::string& signer_fingerprint() const { return head_.signer_fingerprint; }

  // Authenticates `record` as chunk `index`, in any order: kMalformed when the index is out of
  // range or the length is not that chunk's, kDecryptFailed when the tag does not verify. The
  // plaintext is discarded.
  Status Verify(uint64_t index, std::string_view record);

  // In-order receiving: Verify, and `index` must be the next one (kInvalidArgument otherwise,
  // e.g. a duplicate or a gap); feeds the running SHA-256. next_index() is where to resume.
  Status Append(uint64_t index, std::string_view record);
  uint64_t next_index() const { return next_; }
  // After the last Append: every chunk arrived (kMalformed) and the stream's SHA-256 equals the
  // signed one (kDigestMismatch).
  Status Finish();

 private:
  ChunkVerifier(VerifiedHead head, ChunkCipher cipher);
  VerifiedHead head_;
  ChunkCipher cipher_;
  MdCtx digest_;
  uint64_t next_ = 0;
  bool finished_ = false;
  std::string scratch_;
};

}  // namespace bud::crypto
