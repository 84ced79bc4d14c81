// TOML config access (common/config.h): typed reads with defaults, paths resolved against the
// config's folder, and errors that name the file, the key and the problem.
#include "common/config.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/fs.h"
#include "tests/support/temp_dir.h"

namespace bud::test {
namespace {

constexpr std::string_view kGood = R"(# integration point
name = "Etat A"

[broker]
endpoint = "tcp://127.0.0.1:5555"
heartbeat_ms = 1500
tls = true

[store]
dir = "data/store"
absolute = "/var/lib/budstikke"

[registry]
urls = ["http://a.example", "http://b.example"]
)";

ConfigFile ParseOrDie(std::string_view text, const std::string& name) {
  auto cf = ConfigFile::Parse(text, name);
  INFO(cf.status().ToString());
  REQUIRE(cf.ok());
  return std::move(cf).value();
}

template <typename T>
T ValueOrDie(Result<T> r) {
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return std::move(r).value();
}

TEST_CASE("A good config reads every type, with defaults and resolved paths", "[config]") {
  TempDir dir;
  const std::string file = dir / "ip.toml";
  ConfigFile cf = ParseOrDie(kGood, file);
  CHECK(cf.path() == file);
  CHECK(cf.dir() == dir.path());

  CHECK(ValueOrDie(cf.String("name")) == "Etat A");
  CHECK(ValueOrDie(cf.String("broker.endpoint")) == "tcp://127.0.0.1:5555");
  CHECK(ValueOrDie(cf.Int("broker.heartbeat_ms", std::nullopt, 100, 60000)) == 1500);
  CHECK(ValueOrDie(cf.Bool("broker.tls")) == true);
  CHECK(ValueOrDie(cf.StringList("registry.urls")) ==
        std::vector<std::string>{"http://a.example", "http://b.example"});
  CHECK(ValueOrDie(cf.Path("store.dir")) == dir.path() + "/data/store");
  CHECK(ValueOrDie(cf.Path("store.absolute")) == "/var/lib/budstikke");

  // Defaults apply only when the key is missing.
  CHECK(ValueOrDie(cf.String("broker.missing", "fallback")) == "fallback");
  CHECK(ValueOrDie(cf.Int("broker.missing_int", 42)) == 42);
  CHECK(ValueOrDie(cf.Bool("broker.missing_bool", false)) == false);
  CHECK(ValueOrDie(cf.StringList("registry.missing", std::vector<std::string>{"x"})) ==
        std::vector<std::string>{"x"});
  CHECK(ValueOrDie(cf.Path("store.missing", "rel")) == dir.path() + "/rel");
  CHECK(ValueOrDie(cf.String("name", "ignored")) == "Etat A");

  Status unknown = cf.CheckNoUnknownKeys();
  INFO(unknown.ToString());
  CHECK(unknown.ok());
}

TEST_CASE("Endpoint lists: a list, the one endpoint of older configs, or none", "[config]") {
  using List = std::vector<std::string>;
  auto list = ParseOrDie("[broker]\nendpoints = [\"tcp://b1:7700\", \"tcp://b2:7700\"]\n", "l");
  CHECK(ValueOrDie(list.Endpoints("broker.endpoints", "broker.endpoint", true)) ==
        List{"tcp://b1:7700", "tcp://b2:7700"});
  CHECK(list.CheckNoUnknownKeys().ok());
  auto one = ParseOrDie("[broker]\nendpoint = \"tcp://b1:7700\"\n", "o");
  CHECK(ValueOrDie(one.Endpoints("broker.endpoints", "broker.endpoint", true)) ==
        List{"tcp://b1:7700"});
  auto none = ParseOrDie("[broker]\n", "n");
  CHECK(ValueOrDie(none.Endpoints("broker.endpoints", "broker.endpoint", false)).empty());
  auto required = none.Endpoints("broker.endpoints", "broker.endpoint", true);
  REQUIRE_FALSE(required.ok());
  CHECK(required.status().message().find("broker.endpoints") != std::string::npos);

  struct Bad {
    const char* toml;
    const char* says;
  };
  for (const Bad& b : {
           Bad{"[broker]\nendpoints = [\"tcp://a:1\"]\nendpoint = \"tcp://a:1\"\n", "not both"},
           Bad{"[broker]\nendpoints = [\"tcp://a:1\", \"tcp://a:1\"]\n", "given twice"},
           Bad{"[broker]\nendpoints = [\"http://a:1\"]\n", "not a ZeroMQ endpoint"},
           Bad{"[broker]\nendpoints = [\"tcp://\"]\n", "not a ZeroMQ endpoint"},
           Bad{"[broker]\nendpoints = [1, 2]\n", "broker.endpoints"},
           Bad{"[broker]\nendpoint = \"nonsense\"\n", "broker.endpoint"},
       }) {
    INFO(b.toml);
    auto cf = ParseOrDie(b.toml, "bad.toml");
    auto r = cf.Endpoints("broker.endpoints", "broker.endpoint", false);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find(b.says) != std::string::npos);
  }
  std::string many = "[broker]\nendpoints = [";
  for (int i = 0; i < 17; ++i)
    many += (i ? ", " : "") + std::string("\"tcp://h:") + std::to_string(i + 1) + "\"";
  auto too_many = ParseOrDie(many + "]\n", "many.toml");
  auto r = too_many.Endpoints("broker.endpoints", "broker.endpoint", false);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("at most 16") != std::string::npos);
}

TEST_CASE("Load reads a file and resolves paths against its folder", "[config]") {
  TempDir dir;
  REQUIRE(MakeDirs(dir / "etc").ok());
  REQUIRE(WriteFileSynced(dir / "etc/broker.toml", "store = \"../var/broker.db\"\n").ok());
  auto cf = ConfigFile::Load(dir / "etc/broker.toml");
  REQUIRE(cf.ok());
  CHECK(ValueOrDie(cf->Path("store")) == dir.path() + "/etc/../var/broker.db");

  auto missing = ConfigFile::Load(dir / "etc/absent.toml");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == Code::kConfig);
  CHECK_THAT(missing.status().message(), Catch::Contains("absent.toml"));
}

TEST_CASE("A missing key names the file and the key", "[config]") {
  ConfigFile cf = ParseOrDie(kGood, "/etc/budstikke/ip.toml");
  auto r = cf.String("broker.identity");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Code::kConfig);
  CHECK_THAT(r.status().message(), Catch::Contains("/etc/budstikke/ip.toml") &&
                                       Catch::Contains("broker.identity") &&
                                       Catch::Contains("missing"));
  CHECK(cf.Int("nope").status().code() == Code::kConfig);
  CHECK(cf.Bool("nope").status().code() == Code::kConfig);
  CHECK(cf.StringList("nope").status().code() == Code::kConfig);
  CHECK(cf.Path("nope").status().code() == Code::kConfig);
}

TEST_CASE("A value of the wrong type says what it must be", "[config]") {
  ConfigFile cf = ParseOrDie(kGood, "ip.toml");
  auto check = [](const Status& s, std::string_view key, std::string_view file = "ip.toml",
                  std::string_view says = "must be") {
    INFO(s.ToString());
    CHECK(s.code() == Code::kConfig);
    CHECK_THAT(s.message(), Catch::Contains(std::string(says)) &&
                                Catch::Contains("'" + std::string(key) + "'") &&
                                Catch::Contains("'" + std::string(file) + "'"));
  };
  check(cf.Int("name").status(), "name");
  check(cf.String("broker.heartbeat_ms").status(), "broker.heartbeat_ms");
  check(cf.Bool("broker.endpoint").status(), "broker.endpoint");
  check(cf.StringList("broker.tls").status(), "broker.tls");
  check(cf.String("registry.urls").status(), "registry.urls");
  check(cf.Int("broker.heartbeat_ms", std::nullopt, 1, 1000).status(), "broker.heartbeat_ms");

  ConfigFile mixed = ParseOrDie("list = [\"a\", 2]\nempty = \"\"\n", "mixed.toml");
  check(mixed.StringList("list").status(), "list", "mixed.toml");
  check(mixed.Path("empty").status(), "empty", "mixed.toml", "must not be empty");
}

TEST_CASE("A TOML syntax error names the file, line and column", "[config]") {
  const std::string text = "ok = 1\n[broker]\nendpoint = = \"tcp://x\"\n";
  auto cf = ConfigFile::Parse(text, "broken.toml");
  REQUIRE_FALSE(cf.ok());
  CHECK(cf.status().code() == Code::kConfig);
  CHECK_THAT(cf.status().message(), Catch::Contains("broken.toml") && Catch::Contains("line 3") &&
                                        Catch::Contains("column"));

  auto unterminated = ConfigFile::Parse("a = \"open\nb = 2\n", "u.toml");
  REQUIRE_FALSE(unterminated.ok());
  CHECK_THAT(unterminated.status().message(), Catch::Contains("line 1"));
}

TEST_CASE("CheckNoUnknownKeys names a misspelt key", "[config]") {
  ConfigFile cf = ParseOrDie(R"(
[broker]
endpoint = "tcp://127.0.0.1:5555"
heartbeat_msec = 1500
[store]
dir = "x"
)",
                             "typo.toml");
  REQUIRE(cf.String("broker.endpoint").ok());
  CHECK(ValueOrDie(cf.Int("broker.heartbeat_ms", 1000)) == 1000);  // the typo hides the value
  REQUIRE(cf.Path("store.dir").ok());
  Status s = cf.CheckNoUnknownKeys();
  REQUIRE_FALSE(s.ok());
  CHECK(s.code() == Code::kConfig);
  CHECK_THAT(s.message(), Catch::Contains("broker.heartbeat_msec") &&
                              Catch::Contains("typo.toml") && !Catch::Contains("broker.endpoint") &&
                              !Catch::Contains("store.dir"));
}

TEST_CASE("TomlString writes strings that read back unchanged", "[config]") {
  for (std::string v : {std::string("plain"), std::string("quote \" and back\\slash"),
                        std::string("new\nline\ttab\x01\x7f"), std::string("Ærlig etat ø"),
                        std::string("Z85 &<>()[]{}@%$#/*?")}) {
    INFO(v);
    auto cf = ConfigFile::Parse("v = " + TomlString(v) + "\n", "t.toml");
    REQUIRE(cf.ok());
    CHECK(ValueOrDie(cf->String("v")) == v);
  }
}

TEST_CASE("Choice and Endpoint refuse what they do not know, naming the choices", "[config]") {
  auto cf = ConfigFile::Parse(
      "level = \"verbose\"\nok = \"warn\"\nep = \"localhost:1\"\ngood = \"tcp://h:1\"\n",
      "c.toml");
  REQUIRE(cf.ok());
  auto bad = cf->Choice("level", "info", kLogLevels);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.status().message(),
             Catch::Contains("'verbose' is not one of: trace, debug, info, warn"));
  CHECK(ValueOrDie(cf->Choice("ok", "info", kLogLevels)) == "warn");
  CHECK(ValueOrDie(cf->Choice("absent", "info", kLogLevels)) == "info");
  auto ep = cf->Endpoint("ep");
  REQUIRE_FALSE(ep.ok());
  CHECK_THAT(ep.status().message(), Catch::Contains("key 'ep'") &&
                                        Catch::Contains("is not a ZeroMQ endpoint"));
  CHECK(ValueOrDie(cf->Endpoint("good")) == "tcp://h:1");
  CHECK(ValueOrDie(cf->Endpoint("absent2", "")).empty());
  CHECK_FALSE(cf->Endpoint("absent3").ok());
}

}  // namespace
}  // namespace bud::test
