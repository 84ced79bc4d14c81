// What a peer can make the broker hold through streamed uploads, and the store's retention and
// queue caps, on real SQLite files and spool folders in temp dirs (broker/streams.h,
// broker/queue_store.h, docs/operating.md "Limits").
//
// Heads are made here field by field and never signed (the broker does not verify them): a
// version 2 Header with a consistent layout, an Envelope with a dummy signature and no payload.
#include "broker/streams.h"

#include <dirent.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "broker/pg_queue_store.h"
#include "broker/sqlite_queue_store.h"
#include "common/clock.h"
#include "common/crypto/openssl.h"
#include "common/crypto/stream.h"
#include "common/fs.h"
#include "common/uuid.h"
#include "proto/envelope.pb.h"
#include "tests/support/postgres.h"
#include "tests/support/sqlite_peek.h"
#include "tests/support/temp_dir.h"

namespace bud::broker {
namespace {

constexpr const char* kA = "0192:910076787";
constexpr const char* kB = "0192:910075918";
constexpr const char* kC = "0192:991825827";
constexpr uint32_t kChunk = crypto::kMinChunkSize;

// An unsigned head for `chunks` full chunks whose records are `records` (their digest is the
// head's), or any records when `records` is empty.
std::string Head(const std::string& id, const std::string& sender, uint64_t chunks,
                 const std::vector<std::string>& records = {},
                 int64_t expires_ms = NowMs() + 3600 * 1000, uint64_t last_chunk = kChunk) {
  wire::Header h;
  h.set_version(crypto::kStreamEnvelopeVersion);
  h.set_message_id(id);
  h.set_conversation_id(NewUuid());
  h.set_sender(sender);
  h.set_receiver(kB);
  h.set_process("urn:no:difi:profile:arkivmelding:administrasjon:ver1.0");
  h.set_document_type("urn:no:difi:arkivmelding:xsd::arkivmelding");
  h.set_created_unix_ms(NowMs());
  h.set_expires_unix_ms(expires_ms);
  h.set_plaintext_size((chunks - 1) * kChunk + last_chunk);
  h.set_chunk_size(kChunk);
  h.set_chunk_count(chunks);
  h.set_payload_size((chunks - 1) * kChunk + last_chunk + chunks * crypto::kChunkTagBytes);
  std::string all;
  for (const auto& r : records) all += r;
  h.set_payload_sha256(crypto::Sha256(all));
  h.set_recipient_cert_sha256(std::string(32, 'r'));
  h.set_content_key_cms("not a CMS structure");
  wire::Envelope env;
  env.set_header(h.SerializeAsString());
  env.set_signature("not a signature");
  return env.SerializeAsString();
}

std::string Record(uint64_t index) {
  return std::string(kChunk + crypto::kChunkTagBytes, static_cast<char>('a' + index % 26));
}

size_t OpenFds() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

size_t Files(const std::string& dir) {
  auto names = ListDir(dir);
  return names.ok() ? names->size() : 0;
}

// Reads the store's file through a connection of its own (committed rows only).
int64_t Count(const std::string& path, const char* sql) { return test::PeekInt(path, sql); }

struct Fixture {
  test::TempDir dir;
  std::unique_ptr<SqliteQueueStore> store;
  std::unique_ptr<Streams> streams;
  std::string spool;

  explicit Fixture(StreamLimits limits = Defaults()) {
    auto opened = SqliteQueueStore::Open(dir / "broker.db");
    REQUIRE(opened.ok());
    store = std::move(*opened);
    spool = dir / "spool";
    streams = std::make_unique<Streams>(*store, spool, limits);
    REQUIRE(streams->Init().ok());
  }
  static StreamLimits Defaults() {
    StreamLimits l;
    l.store_max_bytes = 1ll << 30;
    l.max_uploads = 5;
    l.max_uploads_per_org = 3;
    l.upload_idle_ms = 60000;
    return l;
  }
  wire::BrokerMessage Start(const std::string& org, const std::string& head) {
    auto started = streams->OnSubmitStream(org, head);
    REQUIRE(started.reply);
    return *started.reply;
  }
  std::vector<wire::BrokerMessage> Flush(std::vector<SubmitItem>* complete = nullptr) {
    std::vector<wire::BrokerMessage> sent;
    std::vector<SubmitItem> none;
    streams->Flush([&](const std::string&, const wire::BrokerMessage& m) { sent.push_back(m); },
                   complete ? complete : &none);
    return sent;
  }
  void Chunk(const std::string& org, const std::string& id, uint64_t index) {
    wire::Chunk c;
    c.set_message_id(id);
    c.set_index(index);
    c.set_record(Record(index));
    CHECK_FALSE(streams->OnUploadChunk(org, c));
  }
};

}  // namespace

TEST_CASE("stream heads hold no descriptor and no spool file, and are capped per organisation "
          "and in total",
          "[broker][streams][hostile]") {
  Fixture f;
  const size_t fds_before = OpenFds();
  for (int i = 0; i < 3; ++i) {
    auto m = f.Start(kA, Head(NewUuid(), kA, 4));
    CHECK(m.has_stream_start());
  }
  auto over = f.Start(kA, Head(NewUuid(), kA, 4));
  REQUIRE(over.has_submit_reply());
  CHECK(over.submit_reply().code() == wire::RETRY_LATER);
  CHECK_THAT(over.submit_reply().reason(), Catch::Contains("max_uploads_per_org"));
  for (int i = 0; i < 2; ++i) CHECK(f.Start(kC, Head(NewUuid(), kC, 4)).has_stream_start());
  auto full = f.Start(kC, Head(NewUuid(), kC, 4));
  REQUIRE(full.has_submit_reply());
  CHECK(full.submit_reply().code() == wire::RETRY_LATER);
  CHECK_THAT(full.submit_reply().reason(), Catch::Contains("(max_uploads)"));

  CHECK(f.streams->open_uploads() == 5);
  CHECK(f.streams->open_upload_fds() == 0);
  CHECK(OpenFds() == fds_before);
  CHECK(Files(f.spool) == 0);
  CHECK(Count(f.dir / "broker.db", "SELECT count(*) FROM uploads") == 5);
  // The whole streams are reserved against the quota from the start.
  CHECK(f.streams->spool_bytes() == 5 * 4 * (kChunk + crypto::kChunkTagBytes));
}

TEST_CASE("one organisation's uploads reserve at most a quarter of the quota",
          "[broker][streams][hostile]") {
  StreamLimits l = Fixture::Defaults();
  l.store_max_bytes = 64 << 20;  // a quarter: 16 MiB
  l.max_payload = 8 << 20;       // so one stream of max_payload is less than that
  l.max_uploads_per_org = 10;
  l.max_uploads = 20;
  Fixture f(l);
  const uint64_t chunks = 1100;  // about 4.5 MB each: three fit in 16 MiB, four do not
  for (int i = 0; i < 3; ++i) CHECK(f.Start(kA, Head(NewUuid(), kA, chunks)).has_stream_start());
  auto over = f.Start(kA, Head(NewUuid(), kA, chunks));
  REQUIRE(over.has_submit_reply());
  CHECK(over.submit_reply().code() == wire::RETRY_LATER);
  CHECK_THAT(over.submit_reply().reason(), Catch::Contains("max_upload_bytes_per_org"));
  // Another organisation still gets its share.
  CHECK(f.Start(kC, Head(NewUuid(), kC, chunks)).has_stream_start());
}

TEST_CASE("a stream that does not fit the quota is answered RETRY_LATER before any chunk moves",
          "[broker][streams][hostile]") {
  StreamLimits l = Fixture::Defaults();
  l.store_max_bytes = 1 << 20;  // less than what SQLite and one 64-chunk stream need together
  l.max_payload = 2 << 20;      // one organisation may reserve one such stream
  Fixture f(l);
  auto m = f.Start(kA, Head(NewUuid(), kA, 64 * 4));
  REQUIRE(m.has_submit_reply());
  CHECK(m.submit_reply().code() == wire::RETRY_LATER);
  CHECK_THAT(m.submit_reply().reason(), Catch::Contains("DISK_FULL"));
  CHECK(f.streams->open_uploads() == 0);
}

TEST_CASE("an upload holds a spool descriptor only while its chunks arrive",
          "[broker][streams][hostile]") {
  Fixture f;
  const std::string id = NewUuid();
  std::vector<std::string> records = {Record(0), Record(1), Record(2)};
  const std::string head = Head(id, kA, 3, records);
  REQUIRE(f.Start(kA, head).has_stream_start());
  f.Chunk(kA, id, 0);
  CHECK(f.streams->open_upload_fds() == 1);
  auto acks = f.Flush();
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].chunk_ack().next_chunk() == 1);
  CHECK(f.streams->open_upload_fds() == 1);  // chunks came in this turn
  CHECK(f.Flush().empty());
  CHECK(f.streams->open_upload_fds() == 0);  // a turn without chunks closes it

  // The sender resumes where the broker's commit says; the descriptor opens again.
  auto resumed = f.Start(kA, head);
  REQUIRE(resumed.has_stream_start());
  CHECK(resumed.stream_start().next_chunk() == 1);
  f.Chunk(kA, id, 1);
  f.Chunk(kA, id, 2);
  std::vector<SubmitItem> complete;
  f.Flush(&complete);
  REQUIRE(complete.size() == 1);
  CHECK(complete[0].message_id == id);
  CHECK(f.streams->open_upload_fds() == 0);
  f.streams->FinishUploads({id});
  CHECK(f.streams->open_uploads() == 0);
  CHECK(Count(f.dir / "broker.db", "SELECT count(*) FROM uploads") == 0);
}

TEST_CASE("a complete upload the queue did not take is handed over again after a restart",
          "[broker][streams]") {
  test::TempDir dir;
  const std::string spool = dir / "spool";
  const std::string id = NewUuid();
  // The last record is shorter than the others.
  const std::vector<std::string> records = {Record(0), std::string(100 + crypto::kChunkTagBytes, 'z')};
  const std::string head = Head(id, kA, 2, records, NowMs() + 3600 * 1000, 100);
  {
    auto store = SqliteQueueStore::Open(dir / "broker.db");
    REQUIRE(store.ok());
    Streams streams(**store, spool, Fixture::Defaults());
    REQUIRE(streams.Init().ok());
    REQUIRE(streams.OnSubmitStream(kA, head).reply->has_stream_start());
    for (uint64_t i = 0; i < 2; ++i) {
      wire::Chunk c;
      c.set_message_id(id);
      c.set_index(i);
      c.set_record(records[i]);
      CHECK_FALSE(streams.OnUploadChunk(kA, c));
    }
    std::vector<SubmitItem> complete;
    streams.Flush([](const std::string&, const wire::BrokerMessage&) {}, &complete);
    REQUIRE(complete.size() == 1);  // handed over, never finished (as when a queue cap refuses)
  }
  auto store = SqliteQueueStore::Open(dir / "broker.db");
  REQUIRE(store.ok());
  Streams streams(**store, spool, Fixture::Defaults());
  REQUIRE(streams.Init().ok());
  auto again = streams.OnSubmitStream(kA, head);
  REQUIRE(again.reply);
  REQUIRE(again.reply->has_stream_start());
  CHECK(again.reply->stream_start().next_chunk() == 2);
  std::vector<wire::BrokerMessage> sent;
  std::vector<SubmitItem> complete;
  streams.Flush([&](const std::string&, const wire::BrokerMessage& m) { sent.push_back(m); },
                &complete);
  for (const auto& m : sent) CHECK_FALSE(m.has_submit_reply());  // no REJECTED
  REQUIRE(complete.size() == 1);
  CHECK(complete[0].message_id == id);
}

TEST_CASE("expired and idle uploads are swept with their rows, spool files and reservations",
          "[broker][streams][hostile]") {
  Fixture f;
  const int64_t now = NowMs();
  const std::string soon = NewUuid(), idle = NewUuid(), busy = NewUuid();
  REQUIRE(f.Start(kA, Head(soon, kA, 2, {}, now + 5000)).has_stream_start());
  REQUIRE(f.Start(kA, Head(idle, kA, 2)).has_stream_start());
  REQUIRE(f.Start(kC, Head(busy, kC, 2)).has_stream_start());
  f.Chunk(kA, idle, 0);
  f.Flush();
  CHECK(Files(f.spool) == 1);

  // The envelope's expiry drops the first; the others are neither expired nor idle yet.
  CHECK(f.streams->SweepUploads(now + 5000) == 1);
  CHECK(f.streams->open_uploads() == 2);
  // Past upload_idle_ms without a chunk: the rest go, spool file and all.
  CHECK(f.streams->SweepUploads(NowMs() + 60000) == 2);
  CHECK(f.streams->open_uploads() == 0);
  CHECK(f.streams->open_upload_fds() == 0);
  CHECK(f.streams->spool_bytes() == 0);
  CHECK(Files(f.spool) == 0);
  CHECK(Count(f.dir / "broker.db", "SELECT count(*) FROM uploads") == 0);
  // A swept upload is gone for good: its chunks are dropped, its head starts over.
  f.Chunk(kA, idle, 1);
  auto again = f.Start(kA, Head(idle, kA, 2));
  REQUIRE(again.has_stream_start());
  CHECK(again.stream_start().next_chunk() == 0);
}

TEST_CASE("at start, orphan spool files and upload rows whose head does not parse are removed",
          "[broker][streams][hostile]") {
  test::TempDir dir;
  const std::string spool = dir / "spool";
  const std::string kept = NewUuid();
  {
    auto store = SqliteQueueStore::Open(dir / "broker.db");
    REQUIRE(store.ok());
    Streams streams(**store, spool, Fixture::Defaults());
    REQUIRE(streams.Init().ok());
    REQUIRE(streams.OnSubmitStream(kA, Head(kept, kA, 2)).reply->has_stream_start());
    wire::Chunk c;
    c.set_message_id(kept);
    c.set_index(0);
    c.set_record(Record(0));
    CHECK_FALSE(streams.OnUploadChunk(kA, c));
    std::vector<SubmitItem> none;
    streams.Flush([](const std::string&, const wire::BrokerMessage&) {}, &none);
    const std::string junk = NewUuid();
    REQUIRE((*store)->InsertUpload({junk, kA, kB, "junk head", 0, NowMs() + 60000}).ok());
    std::ofstream(spool + "/" + junk) << "bytes";
    std::ofstream(spool + "/" + NewUuid()) << "an orphan";
  }
  CHECK(Files(spool) == 3);
  auto store = SqliteQueueStore::Open(dir / "broker.db");
  REQUIRE(store.ok());
  Streams streams(**store, spool, Fixture::Defaults());
  REQUIRE(streams.Init().ok());
  CHECK(streams.open_uploads() == 1);
  CHECK(Files(spool) == 1);
  CHECK(Exists(spool + "/" + kept));
  CHECK(Count(dir / "broker.db", "SELECT count(*) FROM uploads") == 1);
}

TEST_CASE("unverified header fields are bounded and expiry is at most max_ttl ahead",
          "[broker][streams][hostile]") {
  const int64_t now = NowMs();
  const RoutingLimits limits{24 * 3600 * 1000, 90ll * 86400 * 1000};
  auto header = [&] {
    wire::Header h;
    h.set_message_id(NewUuid());
    h.set_conversation_id(NewUuid());
    h.set_sender(kA);
    h.set_receiver(kB);
    h.set_process("urn:no:difi:profile:arkivmelding:administrasjon:ver1.0");
    h.set_document_type("urn:no:difi:arkivmelding:xsd::arkivmelding");
    return h;
  };
  auto ok = CheckRouting(header(), kA, now, limits);
  REQUIRE(ok.ok());
  CHECK(ok->receiver == kB);
  CHECK(ok->expires_ms == now + limits.default_ttl_ms);

  auto h = header();
  h.set_expires_unix_ms(now + limits.max_ttl_ms);
  CHECK(CheckRouting(h, kA, now, limits).ok());
  h.set_expires_unix_ms(now + limits.max_ttl_ms + 1);
  auto far = CheckRouting(h, kA, now, limits);
  REQUIRE_FALSE(far.ok());
  CHECK_THAT(far.status().message(), Catch::Contains("more than 90 days ahead"));

  h = header();
  h.set_process(std::string(kMaxProcessBytes + 1, 'p'));
  CHECK_THAT(CheckRouting(h, kA, now, limits).status().message(), Catch::Contains("process"));
  h = header();
  h.set_document_type("urn:\nforged log line");
  CHECK_THAT(CheckRouting(h, kA, now, limits).status().message(),
             Catch::Contains("control character"));
  h = header();
  h.set_conversation_id(std::string(kMaxConversationIdBytes + 1, 'c'));
  CHECK_THAT(CheckRouting(h, kA, now, limits).status().message(),
             Catch::Contains("conversation_id"));
  h = header();
  h.set_sender(std::string(100000, 's'));
  auto forged = CheckRouting(h, kA, now, limits);
  REQUIRE_FALSE(forged.ok());
  CHECK(forged.status().message().size() < 200);  // the claimed sender is not echoed
}

// The store-level checks of retention and queue caps are in store_conformance_test.cc.

// With the store on PostgreSQL the chunks are rows committed with the upload's position: an
// upload started on one broker process resumes on another (with a spool folder of its own, left
// empty), its digest is checked over the stored chunks, a third delivers it from the database,
// and the chunks go with the message.
TEST_CASE("on PostgreSQL an upload resumes on another broker and is delivered from a third",
          "[broker][streams][pg]") {
  test::PostgresServer pg;
  storage::pg::ConnectOptions options;
  options.conninfo = pg.ConnString();
  options.password_file = pg.PasswordFile();
  test::TempDir dir;
  const std::string id = NewUuid();
  const std::vector<std::string> records = {Record(0), Record(1),
                                            std::string(100 + crypto::kChunkTagBytes, 'z')};
  const std::string head = Head(id, kA, 3, records, NowMs() + 3600 * 1000, 100);
  auto chunk = [&](Streams& s, uint64_t i) {
    wire::Chunk c;
    c.set_message_id(id);
    c.set_index(i);
    c.set_record(records[i]);
    CHECK_FALSE(s.OnUploadChunk(kA, c));
  };
  {
    auto store = PgQueueStore::Open(options);
    REQUIRE(store.ok());
    Streams first(**store, dir / "spool-1", Fixture::Defaults());
    REQUIRE(first.Init().ok());
    auto started = first.OnSubmitStream(kA, head);
    REQUIRE(started.reply);
    REQUIRE(started.reply->has_stream_start());
    CHECK(started.reply->stream_start().next_chunk() == 0);
    chunk(first, 0);
    chunk(first, 1);
    std::vector<wire::BrokerMessage> sent;
    std::vector<SubmitItem> complete;
    first.Flush([&](const std::string&, const wire::BrokerMessage& m) { sent.push_back(m); },
                &complete);
    REQUIRE(sent.size() == 1);
    CHECK(sent[0].chunk_ack().next_chunk() == 2);
    CHECK(complete.empty());
    chunk(first, 2);  // received, never committed: this broker stops before its group commit
    CHECK(first.spool_bytes() > 0);  // the whole stream is reserved
  }
  CHECK(Files(dir / "spool-1") == 0);  // nothing on this broker's disk

  auto second_store = PgQueueStore::Open(options);
  REQUIRE(second_store.ok());
  Streams second(**second_store, dir / "spool-2", Fixture::Defaults());
  REQUIRE(second.Init().ok());
  CHECK(second.open_uploads() == 1);
  auto again = second.OnSubmitStream(kA, head);
  REQUIRE(again.reply);
  REQUIRE(again.reply->has_stream_start());
  CHECK(again.reply->stream_start().next_chunk() == 2);
  chunk(second, 2);
  std::vector<SubmitItem> complete;
  second.Flush([](const std::string&, const wire::BrokerMessage&) {}, &complete);
  REQUIRE(complete.size() == 1);  // the digest over the stored chunks matched
  std::vector<ReportItem> none;
  REQUIRE((*second_store)->CommitBatch(complete, none).durable());
  second.FinishUploads({id});
  CHECK(second.open_uploads() == 0);
  CHECK(second.spool_bytes() == 0);
  CHECK(Files(dir / "spool-2") == 0);

  auto third_store = PgQueueStore::Open(options);
  REQUIRE(third_store.ok());
  Streams third(**third_store, dir / "spool-3", Fixture::Defaults());
  REQUIRE(third.Init().ok());
  auto queued = (*third_store)->NextFor(kB, 0, 10);
  REQUIRE(queued.ok());
  REQUIRE(queued->size() == 1);
  CHECK((*queued)[0].envelope == head);
  wire::StreamResume resume;
  resume.set_message_id(id);
  resume.set_next_chunk(1);  // the receiver has chunk 0 already
  third.OnResume("rid", kB, resume, head);
  std::vector<wire::Chunk> delivered;
  third.Pump([&](const std::string&, const wire::BrokerMessage& m) {
    delivered.push_back(m.chunk());
    return true;
  });
  REQUIRE(delivered.size() == 2);
  CHECK(delivered[0].index() == 1);
  CHECK(delivered[0].record() == records[1]);
  CHECK(delivered[1].index() == 2);
  CHECK(delivered[1].record() == records[2]);

  std::vector<ReportItem> reports(1);
  reports[0].reporter = kB;
  reports[0].message_id = id;
  reports[0].status = wire::MOTTATT;
  std::vector<SubmitItem> no_submits;
  REQUIRE((*third_store)->CommitBatch(no_submits, reports).durable());
  CHECK((*third_store)->ReadChunk(id, 0).status().code() == Code::kNotFound);
}

// A dropped upload takes its stored chunks with it; a stream whose stored chunks do not match
// the head's digest is refused.
TEST_CASE("on PostgreSQL a swept upload's chunks go, and a wrong digest is refused",
          "[broker][streams][pg][hostile]") {
  test::PostgresServer pg;
  storage::pg::ConnectOptions options;
  options.conninfo = pg.ConnString();
  options.password_file = pg.PasswordFile();
  test::TempDir dir;
  auto store = PgQueueStore::Open(options);
  REQUIRE(store.ok());
  Streams streams(**store, dir / "spool", Fixture::Defaults());
  REQUIRE(streams.Init().ok());
  const std::string idle = NewUuid(), wrong = NewUuid();
  REQUIRE(streams.OnSubmitStream(kA, Head(idle, kA, 2)).reply->has_stream_start());
  // The head's digest is over records {0, 1}; other bytes of the right size arrive.
  REQUIRE(streams.OnSubmitStream(kA, Head(wrong, kA, 1, {Record(0)})).reply->has_stream_start());
  for (const auto& [id, index] : {std::pair{idle, 0}, std::pair{wrong, 0}}) {
    wire::Chunk c;
    c.set_message_id(id);
    c.set_index(static_cast<uint64_t>(index));
    c.set_record(id == wrong ? Record(5) : Record(0));
    CHECK_FALSE(streams.OnUploadChunk(kA, c));
  }
  std::vector<wire::BrokerMessage> sent;
  std::vector<SubmitItem> complete;
  streams.Flush([&](const std::string&, const wire::BrokerMessage& m) { sent.push_back(m); },
                &complete);
  CHECK(complete.empty());
  bool rejected = false;
  for (const auto& m : sent) {
    if (m.has_submit_reply() && m.submit_reply().message_id() == wrong) {
      rejected = m.submit_reply().code() == wire::REJECTED;
    }
  }
  CHECK(rejected);
  CHECK((*store)->ReadChunk(wrong, 0).status().code() == Code::kNotFound);
  REQUIRE((*store)->ReadChunk(idle, 0).ok());
  CHECK(streams.SweepUploads(NowMs() + 60000) == 1);
  CHECK((*store)->ReadChunk(idle, 0).status().code() == Code::kNotFound);
  CHECK((*store)->LoadUploads()->empty());
}

// Several brokers on one database, all running: an upload started on one after the others
// loaded their rows is taken over by the next at the store's position, moved on there, taken
// back by the first at the new position (never from its own stale one), and finished; a broker's
// late commit cannot move the position back; the sweep of a broker the sender left neither drops
// an upload another broker moves on nor the chunks of the message it became; a leftover row of
// a queued message goes at the next head.
TEST_CASE(
    "on PostgreSQL brokers that run side by side take an upload over from the store, "
    "back and forth",
    "[broker][streams][pg][multi-broker]") {
  test::PostgresServer pg;
  storage::pg::ConnectOptions options;
  options.conninfo = pg.ConnString();
  options.password_file = pg.PasswordFile();
  test::TempDir dir;
  auto store1 = PgQueueStore::Open(options);
  auto store2 = PgQueueStore::Open(options);
  REQUIRE(store1.ok());
  REQUIRE(store2.ok());
  Streams first(**store1, "", Fixture::Defaults());
  Streams second(**store2, "", Fixture::Defaults());
  REQUIRE(first.Init().ok());
  REQUIRE(second.Init().ok());  // both running before the upload starts

  const std::string id = NewUuid();
  std::vector<std::string> records;
  for (uint64_t i = 0; i < 4; ++i) records.push_back(Record(i));
  records.push_back(std::string(100 + crypto::kChunkTagBytes, 'z'));
  const std::string head = Head(id, kA, 5, records, NowMs() + 3600 * 1000, 100);
  auto start = [&](Streams& s) {
    auto started = s.OnSubmitStream(kA, head);
    REQUIRE(started.reply);
    REQUIRE(started.reply->has_stream_start());
    return started.reply->stream_start().next_chunk();
  };
  auto chunk = [&](Streams& s, uint64_t i) {
    wire::Chunk c;
    c.set_message_id(id);
    c.set_index(i);
    c.set_record(records[i]);
    CHECK_FALSE(s.OnUploadChunk(kA, c));
  };
  auto flush = [&](Streams& s, std::vector<SubmitItem>* complete) {
    uint64_t acked = 0;
    s.Flush(
        [&](const std::string&, const wire::BrokerMessage& m) {
          if (m.has_chunk_ack()) acked = m.chunk_ack().next_chunk();
        },
        complete);
    return acked;
  };
  auto position = [&] {
    auto row = (*store1)->FindUpload(id);
    REQUIRE(row.ok());
    return row->has_value() ? static_cast<int64_t>((*row)->next_chunk) : int64_t{-1};
  };
  std::vector<SubmitItem> complete;

  CHECK(start(first) == 0);
  chunk(first, 0);
  chunk(first, 1);
  CHECK(flush(first, &complete) == 2);
  chunk(first, 2);  // received by the first, not yet committed: the sender moves on

  // The second never loaded this row: it takes the upload over at the store's position.
  CHECK(second.open_uploads() == 0);
  CHECK(start(second) == 2);
  CHECK(second.open_uploads() == 1);
  CHECK(second.spool_bytes() > 0);  // reserved here too
  chunk(second, 2);
  chunk(second, 3);
  CHECK(flush(second, &complete) == 4);
  CHECK(position() == 4);
  // The first's late turn commits chunk 2 again (the same bytes): the position stays.
  CHECK(flush(first, &complete) == 3);
  CHECK(position() == 4);

  // The sender comes back to the first: it goes on from the store, not from its own 3.
  CHECK(start(first) == 4);
  chunk(first, 4);
  CHECK(flush(first, &complete) == 5);
  REQUIRE(complete.size() == 1);  // the digest over chunks stored by both matched
  std::vector<ReportItem> none;
  REQUIRE((*store1)->CommitBatch(complete, none).durable());
  first.FinishUploads({id});
  CHECK(position() == -1);

  // The second's sweep finds the row gone: forgotten there, the queued message's chunks kept.
  CHECK(second.SweepUploads(NowMs() + 120000) == 0);
  CHECK(second.open_uploads() == 0);
  CHECK(second.spool_bytes() == 0);
  REQUIRE((*store2)->ReadChunk(id, 0).ok());

  // A row left behind by a broker that stopped between queueing and deleting it: the next head
  // is answered as a duplicate and the row goes, the chunks stay while the message is queued.
  REQUIRE((*store2)->InsertUpload({id, kA, kB, head, 5, NowMs() + 60000}).ok());
  auto again = second.OnSubmitStream(kA, head);
  CHECK_FALSE(again.reply);
  REQUIRE(again.item);
  CHECK(position() == -1);
  CHECK(second.open_uploads() == 0);
  CHECK((*store2)->ReadChunk(id, 4).ok());

  // An idle upload the other broker moved on meanwhile is not dropped; one that stood still is.
  const std::string idle = NewUuid();
  const std::vector<std::string> idle_records = {Record(0), Record(1), Record(2)};
  const std::string idle_head = Head(idle, kA, 3, idle_records);
  auto idle_chunk = [&](Streams& s, uint64_t i) {
    wire::Chunk c;
    c.set_message_id(idle);
    c.set_index(i);
    c.set_record(idle_records[i]);
    CHECK_FALSE(s.OnUploadChunk(kA, c));
    s.Flush([](const std::string&, const wire::BrokerMessage&) {}, &complete);
  };
  REQUIRE(first.OnSubmitStream(kA, idle_head).reply->stream_start().next_chunk() == 0);
  idle_chunk(first, 0);
  REQUIRE(second.OnSubmitStream(kA, idle_head).reply->stream_start().next_chunk() == 1);
  idle_chunk(second, 1);
  CHECK(first.SweepUploads(NowMs() + 120000) == 0);  // moved on from 1 to 2 elsewhere
  REQUIRE((*store1)->ReadChunk(idle, 1).ok());
  CHECK(first.SweepUploads(NowMs() + 120000) == 1);  // and then stood still
  CHECK((*store1)->ReadChunk(idle, 0).status().code() == Code::kNotFound);
  CHECK_FALSE((*store1)->FindUpload(idle)->has_value());

  // A broker's late turn for an upload whose row is gone stores nothing (no chunk that neither
  // an upload nor a queued message owns), acknowledges nothing, and forgets the upload there.
  const std::string late = NewUuid();
  const std::string late_head = Head(late, kA, 2, {Record(0), Record(1)});
  REQUIRE(first.OnSubmitStream(kA, late_head).reply->stream_start().next_chunk() == 0);
  REQUIRE(second.OnSubmitStream(kA, late_head).reply->stream_start().next_chunk() == 0);
  wire::Chunk c;
  c.set_message_id(late);
  c.set_index(0);
  c.set_record(Record(0));
  CHECK_FALSE(second.OnUploadChunk(kA, c));
  REQUIRE((*store1)->DropUploads({late}).ok());  // e.g. the first swept it meanwhile
  const size_t open_before = second.open_uploads();
  std::vector<wire::BrokerMessage> acks;
  second.Flush([&](const std::string&, const wire::BrokerMessage& m) { acks.push_back(m); },
               &complete);
  CHECK(acks.empty());
  CHECK(second.open_uploads() == open_before - 1);
  CHECK((*store2)->ReadChunk(late, 0).status().code() == Code::kNotFound);
}

}  // namespace bud::broker
