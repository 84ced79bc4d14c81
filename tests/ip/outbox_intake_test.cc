// Outbox intake (integration-point/engine/outbox_intake.h) in process: folders in a real outbox
// directory become messages in a real store; the folder goes only after the turn's commit.
#include "integration-point/engine/outbox_intake.h"

#include <catch2/catch.hpp>
#include <fstream>

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
      : intake(r.config, r.config.me(), r.store->outgoing, *r.turn, r.registry, r.clock,
               [this] { ++taken; }) {}
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

}  // namespace
}  // namespace bud::ip
