// See http_auth.h.
#include "common/http_auth.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <vector>

#include "common/crypto/openssl.h"
#include "common/fs.h"

namespace bud {

namespace {

constexpr size_t kHashBytes = 32;
constexpr size_t kSaltBytes = 16;
constexpr size_t kMaxHeader = 1024;

bool Scrypt(std::string_view password, const BasicCredential& c, std::string& out) {
  const uint64_t n = uint64_t{1} << c.log2_n;
  const uint64_t maxmem = 128 * uint64_t{c.r} * (n + c.p + 2) + (uint64_t{1} << 20);
  out.assign(kHashBytes, '\0');
  return EVP_PBE_scrypt(password.data(), password.size(),
                        reinterpret_cast<const unsigned char*>(c.salt.data()), c.salt.size(), n,
                        c.r, c.p, maxmem, reinterpret_cast<unsigned char*>(out.data()),
                        out.size()) == 1;
}

bool FromHex(std::string_view hex, std::string& out) {
  if (hex.size() % 2 != 0) return false;
  out.clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    int v = 0;
    for (size_t k = i; k < i + 2; ++k) {
      const char c = hex[k];
      const int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
      if (d < 0) return false;
      v = v * 16 + d;
    }
    out.push_back(static_cast<char>(v));
  }
  return true;
}

bool Number(std::string_view text, uint64_t lo, uint64_t hi, uint64_t& out) {
  if (text.empty() || text.size() > 9) return false;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v < lo || v > hi) return false;
  out = v;
  return true;
}

bool ValidUser(std::string_view user) {
  if (user.empty() || user.size() > 256) return false;
  for (unsigned char c : user) {
    if (c == ':' || c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

bool DecodeBase64(std::string_view in, std::string& out) {
  if (in.empty() || in.size() % 4 != 0 || in.size() > 4 * kMaxHeader) return false;
  std::vector<unsigned char> buf(in.size() / 4 * 3 + 1);
  const int n = EVP_DecodeBlock(buf.data(), reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0) return false;
  size_t len = static_cast<size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (in.ends_with("==")) {
    len -= 2;
  } else if (in.ends_with("=")) {
    len -= 1;
  }
  out.assign(reinterpret_cast<const char*>(buf.data()), len);
  return true;
}

Result<std::string> MakeBasicAuthLine(std::string_view user, std::string_view password,
                                      int log2_n) {
  if (!ValidUser(user)) {
    return Status(Code::kInvalidArgument,
                  "the user name must be 1 to 256 characters without ':' or control characters");
  }
  if (password.empty()) return Status(Code::kInvalidArgument, "the password is empty");
  if (log2_n < 10 || log2_n > 20) {
    return Status(Code::kInvalidArgument, "the cost (log2 of scrypt's N) must be 10 to 20");
  }
  BasicCredential c;
  c.user = std::string(user);
  c.log2_n = log2_n;
  c.salt = crypto::RandomBytes(kSaltBytes);
  if (!Scrypt(password, c, c.hash)) {
    return Status(Code::kInternal, "scrypt failed: " + crypto::DrainErrors());
  }
  return fmt::format("{}:scrypt:{}:{}:{}:{}:{}", c.user, c.log2_n, c.r, c.p, crypto::Hex(c.salt),
                     crypto::Hex(c.hash));
}

Status WriteBasicAuthFile(const std::string& path, std::string_view user, std::string_view password,
                          int log2_n) {
  BUD_ASSIGN_OR_RETURN(std::string line, MakeBasicAuthLine(user, password, log2_n));
  const std::string tmp = path + ".new";
  (void)RemoveAll(tmp);
  BUD_RETURN_IF_ERROR(WriteFileSynced(tmp, line + "\n", 0600));
  return RenameDurable(tmp, path);
}

Result<BasicCredential> ParseBasicAuthLine(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  std::vector<std::string_view> f;
  size_t at = 0;
  while (f.size() < 7) {
    const size_t colon = line.find(':', at);
    f.push_back(line.substr(at, colon == std::string_view::npos ? line.npos : colon - at));
    if (colon == std::string_view::npos) break;
    at = colon + 1;
  }
  auto bad = [](const std::string& what) {
    return Status(Code::kConfig,
                  fmt::format("basic auth file: {}; expected one line "
                              "<user>:scrypt:<log2 N>:<r>:<p>:<salt hex>:<hash hex> as written by "
                              "`bud-ip http-user`",
                              what));
  };
  if (f.size() != 7 || line.find('\n') != std::string_view::npos) {
    return bad("the line does not have 7 ':'-separated fields");
  }
  BasicCredential c;
  if (!ValidUser(f[0])) return bad("the user name is empty or has control characters");
  c.user = std::string(f[0]);
  if (f[1] != "scrypt") return bad(fmt::format("unknown hash '{}'", EscapeControl(f[1])));
  uint64_t log2_n = 0, r = 0, p = 0;
  if (!Number(f[2], 10, 20, log2_n)) return bad("log2 N must be 10 to 20");
  if (!Number(f[3], 1, 32, r)) return bad("r must be 1 to 32");
  if (!Number(f[4], 1, 16, p)) return bad("p must be 1 to 16");
  c.log2_n = static_cast<int>(log2_n);
  c.r = static_cast<uint32_t>(r);
  c.p = static_cast<uint32_t>(p);
  if (!FromHex(f[5], c.salt) || c.salt.size() < 8 || c.salt.size() > 64) {
    return bad("the salt must be 8 to 64 bytes in hex");
  }
  if (!FromHex(f[6], c.hash) || c.hash.size() != kHashBytes) {
    return bad("the hash must be 32 bytes in hex");
  }
  return c;
}

Result<BasicCredential> LoadBasicAuthFile(const std::string& path) {
  BUD_RETURN_IF_ERROR(CheckPrivateFileMode(path, "basic auth file"));
  BUD_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  if (text.size() > 4096) {
    return Status(Code::kConfig, fmt::format("basic auth file '{}' is too large", path));
  }
  auto c = ParseBasicAuthLine(text);
  if (!c.ok()) return Status(Code::kConfig, fmt::format("{}: {}", path, c.status().message()));
  return c;
}

bool BasicAuth::Verify(std::string_view user, std::string_view password) const {
  // Both compared whatever the other gives, so the time says nothing about which was wrong.
  std::string derived;
  const bool hashed = Scrypt(password, credential_, derived);
  const bool hash_ok =
      hashed && CRYPTO_memcmp(derived.data(), credential_.hash.data(), kHashBytes) == 0;
  const std::string want_user = crypto::Sha256(credential_.user);
  const std::string got_user = crypto::Sha256(user);
  const bool user_ok = CRYPTO_memcmp(want_user.data(), got_user.data(), want_user.size()) == 0;
  return hash_ok && user_ok;
}

bool BasicAuth::Check(std::string_view authorization) {
  if (authorization.size() > kMaxHeader) return false;
  constexpr std::string_view kScheme = "basic ";
  if (authorization.size() <= kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return false;
  }
  std::string_view encoded = authorization.substr(kScheme.size());
  while (!encoded.empty() && encoded.front() == ' ') encoded.remove_prefix(1);
  while (!encoded.empty() && encoded.back() == ' ') encoded.remove_suffix(1);
  const std::string digest = crypto::Sha256(encoded);
  {
    std::lock_guard lock(mu_);
    if (passed_digest_.size() == digest.size() &&
        CRYPTO_memcmp(passed_digest_.data(), digest.data(), digest.size()) == 0) {
      return true;
    }
  }
  std::string decoded;
  if (!DecodeBase64(encoded, decoded)) return false;
  const size_t colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  if (!Verify(std::string_view(decoded).substr(0, colon),
              std::string_view(decoded).substr(colon + 1))) {
    return false;
  }
  std::lock_guard lock(mu_);
  passed_digest_ = digest;
  return true;
}

}  // namespace bud
