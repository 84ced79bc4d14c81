// Fuzz target: what HTTP clients send the API as multipart/form-data and in Content-Disposition
// (integration-point/api/multipart.h). The first byte picks the mode: even, the rest is one
// header value for ParseHeaderParams; odd, the rest is a multipart body under a fixed boundary
// for ParseMultipart. Whatever the bytes, the answer is a value or kInvalidArgument; every value
// that comes out is valid UTF-8 (by an independent decoder here), no parameter value is longer
// than kMaxParamValue, parts and their data lie within the body, and the limits hold.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "integration-point/api/multipart.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// A strict UTF-8 check written apart from the product's: decode each sequence to its code
// point and refuse overlong forms, surrogates and anything past U+10FFFF.
bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t len = b < 0x80           ? 1
                 : (b >> 5) == 0x6  ? 2
                 : (b >> 4) == 0xE  ? 3
                 : (b >> 3) == 0x1E ? 4
                                    : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    for (size_t k = 1; k < len; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c >> 6) != 0x2) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bud;
  using namespace bud::ip::api;
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto p = ParseHeaderParams(text);
    if (!p.ok()) {
      BUD_FUZZ_CHECK(p.status().code() == Code::kInvalidArgument, "refusal is kInvalidArgument");
      BUD_FUZZ_CHECK(!p.status().message().empty(), "a refusal says why");
      return 0;
    }
    BUD_FUZZ_CHECK(p->params.size() <= kMaxParams, "at most kMaxParams parameters");
    for (const auto& [key, value] : p->params) {
      BUD_FUZZ_CHECK(!key.empty(), "a parameter has a name");
      BUD_FUZZ_CHECK(key.back() != '*', "extended names are folded into the plain one");
      BUD_FUZZ_CHECK(ValidUtf8(value), "every value is UTF-8");
      BUD_FUZZ_CHECK(IsUtf8(value), "IsUtf8 agrees");
      BUD_FUZZ_CHECK(value.size() <= kMaxParamValue, "values are bounded");
      BUD_FUZZ_CHECK(p->Has(key) && p->Get(key) == value, "Get finds the first of a name");
    }
    // IsUtf8 and the independent decoder agree on the raw bytes too.
    BUD_FUZZ_CHECK(IsUtf8(text) == ValidUtf8(text), "IsUtf8 matches a strict decoder");
    return 0;
  }
  MultipartLimits limits;
  limits.max_parts = 8;
  limits.max_headers_per_part = 4;
  limits.max_header_bytes = 256;
  auto parts = ParseMultipart("multipart/form-data; boundary=\"b-1\"", text, limits);
  if (!parts.ok()) {
    BUD_FUZZ_CHECK(parts.status().code() == Code::kInvalidArgument, "refusal is kInvalidArgument");
    return 0;
  }
  BUD_FUZZ_CHECK(!parts->empty() && parts->size() <= limits.max_parts, "parts within limits");
  size_t total = 0;
  for (const auto& part : *parts) {
    BUD_FUZZ_CHECK(!part.name.empty(), "every part has a name");
    BUD_FUZZ_CHECK(ValidUtf8(part.name) && ValidUtf8(part.filename), "names are UTF-8");
    BUD_FUZZ_CHECK(text.find(part.data) != std::string_view::npos, "data is from the body");
    total += part.data.size();
  }
  BUD_FUZZ_CHECK(total <= text.size(), "the parts are no larger than the body");
  return 0;
}
