// The registry's store in SQLite: one file, table `entries` (docs/storage.md). See store.h.
#pragma once

#include <memory>
#include <string>

#include "address-registry/store.h"
#include "common/storage/sqlite.h"

namespace bud::registry {

class SqliteRegistryStore final : public RegistryStore {
 public:
  // Opens (creating the file mode 0600 when missing), checks and migrates the store at `path`.
  static Result<std::unique_ptr<SqliteRegistryStore>> Open(const std::string& path);
  // db init / db migrate and db check (read-only, creates nothing).
  static Result<MigrateResult> Migrate(const std::string& path);
  static Result<StoreHealth> Check(const std::string& path);

  Status Put(const wire::RegistryEntry& entry) override;
  Status Remove(const Orgnr& org) override;
  Result<std::optional<wire::RegistryEntry>> Get(const Orgnr& org) override;
  Result<std::optional<wire::RegistryEntry>> GetByCurveKey(const std::string& z85_key) override;
  Result<std::vector<wire::RegistryEntry>> List() override;
  Status Probe() override;
  std::string Describe() const override { return "sqlite " + db_->path(); }

 private:
  explicit SqliteRegistryStore(std::unique_ptr<storage::Db> db) : db_(std::move(db)) {}
  std::unique_ptr<storage::Db> db_;
};

}  // namespace bud::registry
