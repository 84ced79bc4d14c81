// What the store's tests share: a real PointStore on a SQLite file in a temporary directory,
// and message rows to put in it.
#pragma once

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/uuid.h"
#include "integration-point/message_state.h"
#include "integration-point/store/point_store.h"
#include "tests/support/temp_dir.h"

namespace bud::ip::store_test {

struct Fixture {
  test::TempDir dir;
  std::string path = dir / "ip.db";
  std::unique_ptr<PointStore> store = PointStore::Open(path).value();
};

inline MessageRow Row(const std::string& sender = "0192:111111111",
                      const std::string& receiver = "0192:222222222") {
  MessageRow m;
  m.message_id = NewUuid();
  m.conversation_id = NewUuid();
  m.sender = sender;
  m.receiver = receiver;
  m.process = "urn:test:process";
  m.document_type = "urn:test:doc";
  m.title = "a title";
  m.created_ms = NowMs();
  m.expires_ms = m.created_ms + 3600 * 1000;
  m.payload = "payload bytes";
  return m;
}

}  // namespace bud::ip::store_test
