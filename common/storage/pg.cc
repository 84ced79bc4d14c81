// PostgreSQL (libpq) RAII wrappers, error classification and the three-outcome COMMIT. See pg.h.
#include "common/storage/pg.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>

namespace bud::storage::pg {
namespace {

// Type OIDs from pg_type.h (stable since forever; libpq does not export them).
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kTextOid = 25;
constexpr Oid kByteaArrayOid = 1001;
constexpr Oid kTextArrayOid = 1009;
constexpr Oid kInt8ArrayOid = 1016;
constexpr Oid kOidOid = 26;

constexpr size_t kMaxPasswordFile = 4096;

struct FreeOptions {
  void operator()(PQconninfoOption* o) const { PQconninfoFree(o); }
};
using ParsedOptions = std::unique_ptr<PQconninfoOption, FreeOptions>;

// libpq's messages end in a newline and may span several lines (one per host tried).
std::string OneLine(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      out += "; ";
    } else if (c != '\r') {
      out += c;
    }
  }
  while (out.size() >= 2 && out.compare(out.size() - 2, 2, "; ") == 0) out.resize(out.size() - 2);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

Result<ParsedOptions> Parse(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    std::string why = err != nullptr ? OneLine(err) : "out of memory";
    if (err != nullptr) PQfreemem(err);
    return Status(Code::kConfig, fmt::format("cannot parse the PostgreSQL connection string: {}", why));
  }
  return ParsedOptions(opts);
}

std::string Option(const PQconninfoOption* opts, std::string_view keyword) {
  for (const PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (keyword == o->keyword) return o->val != nullptr ? o->val : "";
  }
  return "";
}

std::string DescribeParsed(const PQconninfoOption* opts) {
  std::string out;
  auto add = [&](const char* label, const std::string& value) {
    if (value.empty()) return;
    if (!out.empty()) out += ' ';
    out += label;
    out += '=';
    out += value;
  };
  add("host", Option(opts, "host"));
  add("hostaddr", Option(opts, "hostaddr"));
  add("port", Option(opts, "port"));
  add("dbname", Option(opts, "dbname"));
  add("user", Option(opts, "user"));
  return out.empty() ? "(libpq defaults)" : out;
}

bool Contains(std::string_view text, std::string_view what) {
  return text.find(what) != std::string_view::npos;
}

// A failed connection attempt carries no SQLSTATE, only libpq's text (one part per host tried).
Code ClassifyConnectFailure(std::string_view message) {
  if (Contains(message, "password authentication failed") ||
      Contains(message, "no password supplied") || Contains(message, "no pg_hba.conf entry") ||
      Contains(message, "authentication failed") ||
      (Contains(message, "role \"") && Contains(message, "does not exist"))) {
    return Code::kConfig;
  }
  if (Contains(message, "database \"") && Contains(message, "does not exist")) {
    return Code::kNotFound;
  }
  return Code::kUnavailable;
}

}  // namespace

std::string Describe(const std::string& conninfo) {
  auto parsed = Parse(conninfo);
  if (!parsed.ok()) return "(unparseable connection string)";
  return DescribeParsed(parsed->get());
}

Code CodeFromSqlState(std::string_view s) {
  if (s.size() != 5) return Code::kInternal;
  const std::string_view cls = s.substr(0, 2);
  if (s == "25006") return Code::kUnavailable;  // read_only_sql_transaction: a standby
  if (cls == "08") return Code::kUnavailable;   // connection exception
  if (s == "57P01" || s == "57P02" || s == "57P03") return Code::kUnavailable;  // shutdown
  if (s == "57014") return Code::kTimeout;      // query_canceled (statement_timeout, cancel)
  if (s == "3D000" || s == "3F000") return Code::kNotFound;  // database / schema missing
  if (cls == "28") return Code::kConfig;        // invalid authorization
  if (s == "42501") return Code::kConfig;       // insufficient_privilege
  if (s == "53100") return Code::kDiskFull;
  if (s == "53300") return Code::kUnavailable;  // too_many_connections
  if (cls == "53") return Code::kBusy;          // out of memory and other resources
  if (s == "40001" || s == "40P01" || s == "55P03") return Code::kBusy;
  if (s == "40003") return Code::kUnavailable;  // statement_completion_unknown
  if (s == "23505") return Code::kAlreadyExists;
  if (cls == "23" || cls == "22") return Code::kInvalidArgument;
  if (s == "XX001" || s == "XX002") return Code::kCorrupt;
  if (cls == "58") return Code::kIo;
  if (s == "0A000") return Code::kUnsupported;
  return Code::kInternal;
}

Result<std::string> ReadPasswordFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) return Status(Code::kNotFound, fmt::format("password file {} does not exist", path));
    if (e == ELOOP) {
      return Status(Code::kConfig, fmt::format("password file {} is a symbolic link; name the file itself", path));
    }
    return Status(Code::kConfig, fmt::format("cannot open password file {}: {}", path, std::strerror(e)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return Status(Code::kIo, fmt::format("cannot stat password file {}: {}", path, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return Status(Code::kConfig, fmt::format("password file {} is not a regular file", path));
  }
  if ((st.st_mode & (S_IWGRP | S_IRWXO)) != 0) {
    return Status(Code::kConfig,
                  fmt::format("password file {} is open to others (mode {:04o}); make it 0600 or 0640",
                              path, st.st_mode & 07777));
  }
  if (st.st_size > static_cast<off_t>(kMaxPasswordFile)) {
    return Status(Code::kConfig, fmt::format("password file {} is over {} bytes", path, kMaxPasswordFile));
  }
  std::string data(kMaxPasswordFile + 1, '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return Status(Code::kIo, fmt::format("cannot read password file {}: {}", path, std::strerror(errno)));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > kMaxPasswordFile) {
    return Status(Code::kConfig, fmt::format("password file {} is over {} bytes", path, kMaxPasswordFile));
  }
  data.resize(got);
  if (auto nl = data.find('\n'); nl != std::string::npos) data.resize(nl);
  if (!data.empty() && data.back() == '\r') data.pop_back();
  if (data.empty()) return Status(Code::kConfig, fmt::format("password file {} is empty", path));
  if (data.find('\0') != std::string::npos) {
    return Status(Code::kConfig, fmt::format("password file {} contains a NUL byte", path));
  }
  return data;
}

// --- Rows ---------------------------------------------------------------------------------------

std::string_view Rows::Bytes(int row, int col) const {
  if (!res_ || IsNull(row, col)) return {};
  return {PQgetvalue(res_.get(), row, col), static_cast<size_t>(PQgetlength(res_.get(), row, col))};
}

int64_t Rows::Int(int row, int col) const {
  if (!res_ || IsNull(row, col)) return 0;
  const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(res_.get(), row, col));
  const int len = PQgetlength(res_.get(), row, col);
  if (PQfformat(res_.get(), col) == 0) {  // text
    if (len == 1 && (p[0] == 't' || p[0] == 'f')) return p[0] == 't' ? 1 : 0;
    return std::strtoll(reinterpret_cast<const char*>(p), nullptr, 10);
  }
  uint64_t v = 0;
  for (int i = 0; i < len && i < 8; ++i) v = (v << 8) | p[i];
  switch (PQftype(res_.get(), col)) {
    case kInt8Oid:
      return static_cast<int64_t>(v);
    case kInt4Oid:
      return static_cast<int32_t>(static_cast<uint32_t>(v));
    case kInt2Oid:
      return static_cast<int16_t>(static_cast<uint16_t>(v));
    case kOidOid:
      return static_cast<int64_t>(static_cast<uint32_t>(v));
    case kBoolOid:
      return v != 0 ? 1 : 0;
    default:
      return 0;  // not an integer column: cast it in SQL
  }
}

int64_t Rows::Affected() const {
  if (!res_) return 0;
  const char* t = PQcmdTuples(res_.get());
  return (t != nullptr && *t != '\0') ? std::strtoll(t, nullptr, 10) : 0;
}

// --- Params -------------------------------------------------------------------------------------

void Params::Push(Oid type, std::string value, bool null) {
  types_.push_back(type);
  values_.push_back(std::move(value));
  nulls_.push_back(null);
}

Params& Params::Add(int64_t v) {
  std::string b(8, '\0');
  auto u = static_cast<uint64_t>(v);
  for (int i = 7; i >= 0; --i) {
    b[static_cast<size_t>(i)] = static_cast<char>(u & 0xff);
    u >>= 8;
  }
  Push(kInt8Oid, std::move(b), false);
  return *this;
}

Params& Params::Add(bool v) {
  Push(kBoolOid, std::string(1, v ? '\1' : '\0'), false);
  return *this;
}

Params& Params::Add(std::string_view text) {
  Push(kTextOid, std::string(text), false);
  return *this;
}

Params& Params::AddBytea(std::string_view bytes) {
  Push(kByteaOid, std::string(bytes), false);
  return *this;
}

namespace {
// PostgreSQL's binary array format (array_recv): dimensions, a has-nulls flag, the element type,
// each dimension's length and lower bound, then each element as its length and bytes.
void PutInt32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
}
std::string ArrayHeader(Oid element, size_t count) {
  std::string out;
  PutInt32(out, count == 0 ? 0 : 1);
  PutInt32(out, 0);
  PutInt32(out, element);
  if (count > 0) {
    PutInt32(out, static_cast<uint32_t>(count));
    PutInt32(out, 1);
  }
  return out;
}
std::string BytesArray(Oid element, const std::vector<std::string_view>& items) {
  size_t total = 20;
  for (auto i : items) total += 4 + i.size();
  std::string out = ArrayHeader(element, items.size());
  out.reserve(total);
  for (auto i : items) {
    PutInt32(out, static_cast<uint32_t>(i.size()));
    out.append(i);
  }
  return out;
}
}  // namespace

Params& Params::AddTextArray(const std::vector<std::string_view>& items) {
  Push(kTextArrayOid, BytesArray(kTextOid, items), false);
  return *this;
}

Params& Params::AddByteaArray(const std::vector<std::string_view>& items) {
  Push(kByteaArrayOid, BytesArray(kByteaOid, items), false);
  return *this;
}

Params& Params::AddInt8Array(const std::vector<int64_t>& items) {
  std::string out = ArrayHeader(kInt8Oid, items.size());
  for (int64_t v : items) {
    PutInt32(out, 8);
    const auto u = static_cast<uint64_t>(v);
    PutInt32(out, static_cast<uint32_t>(u >> 32));
    PutInt32(out, static_cast<uint32_t>(u & 0xffffffffu));
  }
  Push(kInt8ArrayOid, std::move(out), false);
  return *this;
}

Params& Params::AddNull() {
  Push(0, {}, true);
  return *this;
}

// --- Connection ---------------------------------------------------------------------------------

std::string_view CommitOutcomeName(CommitOutcome outcome) {
  switch (outcome) {
    case CommitOutcome::kDurable: return "durable";
    case CommitOutcome::kFailed: return "failed";
    case CommitOutcome::kUnknown: return "unknown";
  }
  return "?";
}

Connection::Connection(ConnectOptions options, std::string password, std::string description)
    : options_(std::move(options)), password_(std::move(password)), description_(std::move(description)) {}

Connection::~Connection() {
  if (conn_ != nullptr) PQfinish(conn_);
  std::fill(password_.begin(), password_.end(), '\0');
}

Result<std::unique_ptr<Connection>> Connection::Open(const ConnectOptions& options) {
  BUD_ASSIGN_OR_RETURN(ParsedOptions parsed, Parse(options.conninfo));
  std::string description = DescribeParsed(parsed.get());
  if (!Option(parsed.get(), "password").empty()) {
    return Status(Code::kConfig,
                  fmt::format("postgresql {}: the connection string carries a password; put it in "
                              "a password file (password_file) instead",
                              description));
  }
  std::string password;
  if (!options.password_file.empty()) {
    auto pw = ReadPasswordFile(options.password_file);
    if (!pw.ok()) return pw.status().Context(fmt::format("postgresql {}", description));
    password = std::move(pw).value();
  }
  std::unique_ptr<Connection> conn(new Connection(options, std::move(password), std::move(description)));
  BUD_RETURN_IF_ERROR(conn->Connect());
  return conn;
}

Status Connection::Connect() {
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
  prepared_.clear();  // they lived in the old session
  BUD_ASSIGN_OR_RETURN(ParsedOptions parsed, Parse(options_.conninfo));
  std::vector<std::pair<std::string, std::string>> kv;
  for (const PQconninfoOption* o = parsed.get(); o->keyword != nullptr; ++o) {
    if (o->val != nullptr) kv.emplace_back(o->keyword, o->val);
  }
  auto set_default = [&](const char* key, std::string value) {
    for (const auto& [k, v] : kv) {
      if (k == key) return;
    }
    kv.emplace_back(key, std::move(value));
  };
  set_default("connect_timeout", std::to_string(options_.connect_timeout_seconds));
  set_default("keepalives", "1");
  set_default("keepalives_idle", "30");
  set_default("keepalives_interval", "10");
  set_default("keepalives_count", "3");
  set_default("application_name", options_.application_name);
  set_default("client_encoding", "UTF8");
  if (options_.read_write) set_default("target_session_attrs", "read-write");
  if (!password_.empty()) kv.emplace_back("password", password_);

  std::vector<const char*> keys, values;
  for (const auto& [k, v] : kv) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectdbParams(keys.data(), values.data(), 0);
  if (!password_.empty()) std::fill(kv.back().second.begin(), kv.back().second.end(), '\0');
  last_sqlstate_.clear();
  if (conn_ == nullptr) {
    lost_ = true;
    return Status(Code::kInternal, fmt::format("postgresql {}: out of memory connecting", description_));
  }
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string why = OneLine(PQerrorMessage(conn_));
    PQfinish(conn_);
    conn_ = nullptr;
    lost_ = true;
    Code code = ClassifyConnectFailure(why);
    return Status(code, fmt::format("postgresql {}: cannot connect: {}", description_, why));
  }
  PQsetNoticeReceiver(conn_, &Connection::OnNotice, this);
  lost_ = false;
  return Status::Ok();
}

Status Connection::Reconnect() { return Connect(); }

Result<std::vector<std::pair<std::string, std::string>>> Connection::TakeNotifications() {
  if (conn_ == nullptr || lost_) {
    return Status(Code::kUnavailable, fmt::format("postgresql {}: not connected", description_));
  }
  if (PQconsumeInput(conn_) == 0 || PQstatus(conn_) != CONNECTION_OK) {
    lost_ = true;
    return ErrorFromConnection("reading notifications");
  }
  std::vector<std::pair<std::string, std::string>> out;
  while (PGnotify* n = PQnotifies(conn_)) {
    out.emplace_back(n->relname ? n->relname : "", n->extra ? n->extra : "");
    PQfreemem(n);
  }
  return out;
}

bool Connection::ok() const { return conn_ != nullptr && !lost_ && PQstatus(conn_) == CONNECTION_OK; }

bool Connection::NeedsReconnect() const {
  if (!ok()) return true;
  return last_sqlstate_ == "25006" || last_sqlstate_.rfind("08", 0) == 0 ||
         last_sqlstate_ == "57P01" || last_sqlstate_ == "57P02" || last_sqlstate_ == "57P03";
}

bool Connection::in_transaction() const {
  if (conn_ == nullptr) return false;
  auto t = PQtransactionStatus(conn_);
  return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

std::string Connection::server() const {
  if (conn_ == nullptr) return description_;
  return fmt::format("{}:{}", PQhost(conn_), PQport(conn_));
}

void Connection::OnNotice(void* self, const PGresult* res) {
  auto* c = static_cast<Connection*>(self);
  if (!c->capture_notices_ || c->notices_.size() >= 16) return;
  const char* msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  const char* severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  c->notices_.push_back(fmt::format("{}: {}", severity ? severity : "NOTICE", msg ? msg : ""));
}

Status Connection::ErrorFromConnection(std::string_view what) {
  last_sqlstate_.clear();
  std::string why = conn_ != nullptr ? OneLine(PQerrorMessage(conn_)) : "not connected";
  if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) lost_ = true;
  return Status(Code::kUnavailable, fmt::format("postgresql {} ({}): {}: connection lost: {}",
                                                server(), description_, what, why));
}

Status Connection::ErrorFromResult(const PGresult* res, std::string_view what) {
  const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  last_sqlstate_ = state != nullptr ? state : "";
  const bool connection_bad = PQstatus(conn_) != CONNECTION_OK;
  if (connection_bad) lost_ = true;
  const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  std::string message = primary != nullptr ? primary : OneLine(PQresultErrorMessage(res));
  if (message.empty()) message = OneLine(PQerrorMessage(conn_));
  Code code = connection_bad ? Code::kUnavailable
              : last_sqlstate_.empty() ? Code::kInternal
                                       : CodeFromSqlState(last_sqlstate_);
  std::string hint;
  if (last_sqlstate_ == "25006") hint = " (the server is read-only: a standby, or writes are turned off)";
  if (connection_bad) hint = " (connection lost)";
  return Status(code, fmt::format("postgresql {} ({}): {}: {}{}{}", server(), description_, what,
                                  message, last_sqlstate_.empty() ? "" : " (SQLSTATE " + last_sqlstate_ + ")",
                                  hint));
}

namespace {
// The statement, shortened, for error messages (SQL text only: parameters never appear).
std::string StatementLabel(std::string_view sql) {
  std::string s;
  for (char c : sql) {
    if (c == '\n' || c == '\t') c = ' ';
    if (c == ' ' && !s.empty() && s.back() == ' ') continue;
    s += c;
    if (s.size() >= 80) {
      s += "...";
      break;
    }
  }
  return s;
}
}  // namespace

Result<Rows> Connection::Exec(std::string_view sql, const Params& params) {
  return Run(sql, params, /*prepare=*/true);
}

Result<Rows> Connection::ExecPlanned(std::string_view sql, const Params& params) {
  return Run(sql, params, /*prepare=*/false);
}

Result<Rows> Connection::Run(std::string_view sql, const Params& params, bool prepare) {
  if (!ok()) {
    return Status(Code::kUnavailable,
                  fmt::format("postgresql {}: not connected (reconnect first)", description_));
  }
  const int n = params.size();
  std::vector<const char*> values(static_cast<size_t>(n));
  std::vector<int> lengths(static_cast<size_t>(n));
  std::vector<int> formats(static_cast<size_t>(n), 1);
  for (int i = 0; i < n; ++i) {
    auto k = static_cast<size_t>(i);
    values[k] = params.nulls_[k] ? nullptr : params.values_[k].data();
    lengths[k] = static_cast<int>(params.values_[k].size());
  }
  const std::string text(sql);
  const char* name = nullptr;
  if (prepare && text.size() <= kMaxPreparedText) {
    std::string key = text;
    key += '\0';
    key.append(reinterpret_cast<const char*>(params.types_.data()),
               params.types_.size() * sizeof(Oid));
    auto it = prepared_.find(key);
    if (it == prepared_.end() && prepared_.size() < kMaxPrepared) {
      std::string fresh = fmt::format("bud_{}", next_prepared_++);
      PGresult* prep =
          PQprepare(conn_, fresh.c_str(), text.c_str(), n, n ? params.types_.data() : nullptr);
      if (prep == nullptr) return ErrorFromConnection(StatementLabel(sql));
      Rows held(prep);
      if (PQresultStatus(prep) != PGRES_COMMAND_OK)
        return ErrorFromResult(prep, StatementLabel(sql));
      it = prepared_.emplace(std::move(key), std::move(fresh)).first;
    }
    if (it != prepared_.end()) name = it->second.c_str();
  }
  PGresult* res =
      name != nullptr
          ? PQexecPrepared(conn_, name, n, n ? values.data() : nullptr,
                           n ? lengths.data() : nullptr, n ? formats.data() : nullptr, 1)
          : PQexecParams(conn_, text.c_str(), n, n ? params.types_.data() : nullptr,
                         n ? values.data() : nullptr, n ? lengths.data() : nullptr,
                         n ? formats.data() : nullptr, 1);
  if (res == nullptr) return ErrorFromConnection(StatementLabel(sql));
  Rows rows(res);
  auto st = PQresultStatus(res);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
    last_sqlstate_.clear();
    return rows;
  }
  Status error = ErrorFromResult(res, StatementLabel(sql));
  // A prepared statement gone (26000, e.g. a pooler's DISCARD) or whose result shape a schema
  // change altered (0A000): prepare afresh next time.
  if (name != nullptr && (last_sqlstate_ == "26000" || last_sqlstate_ == "0A000")) {
    prepared_.clear();
  }
  return error;
}

CommitResult Connection::ExecAlone(std::string_view sql, const Params& params, Rows* rows) {
  if (in_transaction()) {
    return {CommitOutcome::kFailed,
            Status(Code::kInternal, "a statement of its own inside an open transaction")};
  }
  // A session the server ended while idle (a terminated backend, a restart) has left its last
  // words and its EOF in the socket: found now, the statement was never sent, nothing written.
  // (One read takes the last words, the next one finds the EOF.)
  if (!ok() || PQconsumeInput(conn_) == 0 || PQconsumeInput(conn_) == 0 ||
      PQstatus(conn_) != CONNECTION_OK) {
    lost_ = true;
    return {CommitOutcome::kFailed,
            ErrorFromConnection("before a statement of its own; nothing was written")};
  }
  notices_.clear();
  capture_notices_ = true;
  Result<Rows> r = Exec(sql, params);
  capture_notices_ = false;
  std::string sync_warning;
  for (const auto& n : notices_) {
    if (Contains(n, "synchronous replication")) sync_warning = n;
  }
  if (r.ok() && sync_warning.empty()) {
    *rows = std::move(*r);
    return {CommitOutcome::kDurable, Status::Ok()};
  }
  if (r.ok()) {
    return {CommitOutcome::kUnknown,
            Status(Code::kUnavailable,
                   fmt::format("postgresql {} ({}): outcome unknown: the server committed "
                               "locally but stopped waiting for synchronous replication ({})",
                               server(), description_, sync_warning))};
  }
  if (!ok() || !sync_warning.empty()) {
    // The statement went out and no clean answer came back: it may have been committed.
    return {CommitOutcome::kUnknown, r.status().Context("outcome unknown")};
  }
  // An error on a live session: the statement's transaction was rolled back.
  return {CommitOutcome::kFailed, r.status()};
}

Status Connection::ExecScript(std::string_view sql) {
  if (!ok()) {
    return Status(Code::kUnavailable,
                  fmt::format("postgresql {}: not connected (reconnect first)", description_));
  }
  const std::string text(sql);
  PGresult* res = PQexec(conn_, text.c_str());
  if (res == nullptr) return ErrorFromConnection("script");
  Rows rows(res);
  auto st = PQresultStatus(res);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
    last_sqlstate_.clear();
    return Status::Ok();
  }
  return ErrorFromResult(res, "script");
}

// --- Transaction --------------------------------------------------------------------------------

Transaction::Transaction(Connection& conn, Isolation isolation) : conn_(conn) {
  const char* sql = "BEGIN ISOLATION LEVEL READ COMMITTED";
  if (isolation == Isolation::kRepeatableRead) sql = "BEGIN ISOLATION LEVEL REPEATABLE READ";
  if (isolation == Isolation::kSerializable) sql = "BEGIN ISOLATION LEVEL SERIALIZABLE";
  auto r = conn_.Exec(sql);
  begin_status_ = r.status();
  open_ = r.ok();
}

Transaction::~Transaction() {
  if (open_ && conn_.ok()) {
    PGresult* res = PQexec(conn_.conn_, "ROLLBACK");
    if (res != nullptr) PQclear(res);
  }
}

CommitResult Transaction::Commit() {
  if (!open_) {
    return {CommitOutcome::kFailed,
            begin_status_.ok() ? Status(Code::kInternal, "COMMIT without an open transaction")
                               : begin_status_};
  }
  open_ = false;
  if (!conn_.ok()) {
    // COMMIT was never sent: the server rolls the transaction back when its session ends.
    return {CommitOutcome::kFailed,
            Status(Code::kUnavailable,
                   fmt::format("postgresql {} ({}): the connection was lost before COMMIT; nothing "
                               "was written",
                               conn_.server(), conn_.description_))};
  }
  conn_.notices_.clear();
  conn_.capture_notices_ = true;
  PGresult* raw = PQexec(conn_.conn_, "COMMIT");
  conn_.capture_notices_ = false;
  Rows res(raw);
  std::string sync_warning;
  for (const auto& n : conn_.notices_) {
    if (Contains(n, "synchronous replication")) sync_warning = n;
  }
  if (raw != nullptr && PQresultStatus(raw) == PGRES_COMMAND_OK) {
    if (res.Command() == "ROLLBACK") {
      // The transaction had already failed; the server turned COMMIT into ROLLBACK.
      return {CommitOutcome::kFailed,
              Status(Code::kInternal,
                     fmt::format("postgresql {} ({}): COMMIT rolled back a failed transaction",
                                 conn_.server(), conn_.description_))};
    }
    if (!sync_warning.empty()) {
      return {CommitOutcome::kUnknown,
              Status(Code::kUnavailable,
                     fmt::format("postgresql {} ({}): COMMIT outcome unknown: the server committed "
                                 "locally but stopped waiting for synchronous replication ({})",
                                 conn_.server(), conn_.description_, sync_warning))};
    }
    return {CommitOutcome::kDurable, Status::Ok()};
  }
  Status s = raw != nullptr ? conn_.ErrorFromResult(raw, "COMMIT") : conn_.ErrorFromConnection("COMMIT");
  if (!conn_.ok() || !sync_warning.empty()) {
    // COMMIT went out and no clean answer came back: it may or may not have been applied.
    return {CommitOutcome::kUnknown, s.Context("COMMIT outcome unknown")};
  }
  // The server answered COMMIT with an error on a live session: it rolled the transaction back.
  return {CommitOutcome::kFailed, s};
}

}  // namespace bud::storage::pg
