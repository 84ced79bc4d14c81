// Status and Result<T>: how every expected failure in Budstikke is reported.
//
// A Status is a stable code (for programs and logs) plus a message a person can act on. Codes are
// data: they are written to logs, status histories and error.txt files, so a code's name never
// changes meaning once released. Library exceptions are caught at the edge and turned into these.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace bud {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // bad input from a user or peer
  kNotFound,
  kAlreadyExists,
  kIo,                  // file system or I/O failure
  kDiskFull,            // ENOSPC / SQLITE_FULL: retry when space returns
  kBusy,                // database busy or locked past the timeout
  kCorrupt,             // a store failed its integrity check
  kConfig,              // a config file is missing a key or has a wrong value
  kInternal,
  kTimeout,
  kUnavailable,         // a peer is not reachable now
  // Organisation numbers.
  kBadOrgnr,
  // Keys and certificates.
  kBadKey,
  kBadCertificate,
  kCertUntrusted,       // does not chain to the trust anchor
  kCertExpired,
  kCertNotYetValid,
  kCertWrongUsage,      // key usage does not allow what it is used for
  kCertOrgMismatch,     // organisation number in the subject is not the expected one
  // Envelopes.
  kMalformed,           // cannot be parsed
  kBadSignature,
  kWrongReceiver,       // the signed receiver is not the one opening it
  kDigestMismatch,      // payload bytes do not match the signed digest
  kDecryptFailed,
  kPayloadMismatch,     // sender/receiver/message id inside the payload differ from the header
  kUnsupported,
  // Revocation (appended: codes are data).
  kCertRevoked,             // listed on a current CRL from its issuer
  kCertRevocationUnknown,   // revocation checking is on and no current, valid CRL covers it
  // Requests (appended: codes are data).
  kConflict,                // not in a state that allows it now (sent, not locked, ...)
  kTooLarge,                // over a configured size limit
};

// The stable name of a code, e.g. "BAD_SIGNATURE".
std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "CODE_NAME: message"
  std::string ToString() const;
  // Prefix the message with context: "reading x: <message>".
  Status Context(std::string_view what) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT
  Result(Code code, std::string message) : v_(Status(code, std::move(message))) {}

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace bud

#define BUD_CONCAT_INNER(a, b) a##b
#define BUD_CONCAT(a, b) BUD_CONCAT_INNER(a, b)

// Return the Status if it is not ok.
#define BUD_RETURN_IF_ERROR(expr)            \
  do {                                       \
    ::bud::Status bud_status_ = (expr);      \
    if (!bud_status_.ok()) return bud_status_; \
  } while (0)

// `BUD_ASSIGN_OR_RETURN(auto x, F());` declares x from a Result or returns its Status.
#define BUD_ASSIGN_OR_RETURN(decl, expr) \
  BUD_ASSIGN_OR_RETURN_IMPL(BUD_CONCAT(bud_result_, __LINE__), decl, expr)
#define BUD_ASSIGN_OR_RETURN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  decl = std::move(tmp).value()
