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

// A page as Spring Data serialises one: {content, pageable{sort, pageNumber, pageSize, offset,
// paged, unpaged}, sort{sorted, unsorted, empty}, totalElements, totalPages, number, size,
// numberOfElements, first, last, empty}. `sorted`: the content is in a defined order (every
// list of ours is, by its default sort or the client's).
nlohmann::json PageJson(nlohmann::json content, int64_t total, int64_t number, int64_t size,
                        bool sorted = true);

// Whether documents of `type` (the standard's last segment, "arkivmelding") travel under
// `process`, as eFormidling's service registry pairs them: "arkivmelding_kvittering" under the
// arkivmelding response process, "arkivmelding" under the other arkivmelding processes; any type
// under a process without such a rule.
bool DocumentTypeFitsProcess(const std::string& type, const std::string& process);

// {"capabilities": [{process, serviceIdentifier, documentTypes}]} of a registry entry (none for
// null), only `process` when it is not empty; each process with the document types that fit it.
nlohmann::json CapabilitiesJson(const wire::RegistryEntry* entry, const std::string& process);

// The SBD of an incoming message: the sender's own SBD from the stored payload's metadata
// (`stored_payload`: the serialised wire::Payload, "" when gone) with the verified header fields.
nlohmann::json IncomingSbdJson(const MessageRow& m, const std::string& stored_payload);

}  // namespace bud::ip::api
