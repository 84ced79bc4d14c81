// The registry's SQLite store: one row per organisation (schema in docs/storage.md).
//
// Owned by one thread. The server reads it per lookup, so admin edits made by `bud-registry add`
// in another process are seen at the next lookup (WAL lets readers and the writer overlap).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/orgnr.h"
#include "common/status.h"
#include "common/storage/sqlite.h"
#include "proto/registry.pb.h"

namespace bud::registry {

class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const std::string& path);

  // Inserts or replaces the entry for entry.orgnr(). kAlreadyExists when another organisation
  // holds the same (non-empty) CURVE public key.
  Status Put(const wire::RegistryEntry& entry);
  // kNotFound when there is no such entry.
  Status Remove(const Orgnr& org);
  Result<std::optional<wire::RegistryEntry>> Get(const Orgnr& org);
  // The entry holding this CURVE key; kAlreadyExists when more than one does (an old store).
  Result<std::optional<wire::RegistryEntry>> GetByCurveKey(const std::string& z85_key);
  Result<std::vector<wire::RegistryEntry>> List();

 private:
  explicit Store(std::unique_ptr<storage::Db> db) : db_(std::move(db)) {}
  std::unique_ptr<storage::Db> db_;
};

}  // namespace bud::registry
