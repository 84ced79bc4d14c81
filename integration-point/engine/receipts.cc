// See receipts.h.
#include "integration-point/engine/receipts.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "common/orgnr.h"
#include "common/uuid.h"
#include "integration-point/sbd.h"

namespace bud::ip {

namespace {
using nlohmann::json;
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }

constexpr const char* kReceiptType = "arkivmelding_kvittering";
constexpr size_t kMaxDescription = 1000;
constexpr size_t kMaxRaw = 64 * 1024;

std::string Upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

Status Bad(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }

// "OK: Arkivert; Journalpost 2026/42" from the receipt's type and its messages' texts.
std::string Describe(const std::string& type, const json& receipt) {
  std::string text = type;
  const json messages = receipt.value("messages", json::array());
  if (messages.is_array()) {
    std::string sep = ": ";
    for (const auto& m : messages) {
      if (!m.is_object()) continue;
      std::string line;
      if (m.contains("code") && m["code"].is_string()) line = m["code"].get<std::string>();
      if (m.contains("text") && m["text"].is_string()) {
        line += (line.empty() ? "" : " ") + m["text"].get<std::string>();
      }
      if (line.empty()) continue;
      text += sep + line;
      sep = "; ";
    }
  }
  if (text.size() > kMaxDescription) text = text.substr(0, kMaxDescription) + "...";
  return EscapeControl(text);
}
}  // namespace

Result<std::optional<Receipt>> ParseReceipt(const std::string& document_type,
                                            const std::string& metadata_json) {
  std::string type = DocumentTypeName(document_type);
  std::transform(type.begin(), type.end(), type.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (type != kReceiptType) return std::optional<Receipt>();
  BUD_ASSIGN_OR_RETURN(json sbd, ParseJson(metadata_json, "the receipt's metadata"));
  if (!sbd.is_object() || !sbd.contains(kReceiptType) || !sbd[kReceiptType].is_object()) {
    return Bad("the receipt has no 'arkivmelding_kvittering' object");
  }
  const json& body = sbd[kReceiptType];
  Receipt r;
  if (!body.contains("relatedToMessageId") || !body["relatedToMessageId"].is_string()) {
    return Bad("the receipt has no relatedToMessageId");
  }
  r.related_message_id = body["relatedToMessageId"].get<std::string>();
  if (!IsUuid(r.related_message_id)) {
    return Bad(fmt::format("the receipt's relatedToMessageId '{}' is not a UUID",
                           EscapeControl(r.related_message_id.substr(0, 64))));
  }
  const std::string type_text = body.contains("receiptType") && body["receiptType"].is_string()
                                    ? Upper(body["receiptType"].get<std::string>())
                                    : std::string();
  if (type_text == "OK" || type_text == "WARNING") {
    r.status = wire::LEST;
  } else if (type_text == "ERROR" || type_text == "NOTSUPPORTED") {
    r.status = wire::FEIL;
  } else {
    return Bad(
        fmt::format("the receipt's receiptType '{}' is none of OK, WARNING, ERROR, "
                    "NOTSUPPORTED",
                    EscapeControl(type_text.substr(0, 64))));
  }
  r.description = "arkivmelding_kvittering " + Describe(type_text, body);
  r.raw = body.dump();
  if (r.raw.size() > kMaxRaw) r.raw = json{{"receiptType", type_text}}.dump();
  return std::optional<Receipt>(std::move(r));
}

Result<std::string> AnswerChannel(OutgoingStore& store, const MessageRow& out,
                                  const wire::Payload& payload) {
  std::string type = DocumentTypeName(out.document_type);
  std::transform(type.begin(), type.end(), type.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (type != kReceiptType) return std::string();
  auto sbd = ParseJson(payload.metadata_json(), "the receipt's metadata");
  if (!sbd.ok() || !sbd->is_object() || !sbd->contains(kReceiptType)) return std::string();
  const json& body = (*sbd)[kReceiptType];
  if (!body.is_object() || !body.contains("relatedToMessageId") ||
      !body["relatedToMessageId"].is_string() ||
      !IsUuid(body["relatedToMessageId"].get<std::string>())) {
    return std::string();
  }
  return store.ChannelOfIncoming(body["relatedToMessageId"].get<std::string>());
}

void Receipts::OnReceived(const MessageRow& in, const wire::Payload& payload) {
  auto parsed = ParseReceipt(in.document_type, payload.metadata_json());
  if (!parsed.ok()) {
    Log()->warn("message {} from {}: receipt not applied: {}", in.message_id, in.sender,
                parsed.status().message());
    return;
  }
  if (!*parsed) return;
  const Receipt& r = **parsed;
  auto original = store_.Get(r.related_message_id);
  if (!original.ok()) {
    Log()->error("message {}: receipt for {}: {}", in.message_id, r.related_message_id,
                 original.status().ToString());
    return;
  }
  // Only the organisation the original went to may answer for it.
  bool from_its_receiver = false;
  if (*original) {
    auto from = Orgnr::Parse(in.sender);
    auto to = Orgnr::Parse((*original)->receiver);
    from_its_receiver = from.ok() && to.ok() && *from == *to;
  }
  if (!from_its_receiver) {
    Log()->warn(
        "message {} from {}: receipt for message {} ignored: this point sent no such message to "
        "{}",
        in.message_id, in.sender, r.related_message_id, in.sender);
    return;
  }
  const std::string& id = (*original)->message_id;
  auto advanced = store_.ApplyReceipt(id, r.status, r.description, r.raw, clock_.NowMs());
  if (!advanced.ok()) {
    Log()->error("message {}: cannot record the receipt {}: {}", id, in.message_id,
                 advanced.status().ToString());
    return;
  }
  Log()->info("message {}: {} by receipt {} from {}{}", id, StatusName(r.status), in.message_id,
              in.sender, *advanced ? "" : " (kept in history; does not change the current status)");
}

}  // namespace bud::ip
