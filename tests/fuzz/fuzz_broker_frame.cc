// Fuzz target: one frame on the broker link, decoded the way each peer decodes it.
//
// As the broker (broker/server.cc, HandleFrame/OnHello/OnSubmit/OnReport): ClientMessage via
// wire::ParseProto, then for Hello the orgnr, for Submit the envelope and its unverified header
// (message id, sender, receiver), for Report the status name.
// As the integration point (integration-point/engine.cc, OnBrokerFrame/OnDeliver): the same
// bytes as a BrokerMessage, then the delivered envelope, statuses and orgnrs.
#include <cstddef>
#include <cstdint>
#include <zmq.hpp>

#include "common/crypto/envelope.h"
#include "common/status_machine.h"
#include "common/uuid.h"
#include "common/wire/zmq.h"
#include "proto/broker.pb.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace bud;

// The envelope checks both peers make before any signature is verified.
void DecodeEnvelope(const std::string& bytes) {
  auto env = crypto::ParseEnvelope(bytes);
  fuzz::CheckOpenSslQueueEmpty("ParseEnvelope");
  if (!env.ok()) {
    BUD_FUZZ_CHECK(env.status().code() == Code::kMalformed, "ParseEnvelope: wrong error code");
    return;
  }
  BUD_FUZZ_CHECK(!env->header().empty() && !env->signature().empty() && !env->payload().empty(),
                 "ParseEnvelope accepted an envelope without header, signature or payload");
  auto header = crypto::ParseHeaderUnverified(*env);
  if (!header.ok()) return;
  BUD_FUZZ_CHECK(header->version() == crypto::kEnvelopeVersion,
                 "ParseHeaderUnverified accepted another version");
  const std::string& id = header->message_id();
  if (IsUuid(id)) BUD_FUZZ_CHECK(id.size() == 36, "IsUuid accepted a string that is not 36 long");
  fuzz::CheckOrgnr(header->sender());
  fuzz::CheckOrgnr(header->receiver());
}

void CheckStatus(wire::MessageStatus s) {
  std::string_view name = StatusName(s);
  BUD_FUZZ_CHECK(!name.empty(), "StatusName gave an empty name");
  auto back = StatusFromName(name);
  if (back) BUD_FUZZ_CHECK(*back == s, "StatusFromName(StatusName(s)) != s");
  (void)IsFinal(s);
}

void AsBroker(const zmq::message_t& frame) {
  wire::ClientMessage msg;
  if (!wire::ParseProto(frame, msg, "ClientMessage").ok()) return;
  switch (msg.body_case()) {
    case wire::ClientMessage::kHello:
      fuzz::CheckOrgnr(msg.hello().orgnr());
      break;
    case wire::ClientMessage::kSubmit:
      DecodeEnvelope(msg.submit().envelope());
      break;
    case wire::ClientMessage::kReport: {
      CheckStatus(msg.report().status());
      (void)Advances(wire::SENDT, msg.report().status());
      break;
    }
    default:
      break;
  }
}

void AsIntegrationPoint(const zmq::message_t& frame) {
  wire::BrokerMessage msg;
  if (!wire::ParseProto(frame, msg, "BrokerMessage").ok()) return;
  switch (msg.body_case()) {
    case wire::BrokerMessage::kWelcome:
      fuzz::CheckOrgnr(msg.welcome().orgnr());
      break;
    case wire::BrokerMessage::kDeliver:
      DecodeEnvelope(msg.deliver().envelope());
      break;
    case wire::BrokerMessage::kReportReply:
      CheckStatus(msg.report_reply().status());
      break;
    case wire::BrokerMessage::kStatusNotice: {
      CheckStatus(msg.status_notice().status());
      (void)Advances(wire::MOTTATT, msg.status_notice().status());
      break;
    }
    default:
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bud::fuzz::QuietProtobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  zmq::message_t frame(data, size);  // copies, as a received frame would own its bytes
  AsBroker(frame);
  AsIntegrationPoint(frame);
  return 0;
}
