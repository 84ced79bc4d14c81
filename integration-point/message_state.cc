// See message_state.h.
#include "integration-point/message_state.h"

namespace bud::ip {

const char* Text(Direction d) { return d == Direction::kOut ? "OUT" : "IN"; }

const char* Text(WorkState s) {
  switch (s) {
    case WorkState::kNew:
      return "new";
    case WorkState::kSealed:
      return "sealed";
    case WorkState::kSent:
      return "sent";
    case WorkState::kDone:
      return "done";
    case WorkState::kApi:
      return "api";
  }
  return "?";
}

const char* Text(DeliveryMode m) { return m == DeliveryMode::kApi ? "api" : "folder"; }

std::optional<Direction> ParseDirection(std::string_view text) {
  for (Direction d : {Direction::kOut, Direction::kIn}) {
    if (text == Text(d)) return d;
  }
  return std::nullopt;
}

std::optional<WorkState> ParseWorkState(std::string_view text) {
  for (WorkState s :
       {WorkState::kNew, WorkState::kSealed, WorkState::kSent, WorkState::kDone, WorkState::kApi}) {
    if (text == Text(s)) return s;
  }
  return std::nullopt;
}

std::optional<DeliveryMode> ParseDeliveryMode(std::string_view text) {
  for (DeliveryMode m : {DeliveryMode::kFolder, DeliveryMode::kApi}) {
    if (text == Text(m)) return m;
  }
  return std::nullopt;
}

std::string LowerId(std::string_view id) {
  std::string out(id);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace bud::ip
