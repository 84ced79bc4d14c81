// Opens the store and its role views. See point_store.h.
#include "integration-point/store/point_store.h"

namespace bud::ip {

Result<std::unique_ptr<PointStore>> PointStore::Open(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(auto db, PointDb::Open(path));
  return std::make_unique<PointStore>(std::move(db));
}

Result<std::unique_ptr<PointStore>> PointStore::OpenReadOnly(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(auto db, PointDb::OpenReadOnly(path));
  return std::make_unique<PointStore>(std::move(db));
}

}  // namespace bud::ip
