// State of the streamed transfers an Engine runs (stream_send.cc, stream_receive.cc).
#pragma once

#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include "common/crypto/certs.h"
#include "common/crypto/stream.h"
#include "common/orgnr.h"
#include "integration-point/engine.h"

namespace bud::ip {

// An upload to the broker: the sealed stream in the spool, sent from the broker's next_chunk on.
struct Engine::StreamUpload {
  int fd = -1;
  crypto::StreamLayout layout;
  uint64_t next_send = 0;
  uint64_t acked = 0;
  uint32_t window = 8;
  int64_t started_mono = 0;
  int64_t last_log_mono = 0;
  uint64_t start_chunk = 0;
  uint64_t saved = UINT64_MAX;  // `acked` as last written to the store's transfer row
  int64_t saved_mono = 0;
  ~StreamUpload() {
    if (fd >= 0) ::close(fd);
  }
};

// A delivery from the broker: records checked by the verifier and appended to the spool.
struct Engine::StreamDownload {
  std::string head;
  MessageRow row;
  Orgnr sender;
  std::vector<crypto::Cert> sender_certs;
  std::vector<X509*> sender_cert_ptrs;
  std::optional<crypto::ChunkVerifier> verifier;
  int fd = -1;
  bool unsynced = false;
  uint64_t failed_index = UINT64_MAX;  // a record that failed once and was asked for again
  uint64_t resume_sent_for = UINT64_MAX;
  int64_t resume_sent_mono = 0;
  int64_t started_mono = 0;
  int64_t last_log_mono = 0;
  uint64_t start_chunk = 0;
  uint64_t saved = UINT64_MAX;  // next_index() as last written to the store's transfer row
  int64_t saved_mono = 0;
  explicit StreamDownload(Orgnr s) : sender(std::move(s)) {}
  ~StreamDownload() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace bud::ip
