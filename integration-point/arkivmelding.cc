// Reading arkivmelding.xml with expat. See arkivmelding.h.
#include "integration-point/arkivmelding.h"

#include <expat.h>
#include <fmt/format.h>

#include <memory>

#include "common/fs.h"

namespace bud::ip {

namespace {

constexpr std::string_view kNs = "http://www.arkivverket.no/standarder/noark5/arkivmelding";
constexpr std::string_view kXsiType = "http://www.w3.org/2001/XMLSchema-instance\x01type";
constexpr char kSep = '\x01';  // between namespace URI and local name (XML_ParserCreateNS)

struct ParserDeleter {
  void operator()(XML_Parser p) const { XML_ParserFree(p); }
};
using Parser = std::unique_ptr<std::remove_pointer_t<XML_Parser>, ParserDeleter>;

// Which text is being collected.
enum class Capture { kNone, kSystemId, kNumber, kPublicTitle };

struct Walk {
  XML_Parser parser = nullptr;
  int depth = 0;
  std::string error;  // set when the walk refuses the document
  // The first saksmappe (depth 2) and its first journalpost (depth 3); 0 while outside them.
  bool saw_saksmappe = false, saw_journalpost = false;
  bool in_saksmappe = false, in_journalpost = false;
  Capture capture = Capture::kNone;
  std::string system_id, number, public_title;

  void Stop(std::string why) {
    if (error.empty()) error = std::move(why);
    XML_StopParser(parser, XML_FALSE);
  }
};

// The namespace and local name of an expat name ("uri\x01local", or "local" without one).
std::pair<std::string_view, std::string_view> Split(const XML_Char* name) {
  std::string_view n(name);
  const size_t at = n.find(kSep);
  if (at == std::string_view::npos) return {{}, n};
  return {n.substr(0, at), n.substr(at + 1)};
}

// The local part of an xsi:type value ("saksmappe", "am:saksmappe" -> "saksmappe").
std::string_view XsiType(const XML_Char** attrs) {
  for (int i = 0; attrs[i] != nullptr; i += 2) {
    if (std::string_view(attrs[i]) == kXsiType) {
      std::string_view v(attrs[i + 1]);
      const size_t colon = v.rfind(':');
      return colon == std::string_view::npos ? v : v.substr(colon + 1);
    }
  }
  return {};
}

void XMLCALL Start(void* data, const XML_Char* name, const XML_Char** attrs) {
  auto& w = *static_cast<Walk*>(data);
  ++w.depth;
  if (w.depth > kMaxArkivmeldingDepth) {
    return w.Stop(fmt::format("nested deeper than {} elements", kMaxArkivmeldingDepth));
  }
  const auto [ns, local] = Split(name);
  if (w.depth == 1) {
    if (local != "arkivmelding" || ns != kNs) {
      return w.Stop(fmt::format("the root element is not <arkivmelding> in namespace {}", kNs));
    }
    return;
  }
  if (ns != kNs) return;
  if (w.depth == 2 && local == "mappe" && !w.saw_saksmappe && XsiType(attrs) == "saksmappe") {
    w.saw_saksmappe = w.in_saksmappe = true;
  } else if (w.in_saksmappe && w.depth == 3) {
    if (local == "systemID") w.capture = Capture::kSystemId;
    if (local == "basisregistrering" && !w.saw_journalpost && XsiType(attrs) == "journalpost") {
      w.saw_journalpost = w.in_journalpost = true;
    }
  } else if (w.in_journalpost && w.depth == 4) {
    if (local == "journalpostnummer") w.capture = Capture::kNumber;
    if (local == "offentligTittel") w.capture = Capture::kPublicTitle;
  }
}

void XMLCALL End(void* data, const XML_Char*) {
  auto& w = *static_cast<Walk*>(data);
  if (w.depth == 2) w.in_saksmappe = false;
  if (w.depth == 3) w.in_journalpost = false;
  w.capture = Capture::kNone;
  --w.depth;
}

void XMLCALL Text(void* data, const XML_Char* s, int len) {
  auto& w = *static_cast<Walk*>(data);
  std::string* into = nullptr;
  switch (w.capture) {
    case Capture::kNone:
      return;
    case Capture::kSystemId:
      into = &w.system_id;
      break;
    case Capture::kNumber:
      into = &w.number;
      break;
    case Capture::kPublicTitle:
      into = &w.public_title;
      break;
  }
  if (into->size() + static_cast<size_t>(len) > kMaxArkivmeldingText) {
    return w.Stop(fmt::format("a text is longer than {} bytes", kMaxArkivmeldingText));
  }
  into->append(s, static_cast<size_t>(len));
}

// A DOCTYPE brings a DTD: entities (billion laughs), external ones (files, the network).
void XMLCALL Doctype(void* data, const XML_Char*, const XML_Char*, const XML_Char*, int) {
  static_cast<Walk*>(data)->Stop("it has a DOCTYPE (a DTD is not allowed)");
}

std::string Trimmed(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

Status Bad(std::string_view why) {
  return Status(Code::kInvalidArgument,
                fmt::format("{}: {}", kArkivmeldingFile, EscapeControl(why.substr(0, 300))));
}

}  // namespace

Result<ArkivmeldingInfo> ParseArkivmelding(std::string_view xml) {
  if (xml.size() > kMaxArkivmeldingBytes) {
    return Bad(fmt::format("larger than {} bytes", kMaxArkivmeldingBytes));
  }
  Parser parser(XML_ParserCreateNS(nullptr, kSep));
  if (!parser) return Status(Code::kInternal, "cannot create an XML parser");
  Walk w;
  w.parser = parser.get();
  XML_SetUserData(parser.get(), &w);
  XML_SetElementHandler(parser.get(), Start, End);
  XML_SetCharacterDataHandler(parser.get(), Text);
  XML_SetStartDoctypeDeclHandler(parser.get(), Doctype);
  XML_SetParamEntityParsing(parser.get(), XML_PARAM_ENTITY_PARSING_NEVER);
  const XML_Status done =
      XML_Parse(parser.get(), xml.data(), static_cast<int>(xml.size()), XML_TRUE);
  if (!w.error.empty()) return Bad(w.error);
  if (done != XML_STATUS_OK) {
    return Bad(fmt::format("not well-formed XML: {} (line {})",
                           XML_ErrorString(XML_GetErrorCode(parser.get())),
                           XML_GetCurrentLineNumber(parser.get())));
  }
  if (!w.saw_saksmappe) return Bad("no <mappe xsi:type=\"saksmappe\">");
  if (!w.saw_journalpost) return Bad("no <basisregistrering xsi:type=\"journalpost\"> in it");
  ArkivmeldingInfo out;
  out.public_title = Trimmed(w.public_title);
  const std::string number = Trimmed(w.number);
  if (!number.empty()) {
    if (number.size() > 30 || number.find_first_not_of("0123456789") != std::string::npos) {
      return Bad(fmt::format("journalpostnummer '{}' is not a whole number", number));
    }
    out.reference = Trimmed(w.system_id) + "-" + number;
  }
  return out;
}

}  // namespace bud::ip
