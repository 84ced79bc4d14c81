// The JSON shapes of the HTTP API in one place (docs/http-api.md, "Endpoints"): status lines,
// conversations, Spring-style pages, capabilities, and the SBD of an incoming message. Pure
// functions of what the store gave; no I/O.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "integration-point/store/rows.h"
#include "proto/registry.pb.h"

namespace bud::ip::api {

// The reason when there is one, else the status's text ("Accepted and stored by the broker").
std::string Describe(const std::string& status, const std::string& reason);
// The HTTP API's text of a direction: "OUTGOING" or "INCOMING".
std::string DirectionName(Direction direction);

// {id, lastUpdate, status, description, conversationId, messageId, direction[, rawReceipt]}.
nlohmann::json StatusJson(const StatusItem& s);

// A message with its history (and its transfer's progress when it was streamed).
nlohmann::json ConversationJson(const MessageRow& m, const std::vector<HistoryRow>& history,
                                const std::optional<TransferRow>& transfer);

// {content, totalElements, totalPages, number, size, numberOfElements, first, last, empty}.
nlohmann::json PageJson(nlohmann::json content, int64_t total, int64_t number, int64_t size);

// {"capabilities": [{process, serviceIdentifier, documentTypes}]} of a registry entry (none for
// an unknown organisation), only `process` when it is not empty.
nlohmann::json CapabilitiesJson(const wire::RegistryEntry* entry, const std::string& process);

// The SBD of an incoming message: the sender's own SBD from the stored payload's metadata
// (`stored_payload`: the serialised wire::Payload, "" when gone) with the verified header fields.
nlohmann::json IncomingSbdJson(const MessageRow& m, const std::string& stored_payload);

}  // namespace bud::ip::api
