// The integration point's message state as types: which way a message goes, what the engine
// still has to do with it (its work state), and how received messages are handed over (the
// delivery mode). Their text forms ("OUT", "sealed", "api" ...) belong to the storage and JSON
// edges only: the store's columns (docs/storage.md), the config file and the HTTP API. Inside,
// parts and the store's interface pass these enums; the store converts at its columns.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace bud::ip {

enum class Direction { kOut, kIn };

// Work states (the store's column `state`):
//   OUT: kNew (to seal) -> kSealed (to submit, envelope kept) -> kSent (the broker has it) | kDone
//   IN:  kDone (nothing left; reports are in pending_reports), kApi (kept for the HTTP API)
enum class WorkState { kNew, kSealed, kSent, kDone, kApi };

// [incoming] delivery: received messages go to the inbox folder, or stay for the HTTP API.
enum class DeliveryMode { kFolder, kApi };

// The storage and config text: "OUT"/"IN"; "new", "sealed", "sent", "done", "api";
// "folder"/"api".
const char* Text(Direction d);
const char* Text(WorkState s);
const char* Text(DeliveryMode m);
std::optional<Direction> ParseDirection(std::string_view text);
std::optional<WorkState> ParseWorkState(std::string_view text);
std::optional<DeliveryMode> ParseDeliveryMode(std::string_view text);

// A message id as it travels and names folders: in lower case. A client may spell an id in
// upper case; the store keeps its spelling and compares ids without regard to case, while the
// envelope, the broker and the receiver see the lower-case form (docs/http-api.md, "Ids").
std::string LowerId(std::string_view id);

// A stored work state (`row.state`) is `s`.
inline bool Is(const std::string& stored, WorkState s) { return stored == Text(s); }

}  // namespace bud::ip
