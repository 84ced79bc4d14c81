// The pop container's zip writer (integration-point/asic.h), read back with libzip: entries,
// order, stored method, CRCs, files served from disk, and the ZIP64 fields past 4 GiB (a sparse
// file, so nothing of its 4 GiB is written or read).
#include <fcntl.h>
#include <unistd.h>
#include <zip.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include "integration-point/asic.h"
#include "tests/support/temp_dir.h"

namespace bud::ip {
namespace {

// libzip reads an AsicStream through this source: only the bytes it asks for are produced.
struct StreamSource {
  AsicStream* stream;
  uint64_t pos = 0;
  zip_error_t error;
};

zip_int64_t StreamCallback(void* user, void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
  auto* s = static_cast<StreamSource*>(user);
  switch (cmd) {
    case ZIP_SOURCE_OPEN: s->pos = 0; return 0;
    case ZIP_SOURCE_READ: {
      uint64_t done = 0;
      while (done < len) {
        auto piece = s->stream->Read(s->pos, static_cast<size_t>(len - done));
        if (!piece.ok()) return -1;
        if (piece->empty()) break;
        std::memcpy(static_cast<char*>(data) + done, piece->data(), piece->size());
        done += piece->size();
        s->pos += piece->size();
      }
      return static_cast<zip_int64_t>(done);
    }
    case ZIP_SOURCE_CLOSE: return 0;
    case ZIP_SOURCE_STAT: {
      auto* st = static_cast<zip_stat_t*>(data);
      zip_stat_init(st);
      st->size = s->stream->size();
      st->valid |= ZIP_STAT_SIZE;
      return sizeof(zip_stat_t);
    }
    case ZIP_SOURCE_ERROR: return zip_error_to_data(&s->error, data, len);
    case ZIP_SOURCE_SEEK: {
      zip_int64_t to = zip_source_seek_compute_offset(s->pos, s->stream->size(), data, len,
                                                      &s->error);
      if (to < 0) return -1;
      s->pos = static_cast<uint64_t>(to);
      return 0;
    }
    case ZIP_SOURCE_TELL: return static_cast<zip_int64_t>(s->pos);
    case ZIP_SOURCE_FREE: return 0;
    case ZIP_SOURCE_SUPPORTS:
      return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE,
                                            ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR, ZIP_SOURCE_SEEK,
                                            ZIP_SOURCE_TELL, ZIP_SOURCE_FREE, ZIP_SOURCE_SUPPORTS,
                                            -1);
    default: return -1;
  }
}

struct Entry {
  std::string name;
  uint64_t size = 0;
  uint16_t method = 0;
  std::string data;  // read only when asked
};

// The entries in order; `read` = data of every entry (checked against its CRC by libzip).
std::vector<Entry> ReadZip(AsicStream& stream, bool read, int flags = ZIP_CHECKCONS) {
  StreamSource s{&stream, 0, {}};
  zip_error_init(&s.error);
  zip_error_t err;
  zip_error_init(&err);
  zip_source_t* src = zip_source_function_create(StreamCallback, &s, &err);
  REQUIRE(src != nullptr);
  zip_t* za = zip_open_from_source(src, ZIP_RDONLY | flags, &err);
  INFO("libzip: " << zip_error_strerror(&err));
  REQUIRE(za != nullptr);
  std::vector<Entry> out;
  for (zip_int64_t i = 0; i < zip_get_num_entries(za, 0); ++i) {
    zip_stat_t st;
    REQUIRE(zip_stat_index(za, static_cast<zip_uint64_t>(i), 0, &st) == 0);
    Entry e{st.name, st.size, st.comp_method, {}};
    if (read) {
      zip_file_t* f = zip_fopen_index(za, static_cast<zip_uint64_t>(i), 0);
      REQUIRE(f != nullptr);
      e.data.resize(st.size);
      CHECK(zip_fread(f, e.data.data(), st.size) == static_cast<zip_int64_t>(st.size));
      CHECK(zip_fclose(f) == 0);  // 0: the CRC matched
    }
    out.push_back(std::move(e));
  }
  zip_close(za);
  return out;
}

std::string Bytes(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 31 + (i >> 9));
  return s;
}

TEST_CASE("the container: mimetype first, the files, the manifest, all stored", "[ip][asic]") {
  wire::Payload p;
  auto* a = p.add_attachments();
  a->set_name("vedtak.pdf");
  a->set_media_type("application/pdf");
  a->set_data(Bytes(300000, 1));
  auto* b = p.add_attachments();
  b->set_name("vedlegg æøå.txt");
  b->set_media_type("text/plain");
  b->set_data("Vedlegg & <annet>\n");
  auto zip = MakeAsice(p);
  REQUIRE(zip.ok());
  CHECK(zip->substr(30, 8) == "mimetype");  // the first local header's name, ASiC's rule
  CHECK(zip->substr(38, 31) == "application/vnd.etsi.asic-e+zip");

  std::vector<AsicFile> files{{"vedtak.pdf", "application/pdf", 0, 0, "", a->data()},
                              {"vedlegg æøå.txt", "text/plain", 0, 0, "", b->data()}};
  auto stream = AsicStream::Open(files, 1798761600000);
  REQUIRE(stream.ok());
  CHECK((*stream)->size() == zip->size());
  auto entries = ReadZip(**stream, true);
  REQUIRE(entries.size() == 4);
  CHECK(entries[0].name == "mimetype");
  CHECK(entries[0].data == kAsicMediaType);
  CHECK(entries[1].data == a->data());
  CHECK(entries[2].name == "vedlegg æøå.txt");
  CHECK(entries[2].data == b->data());
  CHECK(entries[3].name == "META-INF/manifest.xml");
  CHECK(entries[3].data.find("manifest:full-path=\"vedtak.pdf\" "
                             "manifest:media-type=\"application/pdf\"") != std::string::npos);
  for (const auto& e : entries) CHECK(e.method == ZIP_CM_STORE);
}

TEST_CASE("files on disk are read as the answer is taken, and a short file is an error",
          "[ip][asic]") {
  test::TempDir dir;
  const std::string big = Bytes(3 * 1024 * 1024 + 17, 5), small = "x";
  std::ofstream(dir / "big.bin", std::ios::binary) << big;
  std::ofstream(dir / "s.txt", std::ios::binary) << small;
  auto crc = FileCrc32(dir / "big.bin");
  REQUIRE(crc.ok());
  CHECK(*crc == Crc32(0, big));
  std::vector<AsicFile> files{{"big.bin", "application/octet-stream", big.size(), *crc,
                               dir / "big.bin", ""},
                              {"s.txt", "text/plain", 1, Crc32(0, small), dir / "s.txt", ""}};
  auto stream = AsicStream::Open(files, 0);
  REQUIRE(stream.ok());
  // Opened files are served even when they are removed meanwhile (a DELETE during a pop).
  REQUIRE(::unlink((dir / "big.bin").c_str()) == 0);
  // Read in odd pieces: the bytes are the same as one read.
  std::string whole;
  while (whole.size() < (*stream)->size()) {
    auto piece = (*stream)->Read(whole.size(), 7777);
    REQUIRE(piece.ok());
    REQUIRE(!piece->empty());
    whole.append(*piece);
  }
  CHECK((*stream)->Read(whole.size(), 10)->empty());
  auto entries = ReadZip(**stream, true);
  REQUIRE(entries.size() == 4);
  CHECK(entries[1].data == big);
  CHECK(entries[2].data == small);
  CHECK(whole.find(big) != std::string::npos);  // stored: the bytes as they are

  // The recorded size is checked when the stream opens.
  files[1].size = 2;
  auto short_file = AsicStream::Open(files, 0);
  CHECK(!short_file.ok());
}

TEST_CASE("an entry past 4 GiB gets ZIP64 sizes and the entries after it ZIP64 offsets",
          "[ip][asic]") {
  test::TempDir dir;
  const uint64_t huge = (4ull << 30) + 5;  // sparse: no block is written
  {
    int fd = ::open((dir / "huge.bin").c_str(), O_CREAT | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, static_cast<off_t>(huge)) == 0);
    ::close(fd);
  }
  std::vector<AsicFile> files{{"huge.bin", "application/octet-stream", huge, 0, dir / "huge.bin", ""},
                              {"after.txt", "text/plain", 0, 0, "", "after the huge one\n"}};
  auto stream = AsicStream::Open(files, 0);
  REQUIRE(stream.ok());
  CHECK((*stream)->size() > huge);
  // Central directory, sizes and offsets as libzip reads them; the entries after the huge one
  // are read (their offsets are in ZIP64 fields), the huge one's 4 GiB are not.
  auto entries = ReadZip(**stream, false, 0);
  REQUIRE(entries.size() == 4);
  CHECK(entries[1].name == "huge.bin");
  CHECK(entries[1].size == huge);
  StreamSource s{stream->get(), 0, {}};
  zip_error_init(&s.error);
  zip_error_t err;
  zip_error_init(&err);
  zip_t* za = zip_open_from_source(zip_source_function_create(StreamCallback, &s, &err),
                                   ZIP_RDONLY, &err);
  REQUIRE(za != nullptr);
  for (const char* name : {"after.txt", "META-INF/manifest.xml"}) {
    zip_stat_t st;
    REQUIRE(zip_stat(za, name, 0, &st) == 0);
    zip_file_t* f = zip_fopen(za, name, 0);
    REQUIRE(f != nullptr);
    std::string data(st.size, '\0');
    CHECK(zip_fread(f, data.data(), st.size) == static_cast<zip_int64_t>(st.size));
    CHECK(zip_fclose(f) == 0);
    if (std::string(name) == "after.txt") CHECK(data == "after the huge one\n");
  }
  zip_close(za);
  // The huge entry's local header: 0xFFFFFFFF sizes and a ZIP64 extra field with the real ones.
  const uint64_t local = 30 + 8 + 31;  // after the mimetype entry
  std::string head(30 + 8 + 20, '\0');
  for (size_t done = 0; done < head.size();) {
    auto piece = (*stream)->Read(local + done, head.size() - done);
    REQUIRE(piece.ok());
    std::memcpy(head.data() + done, piece->data(), piece->size());
    done += piece->size();
  }
  CHECK(head.substr(0, 4) == std::string("PK\x03\x04", 4));
  CHECK(head.substr(18, 8) == std::string(8, '\xFF'));
  CHECK(head.substr(30, 8) == "huge.bin");
  CHECK(head.substr(38, 4) == std::string("\x01\x00\x10\x00", 4));
  uint64_t size = 0;
  std::memcpy(&size, head.data() + 42, 8);  // little-endian, as this machine
  CHECK(size == huge);
}

}  // namespace
}  // namespace bud::ip
