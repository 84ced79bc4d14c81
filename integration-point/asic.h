// The container GET /api/messages/in/pop/{id} returns: an ASiC-E-style zip as eFormidling's
// integration point returns it (the "mimetype" entry first and stored, the attachments, and
// META-INF/manifest.xml listing them with their media types). Unsigned: the envelope's signature
// was verified when the message arrived (see the SBD's and the status history).
#pragma once

#include <string>

#include "common/status.h"
#include "proto/envelope.pb.h"

namespace bud::ip {

inline constexpr const char* kAsicMediaType = "application/vnd.etsi.asic-e+zip";

Result<std::string> MakeAsice(const wire::Payload& payload);

}  // namespace bud::ip
