// Next Move SBD <-> our message fields. See sbd.h.
#include "integration-point/sbd.h"

#include <fmt/format.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/message_channel.h"
#include "common/oslo_time.h"
#include "common/uuid.h"

namespace bud::ip {

namespace {
using nlohmann::json;

Status Bad(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }

// The string at `path` (dotted, for messages) or "" when absent; an error when it is not a string.
Result<std::string> StringAt(const json& obj, const char* key, const std::string& path) {
  if (!obj.is_object() || !obj.contains(key) || obj[key].is_null()) return std::string();
  if (!obj[key].is_string()) return Bad(fmt::format("SBD: '{}.{}' must be a string", path, key));
  return obj[key].get<std::string>();
}

Result<std::string> PartyId(const json& header, const char* party) {
  const std::string path = fmt::format("standardBusinessDocumentHeader.{}", party);
  if (!header.contains(party) || header[party].is_null()) return std::string();
  const json& list = header[party];
  if (!list.is_array() || list.size() != 1 || !list[0].is_object()) {
    return Bad(fmt::format("SBD: '{}' must be a list with one party", path));
  }
  const json& id = list[0].value("identifier", json());
  if (!id.is_object()) return Bad(fmt::format("SBD: '{}[0].identifier' is missing", path));
  return StringAt(id, "value", path + "[0].identifier");
}

json* ConversationScope(json& header) {
  if (!header.contains("businessScope") || !header["businessScope"].is_object()) return nullptr;
  json& scopes = header["businessScope"]["scope"];
  if (!scopes.is_array()) return nullptr;
  for (auto& s : scopes) {
    if (s.is_object() && s.value("type", "") == "ConversationId") return &s;
  }
  return nullptr;
}

bool IsMessageChannelScope(const json& s) {
  if (!s.is_object() || !s.contains("type") || !s["type"].is_string()) return false;
  const std::string type = s["type"].get<std::string>();
  return type == "MessageChannel" || type == "MESSAGE_CHANNEL";
}

// The MessageChannel scope, nullptr when there is none.
json* MessageChannelScope(json& header) {
  if (!header.contains("businessScope") || !header["businessScope"].is_object()) return nullptr;
  json& scopes = header["businessScope"]["scope"];
  if (!scopes.is_array()) return nullptr;
  for (auto& s : scopes) {
    if (IsMessageChannelScope(s)) return &s;
  }
  return nullptr;
}

json Party(const std::string& wire) {
  return json::array({{{"identifier", {{"value", wire}, {"authority", "iso6523-actorid-upis"}}}}});
}
}  // namespace

std::string DocumentTypeName(std::string_view standard) {
  auto pos = standard.rfind(':');
  return std::string(pos == std::string_view::npos ? standard : standard.substr(pos + 1));
}

namespace {

// The receiver (required) and the sender (us, or one we send for: OnBehalfOf), written back in
// the SBD's own shape. The envelope's sender is us either way (the broker admits no other).
Status ParseParties(json& header, const Orgnr& me, const OutboxLimits& limits, OutgoingDraft& d) {
  BUD_ASSIGN_OR_RETURN(std::string receiver, PartyId(header, "receiver"));
  if (receiver.empty()) {
    return Bad("SBD: 'standardBusinessDocumentHeader.receiver[0].identifier.value' is missing "
               "(the receiver's organisation number, e.g. \"0192:910075918\")");
  }
  auto r = Orgnr::Parse(receiver);
  if (!r.ok()) return Bad("SBD: receiver: " + r.status().message());
  d.receiver = *r;
  header["receiver"] = Party(d.receiver.wire());

  BUD_ASSIGN_OR_RETURN(std::string sender, PartyId(header, "sender"));
  BUD_ASSIGN_OR_RETURN(std::string party, OnBehalfOf(sender, me, limits, "SBD: sender"));
  header["sender"] = Party(party);
  return Status::Ok();
}

// documentIdentification: the document type (standard, type), the message id (a UUID, made
// when missing, as the client spelled it) and the creation time. Returns the type's short name.
Result<std::string> ParseDocumentIdentification(json& header, OutgoingDraft& d) {
  if (!header.contains("documentIdentification") || !header["documentIdentification"].is_object()) {
    return Bad("SBD: 'standardBusinessDocumentHeader.documentIdentification' is missing");
  }
  json& doc = header["documentIdentification"];
  const std::string doc_path = "standardBusinessDocumentHeader.documentIdentification";
  BUD_ASSIGN_OR_RETURN(d.document_type, StringAt(doc, "standard", doc_path));
  if (d.document_type.empty()) {
    return Bad(fmt::format("SBD: '{}.standard' is missing (the document type, e.g. "
                           "\"urn:no:difi:arkivmelding:xsd::arkivmelding\")",
                           doc_path));
  }
  const std::string type_name = DocumentTypeName(d.document_type);
  BUD_ASSIGN_OR_RETURN(std::string type, StringAt(doc, "type", doc_path));
  if (type.empty()) {
    doc["type"] = type_name;
  } else if (type != type_name) {
    return Bad(fmt::format("SBD: '{}.type' is '{}' but the standard '{}' names '{}'", doc_path,
                           type, d.document_type, type_name));
  }
  BUD_ASSIGN_OR_RETURN(d.message_id, StringAt(doc, "instanceIdentifier", doc_path));
  if (d.message_id.empty()) {
    d.message_id = NewUuid();
  } else if (!IsUuid(d.message_id)) {
    return Bad(fmt::format("SBD: '{}.instanceIdentifier' '{}' is not a UUID", doc_path,
                           d.message_id));
  }
  // Kept as the client spelled it (an upper-case GUID too); compared without regard to case.
  doc["instanceIdentifier"] = d.message_id;
  if (!doc.contains("typeVersion")) doc["typeVersion"] = "1.0";
  doc["creationDateAndTime"] = FormatOsloTime(d.created_ms);
  if (!header.contains("headerVersion")) header["headerVersion"] = "1.0";
  return type_name;
}

// businessScope.scope[ConversationId]: the process, the conversation id (a UUID, made when
// missing, as the client spelled it) and the expiry (expectedResponseDateTime, the default TTL when
// missing).
Status ParseConversationScope(json& header, const OutboxLimits& limits, OutgoingDraft& d) {
  json* scope = ConversationScope(header);
  if (scope == nullptr) {
    return Bad("SBD: 'standardBusinessDocumentHeader.businessScope.scope' has no entry with "
               "\"type\": \"ConversationId\" (it carries the process as 'identifier')");
  }
  const std::string scope_path = "businessScope.scope[ConversationId]";
  BUD_ASSIGN_OR_RETURN(d.process, StringAt(*scope, "identifier", scope_path));
  if (d.process.empty()) {
    return Bad(fmt::format("SBD: '{}.identifier' is missing (the process, e.g. "
                           "\"urn:no:difi:profile:arkivmelding:administrasjon:ver1.0\")",
                           scope_path));
  }
  BUD_ASSIGN_OR_RETURN(d.conversation_id, StringAt(*scope, "instanceIdentifier", scope_path));
  if (d.conversation_id.empty()) {
    d.conversation_id = NewUuid();
  } else if (!IsUuid(d.conversation_id)) {
    return Bad(fmt::format("SBD: '{}.instanceIdentifier' '{}' is not a UUID", scope_path,
                           d.conversation_id));
  }
  (*scope)["instanceIdentifier"] = d.conversation_id;

  std::string expires;
  json& info = (*scope)["scopeInformation"];
  if (info.is_null()) info = json::array();
  if (!info.is_array()) return Bad(fmt::format("SBD: '{}.scopeInformation' must be a list", scope_path));
  if (!info.empty()) {
    BUD_ASSIGN_OR_RETURN(expires, StringAt(info[0], "expectedResponseDateTime",
                                           scope_path + ".scopeInformation[0]"));
  }
  BUD_ASSIGN_OR_RETURN(d.expires_ms, ParseExpiry(expires, d.created_ms, limits.default_ttl_ms,
                                                 "SBD: expectedResponseDateTime"));
  if (info.empty()) info.push_back(json::object());
  if (info[0].is_object()) info[0]["expectedResponseDateTime"] = FormatOsloTime(d.expires_ms);
  return Status::Ok();
}

// businessScope.scope[MessageChannel] (docs/http-api.md, "Message channels"), as eFormidling
// (NextMoveValidator, NextMoveOutMessageFactory): on a point with a channel it is added when
// missing, and one naming another channel than the point's is refused
// (MessageChannelInvalidException); a point without a channel checks nothing but the name and
// keeps the scope as given (it does not route: the header's sender_channel is the point's). A
// receipt's names the channel of the message it answers, which the point sets when it seals it
// (engine/receipts.h): here it only has to be a channel name.
Status ParseMessageChannelScope(json& header, const std::string& type_name,
                                const OutboxLimits& limits) {
  json* scope = MessageChannelScope(header);
  std::string given;
  if (scope != nullptr) {
    BUD_ASSIGN_OR_RETURN(given,
                         StringAt(*scope, "identifier", "businessScope.scope[MessageChannel]"));
    if (Status name = CheckChannel(given, "its identifier"); !name.ok()) {
      return Bad(fmt::format("{}: {}", kMessageChannelInvalid, name.message()));
    }
  }
  if (type_name == "arkivmelding_kvittering") return Status::Ok();
  const std::string& mine = limits.message_channel;
  if (scope != nullptr && !mine.empty() && given != mine) {
    return Bad(
        fmt::format("{} names message channel '{}', but this integration point's "
                    "channel is '{}' (configured: '{}', given: '{}')",
                    kMessageChannelInvalid, given, mine, mine, given));
  }
  if (scope == nullptr && !mine.empty()) {
    json& scopes = header["businessScope"]["scope"];  // exists: the ConversationId scope is there
    scopes.push_back({{"type", "MessageChannel"}, {"identifier", mine}});
  }
  return Status::Ok();
}

// The business message is named after the type ("arkivmelding": {...}); its title, if any.
Status TakeTitle(const json& sbd, const std::string& type_name, OutgoingDraft& d) {
  if (!sbd.contains(type_name)) return Status::Ok();
  if (!sbd[type_name].is_object()) {
    return Bad(fmt::format("SBD: '{}' must be a JSON object", type_name));
  }
  for (const char* k : {"tittel", "title"}) {
    if (sbd[type_name].contains(k) && sbd[type_name][k].is_string()) {
      d.title = sbd[type_name][k].get<std::string>();
      break;
    }
  }
  return Status::Ok();
}

}  // namespace

Result<OutgoingDraft> ParseSbd(const json& input, const Orgnr& me, const OutboxLimits& limits,
                               json* completed) {
  if (!input.is_object()) return Bad("SBD: the body must be a JSON object");
  json sbd = input;
  if (!sbd.contains("standardBusinessDocumentHeader") ||
      !sbd["standardBusinessDocumentHeader"].is_object()) {
    return Bad("SBD: 'standardBusinessDocumentHeader' is missing");
  }
  json& header = sbd["standardBusinessDocumentHeader"];
  OutgoingDraft d{.message_id = {},
                  .conversation_id = {},
                  .receiver = me,
                  .process = {},
                  .document_type = {},
                  .title = {},
                  .message_reference = {},
                  .created_ms = NowMs(),
                  .expires_ms = 0,
                  .payload = {}};
  BUD_RETURN_IF_ERROR(ParseParties(header, me, limits, d));
  BUD_ASSIGN_OR_RETURN(const std::string type_name, ParseDocumentIdentification(header, d));
  BUD_RETURN_IF_ERROR(ParseConversationScope(header, limits, d));
  BUD_RETURN_IF_ERROR(ParseMessageChannelScope(header, type_name, limits));
  BUD_RETURN_IF_ERROR(TakeTitle(sbd, type_name, d));
  d.payload.set_message_id(LowerId(d.message_id));  // as the envelope's header carries it
  d.payload.set_sender(me.wire());
  d.payload.set_receiver(d.receiver.wire());
  d.payload.set_conversation_id(d.conversation_id);
  d.payload.set_title(d.title);
  d.payload.set_metadata_json(sbd.dump());
  if (completed) *completed = std::move(sbd);
  return d;
}

std::string WithMessageChannel(const std::string& sbd_json, const std::string& channel) {
  auto parsed = ParseJson(sbd_json, "metadata");
  if (!parsed.ok() || !parsed->is_object() || !parsed->contains("standardBusinessDocumentHeader") ||
      !(*parsed)["standardBusinessDocumentHeader"].is_object()) {
    return sbd_json;
  }
  json sbd = std::move(parsed).value();
  json& header = sbd["standardBusinessDocumentHeader"];
  json* scope = MessageChannelScope(header);
  if (channel.empty()) {
    if (scope == nullptr) return sbd_json;
    json& scopes = header["businessScope"]["scope"];
    json kept = json::array();
    for (auto& s : scopes) {
      if (!IsMessageChannelScope(s)) kept.push_back(std::move(s));
    }
    scopes = std::move(kept);
  } else if (scope != nullptr) {
    (*scope)["identifier"] = channel;
  } else {
    if (!header.contains("businessScope") || !header["businessScope"].is_object()) {
      header["businessScope"] = json::object();
    }
    json& scopes = header["businessScope"]["scope"];
    if (!scopes.is_array()) scopes = json::array();
    scopes.push_back({{"type", "MessageChannel"}, {"identifier", channel}});
  }
  return sbd.dump();
}

json SbdOf(const MessageRow& m, std::string_view metadata_json) {
  // Bounded: metadata stored before receivers checked its depth must not overflow the stack in
  // the copies and dump() that follow; such metadata is replaced by an SBD from the header.
  auto parsed = ParseJson(metadata_json, "stored metadata");
  json sbd = parsed.ok() ? std::move(parsed).value() : json();
  if (!sbd.is_object() || !sbd.contains("standardBusinessDocumentHeader") ||
      !sbd["standardBusinessDocumentHeader"].is_object()) {
    sbd = json::object();
    sbd["standardBusinessDocumentHeader"] = {{"headerVersion", "1.0"}};
  }
  json& header = sbd["standardBusinessDocumentHeader"];
  header["sender"] = Party(m.sender);
  header["receiver"] = Party(m.receiver);
  json& doc = header["documentIdentification"];
  if (!doc.is_object()) doc = json::object();
  doc["standard"] = m.document_type;
  doc["type"] = DocumentTypeName(m.document_type);
  doc["instanceIdentifier"] = m.message_id;
  if (!doc.contains("typeVersion")) doc["typeVersion"] = "1.0";
  doc["creationDateAndTime"] = FormatOsloTime(m.created_ms);
  json* scope = ConversationScope(header);
  if (scope == nullptr) {
    header["businessScope"] = {{"scope", json::array({{{"type", "ConversationId"}}})}};
    scope = &header["businessScope"]["scope"][0];
  }
  (*scope)["identifier"] = m.process;
  (*scope)["instanceIdentifier"] = m.conversation_id;
  (*scope)["scopeInformation"] =
      json::array({{{"expectedResponseDateTime", FormatOsloTime(m.expires_ms)}}});
  const std::string type_name = DocumentTypeName(m.document_type);
  if (!sbd.contains(type_name) || !sbd[type_name].is_object()) sbd[type_name] = json::object();
  return sbd;
}

}  // namespace bud::ip
