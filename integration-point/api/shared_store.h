// The integration point's store as the HTTP API's threads share it: one connection of its own
// (beside the engine's, on the same WAL file), one mutex, held for each call and never while
// bytes move between a client and a file.
#pragma once

#include <memory>
#include <mutex>
#include <utility>

#include "integration-point/store/point_store.h"

namespace bud::ip::api {

class SharedStore {
 public:
  explicit SharedStore(std::unique_ptr<PointStore> store) : store_(std::move(store)) {}
  SharedStore(const SharedStore&) = delete;
  SharedStore& operator=(const SharedStore&) = delete;

  // Runs `f(PointStore&)` with the mutex held and returns what it returns.
  template <typename F>
  auto Run(F&& f) {
    std::lock_guard lock(mu_);
    return f(*store_);
  }

 private:
  std::mutex mu_;
  std::unique_ptr<PointStore> store_;
};

}  // namespace bud::ip::api
