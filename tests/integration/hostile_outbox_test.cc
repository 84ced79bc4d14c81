// The outbox as an attack surface (docs/security.md, "The outbox"): a local user who can write
// an agency's outbox must not make its integration point write files outside the folder, send
// files from outside the folder (its own private key), or put lines of their choosing into an
// error.txt. Each case runs against a real exchange; each failed on the code before the outbox
// opened files once, without following links, and checked them on the descriptor.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "tests/integration/harness.h"

namespace bud::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Builds outbox/.tmp-hostile-<name>/ with `fill`, message.json last, and renames it to
// outbox/<name>: the point sees the folder whole, links and all.
void DropWith(Exchange& ex, const std::string& org, const std::string& name,
              const std::string& message_json,
              const std::function<void(const std::string&)>& fill) {
  const std::string tmp = ex.Outbox(org) + "/.tmp-hostile-" + name;
  fs::create_directories(tmp);
  fill(tmp);
  if (!message_json.empty()) WriteFile(tmp + "/message.json", message_json);
  fs::rename(tmp, ex.Outbox(org) + "/" + name);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Every file of every message in `org`'s inbox, concatenated (for "is the secret in there").
std::string EverythingInInbox(Exchange& ex, const std::string& org) {
  std::string all;
  for (const auto& id : ListDir(ex.Inbox(org))) {
    for (const auto& f : ListDir(ex.Inbox(org) + "/" + id, true)) {
      all += ReadFileOrEmpty(ex.Inbox(org) + "/" + id + "/" + f);
    }
  }
  return all;
}

TEST_CASE("a refused folder's error.txt that is a link writes nothing outside the folder",
          "[integration][hostile]") {
  Exchange ex;
  const std::string victim = ex.root() + "/victim.conf";
  WriteFile(victim, "precious = true\n");
  json bad = Exchange::Metadata(kAgencyB);
  bad.erase("process");  // refused: process missing
  DropWith(ex, kAgencyA, "overskriv", bad.dump(), [&](const std::string& d) {
    WriteFile(d + "/brev.txt", "Hei\n");
    fs::create_symlink(victim, d + "/error.txt");
  });
  const std::string error = ex.WaitForFailed(kAgencyA, "overskriv");
  CHECK_THAT(error, Catch::Contains("'process' is missing"));
  CHECK(ReadFile(victim) == "precious = true\n");
  const std::string placed = ex.Outbox(kAgencyA) + "/.failed/overskriv/error.txt";
  CHECK_FALSE(fs::is_symlink(placed));
  CHECK(fs::is_regular_file(placed));
  CHECK(ReadFile(ex.Outbox(kAgencyA) + "/.failed/overskriv/brev.txt") == "Hei\n");
}

TEST_CASE("a newline in a file name does not add lines to error.txt", "[integration][hostile]") {
  Exchange ex;
  const std::string forged = "STATUS: sent and delivered OK";
  DropWith(ex, kAgencyA, "linjer", Exchange::Metadata(kAgencyB).dump(),
           [&](const std::string& d) {
             WriteFile(d + "/brev.txt", "Hei\n");
             WriteFile(d + "/x\n" + forged + "\n", "y");
           });
  const std::string error = ex.WaitForFailed(kAgencyA, "linjer");
  INFO("error.txt: " << error);
  const auto lines = Lines(error);
  // The reason on one line, a blank line, when it failed: nothing else.
  REQUIRE(lines.size() == 3);
  CHECK_THAT(lines[0], Catch::Contains("control character"));
  CHECK_THAT(lines[0], Catch::Contains("\\n" + forged));
  CHECK(lines[1].empty());
  CHECK_THAT(lines[2], Catch::StartsWith("Failed at "));
  for (const auto& l : lines) CHECK_FALSE(l.starts_with(forged));
  CHECK(ex.Status(kAgencyA).empty());
}

TEST_CASE("a folder that is a link, or whose message.json is a link, is refused and not read",
          "[integration][hostile]") {
  Exchange ex;
  const std::string secret = ReadFile(ex.AgencyDir(kAgencyA) + "/keys/signing.key");
  // A folder elsewhere, complete and valid: only the link to it is in the outbox.
  const std::string elsewhere = ex.root() + "/elsewhere";
  fs::create_directories(elsewhere);
  WriteFile(elsewhere + "/nøkkel.txt", secret);
  WriteFile(elsewhere + "/message.json", Exchange::Metadata(kAgencyB).dump());
  fs::create_directory_symlink(elsewhere, ex.Outbox(kAgencyA) + "/lenket");
  // A real folder whose message.json is a link to one elsewhere.
  const std::string other_json = ex.root() + "/other-message.json";
  WriteFile(other_json, Exchange::Metadata(kAgencyB).dump());
  DropWith(ex, kAgencyA, "lenket-json", "", [&](const std::string& d) {
    WriteFile(d + "/brev.txt", "Hei\n");
    fs::create_symlink(other_json, d + "/message.json");
  });

  const std::string folder_error = ex.WaitForFailed(kAgencyA, "lenket");
  CHECK_THAT(folder_error, Catch::Contains("symbolic link"));
  const std::string json_error = ex.WaitForFailed(kAgencyA, "lenket-json");
  CHECK_THAT(json_error, Catch::Contains("message.json is a symbolic link"));
  // Moved aside as links; what they point at is untouched.
  CHECK(fs::is_symlink(ex.Outbox(kAgencyA) + "/.failed/lenket/lenket"));
  CHECK(fs::is_symlink(ex.Outbox(kAgencyA) + "/.failed/lenket-json/message.json"));
  CHECK(ReadFile(elsewhere + "/nøkkel.txt") == secret);
  CHECK(PathExists(elsewhere + "/message.json"));
  CHECK(ReadFile(other_json) == Exchange::Metadata(kAgencyB).dump());
  CHECK(ex.Status(kAgencyA).empty());
  CHECK(ListDir(ex.Inbox(kAgencyB)).empty());
}

// The attack of issue 14, point 5: the attachment is a regular file when it is checked and a
// link to the point's own signing key when it is read. A thread swaps the two in a tight loop
// while the point takes the folder in; on the old code the key reached the receiver's inbox in
// most tries. Small and streamed (large) folders are both tried: the threshold is below the
// regular file's size, so a folder seen with the file goes the streamed way.
TEST_CASE("an attachment swapped for a link during take-in never sends what the link names",
          "[integration][hostile]") {
  ExchangeOptions options;
  options.agency_settings[kAgencyA]["outbox.stream_threshold_bytes"] = "1024";
  Exchange ex(options);
  const std::string key_path = ex.AgencyDir(kAgencyA) + "/keys/signing.key";
  const std::string secret = ReadFile(key_path);
  REQUIRE(secret.find("PRIVATE KEY") != std::string::npos);
  const std::string regular = std::string(4096, 'r');
  const std::string outbox = ex.Outbox(kAgencyA);
  const std::string stage = outbox + "/.race-stage";  // hidden: the point ignores it
  fs::create_directories(stage);

  constexpr int kTries = 8;
  int delivered = 0, refused = 0;
  for (int i = 0; i < kTries; ++i) {
    const std::string name = "kappløp-" + std::to_string(i);
    const std::string target = outbox + "/" + name + "/vedlegg.txt";
    json meta = Exchange::Metadata(kAgencyB);
    const std::string id = fmt::format("5a1e{:04x}-0000-4000-8000-00000000{:04x}", i, i);
    meta["messageId"] = id;

    std::atomic<bool> stop{false};
    std::atomic<long> swaps{0};
    std::thread swapper([&] {
      const std::string link = stage + "/l", file = stage + "/r";
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
      while (!stop.load() && std::chrono::steady_clock::now() < until) {
        ::unlink(link.c_str());
        if (::symlink(key_path.c_str(), link.c_str()) != 0) continue;
        if (::rename(link.c_str(), target.c_str()) != 0) {
          if (errno == ENOENT && swaps.load() > 0) break;  // the folder went: taken or refused
          std::this_thread::yield();
          continue;
        }
        int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
          (void)!::write(fd, regular.data(), regular.size());
          ::close(fd);
        }
        if (::rename(file.c_str(), target.c_str()) != 0 && errno == ENOENT) break;
        swaps.fetch_add(1);
      }
    });
    DropWith(ex, kAgencyA, name, meta.dump(), [&](const std::string& d) {
      WriteFile(d + "/vedlegg.txt", regular);
    });
    WaitUntil("outbox folder " + name + " to be taken in or refused", kDefaultWait,
              [&] { return !PathExists(outbox + "/" + name + "/message.json"); },
              [&] { return ex.Diagnostics(); });
    stop = true;
    swapper.join();
    INFO("try " << i << ": " << swaps.load() << " swaps");
    if (PathExists(outbox + "/.failed/" + name)) {
      ++refused;
      const std::string error = ReadFileOrEmpty(outbox + "/.failed/" + name + "/error.txt");
      INFO("error.txt: " << error);
      CHECK((error.find("symbolic link") != std::string::npos ||
             error.find("was replaced") != std::string::npos));
    } else {
      ++delivered;
      ex.WaitForInbox(kAgencyB, id);
      CHECK(ReadFile(ex.Inbox(kAgencyB) + "/" + id + "/vedlegg.txt") == regular);
    }
    CHECK(EverythingInInbox(ex, kAgencyB).find("PRIVATE KEY") == std::string::npos);
  }
  INFO(delivered << " delivered, " << refused << " refused");
  CHECK(delivered + refused == kTries);
  CHECK(EverythingInInbox(ex, kAgencyB).find(secret.substr(0, 64)) == std::string::npos);
}

}  // namespace
}  // namespace bud::test
