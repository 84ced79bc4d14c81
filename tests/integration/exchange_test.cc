// End-to-end tests of a whole exchange: real bud-registry, bud-broker and bud-ip processes on
// 127.0.0.1, real certificates from scripts/dev-ca, real outbox and inbox folders. Each
// TEST_CASE builds its own exchange in a temporary directory (see harness.h).
//
// What is checked is what an archive system and an operator see: inbox folders and their
// message.json, outbox/.failed/ with error.txt, and `bud-ip status --json` on both sides.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/uuid.h"
#include "tests/integration/harness.h"
#include "tests/support/postgres.h"

namespace bud::test {
namespace {

using Strings = std::vector<std::string>;

const Strings kSenderHistory = {"OPPRETTET", "SENDT", "MOTTATT"};
const Strings kReceiverHistory = {"INNKOMMENDE_MOTTATT"};

// Attachments with names an archive system really uses (non-ASCII, spaces) and a binary file
// of a few hundred KB, so the payload spans several chunks.
Files SampleFiles(uint32_t seed) {
  return {
      {"æøå fil.pdf", "%PDF-1.7\n" + SeededBytes(20000, seed) + "\n%%EOF\n"},
      {"notat med mellomrom.txt", "Notat i sak " + std::to_string(seed) + "\nÆØÅ æøå\r\n"},
      {"vedlegg.bin", SeededBytes(300 * 1024 + seed, seed + 1)},
  };
}

std::string Upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// The message `id` went from `from` to `to`: its inbox folder holds exactly `files` (byte for
// byte) and a message.json that names both parties, and both stores show the expected
// statuses. `conversation_id` empty: any UUID, the same on both sides.
void CheckDelivered(Exchange& ex, const std::string& from, const std::string& to,
                    const std::string& id, const std::string& conversation_id,
                    const std::string& title, const Files& files) {
  INFO("message " << id << " from " << from << " to " << to << " (exchange in " << ex.root()
                  << ")");
  const nlohmann::json mj = ex.WaitForInbox(to, id);
  INFO("inbox message.json: " << mj.dump(2));
  CHECK(mj.value("messageId", "") == id);
  CHECK(mj.value("sender", "") == "0192:" + from);
  CHECK(mj.value("receiver", "") == "0192:" + to);
  CHECK(mj.value("process", "") == kProcess);
  CHECK(mj.value("documentType", "") == kDocumentType);
  CHECK(mj.value("title", "") == title);
  const std::string conversation = mj.value("conversationId", "");
  if (conversation_id.empty()) {
    CHECK(IsUuid(conversation));
  } else {
    CHECK(conversation == conversation_id);
  }
  REQUIRE(mj.contains("signer"));
  CHECK(mj["signer"].value("orgnr", "") == from);
  CHECK(mj["signer"].value("verified", false));
  REQUIRE(mj.contains("attachments"));
  Strings listed;
  for (const auto& a : mj["attachments"]) {
    const std::string name = a.value("name", "");
    listed.push_back(name);
    auto it = files.find(name);
    if (it != files.end()) CHECK(a.value("size", size_t{0}) == it->second.size());
  }
  std::sort(listed.begin(), listed.end());

  Strings want;
  for (const auto& [name, bytes] : files) want.push_back(name);
  CHECK(listed == want);  // Files is a std::map: already sorted
  want.push_back("message.json");
  std::sort(want.begin(), want.end());
  const std::string folder = ex.Inbox(to) + "/" + id;
  CHECK(ListDir(folder, /*include_hidden=*/true) == want);
  for (const auto& [name, bytes] : files) {
    INFO("attachment '" << name << "'");
    const std::string got = ReadFileOrEmpty(folder + "/" + name);
    CHECK(got.size() == bytes.size());
    CHECK(got == bytes);  // byte for byte
  }

  const nlohmann::json out = ex.WaitForStatus(from, id, "MOTTATT");
  INFO("sender's status entry: " << out.dump(2));
  CHECK(out.value("direction", "") == "OUTGOING");
  CHECK(out.value("sender", "") == "0192:" + from);
  CHECK(out.value("receiver", "") == "0192:" + to);
  CHECK(out.value("conversationId", "") == conversation);
  CHECK(out.value("status", "") == "MOTTATT");
  CHECK(Exchange::History(out) == kSenderHistory);

  const nlohmann::json in = ex.WaitForStatus(to, id, "INNKOMMENDE_MOTTATT");
  INFO("receiver's status entry: " << in.dump(2));
  CHECK(in.value("direction", "") == "INCOMING");
  CHECK(in.value("sender", "") == "0192:" + from);
  CHECK(in.value("status", "") == "INNKOMMENDE_MOTTATT");
  CHECK(Exchange::History(in) == kReceiverHistory);
}

// ExchangeOptions with the broker's store on `pg`.
ExchangeOptions OnPostgres(const PostgresServer& pg) {
  ExchangeOptions options;
  options.broker_pg_url = pg.ConnString();
  options.broker_pg_password_file = pg.PasswordFile();
  return options;
}

// Two messages, A to B and B to A, each with several attachments, through an exchange made
// with `options`.
void BothWays(ExchangeOptions options) {
  Exchange ex(std::move(options));
  const Files to_b = SampleFiles(1);
  const Files to_a = SampleFiles(2);
  const std::string id_ab = NewUuid();
  const std::string conversation_ab = NewUuid();
  const std::string id_ba = NewUuid();

  nlohmann::json ab = Exchange::Metadata(kAgencyB);
  ab["messageId"] = id_ab;
  ab["conversationId"] = conversation_ab;
  ab["title"] = "Vedtak i sak 2026/42";
  nlohmann::json ba = Exchange::Metadata(kAgencyA);
  ba["messageId"] = id_ba;
  ba["title"] = "Svar på søknad om løyve";

  ex.DropFolder(kAgencyA, "til B", ab.dump(2), to_b);
  ex.DropFolder(kAgencyB, "til-a", ba.dump(2), to_a);

  CheckDelivered(ex, kAgencyA, kAgencyB, id_ab, conversation_ab, "Vedtak i sak 2026/42", to_b);
  CheckDelivered(ex, kAgencyB, kAgencyA, id_ba, "", "Svar på søknad om løyve", to_a);

  // Taken in means gone from the outbox; nothing was refused.
  CHECK(ListDir(ex.Outbox(kAgencyA), /*include_hidden=*/true).empty());
  CHECK(ListDir(ex.Outbox(kAgencyB), /*include_hidden=*/true).empty());
  CHECK(ex.Status(kAgencyA).size() == 2);  // one out, one in
  CHECK(ex.Status(kAgencyB).size() == 2);
}

}  // namespace

TEST_CASE("messages with several attachments travel both ways, byte for byte", "[integration]") {
  BothWays({});
}

TEST_CASE("on PostgreSQL, messages with several attachments travel both ways, byte for byte",
          "[integration][pg]") {
  PostgresServer pg;
  BothWays(OnPostgres(pg));
}

TEST_CASE("messages travel both ways with the registry's store on PostgreSQL",
          "[integration][pg]") {
  PostgresServer pg;
  ExchangeOptions options;
  options.registry_store_url = pg.ConnString();
  options.registry_store_password_file = pg.PasswordFile();
  BothWays(std::move(options));
  // The entries are in PostgreSQL, not in a file beside the registry.
  CHECK(pg.AdminQuery("SELECT count(*)::text FROM registry_entries", pg.Database()) == "2");
}

TEST_CASE("malformed outbox folders go to .failed with a reason, and sending goes on",
          "[integration]") {
  Exchange ex;
  const Files letter = {{"brev.txt", "Hei!\n"}};

  struct Bad {
    std::string folder;
    std::string message_json;
    Strings phrases;  // error.txt must contain at least one
  };
  auto edited = [](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = Exchange::Metadata(kAgencyB);
    edit(j);
    return j.dump(2);
  };
  const std::vector<Bad> bad = {
      {"ugyldig json", "{\"receiver\": \"0192:910075918\", \"process\": ", {"not valid JSON"}},
      {"uten-mottaker", edited([](auto& j) { j.erase("receiver"); }), {"'receiver' is missing"}},
      {"feil-kontrollsiffer",
       edited([](auto& j) { j["receiver"] = "0192:910075919"; }),
       {"check digit"}},
      {"for-kort-orgnr", edited([](auto& j) { j["receiver"] = "12345678"; }), {"9 digits"}},
      {"ukjent-mottaker",
       edited([](auto& j) { j["receiver"] = std::string("0192:") + kUnregistered; }),
       {"not in the address registry"}},
      {"ukjent-prosess",
       edited([](auto& j) { j["process"] = "urn:no:difi:profile:avtalt:avtalt:ver1.0"; }),
       {"does not accept process"}},
  };
  for (const auto& b : bad) ex.DropFolder(kAgencyA, b.folder, b.message_json, letter);

  for (const auto& b : bad) {
    INFO("outbox folder '" << b.folder << "' with message.json: " << b.message_json);
    const std::string error = ex.WaitForFailed(kAgencyA, b.folder);
    INFO("error.txt: " << error);
    CHECK(std::any_of(b.phrases.begin(), b.phrases.end(),
                      [&](const std::string& p) { return error.find(p) != std::string::npos; }));
    // Moved aside, never deleted: the archive system's files are all still there.
    const std::string failed = ex.Outbox(kAgencyA) + "/.failed/" + b.folder;
    CHECK(ReadFileOrEmpty(failed + "/brev.txt") == letter.at("brev.txt"));
    CHECK(ReadFileOrEmpty(failed + "/message.json") == b.message_json);
  }
  CHECK(ListDir(ex.Outbox(kAgencyA)).empty());
  CHECK(ex.Status(kAgencyA).empty());  // nothing malformed was taken into the store

  // The integration point runs on: a good message dropped after them goes through.
  const std::string id = NewUuid();
  nlohmann::json good = Exchange::Metadata(kAgencyB);
  good["messageId"] = id;
  good["title"] = "Etter feilene";
  ex.DropFolder(kAgencyA, "god", good.dump(2), letter);
  CheckDelivered(ex, kAgencyA, kAgencyB, id, "", "Etter feilene", letter);
  CHECK(ex.Status(kAgencyA).size() == 1);
  CHECK(ListDir(ex.Inbox(kAgencyB)) == Strings{id});
}

// The points send Batch frames to the broker (docs/protocol.md, "Batch"): what a turn made ready
// (the sender's submits and acks, the receiver's reports) goes in one frame, each item answered
// as if alone; the exchange is the same: every message once in the inbox, with its statuses.
TEST_CASE("many folders at once: the points send Batch frames, every message arrives once",
          "[integration][batch]") {
  ExchangeOptions o;
  o.http = true;
  Exchange ex(o);
  ex.ip(kAgencyA).Stop();  // the folders wait, so the sender's turns find many ready at once
  constexpr int kMessages = 120;
  Strings ids;
  for (int i = 0; i < kMessages; ++i) {
    const std::string id = NewUuid();
    nlohmann::json meta = Exchange::Metadata(kAgencyB);
    meta["messageId"] = id;
    meta["title"] = "Melding " + std::to_string(i);
    ex.DropFolder(kAgencyA, "m" + std::to_string(i), meta.dump(2),
                  {{"brev.txt", "melding " + std::to_string(i) + "\n"}});
    ids.push_back(id);
  }
  ex.StartIp(kAgencyA);
  for (const auto& id : ids) ex.WaitForInbox(kAgencyB, id);
  for (const auto& id : ids) ex.WaitForStatus(kAgencyA, id, "MOTTATT");

  std::this_thread::sleep_for(Millis(1500));  // a duplicate delivery would show up by now
  ex.CheckAlive();
  Strings want = ids;
  std::sort(want.begin(), want.end());
  CHECK(ListDir(ex.Inbox(kAgencyB)) == want);
  const nlohmann::json at_b = ex.Status(kAgencyB);
  CHECK(at_b.size() == kMessages);
  const nlohmann::json at_a = ex.Status(kAgencyA);
  for (const auto& id : ids) {
    INFO("message " << id);
    REQUIRE(Exchange::Find(at_a, id).size() == 1);
    CHECK(Exchange::History(Exchange::Find(at_a, id).front()) == kSenderHistory);
    REQUIRE(Exchange::Find(at_b, id).size() == 1);
  }

  // The sender's submits (and acks of the MOTTATT notices) went in Batch frames of several
  // items; so did the receiver's reports, as far as its turns took several deliveries.
  const int64_t a_frames = ex.IpMetric(kAgencyA, "bud_ip_broker_batch_frames_total");
  const int64_t a_items = ex.IpMetric(kAgencyA, "bud_ip_broker_batch_items_total");
  const int64_t b_frames = ex.IpMetric(kAgencyB, "bud_ip_broker_batch_frames_total");
  const int64_t b_items = ex.IpMetric(kAgencyB, "bud_ip_broker_batch_items_total");
  INFO("sender: " << a_items << " items in " << a_frames << " Batch frames; receiver: " << b_items
                  << " in " << b_frames);
  CHECK(a_frames >= 1);
  CHECK(a_items >= 2 * a_frames);
  CHECK(a_items >= kMessages / 2);  // most of the submits went batched
  CHECK(b_frames >= 0);             // published (-1: not on /metrics)
  CHECK(b_items >= 0);
}

TEST_CASE("a message id dropped again is not sent again", "[integration]") {
  Exchange ex;
  const std::string id = NewUuid();
  nlohmann::json meta = Exchange::Metadata(kAgencyB);
  meta["messageId"] = id;
  meta["title"] = "Første innsending";
  const Files first = {{"brev.txt", "første versjon\n"}};
  ex.DropFolder(kAgencyA, "forste", meta.dump(2), first);
  CheckDelivered(ex, kAgencyA, kAgencyB, id, "", "Første innsending", first);

  // The same id again, once as it was and once in upper case (ids are case-insensitive), each
  // with other content.
  meta["title"] = "Andre innsending";
  ex.DropFolder(kAgencyA, "andre", meta.dump(2), {{"brev.txt", "andre versjon\n"}});
  meta["messageId"] = Upper(id);
  ex.DropFolder(kAgencyA, "tredje", meta.dump(2), {{"brev.txt", "tredje versjon\n"}});

  // Both are refused into .failed (kept: they may differ from what was sent) ...
  WaitUntil(
      "the resubmitted folders to leave the outbox of " + std::string(kAgencyA), kDefaultWait,
      [&] {
        ex.CheckAlive();
        return ListDir(ex.Outbox(kAgencyA)).empty();
      },
      [&] { return ex.Diagnostics(); });
  // ... and give them time to travel, were they sent.
  std::this_thread::sleep_for(Millis(2500));
  ex.CheckAlive();

  INFO("exchange in " << ex.root());
  CHECK(ListDir(ex.Outbox(kAgencyA) + "/.failed") == Strings{"andre", "tredje"});
  for (const char* name : {"andre", "tredje"}) {
    CHECK_THAT(ReadFileOrEmpty(ex.Outbox(kAgencyA) + "/.failed/" + name + "/error.txt"),
               Catch::Matchers::Contains("already taken in"));
  }
  CHECK(ListDir(ex.Inbox(kAgencyB)) == Strings{id});
  CHECK(ReadFileOrEmpty(ex.Inbox(kAgencyB) + "/" + id + "/brev.txt") == "første versjon\n");
  const nlohmann::json mj =
      nlohmann::json::parse(ReadFile(ex.Inbox(kAgencyB) + "/" + id + "/message.json"));
  CHECK(mj.value("title", "") == "Første innsending");

  const nlohmann::json at_b = ex.Status(kAgencyB);
  INFO("receiver's status: " << at_b.dump(2));
  CHECK(at_b.size() == 1);
  REQUIRE(Exchange::Find(at_b, id).size() == 1);
  CHECK(Exchange::History(Exchange::Find(at_b, id).front()) == kReceiverHistory);

  const nlohmann::json at_a = ex.Status(kAgencyA);
  INFO("sender's status: " << at_a.dump(2));
  CHECK(at_a.size() == 1);
  REQUIRE(Exchange::Find(at_a, id).size() == 1);
  CHECK(Exchange::History(Exchange::Find(at_a, id).front()) == kSenderHistory);
}

namespace {
void BrokerKilledReceiverDown(const ExchangeOptions& options) {
  Exchange ex(options);
  ex.ip(kAgencyB).Stop();

  const std::string id = NewUuid();
  nlohmann::json meta = Exchange::Metadata(kAgencyB);
  meta["messageId"] = id;
  meta["title"] = "Før krasjet";
  const Files files = SampleFiles(3);
  ex.DropFolder(kAgencyA, "for-krasj", meta.dump(2), files);
  ex.WaitForStatus(kAgencyA, id, "SENDT");  // committed by the broker

  ex.broker().Kill();  // SIGKILL: no chance to flush or say goodbye

  // A second message taken in while there is no broker waits in the sender's store.
  const std::string id2 = NewUuid();
  meta["messageId"] = id2;
  meta["title"] = "Mens megleren er nede";
  const Files files2 = {{"notat med mellomrom.txt", "sendt mens megleren var nede\n"}};
  ex.DropFolder(kAgencyA, "under-krasj", meta.dump(2), files2);
  ex.WaitForStatus(kAgencyA, id2, "OPPRETTET");

  ex.StartBroker();  // same config, same store, same port
  ex.StartIp(kAgencyB);

  CheckDelivered(ex, kAgencyA, kAgencyB, id, "", "Før krasjet", files);
  CheckDelivered(ex, kAgencyA, kAgencyB, id2, "", "Mens megleren er nede", files2);

  // Exactly once: give a duplicate delivery time to show up, then count.
  std::this_thread::sleep_for(Millis(2000));
  ex.CheckAlive();
  Strings want = {id, id2};
  std::sort(want.begin(), want.end());
  CHECK(ListDir(ex.Inbox(kAgencyB)) == want);
  const nlohmann::json at_b = ex.Status(kAgencyB);
  INFO("receiver's status: " << at_b.dump(2));
  CHECK(at_b.size() == 2);
  CHECK(Exchange::Find(at_b, id).size() == 1);
  CHECK(Exchange::Find(at_b, id2).size() == 1);
  const nlohmann::json at_a = ex.Status(kAgencyA);
  INFO("sender's status: " << at_a.dump(2));
  REQUIRE(Exchange::Find(at_a, id).size() == 1);
  CHECK(Exchange::History(Exchange::Find(at_a, id).front()) == kSenderHistory);
}
}  // namespace

TEST_CASE("a broker killed while the receiver is down loses nothing and delivers once",
          "[integration]") {
  BrokerKilledReceiverDown(ExchangeOptions{});
}

TEST_CASE("on PostgreSQL, a broker killed while the receiver is down loses nothing and delivers "
          "once",
          "[integration][pg]") {
  PostgresServer pg;
  BrokerKilledReceiverDown(OnPostgres(pg));
}

// Regression: `bud-ip status` run while `bud-ip run` opened a new store for the first time
// failed with "migration 1: ... table messages already exists": both processes read
// user_version 0 and both applied migration 1 (Db::Migrate read the version outside the
// migration's transaction; it now reads it again under the write lock).
// Several `bud-ip status` at once on a store nobody has opened yet show it without timing luck.
TEST_CASE("bud-ip processes opening a new store at the same time all succeed",
          "[integration]") {
  ExchangeOptions options;
  options.start_ips = false;  // configured and registered, not running
  Exchange ex(options);
  const std::string dir = ex.AgencyDir(kAgencyA);
  const std::string config = ReadFile(ex.IpConfig(kAgencyA));
  const std::string store_line = "store = \"ip.db\"";
  REQUIRE(config.find(store_line) != std::string::npos);

  constexpr int kRounds = 5;
  constexpr int kConcurrent = 6;
  int failures = 0;
  std::string first_failure;
  for (int round = 0; round < kRounds; ++round) {
    // A's config with a store nobody has opened yet.
    std::string text = config;
    text.replace(text.find(store_line), store_line.size(),
                 "store = \"race-" + std::to_string(round) + ".db\"");
    const std::string path = dir + "/race-" + std::to_string(round) + ".toml";
    WriteFile(path, text);
    std::vector<std::unique_ptr<Process>> runs;
    for (int i = 0; i < kConcurrent; ++i) {
      const std::string name = "race-" + std::to_string(round) + "-" + std::to_string(i);
      runs.push_back(std::make_unique<Process>(
          "bud-ip status " + name, Strings{BUD_IP_BIN, "status", "--config", path, "--json"}, dir,
          dir + "/" + name + ".log"));
    }
    for (auto& p : runs) p->Start();
    for (auto& p : runs) {
      WaitUntil(
          p->name() + " to finish", kDefaultWait, [&] { return !p->Running(); },
          [&] { return p->LogTail(); });
      if (p->ExitCode() != 0) {
        ++failures;
        if (first_failure.empty()) first_failure = p->name() + ":\n" + p->LogSinceStart();
      }
    }
  }
  INFO(failures << " of " << kRounds * kConcurrent << " runs failed; the first:\n"
                << first_failure);
  CHECK(failures == 0);
}

}  // namespace bud::test
