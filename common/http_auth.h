// HTTP Basic authentication with a password hash in a file ([http] basic_auth_file), as
// eFormidling's integration point asks for by default. The file holds one line:
//
//   <user>:scrypt:<log2 N>:<r>:<p>:<salt, hex>:<hash, hex>
//
// (scrypt as OpenSSL computes it, 32-byte hash, 16-byte salt), written by `bud-ip http-user`.
// The password itself is never stored.
//
// Operation: BasicAuth::Check is called on the HTTP server's threads. A correct header costs
// one scrypt (tens of milliseconds at the default cost) the first time; after that the
// SHA-256 of the exact header is remembered (one, the last that passed) and compared in constant
// time, so a client that sends the same credentials on every request pays for scrypt once.
// A wrong password always costs a full scrypt. User and hash are compared in constant time.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "common/status.h"

namespace bud {

struct BasicCredential {
  std::string user;
  int log2_n = 15;  // scrypt N = 2^log2_n
  uint32_t r = 8;
  uint32_t p = 1;
  std::string salt;  // raw bytes
  std::string hash;  // raw bytes (32)
};

// The line for `user` and `password` (no newline). kInvalidArgument for an empty user, a user
// with ':' or a control character, an empty password, or log2_n outside 10..20.
Result<std::string> MakeBasicAuthLine(std::string_view user, std::string_view password,
                                      int log2_n = 15);
// Writes the line for `user` and `password` to `path` (mode 0600), replacing the file atomically
// (a new file renamed over the old one).
Status WriteBasicAuthFile(const std::string& path, std::string_view user, std::string_view password,
                          int log2_n = 15);
// Parses one line of the format above. kConfig naming what is wrong.
Result<BasicCredential> ParseBasicAuthLine(std::string_view line);
// Reads and parses the file (its first line; a trailing newline is fine). The file must not be
// readable by group or others.
Result<BasicCredential> LoadBasicAuthFile(const std::string& path);

class BasicAuth {
 public:
  explicit BasicAuth(BasicCredential credential) : credential_(std::move(credential)) {}
  BasicAuth(const BasicAuth&) = delete;
  BasicAuth& operator=(const BasicAuth&) = delete;

  // True when `authorization` (the whole header value) is "Basic <base64 of user:password>"
  // with this file's user and password. Never throws; anything malformed is false.
  bool Check(std::string_view authorization);

 private:
  bool Verify(std::string_view user, std::string_view password) const;

  const BasicCredential credential_;
  std::mutex mu_;
  std::string passed_digest_;  // SHA-256 of the last header that passed; guarded by mu_
};

// Decodes standard base64 (with padding); nullopt-like false when malformed.
bool DecodeBase64(std::string_view in, std::string& out);

}  // namespace bud
