// See multipart.h. The grammars: RFC 7578 (multipart/form-data), RFC 2046 section 5.1.1 (the
// body and its boundaries), RFC 6266 and RFC 9110 section 5.6.6 (parameters, quoted strings),
// RFC 8187 (which RFC 5987 became: ext-value), RFC 2047 (encoded words).
#include "integration-point/api/multipart.h"

#include <fmt/format.h>

#include <cctype>

#include "common/fs.h"

namespace bud::ip::api {

namespace {

Status Bad(std::string message) { return Status(Code::kInvalidArgument, std::move(message)); }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// RFC 9110 tchar.
bool IsTokenChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (std::isalnum(u)) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// A shortened, escaped copy of outside text for a message.
std::string Shown(std::string_view s) {
  return EscapeControl(s.size() > 64 ? std::string(s.substr(0, 64)) + "..." : std::string(s));
}

void AppendLatin1(std::string& out, unsigned char c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

enum class Charset { kUtf8, kLatin1, kAscii, kOther };

Charset CharsetOf(std::string_view name) {
  std::string n = Lower(name);
  if (auto star = n.find('*'); star != std::string::npos) n.resize(star);  // RFC 2231 language
  if (n == "utf-8" || n == "utf8") return Charset::kUtf8;
  if (n == "iso-8859-1" || n == "latin1" || n == "iso8859-1") return Charset::kLatin1;
  if (n == "us-ascii" || n == "ascii") return Charset::kAscii;
  return Charset::kOther;
}

// `bytes` in `charset` as UTF-8; false when they are not valid in it.
bool ToUtf8(Charset charset, std::string_view bytes, std::string& out) {
  switch (charset) {
    case Charset::kUtf8:
      if (!IsUtf8(bytes)) return false;
      out.append(bytes);
      return true;
    case Charset::kAscii:
      for (char c : bytes) {
        if (static_cast<unsigned char>(c) >= 0x80) return false;
      }
      out.append(bytes);
      return true;
    case Charset::kLatin1:
      for (char c : bytes) AppendLatin1(out, static_cast<unsigned char>(c));
      return true;
    default:
      return false;
  }
}

bool DecodeBase64Text(std::string_view in, std::string& out) {
  size_t data = in.size();
  while (data > 0 && in[data - 1] == '=') --data;
  if (in.size() - data > 2) return false;
  out.clear();
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < data; ++i) {
    const char c = in[i];
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else {
      return false;
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return data % 4 != 1;  // one character left over cannot make a byte
}

// One encoded word's text (between the third '?' and "?="), decoded into `out`.
Status DecodeWord(std::string_view charset, char encoding, std::string_view text,
                  std::string& out) {
  const Charset cs = CharsetOf(charset);
  if (cs == Charset::kOther) {
    return Bad(
        fmt::format("encoded word in charset '{}': only utf-8, iso-8859-1 and us-ascii "
                    "are read",
                    Shown(charset)));
  }
  std::string bytes;
  if (encoding == 'B' || encoding == 'b') {
    if (!DecodeBase64Text(text, bytes)) {
      return Bad(fmt::format("encoded word '{}' is not valid base64", Shown(text)));
    }
  } else {
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '_') {
        bytes += ' ';
      } else if (text[i] == '=') {
        const int hi = i + 2 < text.size() ? HexValue(text[i + 1]) : -1;
        const int lo = i + 2 < text.size() ? HexValue(text[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
          return Bad(fmt::format("encoded word '{}' has a bad =XX escape", Shown(text)));
        }
        bytes += static_cast<char>(hi * 16 + lo);
        i += 2;
      } else {
        bytes += text[i];
      }
    }
  }
  if (!ToUtf8(cs, bytes, out)) {
    return Bad(fmt::format("encoded word '{}' is not valid {}", Shown(text), Shown(charset)));
  }
  return Status::Ok();
}

// RFC 8187 ext-value: charset "'" [language] "'" value-chars.
Status DecodeExtValue(std::string_view key, std::string_view v, std::string& out) {
  const size_t q1 = v.find('\'');
  const size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
  if (q2 == std::string_view::npos) {
    return Bad(
        fmt::format("parameter '{}*' must be charset'language'value (e.g. "
                    "utf-8''k%C3%A5ta.pdf), not '{}'",
                    Shown(key), Shown(v)));
  }
  const Charset cs = CharsetOf(v.substr(0, q1));
  if (cs == Charset::kOther) {
    return Bad(fmt::format("parameter '{}*': charset '{}' is not read (use utf-8)", Shown(key),
                           Shown(v.substr(0, q1))));
  }
  std::string bytes;
  for (size_t i = q2 + 1; i < v.size(); ++i) {
    const char c = v[i];
    if (c == '%') {
      const int hi = i + 1 < v.size() ? HexValue(v[i + 1]) : -1;
      const int lo = i + 2 < v.size() ? HexValue(v[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return Bad(fmt::format("parameter '{}*' has a bad %XX escape", Shown(key)));
      }
      bytes += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      // Bytes of 0x80 and up are taken as they are: cpp-httplib's server %-decodes header values
      // before the route sees them, so a PUT's filename* arrives with its UTF-8 already decoded
      // (and checked below as the charset's).
      return Bad(fmt::format("parameter '{}*' has a character that must be %-encoded", Shown(key)));
    } else {
      bytes += c;
    }
  }
  if (!ToUtf8(cs, bytes, out)) {
    return Bad(fmt::format("parameter '{}*' is not valid in its charset", Shown(key)));
  }
  return Status::Ok();
}

}  // namespace

bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + static_cast<size_t>(n) >= s.size()) return false;  // cut short
    for (int k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += static_cast<size_t>(n) + 1;
  }
  return true;
}

Result<std::string> DecodeEncodedWords(std::string_view text) {
  std::string out;
  size_t i = 0;
  bool last_was_word = false;
  std::string pending_space;  // whitespace after an encoded word, dropped if another follows
  while (i < text.size()) {
    if (text.compare(i, 2, "=?") == 0) {
      // =?charset?E?text?=
      const size_t q1 = text.find('?', i + 2);
      const size_t q2 = q1 == std::string_view::npos ? q1 : q1 + 2;
      const bool shaped = q1 != std::string_view::npos && q2 < text.size() && text[q2] == '?' &&
                          std::string_view("BbQq").find(text[q1 + 1]) != std::string_view::npos;
      const size_t end = shaped ? text.find("?=", q2 + 1) : std::string_view::npos;
      if (end != std::string_view::npos) {
        const std::string_view charset = text.substr(i + 2, q1 - i - 2);
        const std::string_view word = text.substr(q2 + 1, end - q2 - 1);
        bool clean = !charset.empty();
        for (char c : word) clean = clean && !IsSpace(c) && c != '?';
        for (char c : charset) clean = clean && !IsSpace(c);
        if (clean) {
          if (!last_was_word) out += pending_space;
          pending_space.clear();
          BUD_RETURN_IF_ERROR(DecodeWord(charset, text[q1 + 1], word, out));
          i = end + 2;
          last_was_word = true;
          continue;
        }
      }
    }
    if (IsSpace(text[i]) && last_was_word) {
      pending_space += text[i];
      ++i;
      continue;
    }
    out += pending_space;
    pending_space.clear();
    last_was_word = false;
    out += text[i];
    ++i;
  }
  out += pending_space;
  return out;
}

std::string HeaderParams::Get(std::string_view key) const {
  for (const auto& [k, v] : params) {
    if (k == key) return v;
  }
  return "";
}

bool HeaderParams::Has(std::string_view key) const {
  for (const auto& [k, v] : params) {
    if (k == key) return true;
  }
  return false;
}

namespace {

// A parameter's value at `pos` (just after its '='), quoted or not; `pos` ends at the ';' after
// it or npos.
Status ReadParamValue(std::string_view value, size_t& pos, const std::string& key, std::string& raw,
                      bool& quoted) {
  quoted = pos < value.size() && value[pos] == '"';
  if (!quoted) {
    const size_t end = value.find(';', pos);
    raw = std::string(Trim(value.substr(pos, end == std::string_view::npos ? end : end - pos)));
    pos = end;
    return Status::Ok();
  }
  ++pos;
  bool closed = false;
  while (pos < value.size()) {
    const char c = value[pos++];
    if (c == '"') {
      closed = true;
      break;
    }
    if (c == '\\' && pos < value.size()) {
      raw += value[pos++];
    } else {
      raw += c;
    }
  }
  if (!closed) return Bad(fmt::format("parameter '{}': the quoted value is not closed", key));
  while (pos < value.size() && IsSpace(value[pos])) ++pos;
  if (pos < value.size() && value[pos] != ';') {
    return Bad(fmt::format("parameter '{}': text after the quoted value", key));
  }
  if (pos >= value.size()) pos = std::string_view::npos;
  return Status::Ok();
}

// Adds `key` = `decoded` to `out` (`extended`: which params came from key*). The extended
// value wins over the plain one; the same form twice is refused.
Status AddParam(HeaderParams& out, std::vector<bool>& extended, std::string key,
                std::string decoded, bool ext) {
  for (size_t i = 0; i < out.params.size(); ++i) {
    if (out.params[i].first != key) continue;
    if (extended[i] == ext) return Bad(fmt::format("parameter '{}' is given twice", key));
    if (ext) {
      out.params[i].second = std::move(decoded);
      extended[i] = true;
    }
    return Status::Ok();
  }
  if (out.params.size() >= kMaxParams)
    return Bad(fmt::format("more than {} parameters", kMaxParams));
  out.params.emplace_back(std::move(key), std::move(decoded));
  extended.push_back(ext);
  return Status::Ok();
}

}  // namespace

Result<HeaderParams> ParseHeaderParams(std::string_view value) {
  if (value.size() > kMaxHeaderValue) {
    return Bad(
        fmt::format("header value of {} bytes is longer than {}", value.size(), kMaxHeaderValue));
  }
  HeaderParams out;
  size_t pos = value.find(';');
  const std::string_view type = Trim(value.substr(0, pos));
  for (char c : type) {
    if (!IsTokenChar(c) && c != '/') {
      return Bad(fmt::format("'{}' is not a disposition or media type", Shown(type)));
    }
  }
  out.type = Lower(type);
  std::vector<bool> extended;  // per param: its value came from key*
  while (pos != std::string_view::npos && pos < value.size()) {
    ++pos;  // the ';'
    while (pos < value.size() && IsSpace(value[pos])) ++pos;
    if (pos >= value.size()) break;  // a trailing ';'
    if (value[pos] == ';') continue;
    const size_t key_start = pos;
    while (pos < value.size() && IsTokenChar(value[pos])) ++pos;
    std::string key = Lower(value.substr(key_start, pos - key_start));
    while (pos < value.size() && IsSpace(value[pos])) ++pos;
    if (key.empty() || pos >= value.size() || value[pos] != '=') {
      return Bad(fmt::format("parameter '{}' has no '=value'",
                             Shown(value.substr(key_start, pos - key_start + 1))));
    }
    ++pos;
    while (pos < value.size() && IsSpace(value[pos])) ++pos;
    std::string raw;
    bool quoted = false;
    BUD_RETURN_IF_ERROR(ReadParamValue(value, pos, key, raw, quoted));
    const bool ext = key.size() > 1 && key.back() == '*';
    if (ext) key.pop_back();
    std::string decoded;
    if (ext) {
      if (quoted) return Bad(fmt::format("parameter '{}*' must not be quoted", key));
      BUD_RETURN_IF_ERROR(DecodeExtValue(key, raw, decoded));
    } else {
      BUD_ASSIGN_OR_RETURN(decoded, DecodeEncodedWords(raw));
    }
    if (!IsUtf8(decoded)) {
      return Bad(
          fmt::format("parameter '{}' is not UTF-8 (send it as {}*=utf-8''... or quoted "
                      "UTF-8)",
                      key, key));
    }
    if (decoded.size() > kMaxParamValue) {
      return Bad(fmt::format("parameter '{}' is longer than {} bytes", key, kMaxParamValue));
    }
    BUD_RETURN_IF_ERROR(AddParam(out, extended, std::move(key), std::move(decoded), ext));
  }
  return out;
}

namespace {

// The line at `pos` (without its CRLF or LF) and where the next one starts; npos when no line
// end follows within `max` bytes.
std::pair<std::string_view, size_t> Line(std::string_view body, size_t pos, size_t max) {
  const size_t lf = body.find('\n', pos);
  if (lf == std::string_view::npos || lf - pos > max) return {{}, std::string_view::npos};
  std::string_view line = body.substr(pos, lf - pos);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return {line, lf + 1};
}

// Where the next delimiter line ("\r\n--boundary" or "\n--boundary" followed by "--", padding
// or a line end) starts at or after `from`; npos when none does.
size_t NextDelimiter(std::string_view body, size_t from, const std::string& delim) {
  for (size_t at = body.find(delim, from); at != std::string_view::npos;
       at = body.find(delim, at + 1)) {
    if (at == 0 || body[at - 1] != '\n') continue;
    const size_t after = at + delim.size();
    if (body.compare(after, 2, "--") == 0) return at;  // after <= size: find matched delim
    size_t p = after;
    while (p < body.size() && IsSpace(body[p])) ++p;
    if (p < body.size() && (body[p] == '\r' || body[p] == '\n')) return at;
  }
  return std::string_view::npos;
}

}  // namespace

namespace {

// The headers of part number `index` from `pos` to its blank line (after which `pos` is left).
Status ReadPartHeaders(std::string_view body, size_t& pos, const MultipartLimits& limits,
                       size_t index, MultipartPart& part) {
  bool has_disposition = false;
  size_t headers = 0;
  const size_t start = pos;
  for (;;) {
    auto [line, after] = Line(body, pos, limits.max_header_bytes);
    if (after == std::string_view::npos || after - start > limits.max_header_bytes) {
      return Bad(fmt::format("part {}: its headers do not end within {} bytes", index,
                             limits.max_header_bytes));
    }
    pos = after;
    if (line.empty()) break;
    if (++headers > limits.max_headers_per_part) {
      return Bad(fmt::format("part {}: more than {} headers", index, limits.max_headers_per_part));
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Bad(fmt::format("part {}: '{}' is not a header line", index, Shown(line)));
    }
    const std::string name = Lower(Trim(line.substr(0, colon)));
    const std::string_view value = Trim(line.substr(colon + 1));
    if (name == "content-type") part.content_type = std::string(value);
    if (name != "content-disposition") continue;
    if (has_disposition) return Bad(fmt::format("part {}: two Content-Disposition headers", index));
    has_disposition = true;
    auto d = ParseHeaderParams(value);
    if (!d.ok()) {
      return Bad(fmt::format("part {}: Content-Disposition: {}", index, d.status().message()));
    }
    if (d->type != "form-data") {
      return Bad(fmt::format("part {}: Content-Disposition must be form-data, not '{}'", index,
                             Shown(d->type)));
    }
    part.name = d->Get("name");
    part.filename = d->Get("filename");
  }
  if (!has_disposition || part.name.empty()) {
    return Bad(fmt::format("part {} has no Content-Disposition: form-data with a name", index));
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<MultipartPart>> ParseMultipart(std::string_view content_type,
                                                  std::string_view body,
                                                  const MultipartLimits& limits) {
  BUD_ASSIGN_OR_RETURN(HeaderParams ct, ParseHeaderParams(content_type));
  if (ct.type != "multipart/form-data") {
    return Bad(fmt::format("Content-Type '{}' is not multipart/form-data", Shown(ct.type)));
  }
  const std::string boundary = ct.Get("boundary");
  if (boundary.empty() || boundary.size() > 70) {
    return Bad("the multipart Content-Type needs a boundary of 1 to 70 characters");
  }
  const std::string delim = "--" + boundary;
  size_t at = body.compare(0, delim.size(), delim) == 0 ? 0 : NextDelimiter(body, 0, delim);
  if (at == std::string_view::npos) {
    return Bad(fmt::format("the multipart body has no boundary line '{}'", Shown(delim)));
  }
  std::vector<MultipartPart> parts;
  size_t pos = at + delim.size();
  for (;;) {
    if (body.compare(pos, 2, "--") == 0) break;  // the close delimiter; the epilogue is ignored
    while (pos < body.size() && IsSpace(body[pos])) ++pos;  // transport padding
    if (body.compare(pos, 2, "\r\n") == 0) {
      pos += 2;
    } else if (body.compare(pos, 1, "\n") == 0) {
      pos += 1;
    } else {
      return Bad(
          "a boundary line is followed by text, or the body ends without its closing "
          "boundary");
    }
    if (parts.size() >= limits.max_parts) {
      return Bad(fmt::format("the multipart body has more than {} parts", limits.max_parts));
    }
    MultipartPart part;
    BUD_RETURN_IF_ERROR(ReadPartHeaders(body, pos, limits, parts.size() + 1, part));
    const size_t end = NextDelimiter(body, pos, delim);
    if (end == std::string_view::npos) {
      return Bad(
          fmt::format("part '{}': the body ends without its closing boundary", Shown(part.name)));
    }
    size_t data_end = end - 1;  // the '\n' before the delimiter
    if (data_end > pos && body[data_end - 1] == '\r') --data_end;
    part.data = std::string(body.substr(pos, data_end >= pos ? data_end - pos : 0));
    parts.push_back(std::move(part));
    pos = end + delim.size();
  }
  if (parts.empty()) return Bad("the multipart body has no parts");
  return parts;
}

}  // namespace bud::ip::api
