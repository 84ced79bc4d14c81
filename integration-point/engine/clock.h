// The clock the engine's parts read: wall time (timestamps that leave the process) and monotonic
// time (timers). Injected so that tests run the timers in virtual time.
// Concurrency: SystemClock is stateless; a ManualClock belongs to the test thread that moves it.
#pragma once

#include <cstdint>

#include "common/clock.h"

namespace bud::ip {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMs() const = 0;   // Unix time
  virtual int64_t MonoMs() const = 0;  // monotonic, for intervals only
};

class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override { return bud::NowMs(); }
  int64_t MonoMs() const override { return bud::MonoMs(); }
};

// Virtual time: moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t now_ms = 1'800'000'000'000, int64_t mono_ms = 1'000'000)
      : now_(now_ms), mono_(mono_ms) {}
  int64_t NowMs() const override { return now_; }
  int64_t MonoMs() const override { return mono_; }
  void Advance(int64_t ms) {
    now_ += ms;
    mono_ += ms;
  }

 private:
  int64_t now_;
  int64_t mono_;
};

}  // namespace bud::ip
