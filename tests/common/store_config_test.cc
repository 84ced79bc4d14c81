// The [store] table (common/storage/store_config.h): which engine, where, and every way of
// getting it wrong refused with the key named.
#include "common/storage/store_config.h"

#include <catch2/catch.hpp>
#include <string>

namespace bud::test {
namespace {

using storage::Backend;
using storage::LoadStoreConfig;

Result<storage::StoreConfig> Load(const std::string& text) {
  auto cf = ConfigFile::Parse(text, "/etc/budstikke/registry/registry.toml");
  INFO(cf.status().ToString());
  REQUIRE(cf.ok());
  return LoadStoreConfig(*cf, "registry.store");
}

storage::StoreConfig LoadOrDie(const std::string& text) {
  auto c = Load(text);
  INFO(c.status().ToString());
  REQUIRE(c.ok());
  return std::move(c).value();
}

void ExpectRefused(const std::string& text, const std::string& key, const std::string& words) {
  auto c = Load(text);
  INFO(text << "\n-> " << c.status().ToString());
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == Code::kConfig);
  CHECK(c.status().message().find("key '" + key + "'") != std::string::npos);
  CHECK(c.status().message().find(words) != std::string::npos);
}

TEST_CASE("[store]: SQLite by the old key or by [store] path, resolved against the config",
          "[config][store]") {
  auto old = LoadOrDie("[registry]\nstore = \"registry.db\"\n");
  CHECK(old.backend == Backend::kSqlite);
  CHECK(old.path == "/etc/budstikke/registry/registry.db");
  CHECK(old.path_key == "registry.store");
  CHECK(old.Describe() == "sqlite /etc/budstikke/registry/registry.db");

  auto now = LoadOrDie("[store]\nbackend = \"sqlite\"\npath = \"/var/lib/budstikke/r.db\"\n");
  CHECK(now.sqlite());
  CHECK(now.path == "/var/lib/budstikke/r.db");
  CHECK(now.path_key == "store.path");
  // Empty keys of the other engine are no keys (the example config lists them empty).
  auto empty_pg_keys = LoadOrDie("[store]\npath = \"r.db\"\nurl = \"\"\npassword_file = \"\"\n");
  CHECK(empty_pg_keys.sqlite());
}

TEST_CASE("[store]: PostgreSQL with a connection string and a password file", "[config][store]") {
  auto c = LoadOrDie(
      "[store]\nbackend = \"postgresql\"\nurl = \"host=db1,db2 port=5432,5433 dbname=budstikke "
      "user=bud\"\npassword_file = \"pg-password\"\n");
  CHECK(c.backend == Backend::kPostgres);
  CHECK(c.url == "host=db1,db2 port=5432,5433 dbname=budstikke user=bud");
  CHECK(c.password_file == "/etc/budstikke/registry/pg-password");
  CHECK(c.Describe() == "postgresql host=db1,db2 port=5432,5433 dbname=budstikke user=bud");
  auto uri = LoadOrDie("[store]\nbackend = \"postgresql\"\nurl = \"postgresql://bud@db1:5432/budstikke\"\n");
  CHECK(uri.password_file.empty());
  CHECK(uri.Describe() == "postgresql host=db1 port=5432 dbname=budstikke user=bud");
}

TEST_CASE("[store]: mistakes are refused naming the key", "[config][store]") {
  ExpectRefused("[registry]\nlisten = \"tcp://127.0.0.1:1\"\n", "registry.store", "is missing");
  ExpectRefused("[store]\nbackend = \"mysql\"\npath = \"r.db\"\n", "store.backend", "mysql");
  ExpectRefused("[registry]\nstore = \"a.db\"\n[store]\npath = \"b.db\"\n", "store.path", "keep one");
  ExpectRefused("[store]\npath = \"r.db\"\nurl = \"host=db1\"\n", "store.url", "postgresql");
  ExpectRefused("[store]\npath = \"r.db\"\npassword_file = \"pw\"\n", "store.password_file",
                "postgresql");
  ExpectRefused("[store]\nbackend = \"postgresql\"\n", "store.url", "missing");
  ExpectRefused("[store]\nbackend = \"postgresql\"\nurl = \"host=db1\"\n[registry]\nstore = \"r.db\"\n",
                "registry.store", "remove it");
  ExpectRefused("[store]\nbackend = \"postgresql\"\nurl = \"host=db1\"\npath = \"r.db\"\n",
                "store.path", "remove it");
  ExpectRefused("[store]\nbackend = \"postgresql\"\nurl = \"host=db1 port\"\n", "store.url",
                "not a libpq connection string");
  ExpectRefused("[store]\nbackend = \"postgresql\"\nurl = \"nosuchkeyword=1\"\n", "store.url",
                "not a libpq connection string");
  ExpectRefused("[store]\nbackend = \"postgresql\"\nurl = \"host=db1 password=hunter2\"\n",
                "store.url", "carries a password");
  ExpectRefused("[store]\nbackend = \"postgresql\"\nurl = \"postgresql://bud:hunter2@db1/x\"\n",
                "store.url", "carries a password");
  // The password itself never appears in the message.
  auto c = Load("[store]\nbackend = \"postgresql\"\nurl = \"host=db1 password=hunter2\"\n");
  CHECK(c.status().message().find("hunter2") == std::string::npos);
  ExpectRefused("[store]\nbackend = 5\n", "store.backend", "");
}

}  // namespace
}  // namespace bud::test
