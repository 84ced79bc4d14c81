// One conformance suite for the registry's store (address-registry/store.h), run against both
// engines: SQLite in a temporary folder and a real PostgreSQL 15 server started by the test. Both
// must keep the same rules: Put inserts or replaces, a CURVE key belongs to one organisation at
// most (also when an entry changes its key, and across two store objects, as two processes), an
// empty key is no key, Remove says kNotFound for an unknown organisation, entries survive a
// reopen byte for byte, and List is ordered by organisation number.
#include <catch2/catch.hpp>
#include <functional>
#include <memory>
#include <string>

#include "address-registry/pg_store.h"
#include "address-registry/sqlite_store.h"
#include "address-registry/store.h"
#include "common/storage/sqlite.h"
#include "tests/integration/harness.h"
#include "tests/support/postgres.h"
#include "tests/support/temp_dir.h"

namespace bud::test {
namespace {

using registry::OpenRegistryStore;
using registry::RegistryStore;
using OpenFn = std::function<std::unique_ptr<RegistryStore>()>;

// Valid organisation numbers (mod-11), in ascending order.
constexpr const char* kOrg1 = "910075918";
constexpr const char* kOrg2 = "910076787";
constexpr const char* kOrg3 = "974760673";
// Z85 CURVE public keys (40 characters).
const std::string kKey1 = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
const std::string kKey2 = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
const std::string kKey3 = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6";

Orgnr Org(const char* digits) { return *Orgnr::Parse(digits); }

wire::RegistryEntry Entry(const char* orgnr, const std::string& curve_key, const std::string& name) {
  wire::RegistryEntry e;
  e.set_orgnr(orgnr);
  e.set_name(name);
  // Certificates are PEM text; a few KiB with every byte value shows the engines keep bytes.
  std::string pem = "-----BEGIN CERTIFICATE-----\n";
  for (int i = 0; i < 4096; ++i) pem += static_cast<char>('A' + (i * 7 + orgnr[8]) % 26);
  pem += "\n-----END CERTIFICATE-----\n";
  e.set_signing_cert_pem(pem);
  e.set_encryption_cert_pem(pem + name);
  e.set_curve_public_key(curve_key);
  e.set_broker_endpoint("tcp://127.0.0.1:7700");
  e.add_processes(kProcess);
  e.add_document_types(kDocumentType);
  e.set_updated_unix_ms(1700000000000 + orgnr[8]);
  return e;
}

std::unique_ptr<RegistryStore> Open(const OpenFn& open) {
  auto s = open();
  REQUIRE(s != nullptr);
  return s;
}

void PutOk(RegistryStore& s, const wire::RegistryEntry& e) {
  Status st = s.Put(e);
  INFO(st.ToString());
  REQUIRE(st.ok());
}

std::optional<wire::RegistryEntry> GetOk(RegistryStore& s, const char* org) {
  auto r = s.Get(Org(org));
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return *r;
}

std::optional<wire::RegistryEntry> ByKeyOk(RegistryStore& s, const std::string& key) {
  auto r = s.GetByCurveKey(key);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return *r;
}

std::vector<std::string> ListOrgs(RegistryStore& s) {
  auto r = s.List();
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  std::vector<std::string> out;
  for (const auto& e : *r) out.push_back(e.orgnr());
  return out;
}

// The suite: `open` opens (a new object on) the same store each time it is called.
void RegistryStoreConformance(const OpenFn& open) {
  auto store = Open(open);

  INFO("an empty store");
  CHECK(ListOrgs(*store).empty());
  CHECK_FALSE(GetOk(*store, kOrg1).has_value());
  CHECK_FALSE(ByKeyOk(*store, kKey1).has_value());
  CHECK_FALSE(ByKeyOk(*store, "").has_value());

  INFO("put and get, byte for byte");
  const auto e2 = Entry(kOrg2, kKey1, "Second Agency");
  PutOk(*store, e2);
  auto got = GetOk(*store, kOrg2);
  REQUIRE(got.has_value());
  CHECK(got->SerializeAsString() == e2.SerializeAsString());
  auto by_key = ByKeyOk(*store, kKey1);
  REQUIRE(by_key.has_value());
  CHECK(by_key->orgnr() == kOrg2);

  INFO("put replaces the organisation's entry");
  auto e2b = Entry(kOrg2, kKey1, "Second Agency, renamed");
  e2b.add_processes("urn:no:difi:profile:avtalt:avtalt:ver1.0");
  PutOk(*store, e2b);
  CHECK(ListOrgs(*store) == std::vector<std::string>{kOrg2});
  CHECK(GetOk(*store, kOrg2)->SerializeAsString() == e2b.SerializeAsString());

  INFO("a CURVE key held by another organisation is refused, and nothing is written");
  Status dup = store->Put(Entry(kOrg1, kKey1, "First Agency"));
  INFO(dup.ToString());
  CHECK(dup.code() == Code::kAlreadyExists);
  CHECK(dup.message().find(kOrg2) != std::string::npos);
  CHECK_FALSE(GetOk(*store, kOrg1).has_value());

  INFO("another key is fine; List is ordered by organisation number");
  PutOk(*store, Entry(kOrg1, kKey2, "First Agency"));
  CHECK(ListOrgs(*store) == std::vector<std::string>{kOrg1, kOrg2});

  INFO("an entry that changes its key frees the old one");
  PutOk(*store, Entry(kOrg2, kKey3, "Second Agency"));
  CHECK_FALSE(ByKeyOk(*store, kKey1).has_value());
  CHECK(ByKeyOk(*store, kKey3)->orgnr() == kOrg2);
  PutOk(*store, Entry(kOrg3, kKey1, "Third Agency"));
  CHECK(ByKeyOk(*store, kKey1)->orgnr() == kOrg3);

  INFO("no key is no key: several organisations may have none");
  PutOk(*store, Entry(kOrg1, "", "First Agency"));
  PutOk(*store, Entry(kOrg3, "", "Third Agency"));
  CHECK_FALSE(ByKeyOk(*store, "").has_value());
  CHECK_FALSE(ByKeyOk(*store, kKey2).has_value());
  CHECK(ListOrgs(*store) == std::vector<std::string>{kOrg1, kOrg2, kOrg3});

  INFO("a second store object (another process) sees the changes and keeps the rules");
  {
    auto other = Open(open);
    CHECK(ListOrgs(*other) == std::vector<std::string>{kOrg1, kOrg2, kOrg3});
    Status taken = other->Put(Entry(kOrg1, kKey3, "First Agency"));
    CHECK(taken.code() == Code::kAlreadyExists);
    PutOk(*other, Entry(kOrg1, kKey2, "First Agency"));
  }
  CHECK(ByKeyOk(*store, kKey2)->orgnr() == kOrg1);

  INFO("remove");
  Status removed = store->Remove(Org(kOrg3));
  INFO(removed.ToString());
  CHECK(removed.ok());
  CHECK(store->Remove(Org(kOrg3)).code() == Code::kNotFound);
  CHECK_FALSE(GetOk(*store, kOrg3).has_value());
  CHECK(ListOrgs(*store) == std::vector<std::string>{kOrg1, kOrg2});

  INFO("a list of broker endpoints is kept in order");
  auto e1 = Entry(kOrg1, kKey2, "First Agency");
  e1.add_broker_endpoints("tcp://b1.example:7700");
  e1.add_broker_endpoints("tcp://b2.example:7700");
  PutOk(*store, e1);
  auto e1_got = GetOk(*store, kOrg1);
  REQUIRE(e1_got.has_value());
  CHECK(std::vector<std::string>(e1_got->broker_endpoints().begin(),
                                 e1_got->broker_endpoints().end()) ==
        std::vector<std::string>{"tcp://b1.example:7700", "tcp://b2.example:7700"});

  INFO("the health probe passes on a store that can be read and written");
  Status probe = store->Probe();
  INFO(probe.ToString());
  CHECK(probe.ok());

  INFO("entries survive closing and reopening the store");
  const std::string before = GetOk(*store, kOrg2)->SerializeAsString();
  store.reset();
  auto reopened = Open(open);
  CHECK(ListOrgs(*reopened) == std::vector<std::string>{kOrg1, kOrg2});
  CHECK(GetOk(*reopened, kOrg2)->SerializeAsString() == before);
  CHECK(ByKeyOk(*reopened, kKey2)->orgnr() == kOrg1);
}

TEST_CASE("registry store conformance: SQLite", "[registry][store]") {
  TempDir dir;
  storage::StoreConfig config;
  config.backend = storage::Backend::kSqlite;
  config.path = dir / "registry.db";
  RegistryStoreConformance([&] {
    auto s = OpenRegistryStore(config);
    INFO(s.status().ToString());
    REQUIRE(s.ok());
    return std::move(s).value();
  });
}

TEST_CASE("registry store: the SQLite health probe fails while the write lock is held",
          "[registry][store]") {
  TempDir dir;
  storage::StoreConfig config;
  config.backend = storage::Backend::kSqlite;
  config.path = dir / "registry.db";
  auto writer = OpenRegistryStore(config);
  REQUIRE(writer.ok());
  REQUIRE((*writer)->Probe().ok());
  // Another connection holds the write lock (as a stuck writer would): the probe must say so
  // within the busy timeout, not pass.
  auto holder = storage::Db::Open(config.path);
  REQUIRE(holder.ok());
  REQUIRE((*holder)->Exec("BEGIN IMMEDIATE").ok());
  Status probe = (*writer)->Probe();
  CHECK_FALSE(probe.ok());
  CHECK(probe.message().find("takes no writes") != std::string::npos);
  REQUIRE((*holder)->Exec("ROLLBACK").ok());
  CHECK((*writer)->Probe().ok());
}

TEST_CASE("registry store conformance: PostgreSQL", "[registry][store][pg]") {
  PostgresServer pg;
  storage::StoreConfig config;
  config.backend = storage::Backend::kPostgres;
  config.url = pg.ConnString();
  config.password_file = pg.PasswordFile();
  RegistryStoreConformance([&] {
    auto s = OpenRegistryStore(config);
    INFO(s.status().ToString());
    REQUIRE(s.ok());
    return std::move(s).value();
  });

  {
    INFO("the store reconnects by itself after the server restarts");
    auto s = OpenRegistryStore(config);
    REQUIRE(s.ok());
    pg.Kill();
    auto down = (*s)->List();
    REQUIRE_FALSE(down.ok());
    CHECK(down.status().code() == Code::kUnavailable);
    Status probe_down = (*s)->Probe();  // health says so, with the reason
    CHECK_FALSE(probe_down.ok());
    CHECK_FALSE(probe_down.message().empty());
    pg.Start();
    Status probe_up = (*s)->Probe();
    INFO(probe_up.ToString());
    CHECK(probe_up.ok());
    CHECK(ListOrgs(**s) == std::vector<std::string>{kOrg1, kOrg2});
    PutOk(**s, Entry(kOrg3, kKey1, "Third Agency"));
    CHECK(ListOrgs(**s) == std::vector<std::string>{kOrg1, kOrg2, kOrg3});
  }
  {
    INFO("opening without migrating finds the schema; a database without one is refused");
    auto existing = OpenRegistryStore(config, registry::OpenMode::kExisting);
    INFO(existing.status().ToString());
    CHECK(existing.ok());
    pg.AdminExec("CREATE DATABASE empty OWNER bud");
    storage::StoreConfig empty = config;
    empty.url = pg.ConnString("empty");
    auto none = OpenRegistryStore(empty, registry::OpenMode::kExisting);
    REQUIRE_FALSE(none.ok());
    CHECK(none.status().code() == Code::kNotFound);
    CHECK(none.status().message().find("db init") != std::string::npos);
  }
  {
    INFO("a schema from a newer release is refused");
    pg.AdminExec("UPDATE registry_schema SET version = 99", "bud");
    auto newer = OpenRegistryStore(config);
    REQUIRE_FALSE(newer.ok());
    CHECK(newer.status().code() == Code::kUnsupported);
    CHECK(newer.status().message().find("99") != std::string::npos);
  }
}

}  // namespace
}  // namespace bud::test
