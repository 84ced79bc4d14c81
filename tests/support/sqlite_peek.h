// Reads one number from a SQLite file through a read-only connection of its own (committed rows
// only), for tests that look at what a store wrote; and the few steps the storage tests repeat
// on a connection of their own (open, exec, one number), each a test failure when it fails.
#pragma once

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/storage/sqlite.h"

namespace bud::test {

// The first column of the first row of `sql`; `missing` when there is no row.
inline int64_t PeekInt(const std::string& path, const std::string& sql, int64_t missing = 0) {
  storage::Db::Options ro;
  ro.read_only = true;
  auto db = storage::Db::Open(path, ro);
  REQUIRE(db.ok());
  auto st = (*db)->Prepare(sql);
  REQUIRE(st.ok());
  auto row = (*st)->Step();
  REQUIRE(row.ok());
  const int64_t v = *row ? (*st)->Int(0) : missing;
  (*st)->Reset();
  return v;
}

inline std::unique_ptr<storage::Db> OpenOrDie(const std::string& path,
                                              const storage::Db::Options& options = {}) {
  auto db = storage::Db::Open(path, options);
  INFO(db.status().ToString());
  REQUIRE(db.ok());
  return std::move(db).value();
}

inline void ExecOrDie(storage::Db& db, std::string_view sql) {
  Status s = db.Exec(sql);
  INFO(s.ToString());
  REQUIRE(s.ok());
}

// The first column of the first row of `sql`, which must have one.
inline int64_t QueryInt(storage::Db& db, std::string_view sql) {
  auto st = db.Prepare(sql);
  INFO(st.status().ToString());
  REQUIRE(st.ok());
  auto row = (*st)->Step();
  INFO(row.status().ToString());
  REQUIRE(row.ok());
  REQUIRE(*row);
  const int64_t v = (*st)->Int(0);
  (*st)->Reset();
  return v;
}

// The size of the file at `path` in bytes; -1 when there is none.
inline int64_t FileBytes(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

}  // namespace bud::test
