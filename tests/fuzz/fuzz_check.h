// Shared by the fuzz targets: a check that stops the run (so libFuzzer saves the input as a crash
// artifact) when the product breaks a contract, and helpers for the checks every target makes.
#pragma once

#include <google/protobuf/stubs/logging.h>
#include <openssl/err.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "common/crypto/openssl.h"
#include "common/orgnr.h"
#include "common/status.h"

namespace bud::fuzz {

[[noreturn]] inline void ContractBroken(const char* file, int line, const char* what) {
  std::fprintf(stderr, "\n==fuzz== contract broken at %s:%d: %s\n", file, line, what);
  std::abort();
}

#define BUD_FUZZ_CHECK(cond, what)                                      \
  do {                                                                  \
    if (!(cond)) ::bud::fuzz::ContractBroken(__FILE__, __LINE__, what); \
  } while (0)

// protobuf logs every string field with invalid UTF-8 it refuses; fuzzing makes millions.
inline void QuietProtobuf() { google::protobuf::SetLogHandler(nullptr); }

// common/crypto/openssl.h: our OpenSSL wrappers never leave errors on the thread's queue (a stale
// error would show up in the next, unrelated, DrainErrors message).
inline void CheckOpenSslQueueEmpty(const char* after) {
  if (ERR_peek_error() != 0) {
    std::fprintf(stderr, "\n==fuzz== OpenSSL error queue not empty after %s: %s\n", after,
                 crypto::DrainErrors().c_str());
    std::abort();
  }
}

// The codes an envelope (or a streamed envelope's head) may be refused with.
inline bool IsEnvelopeError(Code c) {
  switch (c) {
    case Code::kMalformed:
    case Code::kBadSignature:
    case Code::kWrongReceiver:
    case Code::kDigestMismatch:
    case Code::kDecryptFailed:
    case Code::kPayloadMismatch:
    case Code::kUnsupported:
      return true;
    default:
      return false;
  }
}

// What an accepted organisation number must look like, whatever text it came from.
inline void CheckOrgnr(std::string_view text) {
  auto org = Orgnr::Parse(text);
  if (!org.ok()) {
    BUD_FUZZ_CHECK(org.status().code() == Code::kBadOrgnr, "Orgnr::Parse: wrong error code");
    return;
  }
  const std::string& d = org->digits();
  BUD_FUZZ_CHECK(d.size() == 9, "Orgnr::Parse accepted something that is not 9 digits");
  for (char c : d) BUD_FUZZ_CHECK(c >= '0' && c <= '9', "Orgnr::Parse accepted a non-digit");
  BUD_FUZZ_CHECK(text == d || text == org->wire(), "Orgnr::Parse accepted another spelling");
  auto again = Orgnr::Parse(org->wire());
  BUD_FUZZ_CHECK(again.ok() && *again == *org, "Orgnr wire form does not parse back");
}

}  // namespace bud::fuzz
