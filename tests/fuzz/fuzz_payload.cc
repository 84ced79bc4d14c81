// Fuzz target: the decrypted payload (common/payload.h), as the receiving integration point
// checks it before writing anything to its inbox: wire::Payload, ValidatePayload with the default
// limit of 100 attachments, and ValidateAttachmentName on every name.
//
// Besides "no crash", a differential check: every name ValidateAttachmentName accepts must also
// pass an independent, deliberately simple reading of its contract (plain file name, at most 255
// bytes, strict UTF-8, no control characters, not hidden, nothing Windows refuses or treats as a
// device, not message.json, mimetype or META-INF), because a name that slips through becomes a
// path in the inbox. Deeply nested metadata is the JSON scanner's to refuse (json.h).
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "common/json.h"
#include "common/payload.h"
#include "proto/envelope.pb.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace bud;

// Decodes one UTF-8 sequence at s[i]; returns its length, or 0 when it is not strict RFC 3629
// (overlong, surrogate, above U+10FFFF, truncated).
size_t Utf8Sequence(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t len;
  uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xe0) == 0xc0) {
    len = 2;
    cp = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3;
    cp = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3f);
  }
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool ReferenceNameOk(std::string_view n) {
  if (n.empty() || n.size() > 255 || n.front() == '.') return false;
  if (n.back() == '.' || n.back() == ' ') return false;
  const std::string lower = Lower(n);
  if (lower == "message.json" || lower == "mimetype" || lower == "meta-inf") return false;
  std::string stem = lower.substr(0, lower.find('.'));
  while (!stem.empty() && stem.back() == ' ') stem.pop_back();
  for (const char* device : {"con", "prn", "aux", "nul"}) {
    if (stem == device) return false;
  }
  for (char d = '1'; d <= '9'; ++d) {
    if (stem == std::string("com") + d || stem == std::string("lpt") + d) return false;
  }
  for (unsigned char c : n) {
    if (c < 0x20 || c == 0x7f || c == '/' || c == '\\') return false;
    if (std::string_view("<>:\"|?*").find(static_cast<char>(c)) != std::string_view::npos) {
      return false;
    }
  }
  for (size_t i = 0; i < n.size();) {
    size_t len = Utf8Sequence(n, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bud::fuzz::QuietProtobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  wire::Payload payload;
  if (!payload.ParseFromArray(data, static_cast<int>(size))) return 0;

  Status all = ValidatePayload(payload, 100);
  bool each_ok = true;
  std::set<std::string> seen;
  bool unique = true;
  for (const auto& a : payload.attachments()) {
    Status one = ValidateAttachmentName(a.name());
    BUD_FUZZ_CHECK(one.ok() || one.code() == Code::kInvalidArgument,
                   "ValidateAttachmentName: wrong error code");
    BUD_FUZZ_CHECK(one.ok() == ReferenceNameOk(a.name()),
                   one.ok() ? "ValidateAttachmentName accepted a name its contract forbids"
                            : "ValidateAttachmentName refused a name its contract allows");
    each_ok = each_ok && one.ok();
    unique = seen.insert(Lower(a.name())).second && unique;
    (void)GuessMediaType(a.name());
  }
  const bool expected = payload.attachments_size() <= 100 && each_ok && unique &&
                        ScanJson(payload.metadata_json(), "metadata").ok();
  BUD_FUZZ_CHECK(all.ok() == expected,
                 all.ok() ? "ValidatePayload accepted a payload with a bad, repeated or 101st name"
                          : "ValidatePayload refused a payload whose names are all fine");
  return 0;
}
