// Outbox intake (integration-point/engine/outbox_intake.h) in process: folders in a real outbox
// directory become messages in a real store; the folder goes only after the turn's commit.
#include "integration-point/engine/outbox_intake.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <map>

#include "common/fs.h"
#include "common/uuid.h"
#include "tests/ip/support/parts_rig.h"

namespace bud::ip {
namespace {

using rig::Rig;

std::string DropFolder(Rig& r, const std::string& name, const std::string& receiver,
                       const std::string& id = NewUuid()) {
  const std::string folder = JoinPath(r.config.outbox, name);
  REQUIRE(MakeDirs(folder).ok());
  std::ofstream(JoinPath(folder, "vedtak.txt")) << "Innvilget.";
  std::ofstream(JoinPath(folder, "message.json"))
      << R"({"receiver":")" << receiver
      << R"(","process":"urn:test:process","documentType":"urn:test:doc","messageId":")" << id
      << R"(","title":"Vedtak"})";
  return id;
}

struct Intake {
  explicit Intake(Rig& r)
      : intake(r.config, r.config.me(), r.store->outgoing, r.store->refusals, *r.turn, r.registry,
               r.clock, [this] { ++taken; }) {}
  int taken = 0;
  OutboxIntake intake;
};

TEST_CASE("intake: a ready folder becomes a new message; the folder goes after the commit",
          "[ip][intake]") {
  Rig r;
  Intake in(r);
  const std::string id = DropFolder(r, "sak-1", rig::kPeer);
  REQUIRE(r.turn->Begin().ok());
  in.intake.Scan();
  CHECK(in.taken == 1);
  CHECK(Exists(JoinPath(r.config.outbox, "sak-1")));  // not before the commit
  REQUIRE(r.turn->Finish().status.ok());
  CHECK_FALSE(Exists(JoinPath(r.config.outbox, "sak-1")));
  auto row = r.store->outgoing.Get(id);
  REQUIRE(row.ok());
  REQUIRE(row->has_value());
  CHECK((*row)->status == "OPPRETTET");
  CHECK((*row)->state == WorkState::kNew);
  CHECK((*row)->title == "Vedtak");
}

TEST_CASE("intake: a folder without message.json waits", "[ip][intake]") {
  Rig r;
  Intake in(r);
  REQUIRE(MakeDirs(JoinPath(r.config.outbox, "halvferdig")).ok());
  in.intake.Scan();
  CHECK(in.taken == 0);
  CHECK(Exists(JoinPath(r.config.outbox, "halvferdig")));
}

TEST_CASE("intake: a receiver that does not exist moves the folder aside with a reason",
          "[ip][intake]") {
  Rig r;
  Intake in(r);
  r.registry.entries.erase(rig::kThird);
  DropFolder(r, "feil", rig::kThird);
  in.intake.Scan();
  CHECK(in.taken == 0);
  CHECK_FALSE(Exists(JoinPath(r.config.outbox, "feil")));
  auto failed = ListDir(JoinPath(r.config.outbox, ".failed"));
  REQUIRE(failed.ok());
  REQUIRE(failed->size() == 1);
  auto error = ReadFile(
      JoinPath(JoinPath(JoinPath(r.config.outbox, ".failed"), failed->front()), "error.txt"));
  REQUIRE(error.ok());
  CHECK_THAT(*error, Catch::Contains("NOT_FOUND"));
}

TEST_CASE("intake: with the registry down a folder stays and is taken in later", "[ip][intake]") {
  Rig r;
  Intake in(r);
  r.registry.unavailable = true;
  DropFolder(r, "venter", rig::kPeer);
  in.intake.Scan();
  CHECK(in.taken == 0);
  CHECK(Exists(JoinPath(r.config.outbox, "venter")));
  CHECK_FALSE(in.intake.Due());
  r.clock.Advance(r.config.rescan_ms);
  CHECK(in.intake.Due());
  r.registry.unavailable = false;
  in.intake.Scan();
  CHECK(in.taken == 1);
  CHECK_FALSE(Exists(JoinPath(r.config.outbox, "venter")));
}

TEST_CASE("intake: a full outbox is taken in a bounded share per turn, every folder in the end",
          "[ip][intake]") {
  Rig r;
  Intake in(r);
  // Folders that cannot be taken in yet (no message.json) sort first: they must not hold the
  // others back.
  for (int i = 0; i < 3; ++i) {
    REQUIRE(MakeDirs(JoinPath(r.config.outbox, "0-halvferdig-" + std::to_string(i))).ok());
  }
  const int total = 150;
  for (int i = 0; i < total; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "sak-%03d", i);
    DropFolder(r, name, rig::kPeer);
  }
  std::vector<int> per_turn;
  for (int turn = 0; turn < 10 && in.taken < total; ++turn) {
    const int before = in.taken;
    REQUIRE(r.turn->Begin().ok());
    in.intake.Scan();
    REQUIRE(r.turn->Finish().status.ok());
    per_turn.push_back(in.taken - before);
    if (in.taken < total) CHECK(in.intake.dirty());  // the next turn goes on at once
  }
  CHECK(in.taken == total);
  REQUIRE(per_turn.size() >= 3);
  for (int n : per_turn) CHECK(n <= 64);
  CHECK(per_turn[0] == 64);
  for (int i = 0; i < 3; ++i) {
    CHECK(Exists(JoinPath(r.config.outbox, "0-halvferdig-" + std::to_string(i))));
  }
}

TEST_CASE("intake: a message id taken in before is refused, the folder kept aside",
          "[ip][intake]") {
  Rig r;
  Intake in(r);
  const std::string id = DropFolder(r, "first", rig::kPeer);
  in.intake.Scan();
  REQUIRE(in.taken == 1);
  DropFolder(r, "second", rig::kPeer, id);
  in.intake.Scan();
  CHECK(in.taken == 1);
  CHECK_FALSE(Exists(JoinPath(r.config.outbox, "second")));
  auto failed = ListDir(JoinPath(r.config.outbox, ".failed"));
  REQUIRE(failed.ok());
  CHECK(failed->size() == 1);
}

TEST_CASE("intake: a refused folder is recorded with its reason until it is fixed and taken in",
          "[ip][intake][refusals]") {
  Rig r;
  Intake in(r);
  r.registry.entries.erase(rig::kThird);
  DropFolder(r, "brev", rig::kThird);
  r.clock.Advance(1000);
  const int64_t refused_at = r.clock.NowMs();
  in.intake.Scan();
  auto open = r.store->refusals.List(false, 100);
  REQUIRE(open.ok());
  REQUIRE(open->size() == 1);
  const RefusalRow& row = open->front();
  CHECK(row.source == "outbox");
  CHECK(row.name == "brev");
  CHECK(row.moved_to == JoinPath(JoinPath(r.config.outbox, ".failed"), "brev"));
  CHECK(row.reason_class == RefusalClass::kReceiver);
  CHECK_THAT(row.reason, Catch::Contains("NOT_FOUND"));
  CHECK(row.refused_ms == refused_at);
  CHECK(row.resolved_ms == 0);
  auto counts = r.store->refusals.Counts();
  REQUIRE(counts.ok());
  CHECK(counts->open == 1);
  CHECK(counts->by_class["receiver"] == 1);

  // Another folder taken in does not resolve it.
  DropFolder(r, "annet", rig::kPeer);
  in.intake.Scan();
  REQUIRE(in.taken == 1);
  CHECK(r.store->refusals.List(false, 100)->size() == 1);

  // The admin fixes the receiver and moves the folder back (error.txt and all).
  const std::string failed = JoinPath(JoinPath(r.config.outbox, ".failed"), "brev");
  const std::string back = JoinPath(r.config.outbox, "brev");
  REQUIRE(::rename(failed.c_str(), back.c_str()) == 0);
  std::ofstream(JoinPath(back, "message.json"))
      << R"({"receiver":")" << rig::kPeer
      << R"(","process":"urn:test:process","documentType":"urn:test:doc","title":"Brev"})";
  in.intake.Scan();
  REQUIRE(in.taken == 2);
  REQUIRE(r.turn->Finish().status.ok());
  CHECK(r.store->refusals.List(false, 100)->empty());
  auto all = r.store->refusals.List(true, 100);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 1);
  CHECK(all->front().resolved_ms > 0);
  CHECK_FALSE(all->front().resolved_message_id.empty());
  auto resolved_row = r.store->outgoing.Get(all->front().resolved_message_id);
  REQUIRE(resolved_row.ok());
  CHECK(resolved_row->has_value());
  CHECK(r.store->refusals.Counts()->open == 0);
  CHECK(r.store->refusals.Counts()->by_class["receiver"] == 1);  // a counter: it stays
}

TEST_CASE("intake: each refusal is classed by what was wrong", "[ip][intake][refusals]") {
  Rig r;
  Intake in(r);
  // message.json that is not JSON.
  REQUIRE(MakeDirs(JoinPath(r.config.outbox, "ugyldig")).ok());
  std::ofstream(JoinPath(JoinPath(r.config.outbox, "ugyldig"), "message.json")) << "{not json";
  // A message id taken in before.
  const std::string id = DropFolder(r, "first", rig::kPeer);
  in.intake.Scan();
  DropFolder(r, "again", rig::kPeer, id);
  in.intake.Scan();
  auto open = r.store->refusals.List(false, 100);
  REQUIRE(open.ok());
  std::map<std::string, RefusalClass> by_name;
  for (const auto& row : *open) by_name[row.name] = row.reason_class;
  CHECK(by_name.size() == 2);
  CHECK(by_name["ugyldig"] == RefusalClass::kMetadata);
  CHECK(by_name["again"] == RefusalClass::kDuplicate);
}

}  // namespace
}  // namespace bud::ip
