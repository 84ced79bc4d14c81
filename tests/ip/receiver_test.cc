// The receiver's one validation pipeline (integration-point/engine/receiver.h), in process: a
// real store and inbox in a temporary directory, envelopes sealed with test keys, delivered
// over a real inproc:// socket pair. Every refusal is checked for what the sender is told and
// what the receiver keeps; the same faulty envelope sent small and streamed gets the same
// answer.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "common/clock.h"
#include "common/crypto/envelope.h"
#include "common/fs.h"
#include "common/uuid.h"
#include "tests/ip/support/parts_rig.h"
#include "tests/support/temp_dir.h"

namespace bud::ip {
namespace {

using rig::CodeOf;
using rig::Rig;

// The local (specific) reason the receiver stored for a refused message.
std::string StoredReason(Rig& r, const std::string& id) {
  auto hist = r.store->incoming.History(id);
  if (!hist.ok() || hist->empty()) return "";
  return hist->back().reason;
}

std::string Status(Rig& r, const std::string& id) {
  auto row = r.store->incoming.Get(id);
  if (!row.ok() || !row->has_value()) return "";
  return (*row)->status;
}

// The envelope with one byte of its encrypted payload flipped (its signed digest no longer
// matches).
std::string FlipPayloadByte(const std::string& envelope) {
  wire::Envelope env;
  REQUIRE(env.ParseFromString(envelope));
  std::string payload = env.payload();
  REQUIRE(!payload.empty());
  payload[payload.size() / 2] ^= 0x01;
  env.set_payload(payload);
  return env.SerializeAsString();
}

crypto::Opened OpenedWithFile(const std::string& id, const std::string& text) {
  crypto::Opened o;
  o.header.set_message_id(id);
  o.header.set_sender("0192:111111111");
  o.header.set_receiver("0192:222222222");
  o.payload.set_message_id(id);
  o.payload.set_title("a title");
  auto* a = o.payload.add_attachments();
  a->set_name("brev.txt");
  a->set_media_type("text/plain");
  a->set_data(text);
  o.signer_fingerprint = std::string(64, '0');
  return o;
}

TEST_CASE(
    "inbox batch: a turn's folders are written in one batch folder, which goes when "
    "they are published or not",
    "[ip][receiver]") {
  test::TempDir dir;
  const std::string inbox = dir / "inbox";
  const std::string tmp = JoinPath(inbox, ".tmp");
  REQUIRE(MakeDirs(inbox).ok());
  InboxBatch batch(inbox);
  const SignerInfo signer{"CN=test", "111111111", std::string(64, '0')};
  const std::string a = NewUuid(), b = NewUuid();
  REQUIRE(batch.Stage(OpenedWithFile(a, "first"), signer, NowMs()).ok());
  REQUIRE(batch.Stage(OpenedWithFile(b, "second"), signer, NowMs()).ok());
  auto batches = ListDir(tmp).value();
  REQUIRE(batches.size() == 1);
  CHECK(batches[0].starts_with("batch-"));
  CHECK(ListDir(JoinPath(tmp, batches[0])).value().size() == 2);
  CHECK(ListDir(inbox).value() == std::vector<std::string>{".tmp"});
  // Where the file system has the flag (ext4), inbox/.tmp asks for its folders to be spread.
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  int flags = 0;
  if (::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
    CHECK((flags & FS_TOPDIR_FL) != 0);
  } else {
    WARN("no inode flags on this file system; the spreading is not checked");
  }
  ::close(fd);

  REQUIRE(batch.Publish().ok());
  CHECK(ReadFile(JoinPath(JoinPath(inbox, a), "brev.txt")).value() == "first");
  CHECK(ReadFile(JoinPath(JoinPath(inbox, b), "brev.txt")).value() == "second");
  CHECK(Exists(JoinPath(JoinPath(inbox, b), "message.json")));
  CHECK(ListDir(tmp).value().empty());

  // A publish that fails leaves nothing staged behind: the broker delivers it again.
  const std::string c = NewUuid();
  REQUIRE(batch.Stage(OpenedWithFile(c, "third"), signer, NowMs()).ok());
  REQUIRE(MakeDirs(JoinPath(JoinPath(inbox, c), "in-the-way")).ok());  // rename cannot replace it
  CHECK_FALSE(batch.Publish().ok());
  CHECK(ListDir(tmp).value().empty());
  // The next batch has a folder of its own.
  const std::string d = NewUuid();
  REQUIRE(batch.Stage(OpenedWithFile(d, "fourth"), signer, NowMs()).ok());
  REQUIRE(batch.Publish().ok());
  CHECK(ReadFile(JoinPath(JoinPath(inbox, d), "brev.txt")).value() == "fourth");
}

TEST_CASE("SpreadSubdirectories is best effort and never follows a link", "[ip][receiver]") {
  test::TempDir dir;
  REQUIRE(WriteFileUnsynced(dir / "file", "x", 0600).ok());
  CHECK_FALSE(SpreadSubdirectories(dir / "file"));
  CHECK_FALSE(SpreadSubdirectories(dir / "missing"));
  REQUIRE(MakeDirs(dir / "real").ok());
  std::filesystem::create_directory_symlink(dir / "real", dir / "link");
  CHECK_FALSE(SpreadSubdirectories(dir / "link"));
}

TEST_CASE("receiver: a good small envelope is written to the inbox and answered MOTTATT",
          "[ip][receiver]") {
  Rig r;
  r.Connect();
  const auto h = r.Header();
  auto answer = r.DeliverSmall(r.Small(h));
  REQUIRE(answer);
  REQUIRE(answer->has_report());
  CHECK(answer->report().message_id() == h.message_id());
  CHECK(answer->report().status() == wire::MOTTATT);
  CHECK(Status(r, h.message_id()) == "INNKOMMENDE_MOTTATT");
  CHECK(Exists(JoinPath(JoinPath(r.config.inbox, h.message_id()), "vedtak.txt")));
  CHECK(Exists(JoinPath(JoinPath(r.config.inbox, h.message_id()), "message.json")));
  CHECK(r.metrics.deliveries.load() == 1);
}

TEST_CASE("receiver: with delivery = api the message is kept in the store, not the inbox",
          "[ip][receiver]") {
  Rig r("api");
  r.Connect();
  const auto h = r.Header();
  auto answer = r.DeliverSmall(r.Small(h));
  REQUIRE(answer);
  CHECK(answer->report().status() == wire::MOTTATT);
  auto row = r.store->incoming.Get(h.message_id());
  REQUIRE(row.ok());
  REQUIRE(row->has_value());
  CHECK((*row)->state == WorkState::kApi);
  CHECK(!(*row)->payload.empty());
  CHECK_FALSE(Exists(JoinPath(r.config.inbox, h.message_id())));
}

TEST_CASE("receiver: a message id that is not a lower-case UUID is refused, nothing written",
          "[ip][receiver]") {
  Rig r;
  r.Connect();
  auto h = r.Header();
  std::string id = h.message_id();
  for (auto& c : id) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  h.set_message_id(id);
  auto answer = r.DeliverSmall(r.Small(h));
  REQUIRE(answer);
  CHECK(answer->report().status() == wire::FEIL);
  CHECK(CodeOf(answer->report().reason()) == "ENVELOPE_REJECTED");
  CHECK(Status(r, id).empty());
  CHECK(Status(r, h.message_id()).empty());
}

TEST_CASE("receiver: an oversized header field is refused with INVALID_ARGUMENT",
          "[ip][receiver]") {
  Rig r;
  r.Connect();
  auto h = r.Header();
  h.set_process(std::string(2000, 'p'));
  auto answer = r.DeliverSmall(r.Small(h));
  REQUIRE(answer);
  CHECK(answer->report().status() == wire::FEIL);
  CHECK(CodeOf(answer->report().reason()) == "INVALID_ARGUMENT");
  CHECK(Status(r, h.message_id()) == "FEIL");
}

TEST_CASE("receiver: a sender the registry does not know is refused", "[ip][receiver]") {
  Rig r;
  r.Connect();
  r.registry.entries.erase(rig::kPeer);
  const auto h = r.Header();
  auto answer = r.DeliverSmall(r.Small(h));
  REQUIRE(answer);
  CHECK(answer->report().status() == wire::FEIL);
  CHECK(CodeOf(answer->report().reason()) == "NOT_FOUND");
  CHECK(r.metrics.refused.load() == 1);
}

TEST_CASE("receiver: an unreachable registry defers the delivery and writes nothing",
          "[ip][receiver]") {
  Rig r;
  r.Connect();
  r.registry.unavailable = true;
  const auto h = r.Header();
  auto answer = r.DeliverSmall(r.Small(h));
  REQUIRE(answer);
  REQUIRE(answer->has_defer());
  CHECK(answer->defer().message_id() == h.message_id());
  CHECK(answer->defer().retry_after_ms() > 0);
  CHECK(Status(r, h.message_id()).empty());
  CHECK(r.metrics.deferred.load() == 1);
}

TEST_CASE("receiver: a sender's certificate from an untrusted CA is refused", "[ip][receiver]") {
  Rig r;
  r.Connect();
  test::TestCa other("Someone Else's CA");
  auto rogue = other.IssueSigning(test::KeyType::kEcP256, rig::kPeer);
  r.registry.entries[rig::kPeer].set_signing_cert_pem(rogue.cert_pem);
  const auto h = r.Header();
  auto answer = r.DeliverSmall(r.Small(h, &rogue));
  REQUIRE(answer);
  CHECK(answer->report().status() == wire::FEIL);
  CHECK(CodeOf(answer->report().reason()).starts_with("CERT_"));
  CHECK_THAT(StoredReason(r, h.message_id()), Catch::Contains("sender's signing certificate"));
}

TEST_CASE(
    "receiver: a signature by someone else is ENVELOPE_REJECTED outside, BAD_SIGNATURE inside",
    "[ip][receiver]") {
  Rig r;
  r.Connect();
  const auto h = r.Header();
  auto answer = r.DeliverSmall(r.Small(h, &r.third.sign));
  REQUIRE(answer);
  CHECK(answer->report().status() == wire::FEIL);
  CHECK(CodeOf(answer->report().reason()) == "ENVELOPE_REJECTED");
  CHECK(CodeOf(StoredReason(r, h.message_id())) == "BAD_SIGNATURE");
}

TEST_CASE("receiver: an envelope for another receiver is refused WRONG_RECEIVER",
          "[ip][receiver]") {
  Rig r;
  r.Connect();
  auto h = r.Header();
  h.set_receiver(std::string("0192:") + rig::kThird);
  auto answer = r.DeliverSmall(r.Small(h));
  REQUIRE(answer);
  CHECK(answer->report().status() == wire::FEIL);
  CHECK(CodeOf(answer->report().reason()) == "WRONG_RECEIVER");
}

TEST_CASE("receiver: a payload that does not match its signed digest is refused",
          "[ip][receiver]") {
  Rig r;
  r.Connect();
  const auto h = r.Header();
  auto answer = r.DeliverSmall(FlipPayloadByte(r.Small(h)));
  REQUIRE(answer);
  CHECK(answer->report().status() == wire::FEIL);
  CHECK(CodeOf(answer->report().reason()) == "ENVELOPE_REJECTED");
  CHECK(CodeOf(StoredReason(r, h.message_id())) == "DIGEST_MISMATCH");
}

TEST_CASE("receiver: an expired envelope is refused INVALID_ARGUMENT", "[ip][receiver]") {
  Rig r;
  r.Connect();
  auto h = r.Header();
  h.set_expires_unix_ms(r.clock.NowMs() - 1000);
  auto answer = r.DeliverSmall(r.Small(h));
  REQUIRE(answer);
  CHECK(answer->report().status() == wire::FEIL);
  CHECK(CodeOf(answer->report().reason()) == "INVALID_ARGUMENT");
  CHECK_THAT(answer->report().reason(), Catch::Contains("expired"));
}

TEST_CASE("receiver: a payload with a hostile attachment name is refused INVALID_ARGUMENT",
          "[ip][receiver]") {
  Rig r;
  r.Connect();
  const auto h = r.Header();
  auto payload = r.PayloadFor(h);
  payload.mutable_attachments(0)->set_name("../../etc/passwd");
  auto env = crypto::Seal(h, payload, {r.peer.sign.key.get(), r.peer.sign.cert.get()},
                          r.me.enc.cert.get());
  REQUIRE(env.ok());
  auto answer = r.DeliverSmall(*env);
  REQUIRE(answer);
  CHECK(answer->report().status() == wire::FEIL);
  CHECK(CodeOf(answer->report().reason()) == "INVALID_ARGUMENT");
  CHECK_FALSE(Exists(JoinPath(r.config.inbox, h.message_id())));
}

TEST_CASE("receiver: an envelope that does not parse is not answered and writes nothing",
          "[ip][receiver]") {
  Rig r;
  r.Connect();
  auto answer = r.DeliverSmall("not an envelope");
  CHECK_FALSE(answer);
  CHECK(r.metrics.deliveries.load() == 1);
  CHECK(r.metrics.refused.load() == 0);
}

TEST_CASE("receiver: a refused message delivered again gets the same answer, recorded once",
          "[ip][receiver]") {
  Rig r;
  r.Connect();
  const auto h = r.Header();
  const std::string bad = r.Small(h, &r.third.sign);
  auto first = r.DeliverSmall(bad);
  auto again = r.DeliverSmall(bad);
  REQUIRE(first);
  REQUIRE(again);
  CHECK(again->report().status() == first->report().status());
  CHECK(again->report().reason() == first->report().reason());
  CHECK(r.metrics.redeliveries.load() == 1);
  auto hist = r.store->incoming.History(h.message_id());
  REQUIRE(hist.ok());
  CHECK(hist->size() == 1);
}

TEST_CASE("receiver: a received message delivered again is answered MOTTATT, written once",
          "[ip][receiver]") {
  Rig r;
  r.Connect();
  const auto h = r.Header();
  const std::string good = r.Small(h);
  REQUIRE(r.DeliverSmall(good)->report().status() == wire::MOTTATT);
  auto again = r.DeliverSmall(good);
  REQUIRE(again);
  CHECK(again->report().status() == wire::MOTTATT);
  CHECK(r.metrics.redeliveries.load() == 1);
}

TEST_CASE("receiver: an inbox folder the archive removed is reported LEVERT", "[ip][receiver]") {
  Rig r;
  r.Connect();
  const auto h = r.Header();
  REQUIRE(r.DeliverSmall(r.Small(h))->report().status() == wire::MOTTATT);
  r.receiver->CheckInbox();
  CHECK_FALSE(r.broker->NextOf(wire::ClientMessage::kReport, 50));  // still in the inbox
  REQUIRE(RemoveAll(JoinPath(r.config.inbox, h.message_id())).ok());
  r.receiver->CheckInbox();
  auto levert = r.broker->NextOf(wire::ClientMessage::kReport);
  REQUIRE(levert);
  CHECK(levert->report().status() == wire::LEVERT);
  CHECK(Status(r, h.message_id()) == "INNKOMMENDE_LEVERT");
}

TEST_CASE("receiver: a good streamed envelope is written to the inbox and answered MOTTATT",
          "[ip][receiver][stream]") {
  Rig r;
  r.Connect();
  const auto h = r.Header();
  auto s = r.Streamed(h, 20'000);
  REQUIRE(s.records.size() > 1);
  auto answer = r.DeliverStream(s);
  REQUIRE(answer);
  REQUIRE(answer->has_report());
  CHECK(answer->report().status() == wire::MOTTATT);
  const std::string file = JoinPath(JoinPath(r.config.inbox, h.message_id()), "stor.bin");
  REQUIRE(Exists(file));
  CHECK(std::filesystem::file_size(file) == 20'000);
  CHECK(r.streams->downloads() == 0);
}

TEST_CASE("receiver: a streamed delivery resumes from its spool after a reset",
          "[ip][receiver][stream]") {
  Rig r;
  r.Connect();
  const auto h = r.Header();
  auto s = r.Streamed(h, 30'000);
  REQUIRE(s.records.size() >= 4);
  wire::BrokerMessage m;
  m.mutable_deliver_stream()->set_head(s.head);
  r.broker->Send(m);
  r.RunTurn();
  REQUIRE(r.broker->NextOf(wire::ClientMessage::kStreamResume));
  for (uint64_t i = 0; i < 2; ++i) {  // two chunks, fsynced and acknowledged
    wire::BrokerMessage c;
    c.mutable_chunk()->set_message_id(h.message_id());
    c.mutable_chunk()->set_index(i);
    c.mutable_chunk()->set_record(s.records[i]);
    r.broker->Send(c);
  }
  r.RunTurn();
  auto ack = r.broker->NextOf(wire::ClientMessage::kChunkAck);
  REQUIRE(ack);
  CHECK(ack->chunk_ack().next_chunk() == 2);
  r.streams->Reset();  // a new session
  CHECK(r.streams->downloads() == 0);
  r.broker->Send(m);
  r.RunTurn();
  auto resume = r.broker->NextOf(wire::ClientMessage::kStreamResume);
  REQUIRE(resume);
  CHECK(resume->stream_resume().next_chunk() == 2);
}

TEST_CASE("receiver: a streamed head refused at admission drops the download and its spool",
          "[ip][receiver][stream]") {
  Rig r;
  r.Connect();
  const auto h = r.Header();
  auto s = r.Streamed(h, 30'000);
  wire::BrokerMessage m;
  m.mutable_deliver_stream()->set_head(s.head);
  r.broker->Send(m);
  r.RunTurn();
  REQUIRE(r.broker->NextOf(wire::ClientMessage::kStreamResume));
  wire::BrokerMessage c;
  c.mutable_chunk()->set_message_id(h.message_id());
  c.mutable_chunk()->set_index(0);
  c.mutable_chunk()->set_record(s.records[0]);
  r.broker->Send(c);
  r.RunTurn();
  const std::string spool = r.dir / ("spool/in-" + h.message_id());
  REQUIRE(Exists(spool));
  REQUIRE(r.streams->downloads() == 1);
  // The same message sealed again (another head), from a sender the registry no longer knows.
  r.registry.entries.erase(rig::kPeer);
  wire::BrokerMessage again;
  again.mutable_deliver_stream()->set_head(r.Streamed(h, 30'000).head);
  r.broker->Send(again);
  r.RunTurn();
  auto answer = r.broker->NextOf(wire::ClientMessage::kReport);
  REQUIRE(answer);
  CHECK(answer->report().status() == wire::FEIL);
  CHECK(CodeOf(answer->report().reason()) == "NOT_FOUND");
  CHECK(r.streams->downloads() == 0);
  CHECK_FALSE(Exists(spool));
}

// Must-show 3 of issue 15: one pipeline, the same answer either way.
TEST_CASE("receiver: the same faulty envelope small and streamed gets the same answer",
          "[ip][receiver][stream]") {
  Rig r;
  r.Connect();
  struct Fault {
    const char* name;
    std::function<void(wire::Header&)> header;
    const test::Leaf* signer;
    bool flip;  // a byte of the encrypted payload (small) or of a record (streamed)
  };
  const std::vector<Fault> faults = {
      {"expired", [&](wire::Header& h) { h.set_expires_unix_ms(r.clock.NowMs() - 1000); }, nullptr,
       false},
      {"wrong receiver",
       [](wire::Header& h) { h.set_receiver(std::string("0192:") + rig::kThird); }, nullptr, false},
      {"bad signature", [](wire::Header&) {}, &r.third.sign, false},
      {"bad digest", [](wire::Header&) {}, nullptr, true},
  };
  for (const Fault& f : faults) {
    INFO(f.name);
    auto hs = r.Header();
    f.header(hs);
    std::string small = r.Small(hs, f.signer);
    if (f.flip) small = FlipPayloadByte(small);
    auto small_answer = r.DeliverSmall(small);

    auto ht = r.Header();
    f.header(ht);
    auto stream = r.Streamed(ht, 10'000, f.signer);
    auto stream_answer = r.DeliverStream(stream, f.flip ? 1 : -1);

    REQUIRE(small_answer);
    REQUIRE(stream_answer);
    REQUIRE(small_answer->has_report());
    REQUIRE(stream_answer->has_report());
    INFO("small: " << small_answer->report().reason());
    INFO("streamed: " << stream_answer->report().reason());
    CHECK(small_answer->report().status() == wire::FEIL);
    CHECK(stream_answer->report().status() == small_answer->report().status());
    CHECK(CodeOf(stream_answer->report().reason()) == CodeOf(small_answer->report().reason()));
    // Both recorded as refused here.
    CHECK(Status(r, hs.message_id()) == "FEIL");
    CHECK(Status(r, ht.message_id()) == "FEIL");
  }
}

}  // namespace
}  // namespace bud::ip
