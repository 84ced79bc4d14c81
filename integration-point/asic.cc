// ASiC-E-style zip with libzip, built in memory. See asic.h.
#include "integration-point/asic.h"

#include <fmt/format.h>
#include <zip.h>

#include <memory>

namespace bud::ip {

namespace {
std::string XmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

Status ZipError(zip_t* za, std::string_view what) {
  return Status(Code::kInternal, fmt::format("zip: {}: {}", what,
                                             za ? zip_strerror(za) : "cannot open"));
}
}  // namespace

Result<std::string> MakeAsice(const wire::Payload& payload) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* buffer = zip_source_buffer_create(nullptr, 0, 0, &error);
  if (buffer == nullptr) return Status(Code::kInternal, "zip: cannot create a buffer");
  zip_source_keep(buffer);  // read back after zip_close
  std::unique_ptr<zip_source_t, void (*)(zip_source_t*)> keep(buffer, zip_source_free);
  zip_t* za = zip_open_from_source(buffer, ZIP_TRUNCATE, &error);
  if (za == nullptr) {
    zip_error_fini(&error);
    return ZipError(nullptr, "open");
  }
  std::string manifest =
      "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
      "<manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\">\n"
      "  <manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"" +
      std::string(kAsicMediaType) + "\"/>\n";
  auto add = [&](const std::string& name, const std::string& data, bool store) -> Status {
    // Buffers are borrowed: `payload` and `manifest` outlive zip_close below.
    zip_source_t* src = zip_source_buffer(za, data.data(), data.size(), 0);
    if (src == nullptr) return ZipError(za, name);
    zip_int64_t idx = zip_file_add(za, name.c_str(), src, ZIP_FL_ENC_UTF_8);
    if (idx < 0) {
      zip_source_free(src);
      return ZipError(za, name);
    }
    if (zip_set_file_compression(za, static_cast<zip_uint64_t>(idx),
                                 store ? ZIP_CM_STORE : ZIP_CM_DEFLATE, 0) != 0) {
      return ZipError(za, name);
    }
    return Status::Ok();
  };
  static const std::string kMimetype = kAsicMediaType;
  Status st = add("mimetype", kMimetype, true);
  for (int i = 0; st.ok() && i < payload.attachments_size(); ++i) {
    const auto& a = payload.attachments(i);
    st = add(a.name(), a.data(), false);
    manifest += fmt::format("  <manifest:file-entry manifest:full-path=\"{}\" "
                            "manifest:media-type=\"{}\"/>\n",
                            XmlEscape(a.name()), XmlEscape(a.media_type()));
  }
  manifest += "</manifest:manifest>\n";
  if (st.ok()) st = add("META-INF/manifest.xml", manifest, false);
  if (!st.ok()) {
    zip_discard(za);
    return st;
  }
  if (zip_close(za) != 0) {
    Status err = ZipError(za, "close");
    zip_discard(za);
    return err;
  }
  if (zip_source_open(buffer) != 0) return Status(Code::kInternal, "zip: cannot reopen buffer");
  zip_source_seek(buffer, 0, SEEK_END);
  zip_int64_t size = zip_source_tell(buffer);
  zip_source_seek(buffer, 0, SEEK_SET);
  std::string out(static_cast<size_t>(size), '\0');
  zip_int64_t got = zip_source_read(buffer, out.data(), out.size());
  zip_source_close(buffer);
  if (got != size) return Status(Code::kInternal, "zip: short read of the built archive");
  return out;
}

}  // namespace bud::ip
