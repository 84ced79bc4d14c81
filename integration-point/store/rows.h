// The rows the integration point's store reads and writes (schema in docs/storage.md), shared by
// its role views (outgoing_store.h, incoming_store.h, history_store.h) and their callers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status_machine.h"
#include "integration-point/message_state.h"

namespace bud::ip {

struct MessageRow {
  std::string message_id;
  Direction direction = Direction::kOut;
  std::string conversation_id;
  std::string sender;  // "0192:<orgnr>"
  std::string receiver;
  std::string process;
  std::string document_type;
  std::string title;
  // OUT: the arkivmelding's saksmappe systemID and journal post number ("<systemID>-<nr>") as
  // eFormidling's messageReference; "" when none (the API then shows the conversation id).
  std::string message_reference;
  int64_t created_ms = 0;
  int64_t expires_ms = 0;
  std::string status;  // current status name
  // Work state. Taken in, an outgoing message is always new; a received one is done unless
  // kept for the HTTP API (kApi).
  WorkState state = WorkState::kDone;
  std::string payload;   // OUT: serialised wire::Payload while state == new
  std::string envelope;  // OUT: sealed envelope while state == sealed
  int64_t id = 0;        // rowid: the conversation id of the HTTP API
  int64_t updated_ms = 0;
  int64_t lock_until_ms = 0;  // IN, state api: locked by a peek until then
  // IN, state api, streamed: the attachments in api-in/<id>/ as JSON [{name, mediaType, size,
  // crc32}] ("" when they are in the payload).
  std::string files;
  // IN: the message channel of the sending point (the header's sender_channel, "" = none): where
  // a receipt answering it goes (docs/protocol.md, "Message channels").
  std::string sender_channel;
};

struct HistoryRow {
  std::string status;
  std::string reason;
  int64_t at_ms;
  bool current;    // false for a late status kept for the record that did not advance
  int64_t id = 0;  // the history line's id (a status item's id)
};

struct PendingReport {
  std::string message_id;
  MsgStatus status;
  std::string reason;
  int64_t at_ms;
};

// A file uploaded to a draft of the HTTP API's large-message flow: on disk as
// spool/drafts/<message-id>/<file> (data_dirs.h), or, in drafts from before schema v3, in `data`
// (`file` empty).
struct DraftFile {
  std::string name;
  std::string title;
  std::string media_type;
  std::string data;
  std::string file;
  uint64_t size = 0;
};

// One status line as the HTTP API's /api/statuses gives it.
struct StatusItem {
  int64_t id = 0;
  int64_t at_ms = 0;
  std::string status;
  std::string reason;
  std::string conversation_id;
  std::string message_id;
  Direction direction = Direction::kOut;
  std::string raw_receipt;  // the receipt behind a LEST or FEIL, "" when none
  int64_t conv_id = 0;      // the conversation's (message row's) numeric id, 0 when it is gone
};

// One `sort=property[,asc|desc]` of an HTTP API list, by the API's property name ("lastUpdate");
// the store maps it to its column and refuses one it does not know (kInvalidArgument).
struct SortKey {
  std::string property;
  bool ascending = true;
};

struct StatusQuery {
  std::string message_id;
  std::string status;
  std::optional<Direction> direction;  // nullopt = both
  int64_t from_ms = 0;
  int64_t to_ms = 0;  // 0 = no upper bound
  int64_t offset = 0;
  int64_t limit = 20;
  bool newest_first = false;
  std::vector<SortKey> sort;  // before the default order (id)
};

// Messages as "conversations" of the HTTP API (one per message and direction).
struct ConversationQuery {
  int64_t id = 0;  // rowid; 0 = any
  std::string message_id;
  std::string conversation_id;
  std::optional<Direction> direction;  // nullopt = both
  std::string status;                  // current status
  std::string orgnr;                   // "0192:<orgnr>": sender or receiver
  std::string sender;                  // "0192:<orgnr>": the sender (eFormidling's `sender`)
  std::string receiver;                // "0192:<orgnr>": the receiver
  std::string message_reference;       // as the API shows it (the conversation id when none)
  std::optional<std::string> title;    // the message title, exactly (nullopt: any)
  std::string process;
  int64_t from_ms = 0;  // last update at or after
  int64_t to_ms = 0;    // last update at or before; 0 = no bound
  bool unfinished_only = false;
  // With the conversations DELETE /api/conversations hid (the message lists of /api/messages/out
  // show them: in eFormidling too the conversation and the message are apart).
  bool include_deleted = false;
  int64_t offset = 0;
  int64_t limit = 20;
  std::vector<SortKey> sort;  // before the default order (last update, newest first)
};

template <typename T>
struct Paged {
  std::vector<T> items;
  int64_t total = 0;
};

struct StatusCount {
  Direction direction;
  std::string status;
  int64_t count;
};

// The status page's overview (HistoryStore::Overview).
struct HourCount {
  int64_t hour_start_ms = 0;  // a whole hour, Unix ms
  int64_t out = 0;            // outgoing messages created in that hour
  int64_t in = 0;             // incoming messages created (by their sender) in that hour
};
struct OldestWaiting {
  std::string message_id;
  std::string receiver;
  int64_t created_ms = 0;  // 0: none waiting
};
struct OverviewCounts {
  std::vector<StatusCount> total;     // current status of every message
  std::vector<StatusCount> today;     // of the messages updated since the day's start
  OldestWaiting oldest_not_sent;      // OUT, still OPPRETTET (not accepted by the broker)
  OldestWaiting oldest_not_received;  // OUT, SENDT but not MOTTATT (the receiver has not taken it)
  std::vector<HourCount> hourly;      // `hours` whole hours, oldest first
};

struct QueueDepth {
  std::string receiver;
  int64_t count = 0;
  int64_t oldest_ms = 0;
};

// Progress of a streamed transfer (table `transfers`): ciphertext bytes the broker acknowledged
// (OUT) or that were verified and written to the spool (IN). `message` carries the header
// fields (an incoming message has no `messages` row until it is complete).
struct TransferRow {
  MessageRow message;
  int64_t done_bytes = 0;
  int64_t total_bytes = 0;
  std::string note;  // OUT: why it waits (the broker's last RETRY_LATER), "" when moving
  int64_t updated_ms = 0;
};

struct ListFilter {
  std::string message_id;
  std::string conversation_id;
  std::optional<Direction> direction;  // nullopt = both
  std::string status;
  int64_t since_ms = 0;
};

}  // namespace bud::ip
