// The header parameters and multipart bodies real clients send the API (docs/http-api.md,
// "What clients send"): Spring/Java and curl quote (`name="sbd"`), .NET does not (`form-data;
// name=sbd`), and non-ASCII file names come as RFC 2047 encoded words
// (`filename="=?utf-8?B?...?="`, B or Q), as RFC 5987 extended values (`filename*=utf-8''...`,
// preferred over `filename`), or as plain UTF-8. cpp-httplib's own multipart reader takes only
// quoted names, so the API reads multipart/form-data with this one.
//
// Strict where it matters: every value comes out as valid UTF-8 or the header is refused; a
// parameter twice, an unterminated quoted string or a malformed encoding is refused with a
// message naming it; sizes are bounded before anything is copied (kMax* below). Never throws.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bud::ip::api {

inline constexpr size_t kMaxHeaderValue = 8192;  // one header's value
inline constexpr size_t kMaxParams = 32;         // parameters of one header
inline constexpr size_t kMaxParamValue = 1024;   // one parameter's decoded value

// A header value of the form `type; key=value; ...` (Content-Disposition, Content-Type).
struct HeaderParams {
  std::string type;  // lower case ("form-data", "attachment", "multipart/form-data")
  // Keys lower case, without a trailing '*'; values decoded to UTF-8. A key given both plain and
  // extended (`filename` and `filename*`) holds the extended value.
  std::vector<std::pair<std::string, std::string>> params;

  // The value of `key` (lower case), "" when absent.
  std::string Get(std::string_view key) const;
  bool Has(std::string_view key) const;
};

// Parses `value`. kInvalidArgument naming what is wrong.
Result<HeaderParams> ParseHeaderParams(std::string_view value);

// Decodes the RFC 2047 encoded words in `text` (utf-8, iso-8859-1 or us-ascii; B or Q);
// whitespace between two encoded words is dropped. Text without encoded words comes back as it
// is. kInvalidArgument for a malformed word or a charset other than those.
Result<std::string> DecodeEncodedWords(std::string_view text);

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF).
bool IsUtf8(std::string_view text);

struct MultipartPart {
  std::string name;          // the Content-Disposition's name (decoded)
  std::string filename;      // its filename (decoded; filename* preferred), "" when none
  std::string content_type;  // "" when the part has none
  std::string data;
};

struct MultipartLimits {
  size_t max_parts = 101;
  size_t max_headers_per_part = 16;
  size_t max_header_bytes = 16384;  // one part's header section
};

// The parts of a multipart/form-data `body` whose Content-Type header is `content_type`
// (its boundary parameter, quoted or not). Parts need a Content-Disposition of type form-data
// with a name. Lines end in CRLF (a bare LF is taken too, as some clients send it).
// kInvalidArgument naming what is wrong.
Result<std::vector<MultipartPart>> ParseMultipart(std::string_view content_type,
                                                  std::string_view body,
                                                  const MultipartLimits& limits = {});

}  // namespace bud::ip::api
