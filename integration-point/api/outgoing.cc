// See outgoing.h.
#include "integration-point/api/outgoing.h"

#include <fmt/format.h>

#include "common/json.h"
#include "common/log.h"
#include "integration-point/sbd.h"

namespace bud::ip::api {

namespace {
using nlohmann::json;
std::shared_ptr<spdlog::logger> Log() { return Logger("http"); }
}  // namespace

OutgoingMessages::OutgoingMessages(Orgnr me, OutboxLimits limits, RegistryLookup& registry,
                                   std::function<Status(MessageRow)> take_in)
    : me_(std::move(me)), limits_(limits), registry_(registry), take_in_(std::move(take_in)) {}

Result<OutgoingDraft> OutgoingMessages::Parse(const json& sbd, json* completed) const {
  return ParseSbd(sbd, me_, limits_, completed);
}

Result<wire::RegistryEntry> OutgoingMessages::CheckReceiver(const OutgoingDraft& d) {
  return api::CheckReceiver(registry_, d.receiver, d.process, d.document_type);
}

Result<json> OutgoingMessages::SendWithFiles(const std::string& sbd_text,
                                             const std::vector<UploadedFile>& files) {
  // Bounded before it is parsed (common/json.h): deep nesting is a 400, not a crash.
  BUD_ASSIGN_OR_RETURN(json body, ParseJson(sbd_text, "part 'sbd'"));
  json sbd;
  BUD_ASSIGN_OR_RETURN(OutgoingDraft draft, Parse(body, &sbd));
  for (const auto& f : files) {
    BUD_RETURN_IF_ERROR(AddAttachment(draft, f.name, f.media_type, f.content, limits_));
  }
  return Submit(std::move(draft), std::move(sbd));
}

// At least one file (none needed for receipts and status messages, TakesNoFiles), and the
// business message's main document among them.
Status OutgoingMessages::CheckAttachments(const OutgoingDraft& d, const json& sbd) const {
  if (d.payload.attachments_size() == 0 && !TakesNoFiles(d.document_type)) {
    return Status(Code::kInvalidArgument, "the message has no attachments: send at least one file");
  }
  const std::string type = DocumentTypeName(d.document_type);
  if (!sbd.contains(type) || !sbd[type].contains("hoveddokument") ||
      !sbd[type]["hoveddokument"].is_string()) {
    return Status::Ok();
  }
  const std::string main = sbd[type]["hoveddokument"];
  for (const auto& a : d.payload.attachments()) {
    if (a.name() == main) return Status::Ok();
  }
  return Status(
      Code::kInvalidArgument,
      fmt::format("{}.hoveddokument names '{}' but no attachment has that name", type, main));
}

MessageRow OutgoingMessages::RowOf(const OutgoingDraft& d) const {
  MessageRow row;
  row.message_id = d.message_id;
  row.conversation_id = d.conversation_id;
  row.sender = me_.wire();
  row.receiver = d.receiver.wire();
  row.process = d.process;
  row.document_type = d.document_type;
  row.title = d.title;
  row.message_reference = d.message_reference;
  row.created_ms = d.created_ms;
  row.expires_ms = d.expires_ms;
  d.payload.SerializeToString(&row.payload);
  return row;
}

Result<json> OutgoingMessages::Submit(OutgoingDraft d, json sbd, const Placement& placement) {
  BUD_RETURN_IF_ERROR(CheckAttachments(d, sbd));
  BUD_RETURN_IF_ERROR(CheckReceiver(d).status());
  MessageRow row = RowOf(d);
  if (placement.place) {
    Status placed = placement.place();
    if (!placed.ok()) {
      if (placement.undo) placement.undo();
      Log()->error("message {}: cannot place its files in the spool: {}", row.message_id,
                   placed.ToString());
      return Status(placed.code() == Code::kDiskFull ? Code::kDiskFull : Code::kIo,
                    fmt::format("cannot place the files of message {} in the spool ({}); it is "
                                "not sent and stays as it was",
                                row.message_id, placed.ToString()));
    }
  }
  const std::string id = row.message_id, receiver = row.receiver;
  Status st = take_in_(std::move(row));
  if (!st.ok()) {
    // kUnavailable: the engine may still store it (or never got it); the files stay placed and
    // the engine's start-up recovery puts them back when the draft is still there.
    if (placement.undo && st.code() != Code::kUnavailable) placement.undo();
    return st;
  }
  Log()->info("message {} to {} taken in through the API (OPPRETTET, {} attachment(s))", id,
              receiver, d.payload.attachments_size());
  return sbd;
}

}  // namespace bud::ip::api
