// See turn.h.
#include "integration-point/engine/turn.h"

namespace bud::ip {

Status Turn::Begin() { return store_.BeginTurn(); }

void Turn::AfterCommit(std::function<void()> action) {
  if (open()) {
    after_commit_.push_back(std::move(action));
  } else {
    action();
  }
}

void Turn::OnRollback(std::function<void(const Status&)> action) {
  if (open()) on_rollback_.push_back(std::move(action));
}

Turn::Outcome Turn::Finish() {
  // The turn records its deliveries as received: their inbox folders first.
  Status st = inbox_.Publish();
  if (st.ok()) {
    st = store_.CommitTurn();
  } else {
    st = st.Context("the turn's inbox folders");
    store_.RollbackTurn();
  }
  auto actions = std::move(after_commit_);
  after_commit_.clear();
  auto rollbacks = std::move(on_rollback_);
  on_rollback_.clear();
  Outcome out{st, 0};
  if (!st.ok()) {
    out.held_back = actions.size();
    for (auto& r : rollbacks) r(st);
    return out;
  }
  for (auto& a : actions) a();
  return out;
}

}  // namespace bud::ip
