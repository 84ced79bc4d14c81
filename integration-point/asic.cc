// ASiC-E-style zip, stored entries, written as it is read. See asic.h; the record layouts are
// PKWARE's APPNOTE.TXT 6.3 (4.3.7 local header, 4.3.12 central header, 4.3.14-16 end records,
// 4.5.3 the ZIP64 extended information field).
#include "integration-point/asic.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <ctime>

#include "common/crypto/openssl.h"
#include "common/fs.h"

namespace bud::ip {

namespace {
constexpr uint64_t kMax32 = 0xFFFFFFFFu;  // a 32-bit field at this value means "see ZIP64"
constexpr uint16_t kUtf8Flag = 0x0800;    // general purpose bit 11: names are UTF-8
constexpr size_t kReadMax = 1 << 20;

std::string XmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

void Put16(std::string& out, uint64_t v) {
  out += static_cast<char>(v & 0xFF);
  out += static_cast<char>((v >> 8) & 0xFF);
}
void Put32(std::string& out, uint64_t v) {
  Put16(out, v & 0xFFFF);
  Put16(out, (v >> 16) & 0xFFFF);
}
void Put64(std::string& out, uint64_t v) {
  Put32(out, v & kMax32);
  Put32(out, v >> 32);
}

// MS-DOS date and time (local time is what zip tools show; UTC keeps it reproducible).
std::pair<uint16_t, uint16_t> DosTime(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  if (tm.tm_year < 80) return {0, (1 << 5) | 1};  // 1980-01-01 00:00
  const auto time = static_cast<uint16_t>((tm.tm_hour << 11) | (tm.tm_min << 5) | (tm.tm_sec / 2));
  const auto date =
      static_cast<uint16_t>(((tm.tm_year - 80) << 9) | ((tm.tm_mon + 1) << 5) | tm.tm_mday);
  return {time, date};
}

std::string Manifest(const std::vector<AsicFile>& files) {
  std::string m =
      "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
      "<manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\">\n"
      "  <manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"" +
      std::string(kAsicMediaType) + "\"/>\n";
  for (const auto& f : files) {
    m += fmt::format(
        "  <manifest:file-entry manifest:full-path=\"{}\" "
        "manifest:media-type=\"{}\"/>\n",
        XmlEscape(f.name), XmlEscape(f.media_type));
  }
  return m + "</manifest:manifest>\n";
}
}  // namespace

uint32_t Crc32(uint32_t crc, std::string_view data) {
  return static_cast<uint32_t>(
      crc32_z(crc, reinterpret_cast<const Bytef*>(data.data()), data.size()));
}

Result<uint32_t> FileCrc32(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open " + path);
  std::string buf(kReadMax, '\0');
  uint32_t crc = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status st = ErrnoStatus(errno, "read " + path);
      ::close(fd);
      return st;
    }
    if (n == 0) break;
    crc = Crc32(crc, std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  ::close(fd);
  return crc;
}

Result<std::string> FileSha256(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open " + path);
  crypto::MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    ::close(fd);
    return Status(Code::kInternal, "SHA-256: " + crypto::DrainErrors());
  }
  std::string buf(kReadMax, '\0');
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status st = ErrnoStatus(errno, "read " + path);
      ::close(fd);
      return st;
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  std::string out(32, '\0');
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len);
  return out;
}

namespace {
std::string Base64(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(raw.data()),
                                static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}
}  // namespace

std::string RootManifest(const std::vector<AsicFile>& files, const AsicOptions& o) {
  const AsicFile* main = files.empty() ? nullptr : &files.front();
  for (const auto& f : files) {
    if (!o.main_document.empty() && f.name == o.main_document) main = &f;
  }
  std::string m = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
      "<manifest>\n"
      "  <mottaker><organisasjon authority=\"iso6523-actorid-upis\">{}</organisasjon></mottaker>\n"
      "  <avsender><organisasjon authority=\"iso6523-actorid-upis\">{}</organisasjon></avsender>\n",
      XmlEscape(o.receiver), XmlEscape(o.sender));
  if (main) {
    m += fmt::format(
        "  <hoveddokument href=\"{}\" mime=\"{}\"><tittel "
        "lang=\"no\">{}</tittel></hoveddokument>\n",
        XmlEscape(main->name), XmlEscape(main->media_type), XmlEscape(main->name));
  }
  return m + "</manifest>\n";
}

std::string AsicManifest(const std::vector<AsicFile>& objects,
                         const std::vector<std::string>& sha256) {
  std::string m =
      "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
      "<asic:ASiCManifest xmlns:asic=\"http://uri.etsi.org/02918/v1.2.1#\" "
      "xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">\n"
      "  <asic:SigReference URI=\"META-INF/signature.p7s\" "
      "MimeType=\"application/x-pkcs7-signature\"/>\n";
  for (size_t i = 0; i < objects.size() && i < sha256.size(); ++i) {
    m += fmt::format(
        "  <asic:DataObjectReference URI=\"{}\" MimeType=\"{}\">\n"
        "    <ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\n"
        "    <ds:DigestValue>{}</ds:DigestValue>\n"
        "  </asic:DataObjectReference>\n",
        XmlEscape(objects[i].name),
        XmlEscape(objects[i].media_type.empty() ? "application/octet-stream"
                                                : objects[i].media_type),
        Base64(sha256[i]));
  }
  return m + "</asic:ASiCManifest>\n";
}

bool CanSignAsic(EVP_PKEY* key) { return key && !EVP_PKEY_is_a(key, "ED25519"); }

Result<std::string> SignDetached(std::string_view data, EVP_PKEY* key, X509* cert) {
  crypto::Bio in(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  if (!in) return Status(Code::kInternal, "out of memory");
  if (!CanSignAsic(key)) {
    return Status(Code::kUnsupported,
                  "an Ed25519 key cannot sign the ASiC manifest (OpenSSL 3.0's CMS has no "
                  "Ed25519 signer)");
  }
  const unsigned flags = CMS_DETACHED | CMS_BINARY | CMS_NOSMIMECAP | CMS_PARTIAL;
  crypto::CmsContent cms(CMS_sign(nullptr, nullptr, nullptr, nullptr, flags));
  if (!cms || !CMS_add1_signer(cms.get(), cert, key, EVP_sha256(), flags) ||
      CMS_final(cms.get(), in.get(), nullptr, flags) != 1) {
    return Status(Code::kBadKey, "cannot sign the ASiC manifest: " + crypto::DrainErrors());
  }
  unsigned char* der = nullptr;
  const int n = i2d_CMS_ContentInfo(cms.get(), &der);
  if (n <= 0)
    return Status(Code::kInternal, "cannot encode the signature: " + crypto::DrainErrors());
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

namespace {

struct DosStamp {
  uint16_t time;
  uint16_t date;
};

// A stored entry's local header (ZIP64 sizes when the file is 4 GiB or more).
std::string LocalHeader(const AsicFile& f, DosStamp dos) {
  const bool big = f.size >= kMax32;
  std::string local;
  Put32(local, 0x04034b50);
  Put16(local, big ? 45 : 20);  // version needed: 4.5 for ZIP64
  Put16(local, kUtf8Flag);
  Put16(local, 0);  // stored
  Put16(local, dos.time);
  Put16(local, dos.date);
  Put32(local, f.crc32);
  Put32(local, big ? kMax32 : f.size);  // compressed size = size (stored)
  Put32(local, big ? kMax32 : f.size);
  Put16(local, f.name.size());
  Put16(local, big ? 20 : 0);
  local += f.name;
  if (big) {  // 4.5.3: in a local header both sizes, always
    Put16(local, 0x0001);
    Put16(local, 16);
    Put64(local, f.size);
    Put64(local, f.size);
  }
  return local;
}

// The entry's central directory header: ZIP64 fields only for what does not fit, in the order
// 4.5.3 gives.
std::string CentralHeader(const AsicFile& f, uint64_t offset, DosStamp dos) {
  const bool big = f.size >= kMax32;
  const bool far = offset >= kMax32;
  std::string extra;
  if (big) {
    Put64(extra, f.size);
    Put64(extra, f.size);
  }
  if (far) Put64(extra, offset);
  const bool zip64 = big || far;
  std::string central;
  Put32(central, 0x02014b50);
  Put16(central, (3 << 8) | 45);  // made by: Unix, 4.5
  Put16(central, zip64 ? 45 : 20);
  Put16(central, kUtf8Flag);
  Put16(central, 0);
  Put16(central, dos.time);
  Put16(central, dos.date);
  Put32(central, f.crc32);
  Put32(central, big ? kMax32 : f.size);
  Put32(central, big ? kMax32 : f.size);
  Put16(central, f.name.size());
  Put16(central, extra.empty() ? 0 : extra.size() + 4);
  Put16(central, 0);               // comment
  Put16(central, 0);               // disk
  Put16(central, 0);               // internal attributes
  Put32(central, 0100644u << 16);  // external: a regular file, rw-r--r--
  Put32(central, far ? kMax32 : offset);
  central += f.name;
  if (!extra.empty()) {
    Put16(central, 0x0001);
    Put16(central, extra.size());
    central += extra;
  }
  return central;
}

// The end of central directory record, after a ZIP64 one and its locator when the directory
// does not fit the classic fields.
std::string EndRecords(uint64_t cd_offset, uint64_t cd_size, uint64_t count) {
  std::string end;
  const bool zip64_end = cd_offset >= kMax32 || cd_size >= kMax32 || count >= 0xFFFF;
  if (zip64_end) {
    const uint64_t record = cd_offset + cd_size;
    Put32(end, 0x06064b50);  // ZIP64 end of central directory record
    Put64(end, 44);          // its size after this field
    Put16(end, (3 << 8) | 45);
    Put16(end, 45);
    Put32(end, 0);
    Put32(end, 0);
    Put64(end, count);
    Put64(end, count);
    Put64(end, cd_size);
    Put64(end, cd_offset);
    Put32(end, 0x07064b50);  // its locator
    Put32(end, 0);
    Put64(end, record);
    Put32(end, 1);
  }
  Put32(end, 0x06054b50);
  Put16(end, 0);
  Put16(end, 0);
  Put16(end, std::min<uint64_t>(count, 0xFFFF));
  Put16(end, std::min<uint64_t>(count, 0xFFFF));
  Put32(end, std::min(cd_size, kMax32));
  Put32(end, std::min(cd_offset, kMax32));
  Put16(end, 0);
  return end;
}

}  // namespace

void AsicStream::AddBytes(std::string bytes) {
  const uint64_t n = bytes.size();
  pieces_.push_back({size_, n, std::move(bytes), -1});
  size_ += n;
}

Status AsicStream::AddFile(const std::string& path, uint64_t size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open " + path);
  pieces_.push_back({size_, size, {}, fd});
  struct stat st;
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != size) {
    return Status(Code::kIo, fmt::format("'{}' has {} bytes, not the {} recorded", path,
                                         static_cast<int64_t>(st.st_size), size));
  }
  size_ += size;
  return Status::Ok();
}

Result<std::unique_ptr<AsicStream>> AsicStream::Open(std::vector<AsicFile> files, int64_t mtime_ms,
                                                     const AsicOptions* options) {
  std::unique_ptr<AsicStream> s(new AsicStream());
  const auto [dos_time, dos_date] = DosTime(mtime_ms);
  const DosStamp dos{static_cast<uint16_t>(dos_time), static_cast<uint16_t>(dos_date)};
  AsicFile mimetype{"mimetype", "", 0, 0, "", kAsicMediaType};
  AsicFile root;
  if (options) root = {"manifest.xml", "application/xml", 0, 0, "", RootManifest(files, *options)};
  AsicFile manifest{"META-INF/manifest.xml", "text/xml", 0, 0, "", Manifest(files)};
  AsicFile asic_manifest, signature;
  if (options && options->key && options->cert) {
    // The data objects: the root manifest and the attachments, each with its SHA-256.
    std::vector<AsicFile> objects{root};
    std::vector<std::string> digests{crypto::Sha256(root.data)};
    for (const auto& f : files) {
      objects.push_back({f.name, f.media_type, 0, 0, "", ""});
      if (f.path.empty()) {
        digests.push_back(crypto::Sha256(f.data));
      } else {
        BUD_ASSIGN_OR_RETURN(std::string digest, FileSha256(f.path));
        digests.push_back(std::move(digest));
      }
    }
    asic_manifest = {"META-INF/ASiCManifest.xml",   "text/xml", 0, 0, "",
                     AsicManifest(objects, digests)};
    BUD_ASSIGN_OR_RETURN(std::string p7s,
                         SignDetached(asic_manifest.data, options->key, options->cert));
    signature = {
        "META-INF/signature.p7s", "application/x-pkcs7-signature", 0, 0, "", std::move(p7s)};
  }
  std::vector<AsicFile*> entries{&mimetype};
  if (options) entries.push_back(&root);
  for (auto& f : files) entries.push_back(&f);
  entries.push_back(&manifest);
  if (!asic_manifest.name.empty()) {
    entries.push_back(&asic_manifest);
    entries.push_back(&signature);
  }

  std::string central;
  for (AsicFile* f : entries) {
    if (f->path.empty()) {
      f->size = f->data.size();
      f->crc32 = Crc32(0, f->data);
    }
    const uint64_t offset = s->size_;
    s->AddBytes(LocalHeader(*f, dos));
    if (!f->path.empty()) {
      BUD_RETURN_IF_ERROR(s->AddFile(f->path, f->size));
    } else {
      s->AddBytes(std::move(f->data));
    }
    central += CentralHeader(*f, offset, dos);
  }
  const uint64_t cd_offset = s->size_;
  const uint64_t cd_size = central.size();
  s->AddBytes(std::move(central) + EndRecords(cd_offset, cd_size, entries.size()));
  return s;
}

AsicStream::~AsicStream() {
  for (auto& p : pieces_) {
    if (p.fd >= 0) ::close(p.fd);
  }
}

Result<std::string_view> AsicStream::Read(uint64_t offset, size_t max) {
  if (offset >= size_ || max == 0) return std::string_view();
  auto it = std::upper_bound(pieces_.begin(), pieces_.end(), offset,
                             [](uint64_t o, const Piece& p) { return o < p.offset; });
  const Piece& p = *std::prev(it);
  const uint64_t within = offset - p.offset;
  const size_t n = static_cast<size_t>(std::min<uint64_t>({p.size - within, max, kReadMax}));
  if (p.fd < 0) return std::string_view(p.bytes).substr(static_cast<size_t>(within), n);
  buffer_.resize(n);
  size_t done = 0;
  while (done < n) {
    ssize_t got = ::pread(p.fd, buffer_.data() + done, n - done, static_cast<off_t>(within + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return ErrnoStatus(errno, "reading an attachment");
    if (got == 0) return Status(Code::kIo, "an attachment is shorter than recorded");
    done += static_cast<size_t>(got);
  }
  return std::string_view(buffer_);
}

Result<std::string> MakeAsice(const wire::Payload& payload) {
  std::vector<AsicFile> files;
  for (const auto& a : payload.attachments()) {
    files.push_back({a.name(), a.media_type(), 0, 0, "", a.data()});
  }
  BUD_ASSIGN_OR_RETURN(auto stream, AsicStream::Open(std::move(files), 0));
  std::string out;
  out.reserve(static_cast<size_t>(stream->size()));
  while (out.size() < stream->size()) {
    BUD_ASSIGN_OR_RETURN(std::string_view piece, stream->Read(out.size(), kReadMax));
    out.append(piece);
  }
  return out;
}

}  // namespace bud::ip
