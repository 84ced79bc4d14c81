// The container GET /api/messages/in/pop/{id} returns: an ASiC-E zip as eFormidling's
// integration point returns it: the "mimetype" entry first, the root manifest.xml naming the
// parties and the main document, the attachments, META-INF/manifest.xml listing them with their
// media types, and (with AsicOptions' key) META-INF/ASiCManifest.xml (ETSI EN 319 162: the
// SHA-256 of every data object) with META-INF/signature.p7s, a CAdES signature (CMS SignedData,
// detached, DER) over the ASiCManifest. `openssl cms -verify -binary -inform DER -in
// META-INF/signature.p7s -content META-INF/ASiCManifest.xml` verifies it.
//
// Who signs: the receiving integration point, with its own signing key, when the archive system
// pops the message (eFormidling's sending point builds and signs the container; ours carries the
// files in the envelope the sender signed, and the receiver verified that signature before it
// kept the message, so the container's signature says "these are the files the receiving point
// verified as from the sender"; docs/http-api.md, "The ASiC-E").
//
// Operation: AsicStream lays the whole zip out before a byte is written. Every entry is stored
// (no compression), with its CRC-32 and size known in advance, so the local headers need no data
// descriptors and the total size is known: the HTTP answer is sized and served piece by piece
// (Read), the attachments read from their files as the client takes them. Memory is the
// headers and one read buffer, whatever the attachments' size. ZIP64 extra fields are written
// for an entry whose size or offset does not fit 32 bits (4 GiB - 1 and more), and the ZIP64 end
// records when the central directory does not. Attachments kept in memory (small messages)
// are entries too, so there is one zip writer for both kinds of message.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto/openssl.h"
#include "common/status.h"
#include "proto/envelope.pb.h"

namespace bud::ip {

inline constexpr const char* kAsicMediaType = "application/vnd.etsi.asic-e+zip";

// CRC-32 (ISO-HDLC, as zip uses it) of `data`, continuing from `crc` (0 to start).
uint32_t Crc32(uint32_t crc, std::string_view data);
// CRC-32 of a whole file, read in 1 MiB blocks.
Result<uint32_t> FileCrc32(const std::string& path);

// One attachment of the container: its bytes in memory (`data`) or in the file `path`.
struct AsicFile {
  std::string name;  // checked by ValidateAttachmentName before it gets here
  std::string media_type;
  uint64_t size = 0;   // of the file; data.size() for memory
  uint32_t crc32 = 0;  // of the file's bytes; computed here for memory
  std::string path;    // "" = in memory
  std::string data;
};

// What makes the container eFormidling's: the parties and main document of the root
// manifest.xml, and the key that signs the ASiCManifest (none: no ASiCManifest, no signature).
struct AsicOptions {
  std::string sender;  // "0192:<orgnr>"
  std::string receiver;
  std::string main_document;  // the SBD's hoveddokument; "" = the first file
  EVP_PKEY* key = nullptr;    // borrowed, with its certificate, for the call to Open
  X509* cert = nullptr;
};

// SHA-256 of a whole file (32 raw bytes), read in 1 MiB blocks.
Result<std::string> FileSha256(const std::string& path);
// eFormidling's root manifest.xml for `files`.
std::string RootManifest(const std::vector<AsicFile>& files, const AsicOptions& options);
// The ASiCManifest over `objects` (name, media type, SHA-256 raw) naming META-INF/signature.p7s.
std::string AsicManifest(const std::vector<AsicFile>& objects,
                         const std::vector<std::string>& sha256);
// Whether `key` can sign the container: RSA and EC can; Ed25519 cannot (OpenSSL 3.0's CMS has
// no Ed25519 signer), and a point with an Ed25519 signing key serves its containers unsigned.
bool CanSignAsic(EVP_PKEY* key);
// A detached CAdES-BES (CMS SignedData, DER, SHA-256) of `data` by `key`/`cert`, the certificate
// included. kUnsupported for a key CanSignAsic refuses.
Result<std::string> SignDetached(std::string_view data, EVP_PKEY* key, X509* cert);

class AsicStream {
 public:
  // Lays out mimetype, `files` in order, and META-INF/manifest.xml; with `options` also the root
  // manifest.xml and, given a key, META-INF/ASiCManifest.xml and META-INF/signature.p7s (each
  // file is read once here for its SHA-256). Opens each file now (so a later unlink does not cut
  // the answer short) and checks its size against `size`. `mtime_ms` is the entries'
  // modification time.
  static Result<std::unique_ptr<AsicStream>> Open(std::vector<AsicFile> files, int64_t mtime_ms,
                                                  const AsicOptions* options = nullptr);
  ~AsicStream();
  AsicStream(const AsicStream&) = delete;
  AsicStream& operator=(const AsicStream&) = delete;

  uint64_t size() const { return size_; }
  // The bytes at `offset`, at most `max` of them (fewer only at a piece's end); empty at the end.
  // kIo when a file is shorter than it was.
  Result<std::string_view> Read(uint64_t offset, size_t max);

 private:
  struct Piece {
    uint64_t offset = 0;
    uint64_t size = 0;
    std::string bytes;  // headers, small files, the manifest
    int fd = -1;        // or a file's data
  };
  AsicStream() = default;
  // Appends bytes held in memory, or a file's `size` bytes read from `path` as the client takes
  // them (opened now; kIo when its size is not `size`).
  void AddBytes(std::string bytes);
  Status AddFile(const std::string& path, uint64_t size);
  std::vector<Piece> pieces_;
  uint64_t size_ = 0;
  std::string buffer_;
};

// The whole container in memory (small messages; tests).
Result<std::string> MakeAsice(const wire::Payload& payload);

}  // namespace bud::ip
