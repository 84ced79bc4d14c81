// Reading an outgoing arkivmelding.xml (integration-point/arkivmelding.h): what eFormidling takes
// from it, and hostile files (DTDs, entities, depth, size, long texts) refused with a reason.
#include "integration-point/arkivmelding.h"

#include <catch2/catch.hpp>
#include <string>

namespace bud::ip {
namespace {

// An arkivmelding as Noark 5 archive systems write it (eFormidling's test file, shortened).
std::string Arkivmelding(const std::string& journalpost_body,
                         const std::string& mappe_type = "saksmappe") {
  return R"(<?xml version="1.0" encoding="utf-8"?>
<arkivmelding xmlns="http://www.arkivverket.no/standarder/noark5/arkivmelding"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <system>LandLord</system>
  <meldingId>3380ed76-5d4c-43e7-aa70-8ed8d97e4835</meldingId>
  <tidspunkt>2017-05-23T12:46:00</tidspunkt>
  <antallFiler>1</antallFiler>
  <mappe xsi:type=")" +
         mappe_type + R"(">
    <systemID>43fbe161-7aac-4c9f-a888-d8167aab4144</systemID>
    <tittel>Nye lysrør Hauketo Skole</tittel>
    <basisregistrering xsi:type="journalpost">
      <systemID>430a6710-a3d4-4863-8bd0-5eb1021bee45</systemID>
      <dokumentbeskrivelse><tittel>Bestilling</tittel></dokumentbeskrivelse>
      <tittel>Nye lysrør (intern)</tittel>
)" + journalpost_body +
         R"(
    </basisregistrering>
  </mappe>
</arkivmelding>)";
}

TEST_CASE("arkivmelding.xml: the public title and the journal post's reference",
          "[ip][arkivmelding]") {
  auto info =
      ParseArkivmelding(Arkivmelding("<offentligTittel> Nye lysrør på Ørje </offentligTittel>\n"
                                     "<journalpostnummer>17</journalpostnummer>"));
  REQUIRE(info.ok());
  CHECK(info->public_title == "Nye lysrør på Ørje");
  CHECK(info->reference == "43fbe161-7aac-4c9f-a888-d8167aab4144-17");

  // Without a journalpostnummer no reference (eFormidling leaves its default); no public title
  // gives "".
  auto bare = ParseArkivmelding(Arkivmelding(""));
  REQUIRE(bare.ok());
  CHECK(bare->public_title.empty());
  CHECK(bare->reference.empty());

  // A prefixed xsi:type names the same type; only the first saksmappe's first journalpost counts,
  // and elements of the same name deeper down are not it.
  const std::string two =
      R"(<am:arkivmelding xmlns:am="http://www.arkivverket.no/standarder/noark5/arkivmelding"
      xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
    <am:mappe><am:systemID>plain-mappe</am:systemID></am:mappe>
    <am:mappe xsi:type="am:saksmappe"><am:systemID>first</am:systemID>
      <am:annet><am:offentligTittel>not this</am:offentligTittel></am:annet>
      <am:basisregistrering xsi:type="am:journalpost"><am:offentligTittel>A</am:offentligTittel>
        <am:journalpostnummer>1</am:journalpostnummer></am:basisregistrering>
      <am:basisregistrering xsi:type="am:journalpost"><am:offentligTittel>B</am:offentligTittel>
        <am:journalpostnummer>2</am:journalpostnummer></am:basisregistrering>
    </am:mappe>
    <am:mappe xsi:type="am:saksmappe"><am:systemID>second</am:systemID></am:mappe>
  </am:arkivmelding>)";
  auto first = ParseArkivmelding(two);
  REQUIRE(first.ok());
  CHECK(first->public_title == "A");
  CHECK(first->reference == "first-1");
}

TEST_CASE("arkivmelding.xml: what eFormidling cannot read is refused with the reason",
          "[ip][arkivmelding]") {
  auto refused = [](const std::string& xml, const std::string& phrase) {
    INFO(xml.substr(0, 200));
    auto r = ParseArkivmelding(xml);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK_THAT(r.status().message(), Catch::Matchers::StartsWith("arkivmelding.xml: "));
    CHECK_THAT(r.status().message(), Catch::Matchers::Contains(phrase));
  };
  refused("<arkivmelding", "not well-formed");
  refused("", "not well-formed");
  refused(Arkivmelding("<offentligTittel>x</offentligTittel>").substr(0, 600), "not well-formed");
  refused("<arkivmelding/>", "root element is not <arkivmelding>");  // no namespace
  refused("<x xmlns=\"http://www.arkivverket.no/standarder/noark5/arkivmelding\"/>",
          "root element");
  refused(Arkivmelding("", "arkivmappe"), "no <mappe xsi:type=\"saksmappe\">");
  std::string no_journalpost = Arkivmelding("");
  no_journalpost.replace(no_journalpost.find("\"journalpost\""), 13, "\"korrespondansepost\"");
  refused(no_journalpost, "no <basisregistrering xsi:type=\"journalpost\">");
  refused(Arkivmelding("<journalpostnummer>12a</journalpostnummer>"), "not a whole number");
  refused(Arkivmelding("<offentligTittel>" + std::string(5000, 'x') + "</offentligTittel>"),
          "longer than 4096 bytes");
}

TEST_CASE("arkivmelding.xml: no DTD, no entities, bounded depth and size", "[ip][arkivmelding]") {
  auto refused = [](const std::string& xml, const std::string& phrase) {
    auto r = ParseArkivmelding(xml);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), Catch::Matchers::Contains(phrase));
  };
  // Billion laughs: refused at the DOCTYPE, before any entity is declared or expanded.
  std::string laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE arkivmelding [\n<!ENTITY l0 \"ha\">\n";
  for (int i = 1; i < 10; ++i) {
    laughs += "<!ENTITY l" + std::to_string(i) + " \"";
    for (int k = 0; k < 10; ++k) laughs += "&l" + std::to_string(i - 1) + ";";
    laughs += "\">\n";
  }
  laughs += "]>\n" + Arkivmelding("<offentligTittel>&l9;</offentligTittel>").substr(39);
  refused(laughs, "DOCTYPE");
  // An external entity (a local file, or a URL): never read.
  refused(
      "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
      "<arkivmelding xmlns=\"http://www.arkivverket.no/standarder/noark5/arkivmelding\">"
      "&x;</arkivmelding>",
      "DOCTYPE");
  refused("<!DOCTYPE arkivmelding SYSTEM \"http://127.0.0.1:1/x.dtd\"><arkivmelding/>", "DOCTYPE");
  // An undeclared entity is not well-formed (only the five predefined ones exist).
  refused(Arkivmelding("<offentligTittel>&nbsp;</offentligTittel>"), "not well-formed");
  std::string deep =
      "<arkivmelding xmlns=\"http://www.arkivverket.no/standarder/noark5/arkivmelding\">";
  for (int i = 0; i < 100000; ++i) deep += "<a>";
  refused(deep, "nested deeper than 64 elements");
  refused(std::string(kMaxArkivmeldingBytes + 1, ' '), "larger than");
  // The predefined entities and character references are text as usual.
  auto ok = ParseArkivmelding(Arkivmelding("<offentligTittel>A &amp; B &#216;</offentligTittel>"));
  REQUIRE(ok.ok());
  CHECK(ok->public_title == "A & B Ø");
}

}  // namespace
}  // namespace bud::ip
