// Organisation number parsing and the mod-11 check (weights 3 2 7 6 5 4 3 2).
#include "common/orgnr.h"

#include <fmt/format.h>

namespace bud {

Result<Orgnr> Orgnr::Parse(std::string_view text) {
  std::string_view digits = text;
  if (digits.starts_with("0192:")) digits.remove_prefix(5);
  if (digits.size() != 9) {
    return Result<Orgnr>(Code::kBadOrgnr,
                         fmt::format("organisation number '{}' must be 9 digits, optionally "
                                     "prefixed with '0192:'",
                                     text));
  }
  for (char c : digits) {
    if (c < '0' || c > '9') {
      return Result<Orgnr>(Code::kBadOrgnr,
                           fmt::format("organisation number '{}' has a non-digit", text));
    }
  }
  static constexpr int kWeights[8] = {3, 2, 7, 6, 5, 4, 3, 2};
  int sum = 0;
  for (int i = 0; i < 8; ++i) sum += (digits[i] - '0') * kWeights[i];
  int check = 11 - sum % 11;
  if (check == 11) check = 0;
  if (check == 10 || check != digits[8] - '0') {
    return Result<Orgnr>(
        Code::kBadOrgnr,
        fmt::format("organisation number '{}' has a wrong check digit (mod 11)", text));
  }
  return Orgnr(std::string(digits));
}

}  // namespace bud
