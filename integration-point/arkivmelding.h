// What the integration point reads from an outgoing message's `arkivmelding.xml` (the Noark 5
// arkivmelding an archive system sends beside its documents), as eFormidling's integration point
// does when that file is added to a message (NextMoveMessageService.addFile): the first
// saksmappe's first journalpost gives the message title (`offentligTittel`) and the reference
// shown in conversations (`messageReference`: "<saksmappe systemID>-<journalpostnummer>").
//
// The file comes from outside, so it is parsed as hostile input (expat, streaming): a DOCTYPE
// is refused (no DTD, hence no entities, internal or external, and no network), nesting deeper
// than kMaxArkivmeldingDepth and files larger than kMaxArkivmeldingBytes are refused, and the
// texts kept are bounded. eFormidling refuses a message whose arkivmelding.xml it cannot read or
// that has no saksmappe or journalpost (its unmarshalling throws); so do we, with a 400 and
// the reason (an outbox folder goes to .failed).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace bud::ip {

inline constexpr const char* kArkivmeldingFile = "arkivmelding.xml";
inline constexpr size_t kMaxArkivmeldingBytes = 16u << 20;
inline constexpr int kMaxArkivmeldingDepth = 64;
inline constexpr size_t kMaxArkivmeldingText = 4096;  // bytes of one kept text (a title)

struct ArkivmeldingInfo {
  std::string public_title;  // the journalpost's offentligTittel, "" when it has none
  std::string reference;     // "<systemID>-<journalpostnummer>", "" without a journalpostnummer
};

// Reads `xml` (the whole file). kInvalidArgument naming what is wrong: not well-formed XML, a
// DOCTYPE, too deep or too large, not an arkivmelding (root element and namespace), no
// saksmappe, no journalpost, a journalpostnummer that is not a whole number, a text too long.
Result<ArkivmeldingInfo> ParseArkivmelding(std::string_view xml);

}  // namespace bud::ip
