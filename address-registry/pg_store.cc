// The registry's store in PostgreSQL. See pg_store.h, store.h and docs/storage.md.
#include "address-registry/pg_store.h"

#include <fmt/format.h>

namespace bud::registry {
namespace {

using storage::pg::CommitOutcome;
using storage::pg::Connection;
using storage::pg::Params;
using storage::pg::Rows;
using storage::pg::Transaction;

// migrations[i] brings the schema from version i to i + 1.
const std::vector<std::string> kMigrations = {
    R"(CREATE TABLE registry_entries (
         orgnr text PRIMARY KEY,
         entry bytea NOT NULL,          -- serialised wire::RegistryEntry
         curve_key text,                -- its CURVE public key (Z85); NULL when none
         updated_ms bigint NOT NULL
       );
       CREATE UNIQUE INDEX registry_entries_curve_key ON registry_entries (curve_key)
         WHERE curve_key IS NOT NULL;)",
};
static_assert(kRegistrySchemaVersion == 1, "add the PostgreSQL migration for the new version");

// A lock id for the registry's schema changes (pg_advisory_xact_lock): "bud-reg".
constexpr int64_t kSchemaLock = 0x6275642d726567;

Result<int> SchemaVersion(Connection& c) {
  BUD_ASSIGN_OR_RETURN(Rows t, c.Exec("SELECT to_regclass('registry_schema') IS NOT NULL"));
  if (t.Int(0, 0) == 0) return 0;
  BUD_ASSIGN_OR_RETURN(Rows v, c.Exec("SELECT coalesce(max(version), 0)::bigint FROM registry_schema"));
  return static_cast<int>(v.Int(0, 0));
}

Status CommitStatus(Transaction& tx, std::string_view what) {
  auto r = tx.Commit();
  if (r.outcome == CommitOutcome::kDurable) return Status::Ok();
  if (r.outcome == CommitOutcome::kUnknown) {
    return Status(Code::kUnavailable,
                  fmt::format("{}: the outcome is unknown (the connection was lost during COMMIT); "
                              "check, or do it again: {}",
                              what, r.status.message()));
  }
  return r.status.Context(what);
}

Result<MigrateResult> MigrateOn(Connection& c) {
  Transaction tx(c);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_RETURN_IF_ERROR(c.Exec("SELECT pg_advisory_xact_lock($1)", Params::Of(kSchemaLock)).status());
  BUD_RETURN_IF_ERROR(c.Exec("CREATE TABLE IF NOT EXISTS registry_schema (version integer NOT NULL)").status());
  MigrateResult r;
  BUD_ASSIGN_OR_RETURN(r.from, SchemaVersion(c));
  if (r.from > kRegistrySchemaVersion) {
    return Status(Code::kUnsupported,
                  fmt::format("postgresql {}: the registry schema is version {}; this bud-registry "
                              "reads version {} (a newer release wrote it)",
                              c.description(), r.from, kRegistrySchemaVersion));
  }
  for (int v = r.from; v < kRegistrySchemaVersion; ++v) {
    Status s = c.ExecScript(kMigrations[static_cast<size_t>(v)]);
    if (!s.ok()) return s.Context(fmt::format("migrating the registry schema to version {}", v + 1));
  }
  BUD_RETURN_IF_ERROR(c.Exec("DELETE FROM registry_schema").status());
  BUD_RETURN_IF_ERROR(
      c.Exec("INSERT INTO registry_schema (version) VALUES ($1)", Params::Of(kRegistrySchemaVersion)).status());
  BUD_RETURN_IF_ERROR(CommitStatus(tx, "migrating the registry schema"));
  r.to = kRegistrySchemaVersion;
  return r;
}

Result<wire::RegistryEntry> ParseEntry(std::string_view bytes, std::string_view orgnr) {
  wire::RegistryEntry e;
  if (!e.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Status(Code::kCorrupt, fmt::format("registry entry for {} cannot be parsed", orgnr));
  }
  return e;
}

}  // namespace

Result<std::unique_ptr<PgRegistryStore>> PgRegistryStore::Open(const storage::pg::ConnectOptions& options,
                                                               bool migrate) {
  BUD_ASSIGN_OR_RETURN(auto conn, Connection::Open(options));
  if (migrate) {
    BUD_RETURN_IF_ERROR(MigrateOn(*conn).status());
  } else {
    BUD_ASSIGN_OR_RETURN(int version, SchemaVersion(*conn));
    if (version == 0) {
      return Status(Code::kNotFound, fmt::format("postgresql {}: no registry schema yet "
                                                 "(`bud-registry db init` creates it)",
                                                 conn->description()));
    }
    if (version != kRegistrySchemaVersion) {
      return Status(Code::kUnsupported,
                    fmt::format("postgresql {}: the registry schema is version {}; this "
                                "bud-registry reads version {} (`bud-registry db migrate`)",
                                conn->description(), version, kRegistrySchemaVersion));
    }
  }
  return std::unique_ptr<PgRegistryStore>(new PgRegistryStore(std::move(conn)));
}

Result<MigrateResult> PgRegistryStore::Migrate(const storage::pg::ConnectOptions& options) {
  BUD_ASSIGN_OR_RETURN(auto conn, Connection::Open(options));
  return MigrateOn(*conn);
}

Result<StoreHealth> PgRegistryStore::Check(const storage::pg::ConnectOptions& options) {
  storage::pg::ConnectOptions o = options;
  o.read_write = false;  // a standby is reported as not writable, not refused
  BUD_ASSIGN_OR_RETURN(auto conn, Connection::Open(o));
  StoreHealth h;
  h.engine = "postgresql";
  h.where = fmt::format("{} ({})", conn->server(), conn->description());
  BUD_ASSIGN_OR_RETURN(Rows v, conn->Exec("SELECT version()"));
  h.server = v.Text(0, 0);
  BUD_ASSIGN_OR_RETURN(h.schema_version, SchemaVersion(*conn));
  if (h.schema_version >= 1) {
    BUD_ASSIGN_OR_RETURN(Rows n, conn->Exec("SELECT count(*)::bigint FROM registry_entries"));
    h.entries = n.Int(0, 0);
  }
  BUD_ASSIGN_OR_RETURN(Rows ro, conn->Exec("SELECT pg_is_in_recovery() OR "
                                           "current_setting('transaction_read_only') = 'on'"));
  h.writable = ro.Int(0, 0) == 0;
  if (h.writable && h.schema_version >= 1) {
    // The role may write the table (a lock for update needs the UPDATE privilege).
    Transaction tx(*conn);
    BUD_RETURN_IF_ERROR(tx.began());
    auto lock = conn->Exec("LOCK TABLE registry_entries IN ROW EXCLUSIVE MODE NOWAIT");
    if (!lock.ok() && conn->last_sqlstate() != "55P03") h.writable = false;
  }  // rolled back
  return h;
}

std::string PgRegistryStore::Describe() const { return "postgresql " + conn_->description(); }

Status PgRegistryStore::Ready() {
  if (!conn_->NeedsReconnect()) return Status::Ok();
  return conn_->Reconnect();
}

Result<Rows> PgRegistryStore::Read(const std::string& sql, const Params& params) {
  BUD_RETURN_IF_ERROR(Ready());
  auto r = conn_->Exec(sql, params);
  if (r.ok() || !conn_->NeedsReconnect()) return r;
  BUD_RETURN_IF_ERROR(conn_->Reconnect());
  return conn_->Exec(sql, params);
}

Status PgRegistryStore::Put(const wire::RegistryEntry& entry) {
  BUD_RETURN_IF_ERROR(Ready());
  Params p;
  p.Add(entry.orgnr()).AddBytea(entry.SerializeAsString());
  if (entry.curve_public_key().empty()) {
    p.AddNull();
  } else {
    p.Add(entry.curve_public_key());
  }
  p.Add(static_cast<int64_t>(entry.updated_unix_ms()));
  {
    Transaction tx(*conn_);
    BUD_RETURN_IF_ERROR(tx.began());
    auto put = conn_->Exec(
        "INSERT INTO registry_entries (orgnr, entry, curve_key, updated_ms) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (orgnr) DO UPDATE SET entry = excluded.entry, curve_key = excluded.curve_key, "
        "updated_ms = excluded.updated_ms",
        p);
    if (put.ok()) return CommitStatus(tx, fmt::format("registering {}", entry.orgnr()));
    if (put.status().code() != Code::kAlreadyExists) return put.status();
  }  // rolled back
  // The only other unique index: the CURVE key belongs to another organisation.
  std::string holder = "another organisation";
  auto who = conn_->Exec("SELECT orgnr FROM registry_entries WHERE curve_key = $1",
                         Params::Of(entry.curve_public_key()));
  if (who.ok() && !who->empty()) holder = who->Text(0, 0);
  return Status(Code::kAlreadyExists,
                fmt::format("CURVE key {} is already registered to organisation {}; each "
                            "organisation needs its own key pair (make one with keygen)",
                            entry.curve_public_key(), holder));
}

Status PgRegistryStore::Remove(const Orgnr& org) {
  BUD_RETURN_IF_ERROR(Ready());
  BUD_ASSIGN_OR_RETURN(Rows r, conn_->Exec("DELETE FROM registry_entries WHERE orgnr = $1",
                                           Params::Of(org.digits())));
  if (r.Affected() == 0) {
    return Status(Code::kNotFound, fmt::format("organisation {} is not registered", org.digits()));
  }
  return Status::Ok();
}

Result<std::optional<wire::RegistryEntry>> PgRegistryStore::Get(const Orgnr& org) {
  BUD_ASSIGN_OR_RETURN(Rows r, Read("SELECT entry FROM registry_entries WHERE orgnr = $1",
                                    Params::Of(org.digits())));
  if (r.empty()) return std::optional<wire::RegistryEntry>();
  BUD_ASSIGN_OR_RETURN(auto e, ParseEntry(r.Bytes(0, 0), org.digits()));
  return std::optional<wire::RegistryEntry>(std::move(e));
}

Result<std::optional<wire::RegistryEntry>> PgRegistryStore::GetByCurveKey(const std::string& z85_key) {
  if (z85_key.empty()) return std::optional<wire::RegistryEntry>();
  BUD_ASSIGN_OR_RETURN(Rows r, Read("SELECT orgnr, entry FROM registry_entries WHERE curve_key = $1",
                                    Params::Of(z85_key)));
  if (r.empty()) return std::optional<wire::RegistryEntry>();
  BUD_ASSIGN_OR_RETURN(auto e, ParseEntry(r.Bytes(0, 1), r.Bytes(0, 0)));
  return std::optional<wire::RegistryEntry>(std::move(e));
}

Status PgRegistryStore::Probe() {
  BUD_ASSIGN_OR_RETURN(Rows ro, Read("SELECT (pg_is_in_recovery() OR "
                                     "current_setting('transaction_read_only') = 'on')::int",
                                     {}));
  if (ro.Int(0, 0) != 0) {
    return Status(Code::kUnavailable, fmt::format("postgresql {}: a standby or read-only server "
                                                  "(no primary reached)",
                                                  conn_->description()));
  }
  Transaction tx(*conn_);
  BUD_RETURN_IF_ERROR(tx.began());
  auto lock = conn_->Exec("LOCK TABLE registry_entries IN ROW EXCLUSIVE MODE NOWAIT");
  if (!lock.ok() && conn_->last_sqlstate() != "55P03") {  // 55P03: only busy, still writable
    return lock.status().Context("the registry table cannot be written");
  }
  return Status::Ok();  // tx rolls back: nothing changed
}

Result<std::vector<wire::RegistryEntry>> PgRegistryStore::List() {
  BUD_ASSIGN_OR_RETURN(Rows r, Read("SELECT orgnr, entry FROM registry_entries ORDER BY orgnr COLLATE \"C\"", {}));
  std::vector<wire::RegistryEntry> out;
  out.reserve(static_cast<size_t>(r.size()));
  for (int i = 0; i < r.size(); ++i) {
    BUD_ASSIGN_OR_RETURN(auto e, ParseEntry(r.Bytes(i, 1), r.Bytes(i, 0)));
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace bud::registry
