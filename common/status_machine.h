// The one status state machine (docs/protocol.md, "Statuses"), used by broker and integration
// point alike.
//
// Outgoing: OPPRETTET -> SENDT -> MOTTATT -> LEVERT -> LEST, each optional to skip forwards;
// FEIL and LEVETID_UTLOPT are final from any non-final status.
// Incoming: INNKOMMENDE_MOTTATT -> INNKOMMENDE_LEVERT; FEIL is final.
// ANNET ("other") is kept in the history and never becomes the current status.
// A status never moves a message backwards and nothing changes a final status. Repeats are
// ignored. Late statuses that do not advance are still kept in the history, marked as such.
#pragma once

#include <optional>
#include <string_view>

#include "proto/broker.pb.h"

namespace bud {

using MsgStatus = wire::MessageStatus;

std::string_view StatusName(MsgStatus s);
std::optional<MsgStatus> StatusFromName(std::string_view name);
bool IsFinal(MsgStatus s);
// A conversation is finished (Next Move's `finished`, no longer in /api/conversations/queue) at
// LEVERT, LEST, FEIL, LEVETID_UTLOPT and INNKOMMENDE_LEVERT: nothing more is expected of it,
// although LEST may still follow LEVERT.
bool IsFinished(MsgStatus s);
// True when `next` becomes the current status of a message whose current status is `current`.
bool Advances(MsgStatus current, MsgStatus next);

}  // namespace bud
