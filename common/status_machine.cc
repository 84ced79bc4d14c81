// Status names and transitions. See status_machine.h.
#include "common/status_machine.h"

namespace bud {

std::string_view StatusName(MsgStatus s) {
  switch (s) {
    case wire::OPPRETTET: return "OPPRETTET";
    case wire::SENDT: return "SENDT";
    case wire::MOTTATT: return "MOTTATT";
    case wire::LEVERT: return "LEVERT";
    case wire::LEST: return "LEST";
    case wire::FEIL: return "FEIL";
    case wire::LEVETID_UTLOPT: return "LEVETID_UTLOPT";
    case wire::INNKOMMENDE_MOTTATT: return "INNKOMMENDE_MOTTATT";
    case wire::INNKOMMENDE_LEVERT: return "INNKOMMENDE_LEVERT";
    case wire::ANNET: return "ANNET";
    default: return "UKJENT";
  }
}

std::optional<MsgStatus> StatusFromName(std::string_view name) {
  for (int i = wire::OPPRETTET; i <= wire::ANNET; ++i) {
    auto s = static_cast<MsgStatus>(i);
    if (StatusName(s) == name) return s;
  }
  return std::nullopt;
}

bool IsFinal(MsgStatus s) { return s == wire::FEIL || s == wire::LEVETID_UTLOPT; }

bool IsFinished(MsgStatus s) {
  return IsFinal(s) || s == wire::LEVERT || s == wire::LEST || s == wire::INNKOMMENDE_LEVERT;
}

namespace {
int Rank(MsgStatus s) {
  switch (s) {
    case wire::OPPRETTET: return 1;
    case wire::SENDT: return 2;
    case wire::MOTTATT: return 3;
    case wire::LEVERT: return 4;
    case wire::LEST: return 5;
    case wire::INNKOMMENDE_MOTTATT: return 11;
    case wire::INNKOMMENDE_LEVERT: return 12;
    default: return 0;
  }
}
bool Incoming(MsgStatus s) { return s == wire::INNKOMMENDE_MOTTATT || s == wire::INNKOMMENDE_LEVERT; }
}  // namespace

bool Advances(MsgStatus current, MsgStatus next) {
  if (IsFinal(current) || current == next) return false;
  if (next == wire::STATUS_UNSPECIFIED || next == wire::ANNET) return false;
  if (IsFinal(next)) return true;
  if (current == wire::STATUS_UNSPECIFIED) return true;
  if (Incoming(current) != Incoming(next)) return false;
  return Rank(next) > Rank(current);
}

}  // namespace bud
