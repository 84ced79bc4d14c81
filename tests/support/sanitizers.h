// Whether this build runs under AddressSanitizer (scripts/test --sanitize).
//
// Under ASan a process's resident memory says little about the program's own: shadow memory,
// redzones and a quarantine that keeps freed blocks (256 MiB by default) all count. So a test
// that bounds a process's RSS checks that bound only in ordinary builds; the sanitizer build
// still runs the test for everything else it checks, and reports the figure.
#pragma once

#include <catch2/catch.hpp>

namespace bud::test {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

}  // namespace bud::test

// CHECK(expr) for a bound on resident memory; under AddressSanitizer only reported (see above).
#define BUD_CHECK_RSS(expr)                                                   \
  do {                                                                        \
    if (::bud::test::kAddressSanitizer) {                                     \
      WARN("not checked under AddressSanitizer (RSS includes its shadow "     \
           "memory and quarantine): " #expr);                                 \
    } else {                                                                  \
      CHECK(expr);                                                            \
    }                                                                         \
  } while (0)
