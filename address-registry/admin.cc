// Registry admin verbs. See admin.h.
#include "address-registry/admin.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "address-registry/store.h"
#include "common/clock.h"
#include "common/crypto/certs.h"
#include "common/fs.h"
#include "common/registry_client.h"

namespace bud::registry {

namespace {

constexpr size_t kMaxBrokerEndpoints = 16;

Status CheckCurveKey(const std::string& key) {
  if (key.empty()) return Status::Ok();
  static constexpr std::string_view kZ85 =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  if (key.size() != 40 || key.find_first_not_of(kZ85) != std::string::npos) {
    return Status(Code::kInvalidArgument,
                  "CURVE public key must be 40 Z85 characters (as printed by bud-ip enroll)");
  }
  return Status::Ok();
}

Result<std::string> LoadCheckedCert(const crypto::TrustStore& trust, const std::string& file,
                                    crypto::KeyPurpose purpose, const Orgnr& org,
                                    std::string_view what) {
  BUD_ASSIGN_OR_RETURN(std::string pem, ReadFile(file));
  auto cert = crypto::CertFromPem(pem);
  if (!cert.ok()) return cert.status().Context(fmt::format("{} certificate '{}'", what, file));
  Status s = trust.Verify(cert->get(), purpose, org);
  if (!s.ok()) return s.Context(fmt::format("{} certificate '{}'", what, file));
  return crypto::CertToPem(cert->get());
}

}  // namespace

Result<wire::RegistryEntry> AddEntry(const Config& config, const AddRequest& req) {
  BUD_ASSIGN_OR_RETURN(Orgnr org, Orgnr::Parse(req.orgnr));
  if (req.name.empty()) return Status(Code::kInvalidArgument, "--name must not be empty");
  if (req.processes.empty()) {
    return Status(Code::kInvalidArgument, "give at least one --process the organisation accepts");
  }
  BUD_RETURN_IF_ERROR(CheckCurveKey(req.curve_public_key));
  BUD_ASSIGN_OR_RETURN(auto trust,
                       crypto::TrustStore::Load(config.trust_anchor, {.dir = config.crl_dir}));
  BUD_ASSIGN_OR_RETURN(std::string sign_pem,
                       LoadCheckedCert(trust, req.signing_cert_file, crypto::KeyPurpose::kSigning,
                                       org, "signing"));
  BUD_ASSIGN_OR_RETURN(std::string enc_pem,
                       LoadCheckedCert(trust, req.encryption_cert_file,
                                       crypto::KeyPurpose::kEncryption, org, "encryption"));
  wire::RegistryEntry e;
  if (!req.next_signing_cert_file.empty()) {
    BUD_ASSIGN_OR_RETURN(std::string pem,
                         LoadCheckedCert(trust, req.next_signing_cert_file,
                                         crypto::KeyPurpose::kSigning, org, "next signing"));
    e.set_next_signing_cert_pem(pem);
  }
  if (!req.next_encryption_cert_file.empty()) {
    BUD_ASSIGN_OR_RETURN(std::string pem,
                         LoadCheckedCert(trust, req.next_encryption_cert_file,
                                         crypto::KeyPurpose::kEncryption, org, "next encryption"));
    e.set_next_encryption_cert_pem(pem);
  }
  e.set_orgnr(org.digits());
  e.set_name(req.name);
  e.set_signing_cert_pem(sign_pem);
  e.set_encryption_cert_pem(enc_pem);
  e.set_curve_public_key(req.curve_public_key);
  BUD_RETURN_IF_ERROR(CheckBrokerEndpoints(req.broker_endpoints));
  SetBrokerEndpoints(e, req.broker_endpoints);
  for (const auto& p : req.processes) e.add_processes(p);
  for (const auto& d : req.document_types) e.add_document_types(d);
  e.set_updated_unix_ms(NowMs());
  BUD_ASSIGN_OR_RETURN(auto store, OpenRegistryStore(config.store));
  BUD_RETURN_IF_ERROR(store->Put(e));
  return e;
}

Status RemoveEntry(const Config& config, const std::string& orgnr) {
  BUD_ASSIGN_OR_RETURN(Orgnr org, Orgnr::Parse(orgnr));
  BUD_ASSIGN_OR_RETURN(auto store, OpenRegistryStore(config.store));
  return store->Remove(org);
}

Status CheckBrokerEndpoints(const std::vector<std::string>& endpoints) {
  if (endpoints.size() > kMaxBrokerEndpoints) {
    return Status(Code::kInvalidArgument, fmt::format("at most {} broker endpoints (got {})",
                                                      kMaxBrokerEndpoints, endpoints.size()));
  }
  std::set<std::string> seen;
  for (const auto& ep : endpoints) {
    const bool scheme = ep.starts_with("tcp://") || ep.starts_with("ipc://");
    if (!scheme || ep.size() > 256 || ep.size() < 7 ||
        ep.find_first_of(" \t\r\n\"'") != std::string::npos) {
      return Status(Code::kInvalidArgument,
                    fmt::format("broker endpoint '{}' is not a ZeroMQ endpoint such as "
                                "tcp://broker1.example.no:7700",
                                ep.substr(0, 80)));
    }
    if (!seen.insert(ep).second) {
      return Status(Code::kInvalidArgument, fmt::format("broker endpoint '{}' is given twice", ep));
    }
  }
  return Status::Ok();
}

void SetBrokerEndpoints(wire::RegistryEntry& entry, const std::vector<std::string>& endpoints) {
  entry.clear_broker_endpoints();
  for (const auto& ep : endpoints) entry.add_broker_endpoints(ep);
  entry.set_broker_endpoint(endpoints.empty() ? "" : endpoints.front());
}

Result<wire::RegistryEntry> SetBrokers(const Config& config, const std::string& orgnr,
                                       const std::vector<std::string>& endpoints) {
  BUD_ASSIGN_OR_RETURN(Orgnr org, Orgnr::Parse(orgnr));
  BUD_RETURN_IF_ERROR(CheckBrokerEndpoints(endpoints));
  BUD_ASSIGN_OR_RETURN(auto store, OpenRegistryStore(config.store));
  BUD_ASSIGN_OR_RETURN(auto found, store->Get(org));
  if (!found) {
    return Status(Code::kNotFound, fmt::format("organisation {} is not registered (`bud-registry "
                                               "add` first)",
                                               org.digits()));
  }
  wire::RegistryEntry e = std::move(*found);
  SetBrokerEndpoints(e, endpoints);
  e.set_updated_unix_ms(NowMs());
  BUD_RETURN_IF_ERROR(store->Put(e));
  return e;
}

Result<std::string> ListEntries(const Config& config, bool json) {
  if (config.store.sqlite() && !Exists(config.store.path)) {  // listing never creates a store
    return std::string(json ? "[]\n"
                            : fmt::format("0 organisation(s) (no store yet at {}; `bud-registry "
                                          "add` or `run` creates it)\n",
                                          config.store.path));
  }
  BUD_ASSIGN_OR_RETURN(auto store, OpenRegistryStore(config.store, OpenMode::kExisting));
  BUD_ASSIGN_OR_RETURN(auto entries, store->List());
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& e : entries) {
      int days = -1;
      if (auto c = crypto::CertFromPem(e.signing_cert_pem()); c.ok()) {
        days = crypto::DaysToExpiry(c->get());
      }
      arr.push_back(
          {{"orgnr", e.orgnr()},
           {"name", e.name()},
           {"brokerEndpoint", e.broker_endpoint()},
           {"brokerEndpoints", BrokerEndpointsOf(e)},
           {"curvePublicKey", e.curve_public_key()},
           {"processes", std::vector<std::string>(e.processes().begin(), e.processes().end())},
           {"documentTypes",
            std::vector<std::string>(e.document_types().begin(), e.document_types().end())},
           {"signingCertDaysToExpiry", days},
           {"updated", FormatTime(e.updated_unix_ms())}});
    }
    return arr.dump(2) + "\n";
  }
  std::string out = fmt::format("{:<10} {:<30} {:<28} {:>9}  {}\n", "ORGNR", "NAME", "BROKER",
                                "CERT DAYS", "PROCESSES");
  for (const auto& e : entries) {
    int days = -1;
    if (auto c = crypto::CertFromPem(e.signing_cert_pem()); c.ok()) days = crypto::DaysToExpiry(c->get());
    std::string procs;
    for (const auto& p : e.processes()) procs += (procs.empty() ? "" : ",") + p;
    const auto brokers = BrokerEndpointsOf(e);
    std::string broker = brokers.empty() ? "" : brokers.front().substr(0, 28);
    if (brokers.size() > 1)
      broker = fmt::format("{} +{}", broker.substr(0, 24), brokers.size() - 1);
    out += fmt::format("{:<10} {:<30} {:<28} {:>9}  {}\n", e.orgnr(), e.name().substr(0, 30),
                       broker, days, procs);
  }
  out += fmt::format("{} organisation(s)\n", entries.size());
  return out;
}

Result<CrlUrls> ListCrlUrls(const Config& config) {
  CrlUrls out;
  if (config.store.sqlite() && !Exists(config.store.path)) return out;  // never creates a store
  BUD_ASSIGN_OR_RETURN(auto store, OpenRegistryStore(config.store, OpenMode::kExisting));
  BUD_ASSIGN_OR_RETURN(auto entries, store->List());
  std::set<std::string> urls;
  for (const auto& e : entries) {
    for (auto [pem, what] : {std::pair{&e.signing_cert_pem(), "signing"},
                             std::pair{&e.encryption_cert_pem(), "encryption"},
                             std::pair{&e.next_signing_cert_pem(), "next signing"},
                             std::pair{&e.next_encryption_cert_pem(), "next encryption"}}) {
      if (pem->empty()) continue;
      auto cert = crypto::CertFromPem(*pem);
      if (!cert.ok()) {
        out.notes.push_back(fmt::format("{}: {} certificate cannot be read: {}", e.orgnr(), what,
                                        cert.status().ToString()));
        continue;
      }
      auto found = crypto::CrlUrlsOf(cert->get());
      if (found.empty()) {
        out.notes.push_back(fmt::format("{}: {} certificate '{}' names no CRL Distribution Point",
                                        e.orgnr(), what, crypto::SubjectOf(cert->get())));
      }
      urls.insert(found.begin(), found.end());
    }
  }
  out.urls.assign(urls.begin(), urls.end());
  return out;
}

}  // namespace bud::registry
