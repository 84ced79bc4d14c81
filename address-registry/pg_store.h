// The registry's store in PostgreSQL: table registry_entries, schema version in registry_schema
// (docs/storage.md). See store.h.
//
// Operation: one connection (storage::pg::Connection), owned by the thread that owns the store.
// Before each call the store reconnects when the last one lost the connection or found the
// server read-only, so after a failover libpq's multi-host connection string leads it to the new
// primary. Reads that fail that way are tried once more on a fresh connection; writes are not
// (Put is idempotent, and the caller decides). A Put whose COMMIT has an unknown outcome returns
// kUnavailable saying so: the entry may or may not be there, and putting it again is safe.
// The CURVE key's uniqueness is a partial unique index, so two registries adding at once cannot
// both take one key.
#pragma once

#include <memory>
#include <string>

#include "address-registry/store.h"
#include "common/storage/pg.h"

namespace bud::registry {

class PgRegistryStore final : public RegistryStore {
 public:
  // Connects and creates or migrates the schema (under an advisory lock); with `migrate` false
  // only checks that the schema is this build's (kNotFound when there is none).
  static Result<std::unique_ptr<PgRegistryStore>> Open(const storage::pg::ConnectOptions& options,
                                                       bool migrate = true);
  static Result<MigrateResult> Migrate(const storage::pg::ConnectOptions& options);
  // Connects (read-only is fine) and reports; creates nothing.
  static Result<StoreHealth> Check(const storage::pg::ConnectOptions& options);

  Status Put(const wire::RegistryEntry& entry) override;
  Status Remove(const Orgnr& org) override;
  Result<std::optional<wire::RegistryEntry>> Get(const Orgnr& org) override;
  Result<std::optional<wire::RegistryEntry>> GetByCurveKey(const std::string& z85_key) override;
  Result<std::vector<wire::RegistryEntry>> List() override;
  Status Probe() override;
  std::string Describe() const override;

 private:
  explicit PgRegistryStore(std::unique_ptr<storage::pg::Connection> conn) : conn_(std::move(conn)) {}
  // Reconnects when the connection needs it.
  Status Ready();
  // A read: once more on a fresh connection when the first try lost the connection.
  Result<storage::pg::Rows> Read(const std::string& sql, const storage::pg::Params& params);
  std::unique_ptr<storage::pg::Connection> conn_;
};

}  // namespace bud::registry
