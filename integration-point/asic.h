// The container GET /api/messages/in/pop/{id} returns: an ASiC-E-style zip as eFormidling's
// integration point returns it (the "mimetype" entry first, the attachments, and
// META-INF/manifest.xml listing them with their media types). Unsigned: the envelope's signature
// was verified when the message arrived (see the SBD's and the status history).
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
  std::string name;        // checked by ValidateAttachmentName before it gets here
  std::string media_type;
  uint64_t size = 0;       // of the file; data.size() for memory
  uint32_t crc32 = 0;      // of the file's bytes; computed here for memory
  std::string path;        // "" = in memory
  std::string data;
};

class AsicStream {
 public:
  // Lays out mimetype, `files` in order, and META-INF/manifest.xml. Opens each file now (so a
  // later unlink does not cut the answer short) and checks its size against `size`. `mtime_ms`
  // is the entries' modification time.
  static Result<std::unique_ptr<AsicStream>> Open(std::vector<AsicFile> files, int64_t mtime_ms);
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
