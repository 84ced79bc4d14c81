// See json_shapes.h.
#include "integration-point/api/json_shapes.h"

#include <map>

#include "common/clock.h"
#include "common/oslo_time.h"
#include "common/status_machine.h"
#include "integration-point/sbd.h"
#include "integration-point/status_view.h"
#include "proto/envelope.pb.h"

namespace bud::ip::api {

using nlohmann::json;

std::string Describe(const std::string& status, const std::string& reason) {
  if (!reason.empty()) return reason;
  static const std::map<std::string, std::string> kText = {
      {"OPPRETTET", "Taken in by the sender's integration point"},
      {"SENDT", "Accepted and stored by the broker"},
      {"MOTTATT", "Verified and decrypted by the receiver's integration point"},
      {"LEVERT", "Delivered to the receiver's archive system"},
      {"LEST", "Read by the receiver"},
      {"FEIL", "Failed"},
      {"LEVETID_UTLOPT", "Expired before it was delivered"},
      {"ANNET", "Other"},
      {"INNKOMMENDE_MOTTATT", "Received; waiting for the archive system"},
      {"INNKOMMENDE_LEVERT", "Taken by the archive system"},
  };
  auto it = kText.find(status);
  return it == kText.end() ? status : it->second;
}

std::string DirectionName(Direction direction) {
  return direction == Direction::kOut ? "OUTGOING" : "INCOMING";
}

json StatusJson(const StatusItem& s) {
  json out = {{"id", s.id},
              {"lastUpdate", FormatOsloTime(s.at_ms)},
              {"status", s.status},
              {"description", Describe(s.status, s.reason)},
              {"convId", s.conv_id},
              {"conversationId", s.conversation_id},
              {"messageId", s.message_id},
              {"direction", DirectionName(s.direction)}};
  if (!s.raw_receipt.empty()) out["rawReceipt"] = s.raw_receipt;
  return out;
}

json ConversationJson(const MessageRow& m, const std::vector<HistoryRow>& history,
                      const std::optional<TransferRow>& transfer) {
  json statuses = json::array();
  for (const auto& h : history) {
    statuses.push_back({{"id", h.id},
                        {"status", h.status},
                        {"description", Describe(h.status, h.reason)},
                        {"lastUpdate", FormatOsloTime(h.at_ms)},
                        {"current", h.current}});
  }
  auto st = StatusFromName(m.status);
  json out = {
      {"id", m.id},
      {"conversationId", m.conversation_id},
      {"messageId", m.message_id},
      {"sender", m.sender},  // eFormidling: the ISO 6523 identifier, as senderIdentifier
      {"senderIdentifier", m.sender},
      {"receiver", m.receiver},
      {"receiverIdentifier", m.receiver},
      {"processIdentifier", m.process},
      {"documentIdentifier", m.document_type},
      {"serviceIdentifier", "DPO"},
      {"messageTitle", m.title},
      // eFormidling: "<saksmappe systemID>-<journalpostnummer>" from an outgoing
      // arkivmelding.xml, else the conversation id.
      {"messageReference", m.message_reference.empty() ? m.conversation_id : m.message_reference},
      {"lastUpdate", FormatOsloTime(m.updated_ms)},
      {"created", FormatOsloTime(m.created_ms)},
      {"expiry", FormatOsloTime(m.expires_ms)},
      {"finished", st && IsFinished(*st)},
      {"direction", DirectionName(m.direction)},
      {"status", m.status},
      {"messageStatuses", statuses}};
  // A streamed message: its transfer's progress, as `bud-ip status --json` gives it.
  if (transfer) out["transfer"] = TransferJson(*transfer);
  return out;
}

json PageJson(json content, int64_t total, int64_t number, int64_t size, bool sorted) {
  const int64_t pages = size > 0 ? (total + size - 1) / size : 0;
  const auto n = static_cast<int64_t>(content.size());
  const json sort = {{"sorted", sorted}, {"unsorted", !sorted}, {"empty", !sorted}};
  return {{"content", std::move(content)},
          {"pageable",
           {{"sort", sort},
            {"pageNumber", number},
            {"pageSize", size},
            {"offset", number * size},
            {"paged", true},
            {"unpaged", false}}},
          {"sort", sort},
          {"totalElements", total},
          {"totalPages", pages},
          {"number", number},
          {"size", size},
          {"numberOfElements", n},
          {"first", number == 0},
          {"last", number + 1 >= pages},
          {"empty", n == 0}};
}

bool DocumentTypeFitsProcess(const std::string& type, const std::string& process) {
  // eFormidling's arkivmelding processes: the response process carries the receipt, every
  // other arkivmelding process the arkivmelding itself.
  if (process.find(":arkivmelding:response:") != std::string::npos) {
    return type == "arkivmelding_kvittering";
  }
  if (process.starts_with("urn:no:difi:profile:arkivmelding:")) return type == "arkivmelding";
  return true;  // a process we know no table for: every type the organisation accepts
}

json CapabilitiesJson(const wire::RegistryEntry* entry, const std::string& process) {
  json caps = json::array();
  if (entry) {
    for (const auto& p : entry->processes()) {
      if (!process.empty() && p != process) continue;
      json types = json::array();
      for (const auto& t : entry->document_types()) {
        if (!DocumentTypeFitsProcess(DocumentTypeName(t), p)) continue;
        types.push_back({{"type", DocumentTypeName(t)}, {"standard", t}});
      }
      caps.push_back({{"process", p}, {"serviceIdentifier", "DPO"}, {"documentTypes", types}});
    }
  }
  return {{"capabilities", caps}};
}

json IncomingSbdJson(const MessageRow& m, const std::string& stored_payload) {
  std::string metadata;
  wire::Payload p;
  if (!stored_payload.empty() && p.ParseFromString(stored_payload)) metadata = p.metadata_json();
  return SbdOf(m, metadata);
}

}  // namespace bud::ip::api
