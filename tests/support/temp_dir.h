// A temporary directory removed (recursively) when the owner goes out of scope, unless
// BUD_KEEP_TEST_DIRS is set in the environment (for post-mortems).
#pragma once

#include <string>

namespace bud::test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace bud::test
