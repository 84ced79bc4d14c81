// Reads one number from a SQLite file through a read-only connection of its own (committed rows
// only), for tests that look at what a store wrote.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>

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

}  // namespace bud::test
