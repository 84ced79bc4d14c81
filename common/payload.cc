// Attachment name and payload validation.
#include "common/payload.h"

#include <fmt/format.h>

#include <set>

#include "common/json.h"
#include "common/log.h"

namespace bud {

namespace {
// Strict RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  while (i < s.size()) {
    unsigned char c = byte(i);
    size_t extra;
    unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c < 0x80) {
      extra = 0;
    } else if (c >= 0xc2 && c <= 0xdf) {
      extra = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return false;
    }
    if (i + extra >= s.size() + (extra == 0 ? 1 : 0)) return false;
    for (size_t k = 1; k <= extra; ++k) {
      unsigned char b = byte(i + k);
      unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xbf;
      if (b < l || b > h) return false;
    }
    i += extra + 1;
  }
  return true;
}
std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Windows opens a device, not a file, for these names, whatever extension follows ("con.txt",
// "LPT1.tar.gz") and with spaces before the first dot ("aux .pdf").
bool WindowsDeviceName(std::string_view name) {
  std::string base = AsciiLower(name.substr(0, name.find('.')));
  while (!base.empty() && base.back() == ' ') base.pop_back();
  if (base == "con" || base == "prn" || base == "aux" || base == "nul") return true;
  return base.size() == 4 && (base.starts_with("com") || base.starts_with("lpt")) &&
         base[3] >= '1' && base[3] <= '9';
}
}  // namespace

Status ValidateAttachmentName(std::string_view name) {
  auto bad = [&](std::string_view why) {
    return Status(Code::kInvalidArgument,
                  fmt::format("attachment name '{}' is not allowed: {}", Printable(name), why));
  };
  if (name.empty()) return bad("it is empty");
  if (name.size() > 255) return bad("it is longer than 255 bytes");
  if (name == "." || name == "..") return bad("it is a directory reference");
  if (name.find('/') != std::string_view::npos || name.find('\\') != std::string_view::npos) {
    return bad("it contains a path separator; use a plain file name");
  }
  if (name.front() == '.') return bad("it is hidden (starts with '.')");
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) return bad("it contains a control character");
  }
  if (!ValidUtf8(name)) return bad("it is not valid UTF-8");
  // Archive systems on Windows read the same inbox folders (through a share or a copy).
  if (name.find_first_of("<>:\"|?*") != std::string_view::npos) {
    return bad("it contains a character Windows does not allow in file names (< > : \" | ? *)");
  }
  if (name.back() == '.' || name.back() == ' ') {
    return bad("it ends with a dot or a space, which Windows drops");
  }
  if (WindowsDeviceName(name)) {
    return bad("it is a Windows device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9)");
  }
  const std::string lower = AsciiLower(name);
  if (lower == "message.json") return bad("'message.json' is reserved for the message metadata");
  if (lower == "mimetype" || lower == "meta-inf") {
    return bad("it is reserved in ASiC containers (mimetype, META-INF)");
  }
  return Status::Ok();
}

std::string GuessMediaType(std::string_view name) {
  auto dot = name.rfind('.');
  std::string ext;
  if (dot != std::string_view::npos) {
    for (char c : name.substr(dot + 1)) ext += static_cast<char>(std::tolower(c));
  }
  if (ext == "pdf") return "application/pdf";
  if (ext == "xml") return "application/xml";
  if (ext == "json") return "application/json";
  if (ext == "txt") return "text/plain";
  if (ext == "html" || ext == "htm") return "text/html";
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "zip") return "application/zip";
  if (ext == "docx") return "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
  if (ext == "odt") return "application/vnd.oasis.opendocument.text";
  return "application/octet-stream";
}

Status ValidatePayload(const wire::Payload& payload, size_t max_attachments) {
  if (static_cast<size_t>(payload.attachments_size()) > max_attachments) {
    return Status(Code::kInvalidArgument,
                  fmt::format("payload has {} attachments, more than the limit of {}",
                              payload.attachments_size(), max_attachments));
  }
  // Compared without ASCII case: two names that differ only so are one file on Windows.
  std::set<std::string> seen;
  for (const auto& a : payload.attachments()) {
    BUD_RETURN_IF_ERROR(ValidateAttachmentName(a.name()));
    if (!seen.insert(AsciiLower(a.name())).second) {
      return Status(Code::kInvalidArgument,
                    fmt::format("attachment name '{}' appears twice (names are compared without "
                                "case)",
                                Printable(a.name())));
    }
  }
  return ScanJson(payload.metadata_json(), "the message's metadata (message.json)");
}

}  // namespace bud
