// Status names and formatting.
#include "common/status.h"

namespace bud {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: return "INVALID_ARGUMENT";
    case Code::kNotFound: return "NOT_FOUND";
    case Code::kAlreadyExists: return "ALREADY_EXISTS";
    case Code::kIo: return "IO_ERROR";
    case Code::kDiskFull: return "DISK_FULL";
    case Code::kBusy: return "BUSY";
    case Code::kCorrupt: return "CORRUPT";
    case Code::kConfig: return "CONFIG";
    case Code::kInternal: return "INTERNAL";
    case Code::kTimeout: return "TIMEOUT";
    case Code::kUnavailable: return "UNAVAILABLE";
    case Code::kBadOrgnr: return "BAD_ORGNR";
    case Code::kBadKey: return "BAD_KEY";
    case Code::kBadCertificate: return "BAD_CERTIFICATE";
    case Code::kCertUntrusted: return "CERT_UNTRUSTED";
    case Code::kCertExpired: return "CERT_EXPIRED";
    case Code::kCertNotYetValid: return "CERT_NOT_YET_VALID";
    case Code::kCertWrongUsage: return "CERT_WRONG_USAGE";
    case Code::kCertOrgMismatch: return "CERT_ORG_MISMATCH";
    case Code::kMalformed: return "MALFORMED";
    case Code::kBadSignature: return "BAD_SIGNATURE";
    case Code::kWrongReceiver: return "WRONG_RECEIVER";
    case Code::kDigestMismatch: return "DIGEST_MISMATCH";
    case Code::kDecryptFailed: return "DECRYPT_FAILED";
    case Code::kPayloadMismatch: return "PAYLOAD_MISMATCH";
    case Code::kUnsupported: return "UNSUPPORTED";
    case Code::kCertRevoked: return "CERT_REVOKED";
    case Code::kCertRevocationUnknown: return "CERT_REVOCATION_UNKNOWN";
    case Code::kConflict: return "CONFLICT";
    case Code::kTooLarge: return "TOO_LARGE";
  }
  return "UNKNOWN";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(CodeName(code_));
  s += ": ";
  s += message_;
  return s;
}

Status Status::Context(std::string_view what) const {
  if (ok()) return *this;
  std::string m(what);
  m += ": ";
  m += message_;
  return Status(code_, std::move(m));
}

}  // namespace bud
