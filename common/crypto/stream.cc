// Streamed envelopes: chunked AES-256-GCM bound to a signed header. See stream.h and
// docs/protocol.md "Streamed envelopes".
#include "common/crypto/stream.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "common/fs.h"
#include "common/payload.h"

namespace bud::crypto {

namespace {

constexpr std::string_view kContextLabel = "budstikke stream v2";
constexpr size_t kNonceBytes = 12;
// Block size for hashing a spool file.
constexpr size_t kReadBlock = 1u << 20;

void PutBe32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}
void PutBe64(std::string& out, uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}
void PutString(std::string& out, std::string_view s) {
  PutBe32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}
const unsigned char* U8(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// One owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // close(2) with its error, for files whose write must be known to have landed.
  Status Close(std::string_view path) {
    int fd = std::exchange(fd_, -1);
    if (fd >= 0 && ::close(fd) != 0) {
      return ErrnoStatus(errno, fmt::format("cannot close '{}'", path));
    }
    return Status::Ok();
  }

 private:
  int fd_ = -1;
};

Status WriteAll(int fd, std::string_view data, std::string_view path) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, fmt::format("cannot write '{}'", path));
    }
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Reads up to `n` bytes (fewer only at end of file). Returns how many.
Result<size_t> ReadUpTo(int fd, char* buf, size_t n, std::string_view path) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, fmt::format("cannot read '{}'", path));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

Status Fsync(int fd, std::string_view path) {
  if (::fsync(fd) != 0) return ErrnoStatus(errno, fmt::format("cannot fsync '{}'", path));
  return Status::Ok();
}

// The plaintext stream of a message being sealed: the length-prefixed manifest, then each
// source file, read one at a time. Each file must still have the size it had when the manifest
// was made.
class PlaintextReader {
 public:
  PlaintextReader(std::string prefix, std::span<const StreamSource> sources,
                  std::span<const uint64_t> sizes)
      : prefix_(std::move(prefix)), sources_(sources), sizes_(sizes) {}

  // Fills `*out` with exactly `n` bytes of the stream.
  Status Read(size_t n, std::string* out) {
    out->resize(n);
    size_t filled = 0;
    while (filled < n) {
      if (prefix_pos_ < prefix_.size()) {
        size_t k = std::min(n - filled, prefix_.size() - prefix_pos_);
        std::memcpy(out->data() + filled, prefix_.data() + prefix_pos_, k);
        prefix_pos_ += k;
        filled += k;
        continue;
      }
      if (!fd_.valid()) {
        if (next_ >= sources_.size()) {
          return Status(Code::kInternal, "plaintext stream read past its end");
        }
        BUD_RETURN_IF_ERROR(OpenNext());
      }
      size_t k = static_cast<size_t>(std::min<uint64_t>(n - filled, left_));
      BUD_ASSIGN_OR_RETURN(size_t got, ReadUpTo(fd_.get(), out->data() + filled, k, path()));
      if (got < k) return Changed("shrank");
      filled += got;
      left_ -= got;
      if (left_ == 0) BUD_RETURN_IF_ERROR(CloseCurrent());
    }
    return Status::Ok();
  }

  // After the last chunk: the files not reached (only empty ones remain) are still empty.
  Status Finish() {
    while (next_ < sources_.size() || fd_.valid()) {
      if (!fd_.valid()) BUD_RETURN_IF_ERROR(OpenNext());
      if (left_ != 0) return Status(Code::kInternal, "plaintext stream ended early");
      BUD_RETURN_IF_ERROR(CloseCurrent());
    }
    return Status::Ok();
  }

 private:
  const std::string& path() const { return sources_[current_].path; }

  Status Changed(std::string_view how) const {
    return Status(Code::kIo, fmt::format("attachment '{}' ({}) {} while it was being sealed",
                                         sources_[current_].name, path(), how));
  }

  Status OpenNext() {
    current_ = next_++;
    fd_ = Fd(::open(path().c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd_.valid()) return ErrnoStatus(errno, fmt::format("cannot open '{}'", path()));
    struct stat st;
    if (::fstat(fd_.get(), &st) != 0)
      return ErrnoStatus(errno, fmt::format("cannot stat '{}'", path()));
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != sizes_[current_]) {
      return Changed("changed");
    }
    left_ = sizes_[current_];
    return Status::Ok();
  }

  // The file is read to its announced size: it must end there.
  Status CloseCurrent() {
    char extra;
    BUD_ASSIGN_OR_RETURN(size_t got, ReadUpTo(fd_.get(), &extra, 1, path()));
    if (got != 0) return Changed("grew");
    fd_.Reset();
    return Status::Ok();
  }

  std::string prefix_;
  size_t prefix_pos_ = 0;
  std::span<const StreamSource> sources_;
  std::span<const uint64_t> sizes_;
  size_t next_ = 0;     // next source to open
  size_t current_ = 0;  // source fd_ reads
  Fd fd_;
  uint64_t left_ = 0;  // bytes of the current source still to read
};

// Where a message being opened writes its plaintext: the manifest is collected (bounded by
// kMaxManifestBytes) and checked, then each attachment's bytes go to its own new file in `dir`.
class PlaintextWriter {
 public:
  PlaintextWriter(const wire::Header& header, const StreamLayout& layout, std::string dir,
                  const StreamOptions& options)
      : header_(header), layout_(layout), dir_(std::move(dir)), options_(options) {}

  Status Feed(std::string_view data) {
    while (!data.empty()) {
      switch (stage_) {
        case Stage::kLength: {
          size_t k = std::min<size_t>(4 - buf_.size(), data.size());
          buf_.append(data.substr(0, k));
          data.remove_prefix(k);
          if (buf_.size() == 4) BUD_RETURN_IF_ERROR(StartManifest());
          break;
        }
        case Stage::kManifest: {
          size_t k = std::min<size_t>(manifest_len_ - buf_.size(), data.size());
          buf_.append(data.substr(0, k));
          data.remove_prefix(k);
          if (buf_.size() == manifest_len_) BUD_RETURN_IF_ERROR(TakeManifest());
          break;
        }
        case Stage::kBody: {
          size_t k = static_cast<size_t>(std::min<uint64_t>(left_, data.size()));
          BUD_RETURN_IF_ERROR(WriteAll(fd_.get(), data.substr(0, k), file_path_));
          data.remove_prefix(k);
          left_ -= k;
          if (left_ == 0) BUD_RETURN_IF_ERROR(CloseAndOpenNext());
          break;
        }
        case Stage::kDone:
          return Status(Code::kMalformed, "the plaintext stream is longer than its manifest says");
      }
    }
    return Status::Ok();
  }

  Status Finish() {
    if (stage_ != Stage::kDone) {
      return Status(Code::kMalformed, "the plaintext stream ends before its manifest's end");
    }
    return FsyncPath(dir_);
  }

  wire::Payload& manifest() { return manifest_; }

 private:
  enum class Stage { kLength, kManifest, kBody, kDone };

  Status StartManifest() {
    manifest_len_ = (uint32_t{static_cast<unsigned char>(buf_[0])} << 24) |
                    (uint32_t{static_cast<unsigned char>(buf_[1])} << 16) |
                    (uint32_t{static_cast<unsigned char>(buf_[2])} << 8) |
                    uint32_t{static_cast<unsigned char>(buf_[3])};
    if (manifest_len_ == 0 || manifest_len_ > kMaxManifestBytes ||
        manifest_len_ > layout_.plaintext_size - 4) {
      return Status(Code::kMalformed,
                    fmt::format("manifest length {} is out of range", manifest_len_));
    }
    buf_.clear();
    buf_.reserve(manifest_len_);
    stage_ = Stage::kManifest;
    return Status::Ok();
  }

  Status TakeManifest() {
    if (!manifest_.ParseFromString(buf_)) {
      return Status(Code::kMalformed, "the manifest is not a valid protobuf Payload");
    }
    std::string().swap(buf_);
    const wire::Payload& p = manifest_;
    if (p.message_id() != header_.message_id() || p.sender() != header_.sender() ||
        p.receiver() != header_.receiver() || p.conversation_id() != header_.conversation_id()) {
      return Status(Code::kPayloadMismatch,
                    fmt::format("the encrypted manifest names sender {}, receiver {}, message "
                                "{}, but the signed header names {}, {}, {}",
                                p.sender(), p.receiver(), p.message_id(), header_.sender(),
                                header_.receiver(), header_.message_id()));
    }
    BUD_RETURN_IF_ERROR(ValidatePayload(p, options_.max_attachments));
    uint64_t total = 4 + uint64_t{manifest_len_};
    for (const auto& a : p.attachments()) {
      if (!a.data().empty()) {
        return Status(Code::kMalformed,
                      fmt::format("manifest attachment '{}' carries data inline", a.name()));
      }
      if (__builtin_add_overflow(total, a.size(), &total)) total = UINT64_MAX;
    }
    if (total != layout_.plaintext_size) {
      return Status(Code::kMalformed,
                    fmt::format("manifest and attachments make {} bytes, the signed header says {}",
                                total, layout_.plaintext_size));
    }
    index_ = -1;
    return OpenNext();
  }

  // Creates the next attachment's file; empty attachments are completed at once.
  Status OpenNext() {
    for (;;) {
      ++index_;
      if (index_ >= manifest_.attachments_size()) {
        stage_ = Stage::kDone;
        return Status::Ok();
      }
      const auto& a = manifest_.attachments(index_);
      file_path_ = JoinPath(dir_, a.name());
      fd_ = Fd(
          ::open(file_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640));
      if (!fd_.valid()) return ErrnoStatus(errno, fmt::format("cannot create '{}'", file_path_));
      left_ = a.size();
      if (left_ != 0) {
        stage_ = Stage::kBody;
        return Status::Ok();
      }
      BUD_RETURN_IF_ERROR(CloseFile());
    }
  }

  Status CloseFile() {
    BUD_RETURN_IF_ERROR(Fsync(fd_.get(), file_path_));
    return fd_.Close(file_path_);
  }

  Status CloseAndOpenNext() {
    BUD_RETURN_IF_ERROR(CloseFile());
    return OpenNext();
  }

  const wire::Header& header_;
  const StreamLayout& layout_;
  std::string dir_;
  const StreamOptions& options_;
  Stage stage_ = Stage::kLength;
  std::string buf_;
  uint32_t manifest_len_ = 0;
  wire::Payload manifest_;
  int index_ = -1;
  uint64_t left_ = 0;
  std::string file_path_;
  Fd fd_;
};

// The Envelope of a head, before its signature is checked.
Result<wire::Envelope> ParseHeadEnvelope(std::string_view bytes) {
  if (bytes.size() > kMaxStreamHeadBytes) {
    return Status(Code::kMalformed, fmt::format("stream head of {} bytes exceeds the limit of {}",
                                                bytes.size(), kMaxStreamHeadBytes));
  }
  wire::Envelope env;
  if (!env.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Status(Code::kMalformed, "stream head is not a valid protobuf Envelope");
  }
  if (env.header().empty() || env.signature().empty()) {
    return Status(Code::kMalformed, "stream head lacks its header or signature");
  }
  if (!env.payload().empty()) {
    return Status(Code::kMalformed,
                  "stream head carries an inline payload (a version 1 envelope?)");
  }
  return env;
}

Status ParseStreamHeader(const wire::Envelope& env, uint64_t max_plaintext, StreamHead* out) {
  if (!out->header.ParseFromString(env.header())) {
    return Status(Code::kMalformed, "stream head's header is not a valid protobuf Header");
  }
  const wire::Header& h = out->header;
  if (h.version() != kStreamEnvelopeVersion) {
    return Status(Code::kUnsupported,
                  fmt::format("header version {} is not a streamed envelope (version {})",
                              h.version(), kStreamEnvelopeVersion));
  }
  if (h.payload_sha256().size() != 32 || h.recipient_cert_sha256().size() != 32 ||
      h.content_key_cms().empty()) {
    return Status(Code::kMalformed,
                  "stream header lacks the stream digest, recipient or wrapped content key");
  }
  BUD_ASSIGN_OR_RETURN(out->layout, StreamLayout::Of(h, max_plaintext));
  out->envelope = env;
  return Status::Ok();
}

// The spool holds exactly the signed number of bytes with the signed SHA-256.
Status CheckSpoolDigest(int fd, const std::string& path, const wire::Header& h,
                        const StreamLayout& layout) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, fmt::format("cannot stat '{}'", path));
  if (static_cast<uint64_t>(st.st_size) != layout.ciphertext_size) {
    return Status(Code::kDigestMismatch,
                  fmt::format("the ciphertext stream has {} bytes, the signed header says {}",
                              st.st_size, layout.ciphertext_size));
  }
  MdCtx sha(EVP_MD_CTX_new());
  if (!sha || EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr) != 1) {
    return Status(Code::kInternal, "cannot start SHA-256: " + DrainErrors());
  }
  std::string buf(kReadBlock, '\0');
  uint64_t total = 0;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(size_t got, ReadUpTo(fd, buf.data(), buf.size(), path));
    if (got == 0) break;
    EVP_DigestUpdate(sha.get(), buf.data(), got);
    total += got;
  }
  unsigned char md[32];
  unsigned int md_len = 0;
  EVP_DigestFinal_ex(sha.get(), md, &md_len);
  if (total != layout.ciphertext_size ||
      std::string_view(reinterpret_cast<char*>(md), md_len) != h.payload_sha256()) {
    return Status(Code::kDigestMismatch,
                  "the ciphertext stream does not match the SHA-256 in the signed header");
  }
  return Status::Ok();
}

// Decrypts every chunk of the spool (read from its start) into `writer`.
Status DecryptSpool(int fd, const std::string& path, const StreamLayout& layout,
                    ChunkCipher& cipher, PlaintextWriter& writer) {
  if (::lseek(fd, 0, SEEK_SET) != 0)
    return ErrnoStatus(errno, fmt::format("cannot seek '{}'", path));
  std::string record, plain;
  record.reserve(layout.chunk_size + kChunkTagBytes);
  plain.reserve(layout.chunk_size);
  for (uint64_t i = 0; i < layout.chunk_count; ++i) {
    size_t n = static_cast<size_t>(layout.RecordSize(i));
    record.resize(n);
    BUD_ASSIGN_OR_RETURN(size_t got, ReadUpTo(fd, record.data(), n, path));
    if (got != n) {
      return Status(Code::kDigestMismatch,
                    fmt::format("the ciphertext stream '{}' changed while it was opened", path));
    }
    Status opened = cipher.Open(i, layout.IsFinal(i), record, &plain);
    if (!opened.ok()) return opened.Context(fmt::format("chunk {} of {}", i, layout.chunk_count));
    BUD_RETURN_IF_ERROR(writer.Feed(plain));
  }
  OPENSSL_cleanse(plain.data(), plain.size());
  return writer.Finish();
}

}  // namespace

// --- layout ------------------------------------------------------------------------------------

Result<StreamLayout> StreamLayout::For(uint64_t plaintext_size, uint32_t chunk_size) {
  if (chunk_size < kMinChunkSize || chunk_size > kMaxChunkSize) {
    return Status(Code::kInvalidArgument, fmt::format("chunk size {} is outside {}..{}", chunk_size,
                                                      kMinChunkSize, kMaxChunkSize));
  }
  if (plaintext_size == 0 || plaintext_size > (uint64_t{1} << 62)) {
    return Status(Code::kInvalidArgument,
                  fmt::format("plaintext size {} is out of range", plaintext_size));
  }
  StreamLayout l;
  l.plaintext_size = plaintext_size;
  l.chunk_size = chunk_size;
  l.chunk_count = plaintext_size / chunk_size + (plaintext_size % chunk_size != 0 ? 1 : 0);
  l.ciphertext_size = plaintext_size + l.chunk_count * kChunkTagBytes;
  return l;
}

Result<StreamLayout> StreamLayout::Of(const wire::Header& h, uint64_t max_plaintext) {
  if (h.plaintext_size() > max_plaintext) {
    return Status(Code::kUnsupported,
                  fmt::format("a streamed payload of {} bytes exceeds the limit of {}",
                              h.plaintext_size(), max_plaintext));
  }
  auto l = For(h.plaintext_size(), h.chunk_size());
  if (!l.ok()) return Status(Code::kMalformed, "stream header: " + l.status().message());
  if (h.chunk_count() != l->chunk_count || h.payload_size() != l->ciphertext_size) {
    return Status(Code::kMalformed,
                  fmt::format("stream header is inconsistent: {} plaintext bytes in chunks of {} "
                              "make {} chunks and {} ciphertext bytes, it says {} and {}",
                              l->plaintext_size, l->chunk_size, l->chunk_count, l->ciphertext_size,
                              h.chunk_count(), h.payload_size()));
  }
  return l;
}

uint64_t StreamLayout::PlainSize(uint64_t index) const {
  if (index + 1 < chunk_count) return chunk_size;
  return plaintext_size - (chunk_count - 1) * uint64_t{chunk_size};
}

std::string StreamContext(const wire::Header& h) {
  std::string c(kContextLabel);
  c.push_back('\0');
  PutString(c, h.message_id());
  PutString(c, h.conversation_id());
  PutString(c, h.sender());
  PutString(c, h.receiver());
  PutBe64(c, h.plaintext_size());
  PutBe32(c, h.chunk_size());
  PutBe64(c, h.chunk_count());
  return c;
}

// --- chunk cipher ------------------------------------------------------------------------------

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, Deleter<EVP_CIPHER_CTX_free>>;

struct ChunkCipher::Impl {
  std::array<unsigned char, kContentKeyBytes> key{};
  std::string aad;  // context, then index and final flag per chunk
  size_t context_size = 0;
  CipherCtx ctx{EVP_CIPHER_CTX_new()};
  ~Impl() { OPENSSL_cleanse(key.data(), key.size()); }

  // Starts a chunk: key, nonce (4 zero bytes || be64 index), AAD (context || be64 index || final).
  bool Begin(uint64_t index, bool final, int enc) {
    std::array<unsigned char, kNonceBytes> nonce{};
    for (int i = 0; i < 8; ++i) nonce[4 + i] = static_cast<unsigned char>(index >> (56 - 8 * i));
    aad.resize(context_size);
    PutBe64(aad, index);
    aad.push_back(final ? '\1' : '\0');
    int outl = 0;
    return EVP_CipherInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce.data(),
                             enc) == 1 &&
           EVP_CipherUpdate(ctx.get(), nullptr, &outl, U8(aad), static_cast<int>(aad.size())) == 1;
  }
};

ChunkCipher::ChunkCipher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChunkCipher::ChunkCipher(ChunkCipher&&) noexcept = default;
ChunkCipher& ChunkCipher::operator=(ChunkCipher&&) noexcept = default;
ChunkCipher::~ChunkCipher() = default;

Result<ChunkCipher> ChunkCipher::Create(std::string_view key, std::string context) {
  if (key.size() != kContentKeyBytes) {
    return Status(Code::kInvalidArgument,
                  fmt::format("content key has {} bytes, not {}", key.size(), kContentKeyBytes));
  }
  auto impl = std::make_unique<Impl>();
  if (!impl->ctx) return Status(Code::kInternal, "cannot allocate a cipher context");
  std::memcpy(impl->key.data(), key.data(), key.size());
  impl->context_size = context.size();
  impl->aad = std::move(context);
  return ChunkCipher(std::move(impl));
}

Status ChunkCipher::Seal(uint64_t index, bool final, std::string_view plain, std::string* record) {
  if (plain.size() > kMaxChunkSize) return Status(Code::kInvalidArgument, "chunk too large");
  record->resize(plain.size() + kChunkTagBytes);
  auto* out = reinterpret_cast<unsigned char*>(record->data());
  int outl = 0, finl = 0;
  if (!impl_->Begin(index, final, 1) ||
      EVP_EncryptUpdate(impl_->ctx.get(), out, &outl, U8(plain), static_cast<int>(plain.size())) !=
          1 ||
      EVP_EncryptFinal_ex(impl_->ctx.get(), out + outl, &finl) != 1 ||
      static_cast<size_t>(outl + finl) != plain.size() ||
      EVP_CIPHER_CTX_ctrl(impl_->ctx.get(), EVP_CTRL_GCM_GET_TAG, kChunkTagBytes,
                          out + plain.size()) != 1) {
    return Status(Code::kInternal, "cannot encrypt a chunk: " + DrainErrors());
  }
  return Status::Ok();
}

Status ChunkCipher::Open(uint64_t index, bool final, std::string_view record, std::string* plain) {
  plain->clear();
  if (record.size() < kChunkTagBytes || record.size() - kChunkTagBytes > kMaxChunkSize) {
    return Status(Code::kMalformed, fmt::format("chunk record of {} bytes", record.size()));
  }
  const size_t n = record.size() - kChunkTagBytes;
  plain->resize(n);
  auto* out = reinterpret_cast<unsigned char*>(plain->data());
  std::array<unsigned char, kChunkTagBytes> tag;
  std::memcpy(tag.data(), record.data() + n, kChunkTagBytes);
  int outl = 0, finl = 0;
  bool ok = impl_->Begin(index, final, 0) &&
            EVP_DecryptUpdate(impl_->ctx.get(), out, &outl, U8(record), static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(impl_->ctx.get(), EVP_CTRL_GCM_SET_TAG, kChunkTagBytes,
                                tag.data()) == 1 &&
            EVP_DecryptFinal_ex(impl_->ctx.get(), out + outl, &finl) == 1;
  ERR_clear_error();
  if (!ok) {
    OPENSSL_cleanse(plain->data(), plain->size());
    plain->clear();
    return Status(Code::kDecryptFailed,
                  fmt::format("chunk {} does not authenticate (altered, out of place, from "
                              "another message, or the wrong key)",
                              index));
  }
  return Status::Ok();
}

// --- sealing -----------------------------------------------------------------------------------

Result<std::string> SealStream(wire::Header header, const wire::Payload& manifest_in,
                               std::span<const StreamSource> sources, const SignerKeys& signer,
                               X509* receiver_encryption_cert, const ChunkSink& sink,
                               const StreamOptions& options) {
  if (manifest_in.message_id() != header.message_id() || manifest_in.sender() != header.sender() ||
      manifest_in.receiver() != header.receiver() ||
      manifest_in.conversation_id() != header.conversation_id()) {
    return Status(Code::kInvalidArgument, "manifest ids do not match the header");
  }
  if (manifest_in.attachments_size() != 0) {
    return Status(Code::kInvalidArgument,
                  "the manifest's attachments come from the sources, not from the manifest");
  }
  // The manifest: what the receiver learns before the bytes, with each file's size now.
  wire::Payload manifest = manifest_in;
  std::vector<uint64_t> sizes;
  sizes.reserve(sources.size());
  for (const StreamSource& s : sources) {
    struct stat st;
    if (::stat(s.path.c_str(), &st) != 0) {
      return ErrnoStatus(errno, fmt::format("attachment '{}': cannot stat '{}'", s.name, s.path));
    }
    if (!S_ISREG(st.st_mode)) {
      return Status(Code::kInvalidArgument,
                    fmt::format("attachment '{}': '{}' is not a regular file", s.name, s.path));
    }
    sizes.push_back(static_cast<uint64_t>(st.st_size));
    auto* a = manifest.add_attachments();
    a->set_name(s.name);
    a->set_media_type(s.media_type);
    a->set_size(sizes.back());
  }
  BUD_RETURN_IF_ERROR(ValidatePayload(manifest, options.max_attachments));
  std::string prefix;
  {
    std::string m;
    if (!manifest.SerializeToString(&m)) return Status(Code::kInternal, "cannot encode manifest");
    if (m.size() > kMaxManifestBytes) {
      return Status(Code::kInvalidArgument,
                    fmt::format("manifest of {} bytes exceeds the limit of {} (metadata too large)",
                                m.size(), kMaxManifestBytes));
    }
    PutBe32(prefix, static_cast<uint32_t>(m.size()));
    prefix += m;
  }
  uint64_t plaintext_size = prefix.size();
  for (uint64_t s : sizes) plaintext_size += s;
  if (plaintext_size > options.max_plaintext) {
    return Status(Code::kInvalidArgument, fmt::format("payload of {} bytes exceeds the limit of {}",
                                                      plaintext_size, options.max_plaintext));
  }
  PlaintextReader reader(std::move(prefix), sources, sizes);
  BUD_ASSIGN_OR_RETURN(std::string head,
                       SealPlaintextStream(
                           std::move(header), plaintext_size,
                           [&](size_t n, std::string* out) { return reader.Read(n, out); }, signer,
                           receiver_encryption_cert, sink, options.chunk_size));
  BUD_RETURN_IF_ERROR(reader.Finish());
  return head;
}

Result<std::string> SealPlaintextStream(wire::Header header, uint64_t plaintext_size,
                                        const PlaintextSource& read, const SignerKeys& signer,
                                        X509* receiver_encryption_cert, const ChunkSink& sink,
                                        uint32_t chunk_size) {
  BUD_ASSIGN_OR_RETURN(StreamLayout layout, StreamLayout::For(plaintext_size, chunk_size));

  // The content key: random per message, wrapped for the receiver, then only in ChunkCipher.
  std::string key = RandomBytes(kContentKeyBytes);
  auto wrapped = CmsEncrypt(key, receiver_encryption_cert);
  if (!wrapped.ok()) {
    OPENSSL_cleanse(key.data(), key.size());
    return wrapped.status();
  }
  header.set_version(kStreamEnvelopeVersion);
  header.set_plaintext_size(layout.plaintext_size);
  header.set_chunk_size(layout.chunk_size);
  header.set_chunk_count(layout.chunk_count);
  header.set_payload_size(layout.ciphertext_size);
  header.set_content_key_cms(std::move(*wrapped));
  header.set_recipient_cert_sha256(CertFingerprint(receiver_encryption_cert));
  auto cipher = ChunkCipher::Create(key, StreamContext(header));
  OPENSSL_cleanse(key.data(), key.size());
  if (!cipher.ok()) return cipher.status();

  MdCtx sha(EVP_MD_CTX_new());
  if (!sha || EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr) != 1) {
    return Status(Code::kInternal, "cannot start SHA-256: " + DrainErrors());
  }
  std::string plain, record;
  plain.reserve(layout.chunk_size);
  record.reserve(layout.chunk_size + kChunkTagBytes);
  for (uint64_t i = 0; i < layout.chunk_count; ++i) {
    const size_t n = static_cast<size_t>(layout.PlainSize(i));
    BUD_RETURN_IF_ERROR(read(n, &plain));
    if (plain.size() != n) {
      return Status(Code::kInternal, "the plaintext source returned a short piece");
    }
    BUD_RETURN_IF_ERROR(cipher->Seal(i, layout.IsFinal(i), plain, &record));
    EVP_DigestUpdate(sha.get(), record.data(), record.size());
    BUD_RETURN_IF_ERROR(sink(i, record));
  }
  OPENSSL_cleanse(plain.data(), plain.size());
  unsigned char md[32];
  unsigned int md_len = 0;
  EVP_DigestFinal_ex(sha.get(), md, &md_len);
  header.set_payload_sha256(reinterpret_cast<char*>(md), md_len);

  wire::Envelope head;
  if (!header.SerializeToString(head.mutable_header())) {
    return Status(Code::kInternal, "cannot encode header");
  }
  BUD_ASSIGN_OR_RETURN(std::string sig, Sign(head.header(), signer.signing_key));
  head.set_signature(std::move(sig));
  head.set_signer_cert_sha256(CertFingerprint(signer.signing_cert));
  std::string out;
  if (!head.SerializeToString(&out)) return Status(Code::kInternal, "cannot encode stream head");
  return out;
}

Result<std::string> SealStreamToFile(wire::Header header, const wire::Payload& manifest,
                                     std::span<const StreamSource> sources,
                                     const SignerKeys& signer, X509* receiver_encryption_cert,
                                     const std::string& spool_path, const StreamOptions& options) {
  Fd fd(::open(spool_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  if (!fd.valid()) return ErrnoStatus(errno, fmt::format("cannot create '{}'", spool_path));
  auto head = SealStream(
      std::move(header), manifest, sources, signer, receiver_encryption_cert,
      [&](uint64_t, std::string_view record) { return WriteAll(fd.get(), record, spool_path); },
      options);
  Status st = head.ok() ? Fsync(fd.get(), spool_path) : head.status();
  if (st.ok()) st = fd.Close(spool_path);
  if (!st.ok()) {
    fd.Reset();
    ::unlink(spool_path.c_str());
    return st;
  }
  return head;
}

// --- opening -----------------------------------------------------------------------------------

Result<StreamHead> ParseStreamHead(std::string_view head_bytes, uint64_t max_plaintext) {
  BUD_ASSIGN_OR_RETURN(wire::Envelope env, ParseHeadEnvelope(head_bytes));
  StreamHead head;
  BUD_RETURN_IF_ERROR(ParseStreamHeader(env, max_plaintext, &head));
  return head;
}

Result<VerifiedHead> VerifyStreamHead(std::string_view head_bytes, const StreamParties& parties,
                                      const StreamOptions& options) {
  BUD_ASSIGN_OR_RETURN(wire::Envelope env, ParseHeadEnvelope(head_bytes));
  BUD_ASSIGN_OR_RETURN(X509 * signer, FindSignerCert(env, parties.sender, parties.sender_certs));
  BUD_RETURN_IF_ERROR(
      parties.trust.Verify(signer, KeyPurpose::kSigning, parties.sender, parties.at_unix_s)
          .Context("sender's signing certificate"));
  BUD_RETURN_IF_ERROR(VerifySignature(env.header(), env.signature(), signer));

  VerifiedHead out;
  BUD_RETURN_IF_ERROR(ParseStreamHeader(env, options.max_plaintext, &out.head));
  BUD_RETURN_IF_ERROR(CheckAddressing(out.head.header, parties.me, parties.sender));
  out.signer_fingerprint = Hex(env.signer_cert_sha256());
  return out;
}

Result<ChunkCipher> UnwrapContentKey(const wire::Header& h,
                                     std::span<const DecryptionKey> my_keys) {
  BUD_ASSIGN_OR_RETURN(const DecryptionKey* key, FindDecryptionKey(h, my_keys));
  auto content_key = CmsDecrypt(h.content_key_cms(), key->key, key->cert);
  if (!content_key.ok()) return content_key.status().Context("content key");
  auto cipher = ChunkCipher::Create(*content_key, StreamContext(h));
  OPENSSL_cleanse(content_key->data(), content_key->size());
  if (!cipher.ok()) {
    return Status(Code::kDecryptFailed, "the wrapped content key is not a 32-byte AES-256 key");
  }
  return cipher;
}

Result<OpenedStream> OpenStream(std::string_view head_bytes, const std::string& spool_path,
                                const std::string& target_dir, const StreamParties& parties,
                                const StreamOptions& options) {
  BUD_ASSIGN_OR_RETURN(VerifiedHead vh, VerifyStreamHead(head_bytes, parties, options));
  const wire::Header& h = vh.head.header;
  const StreamLayout& layout = vh.head.layout;

  Fd fd(::open(spool_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, fmt::format("cannot open '{}'", spool_path));
  BUD_RETURN_IF_ERROR(CheckSpoolDigest(fd.get(), spool_path, h, layout));
  BUD_ASSIGN_OR_RETURN(ChunkCipher cipher, UnwrapContentKey(h, parties.my_keys));

  if (::mkdir(target_dir.c_str(), 0750) != 0) {
    return ErrnoStatus(errno, fmt::format("cannot create '{}'", target_dir));
  }
  PlaintextWriter writer(h, layout, target_dir, options);
  Status st = DecryptSpool(fd.get(), spool_path, layout, cipher, writer);
  if (!st.ok()) {
    Status removed = RemoveAll(target_dir);
    if (!removed.ok()) {
      return Status(st.code(), st.message() + " (and removing the partial output failed: " +
                                   removed.ToString() + ")");
    }
    return st;
  }
  OpenedStream out;
  out.header = h;
  out.manifest = std::move(writer.manifest());
  out.signer_fingerprint = std::move(vh.signer_fingerprint);
  return out;
}

// --- chunk verifier ----------------------------------------------------------------------------

ChunkVerifier::ChunkVerifier(VerifiedHead head, ChunkCipher cipher)
    : head_(std::move(head)), cipher_(std::move(cipher)), digest_(EVP_MD_CTX_new()) {}

Result<ChunkVerifier> ChunkVerifier::Create(std::string_view head_bytes,
                                            const StreamParties& parties,
                                            const StreamOptions& options) {
  BUD_ASSIGN_OR_RETURN(VerifiedHead vh, VerifyStreamHead(head_bytes, parties, options));
  BUD_ASSIGN_OR_RETURN(ChunkCipher cipher, UnwrapContentKey(vh.head.header, parties.my_keys));
  ChunkVerifier v(std::move(vh), std::move(cipher));
  if (!v.digest_ || EVP_DigestInit_ex(v.digest_.get(), EVP_sha256(), nullptr) != 1) {
    return Status(Code::kInternal, "cannot start SHA-256: " + DrainErrors());
  }
  return v;
}

Status ChunkVerifier::Verify(uint64_t index, std::string_view record) {
  const StreamLayout& l = layout();
  if (index >= l.chunk_count) {
    return Status(Code::kMalformed,
                  fmt::format("chunk {} is beyond the stream's {} chunks", index, l.chunk_count));
  }
  if (record.size() != l.RecordSize(index)) {
    return Status(Code::kMalformed, fmt::format("chunk {} has {} bytes, it must have {}", index,
                                                record.size(), l.RecordSize(index)));
  }
  Status st = cipher_.Open(index, l.IsFinal(index), record, &scratch_);
  OPENSSL_cleanse(scratch_.data(), scratch_.size());
  return st;
}

Status ChunkVerifier::Append(uint64_t index, std::string_view record) {
  if (finished_) return Status(Code::kInvalidArgument, "the stream was already finished");
  if (index != next_) {
    return Status(Code::kInvalidArgument,
                  fmt::format("chunk {} arrived where chunk {} was expected", index, next_));
  }
  BUD_RETURN_IF_ERROR(Verify(index, record));
  EVP_DigestUpdate(digest_.get(), record.data(), record.size());
  ++next_;
  return Status::Ok();
}

Status ChunkVerifier::Finish() {
  if (finished_) return Status(Code::kInvalidArgument, "the stream was already finished");
  if (next_ != layout().chunk_count) {
    return Status(Code::kMalformed, fmt::format("the stream ended after {} of its {} chunks", next_,
                                                layout().chunk_count));
  }
  unsigned char md[32];
  unsigned int md_len = 0;
  EVP_DigestFinal_ex(digest_.get(), md, &md_len);
  finished_ = true;
  if (std::string_view(reinterpret_cast<char*>(md), md_len) != header().payload_sha256()) {
    return Status(Code::kDigestMismatch,
                  "the ciphertext stream does not match the SHA-256 in the signed header");
  }
  return Status::Ok();
}

}  // namespace bud::crypto
