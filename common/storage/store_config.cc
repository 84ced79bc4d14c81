// The [store] table. See store_config.h.
#include "common/storage/store_config.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include "common/storage/pg.h"

namespace bud::storage {

std::string StoreConfig::Describe() const {
  if (sqlite()) return "sqlite " + path;
  return "postgresql " + pg::Describe(url);
}

Result<StoreConfig> LoadStoreConfig(ConfigFile& f, std::string_view legacy_path_key) {
  StoreConfig c;
  BUD_ASSIGN_OR_RETURN(std::string backend,
                       f.Choice("store.backend", "sqlite", {"sqlite", "postgresql"}));
  BUD_ASSIGN_OR_RETURN(std::string legacy, f.Path(legacy_path_key, ""));
  BUD_ASSIGN_OR_RETURN(std::string path, f.Path("store.path", ""));
  BUD_ASSIGN_OR_RETURN(std::string url, f.String("store.url", ""));
  BUD_ASSIGN_OR_RETURN(std::string password_file, f.Path("store.password_file", ""));
  if (backend == "sqlite") {
    if (!url.empty()) return f.Error("store.url", "is for backend = \"postgresql\"; this store is SQLite");
    if (!password_file.empty()) {
      return f.Error("store.password_file", "is for backend = \"postgresql\"; this store is SQLite");
    }
    if (!legacy.empty() && !path.empty()) {
      return f.Error("store.path", fmt::format("names the SQLite file, and so does {}; keep one", legacy_path_key));
    }
    if (legacy.empty() && path.empty()) {
      return f.Error(legacy_path_key, "is missing: name the SQLite file (here, or as store.path), or set "
                                      "store.backend = \"postgresql\" and store.url");
    }
    c.backend = Backend::kSqlite;
    c.path = path.empty() ? legacy : path;
    c.path_key = path.empty() ? std::string(legacy_path_key) : "store.path";
    return c;
  }
  if (!legacy.empty()) {
    return f.Error(legacy_path_key, "names a SQLite file, but store.backend is \"postgresql\"; remove it");
  }
  if (!path.empty()) {
    return f.Error("store.path", "names a SQLite file, but store.backend is \"postgresql\"; remove it");
  }
  if (url.empty()) {
    return f.Error("store.url", "missing: a libpq connection string, e.g. \"host=db1,db2 "
                                "dbname=budstikke user=budstikke target_session_attrs=read-write\"");
  }
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (opts == nullptr) {
    std::string why = err != nullptr ? err : "out of memory";
    if (err != nullptr) PQfreemem(err);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return f.Error("store.url", fmt::format("is not a libpq connection string: {}", why));
  }
  bool has_password = false;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (std::string_view(o->keyword) == "password" && o->val != nullptr && *o->val != '\0') {
      has_password = true;
    }
  }
  PQconninfoFree(opts);
  if (has_password) {
    return f.Error("store.url", "carries a password; put it in the file store.password_file names");
  }
  c.backend = Backend::kPostgres;
  c.url = url;
  c.password_file = password_file;
  return c;
}

}  // namespace bud::storage
