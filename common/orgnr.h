// Organisation numbers (Enhetsregisteret): 9 digits with a mod-11 check digit, written
// "0192:<orgnr>" on the wire as in eFormidling (0192 is the ICD for Norwegian orgnr).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace bud {

class Orgnr {
 public:
  // Accepts "0192:910076787" and "910076787". Rejects anything else, including a wrong
  // check digit, with kBadOrgnr and a message saying which.
  static Result<Orgnr> Parse(std::string_view text);

  const std::string& digits() const { return digits_; }   // "910076787"
  std::string wire() const { return "0192:" + digits_; }  // "0192:910076787"
  bool operator==(const Orgnr&) const = default;
  auto operator<=>(const Orgnr&) const = default;

 private:
  explicit Orgnr(std::string digits) : digits_(std::move(digits)) {}
  std::string digits_;
};

}  // namespace bud
