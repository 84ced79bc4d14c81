// Pre-flight checks behind `--check-config`: the files a loaded config names are there and
// usable, checked without binding a socket, creating a store or writing anything.
//
// ConfigFile (config.h) has already checked the syntax, types, ranges and unknown keys; this
// checks what the values point at, the way the process would use them at start: key files are
// private and parse, certificates parse, the trust anchor holds certificates, a store is a
// readable and writable file or can be created in its folder. Every failure is a kConfig-style
// message naming the config file, the key and the problem. What was checked is collected into a
// short report ("config OK: <file>" and one line per item) for the operator.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/crypto/certs.h"
#include "common/status.h"
#include "common/wire/curve.h"

namespace bud {

class ConfigCheck {
 public:
  explicit ConfigCheck(std::string config_path) : config_path_(std::move(config_path)) {}

  // A regular file this process can open for reading.
  Status ReadableFile(std::string_view key, const std::string& path);
  // A trust anchor bundle: readable, at least one PEM certificate, none of them expired.
  // Returns the loaded store; notes the count and the first certificate's subject and expiry.
  Result<crypto::TrustStore> TrustAnchor(std::string_view key, const std::string& path);
  // A CURVE key pair file: mode 0600 (no group or other bits) and two Z85 keys. Notes the
  // public key (never the secret).
  Result<wire::CurveKeyPair> CurveKey(std::string_view key, const std::string& path);
  // A SQLite store: an existing regular file this process can read and write, or a missing file
  // whose folder exists and is writable (the process creates it at start). Never opens it.
  Status Store(std::string_view key, const std::string& path);
  // A file the process writes (an endpoint file, a log file): when it exists it is a writable
  // regular file, otherwise its folder exists and is writable.
  Status WritableFile(std::string_view key, const std::string& path);
  // A log file: "" is standard error, anything else as WritableFile.
  Status LogFile(std::string_view key, const std::string& path);
  // A folder the process works in and creates when missing (outbox, inbox): an existing
  // writable folder, or a missing one whose nearest existing ancestor is a writable folder.
  Status Folder(std::string_view key, const std::string& path);

  // `status` as a failure of `key` in this config file (ok stays ok).
  Status Fail(std::string_view key, const Status& status) const;
  Status Fail(std::string_view key, std::string_view problem) const;

  // One line of the report, e.g. Note("store", "/var/lib/x.db (will be created)").
  void Note(std::string_view label, std::string value);
  // "config OK: <file>\n" followed by the noted lines, aligned.
  std::string Report() const;

 private:
  std::string config_path_;
  std::vector<std::pair<std::string, std::string>> notes_;
};

}  // namespace bud
