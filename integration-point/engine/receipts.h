// Receipts: an arkivmelding_kvittering that arrives names, in relatedToMessageId, a message this
// point sent; that message gets LEST (receiptType OK or WARNING) or FEIL (ERROR or NOTSUPPORTED)
// in its history, with the receipt's messages as the description and the receipt itself as the
// raw receipt (docs/http-api.md, "Receipts").
//
// Only the receiver of the original may answer for it: a receipt naming a message this point did
// not send to the receipt's (verified) sender changes nothing and is logged, so a hostile member
// cannot mark someone else's messages read or failed (docs/security.md). The receipt itself is
// kept as any incoming message (inbox folder or HTTP API).
//
// Operation: the engine thread, inside the turn that records the receipt, so the receipt and
// its effect on the original are committed together. Limitations: a receipt that arrives
// streamed (larger than the stream threshold) is kept but not mapped.
#pragma once

#include <optional>
#include <string>

#include "common/status_machine.h"
#include "integration-point/engine/clock.h"
#include "integration-point/store/point_store.h"
#include "proto/envelope.pb.h"

namespace bud::ip {

// What a receipt says, read from the business message of an SBD (or a folder's message.json)
// whose document type is arkivmelding_kvittering.
struct Receipt {
  std::string related_message_id;
  MsgStatus status = wire::LEST;  // LEST or FEIL
  std::string description;        // "<receiptType>: <messages' texts>"
  std::string raw;                // the arkivmelding_kvittering object as JSON
};

// The receipt in `metadata_json` when `document_type` is an arkivmelding_kvittering; nullopt
// when it is no receipt; kInvalidArgument (saying what is wrong) for a receipt that cannot be
// mapped (no relatedToMessageId, an unknown receiptType).
Result<std::optional<Receipt>> ParseReceipt(const std::string& document_type,
                                            const std::string& metadata_json);

// The receiver_channel of outgoing message `out` (docs/protocol.md, "Message channels"): for an
// arkivmelding_kvittering, the channel of the point the message it answers came from, so that
// the receipt reaches that point; "" for every other message (it goes to the receiver's point
// without a channel), and for a receipt answering no message received here.
Result<std::string> AnswerChannel(OutgoingStore& store, const MessageRow& out,
                                  const wire::Payload& payload);

class Receipts {
 public:
  Receipts(OutgoingStore& store, const Clock& clock) : store_(store), clock_(clock) {}

  // A received message `in` (verified sender) with its decrypted payload was recorded.
  void OnReceived(const MessageRow& in, const wire::Payload& payload);

 private:
  OutgoingStore& store_;
  const Clock& clock_;
};

}  // namespace bud::ip
