// Enrolling an agency: keys, CSRs, CURVE keys and a config. See enroll.h.
#include "integration-point/enroll.h"

#include <fmt/format.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "common/config.h"
#include "common/crypto/openssl.h"
#include "common/fs.h"
#include "common/orgnr.h"
#include "common/wire/curve.h"

namespace bud::ip {

namespace {

using Req = std::unique_ptr<X509_REQ, crypto::Deleter<X509_REQ_free>>;
using Ext = std::unique_ptr<X509_EXTENSION, crypto::Deleter<X509_EXTENSION_free>>;
void FreeExtStack(STACK_OF(X509_EXTENSION) * s) {
  sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
}
using ExtStack = std::unique_ptr<STACK_OF(X509_EXTENSION), crypto::Deleter<FreeExtStack>>;

// X.509 upper bound for O and CN (ub-organization-name, ub-common-name).
constexpr size_t kMaxNameField = 64;

// A PEM certificate signing request for `key` with the subject our certificate checks expect and
// the key usage the certificate is for, signed by `key`.
Result<std::string> MakeCsr(EVP_PKEY* key, const Orgnr& org, const std::string& name,
                            const std::string& use, const char* key_usage) {
  Req req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), 0) != 1) {
    return Status(Code::kInternal, "cannot make a CSR: " + crypto::DrainErrors());
  }
  X509_NAME* subject = X509_REQ_get_subject_name(req.get());
  const std::string cn = name + " " + use;
  const std::pair<const char*, const std::string*> fields[] = {
      {"C", nullptr}, {"O", &name}, {"serialNumber", &org.digits()}, {"CN", &cn}};
  for (const auto& [field, value] : fields) {
    const std::string v = value ? *value : std::string("NO");
    if (X509_NAME_add_entry_by_txt(subject, field, MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(v.data()),
                                   static_cast<int>(v.size()), -1, 0) != 1) {
      return Status(Code::kInvalidArgument,
                    fmt::format("cannot put {}='{}' in the certificate request: {}", field, v,
                                crypto::DrainErrors()));
    }
  }
  if (X509_REQ_set_pubkey(req.get(), key) != 1) {
    return Status(Code::kInternal, "cannot make a CSR: " + crypto::DrainErrors());
  }
  ExtStack exts(sk_X509_EXTENSION_new_null());
  Ext ku(X509V3_EXT_conf_nid(nullptr, nullptr, NID_key_usage, key_usage));
  if (!exts || !ku || sk_X509_EXTENSION_push(exts.get(), ku.get()) == 0) {
    return Status(Code::kInternal, "cannot make a CSR extension: " + crypto::DrainErrors());
  }
  ku.release();  // owned by the stack now
  if (X509_REQ_add_extensions(req.get(), exts.get()) != 1) {
    return Status(Code::kInternal, "cannot make a CSR: " + crypto::DrainErrors());
  }
  // Ed25519 signs the message itself: no separate digest.
  const EVP_MD* md = EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
  if (X509_REQ_sign(req.get(), key, md) <= 0) {
    return Status(Code::kInternal, "cannot sign the CSR: " + crypto::DrainErrors());
  }
  crypto::Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) {
    return Status(Code::kInternal, "cannot write the CSR: " + crypto::DrainErrors());
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

const char* KeyUsage(const std::string& key_type, bool signing) {
  if (signing) return "critical,digitalSignature,nonRepudiation";
  return key_type == "ec" ? "critical,keyAgreement" : "critical,keyEncipherment";
}

std::string Describe(const std::string& key_type) {
  if (key_type == "rsa") return "RSA 2048";
  if (key_type == "ec") return "EC P-256";
  return "Ed25519";
}

// Files made so far; removed again unless Keep() was called.
class Undo {
 public:
  ~Undo() {
    if (keep_) return;
    for (auto it = paths_.rbegin(); it != paths_.rend(); ++it) ::remove(it->c_str());
  }
  void Add(std::string path) { paths_.push_back(std::move(path)); }
  void Keep() { keep_ = true; }

 private:
  std::vector<std::string> paths_;
  bool keep_ = false;
};

Status MakeDir(const std::string& path, int mode, Undo& undo) {
  if (Exists(path)) return Status::Ok();
  BUD_RETURN_IF_ERROR(MakeDirs(path, mode));
  undo.Add(path);
  return Status::Ok();
}

// O_EXCL|O_NOFOLLOW: a file or link put there since the check above is never overwritten or
// followed (a key written through a planted link would land where its planter can read it).
Status Write(const std::string& path, std::string_view data, int mode, Undo& undo) {
  BUD_RETURN_IF_ERROR(WriteNewFile(path, data, mode));
  undo.Add(path);
  return Status::Ok();
}

// The request's options, checked before anything is made.
Status CheckRequest(const EnrollRequest& request, const std::string& name) {
  if (name.size() + std::string_view(" encryption").size() > kMaxNameField) {
    return Status(Code::kInvalidArgument,
                  fmt::format("--name is {} bytes; certificate subjects hold at most {} for the "
                              "name (use a short form)",
                              name.size(), kMaxNameField - std::string_view(" encryption").size()));
  }
  if (request.signing_key_type != "rsa" && request.signing_key_type != "ec" &&
      request.signing_key_type != "ed25519") {
    return Status(Code::kInvalidArgument, fmt::format("signing key type '{}': use rsa, ec or "
                                                      "ed25519",
                                                      request.signing_key_type));
  }
  if (request.encryption_key_type != "rsa" && request.encryption_key_type != "ec") {
    return Status(Code::kInvalidArgument,
                  fmt::format("encryption key type '{}': use rsa or ec (Ed25519 cannot encrypt)",
                              request.encryption_key_type));
  }
  for (const auto& [flag, key] : {std::pair{"--registry-key", &request.registry_server_key},
                                  std::pair{"--broker-key", &request.broker_server_key}}) {
    if (!key->empty() && !wire::IsZ85Key(*key)) {
      return Status(Code::kInvalidArgument,
                    fmt::format("{} must be the server's 40-character Z85 CURVE public key", flag));
    }
  }
  for (const auto& [flag, ep] : {std::pair{"--registry", &request.registry_endpoint},
                                 std::pair{"--broker", &request.broker_endpoint}}) {
    if (!ep->empty() && !ep->starts_with("tcp://") && !ep->starts_with("ipc://")) {
      return Status(Code::kInvalidArgument,
                    fmt::format("{} '{}' is not a ZeroMQ endpoint (tcp://host:port)", flag, *ep));
    }
  }
  return Status::Ok();
}

// Where enrolment writes: everything under the out folder, nothing there yet.
struct EnrollPaths {
  std::string dir, keys, state, config, signing_key, signing_csr, encryption_key, encryption_csr,
      curve_key;
};

Result<EnrollPaths> PathsFor(const EnrollRequest& request) {
  EnrollPaths p;
  p.dir = AbsolutePath(request.out_dir);
  p.keys = JoinPath(p.dir, "keys");
  p.state = request.state_dir.empty() ? "" : AbsolutePath(request.state_dir);
  p.config = JoinPath(p.dir, "ip.toml");
  p.signing_key = JoinPath(p.keys, "signing.key");
  p.signing_csr = JoinPath(p.keys, "signing.csr");
  p.encryption_key = JoinPath(p.keys, "encryption.key");
  p.encryption_csr = JoinPath(p.keys, "encryption.csr");
  p.curve_key = JoinPath(p.keys, "curve.key");
  std::string existing;
  for (const auto& f : {p.config, p.signing_key, p.signing_csr, p.encryption_key,
                        p.encryption_csr, p.curve_key}) {
    if (Exists(f)) existing += (existing.empty() ? "" : ", ") + f;
  }
  if (!existing.empty()) {
    return Status(Code::kAlreadyExists,
                  fmt::format("refusing to overwrite {} (keys are never replaced; enrol into a "
                              "new folder, or move the old one away first)",
                              existing));
  }
  return p;
}

// The ip.toml enrolment writes: what it knows filled in, the rest as placeholders.
std::string ConfigText(const EnrollRequest& request, const Orgnr& org, const std::string& name,
                       const EnrollPaths& paths) {
  const std::string& config_path = paths.config;
  const std::string& state = paths.state;
  auto or_placeholder = [](const std::string& v, const char* what) {
    return v.empty() ? TomlString(fmt::format("<{} from the registry operator>", what))
                     : TomlString(v);
  };
  auto state_path = [&](const char* name) {
    return TomlString(state.empty() ? std::string(name) : JoinPath(state, name));
  };
  return fmt::format(
      R"(# bud-ip config made by `bud-ip enroll` for {org} ({name}).
# Relative paths are relative to this file's folder. Every key, with its default, is described
# in share/budstikke/examples/ip.toml and docs/operating.md. Check it with
#   bud-ip run --check-config --config {config}

[agency]
orgnr = "{orgnr}"

[paths]
outbox = {outbox}     # the archive system writes outgoing messages here
inbox = {inbox}       # and finds incoming ones here
store = {store}

[keys]
signing_key = "keys/signing.key"
signing_cert = "keys/signing.pem"        # from the CA: the signed keys/signing.csr
encryption_key = "keys/encryption.key"
encryption_cert = "keys/encryption.pem"  # from the CA: the signed keys/encryption.csr
trust_anchor = "ca.pem"                  # the CA certificate, from the registry operator
curve_key_file = "keys/curve.key"        # its public key is in the registry entry

[registry]
endpoint = {registry}
server_key = {registry_key}

[broker]
endpoint = {broker}
server_key = {broker_key}
)",
      fmt::arg("org", org.wire()), fmt::arg("name", name), fmt::arg("config", config_path),
      fmt::arg("orgnr", org.digits()), fmt::arg("outbox", state_path("outbox")),
      fmt::arg("inbox", state_path("inbox")), fmt::arg("store", state_path("ip.db")),
      fmt::arg("registry", or_placeholder(request.registry_endpoint, "registry endpoint")),
      fmt::arg("registry_key",
               or_placeholder(request.registry_server_key, "registry CURVE public key")),
      fmt::arg("broker", or_placeholder(request.broker_endpoint, "broker endpoint")),
      fmt::arg("broker_key", or_placeholder(request.broker_server_key, "broker CURVE public key")));
}

// What enrolment made, what to send the registry operator and the next steps.
std::string Summary(const EnrollRequest& request, const Orgnr& org, const std::string& name,
                    const EnrollPaths& paths, const std::string& sign_csr_pem,
                    const std::string& enc_csr_pem, const std::string& curve_public_key) {
  const std::string &dir = paths.dir, &keys = paths.keys, &config_path = paths.config;
  const std::string &signing_key = paths.signing_key, &signing_csr = paths.signing_csr;
  const std::string &encryption_key = paths.encryption_key,
                    &encryption_csr = paths.encryption_csr, &curve_key = paths.curve_key;
  const bool placeholders = request.registry_endpoint.empty() ||
                            request.registry_server_key.empty() ||
                            request.broker_endpoint.empty() || request.broker_server_key.empty();
  std::string out = fmt::format("Enrolled {} ({}) in {}:\n", org.wire(), name, dir);
  const std::pair<std::string, std::string> made[] = {
      {signing_key, fmt::format("private signing key ({}, mode 0600): never leaves this machine",
                                Describe(request.signing_key_type))},
      {encryption_key, fmt::format("private encryption key ({}, mode 0600): never leaves this "
                                   "machine",
                                   Describe(request.encryption_key_type))},
      {curve_key, "CURVE key pair (mode 0600)"},
      {config_path, "the config"}};
  size_t width = 0;
  for (const auto& [path, what] : made) width = std::max(width, path.size());
  for (const auto& [path, what] : made) out += fmt::format("  {:<{}}  {}\n", path, width, what);
  out += "\n";
  out += fmt::format(
      "Send to the registry operator:\n"
      "  organisation number  {}\n"
      "  name                 {}\n"
      "  signing CSR          {}  (sha256sum {})\n"
      "  encryption CSR       {}  (sha256sum {})\n"
      "  CURVE public key     {}\n"
      "  the processes (and document types) you accept\n"
      "Confirm the two sha256sum values with the operator over another channel (phone).\n\n",
      org.digits(), name, signing_csr, crypto::Hex(crypto::Sha256(sign_csr_pem)), encryption_csr,
      crypto::Hex(crypto::Sha256(enc_csr_pem)), curve_public_key);
  int step = 1;
  out += "Next steps:\n";
  out += fmt::format(
      "  {}. The operator signs the CSRs, registers you (`bud-registry add`) and sends back\n"
      "     your two certificates and the CA certificate: save them as\n"
      "     {}, {} and {}.\n",
      step++, JoinPath(keys, "signing.pem"), JoinPath(keys, "encryption.pem"),
      JoinPath(dir, "ca.pem"));
  if (placeholders) {
    out += fmt::format(
        "  {}. Fill in [registry] and [broker] in {} (endpoints and CURVE\n"
        "     server keys, from the operator).\n",
        step++, config_path);
  }
  out += fmt::format("  {}. bud-ip run --check-config --config {}\n", step++, config_path);
  out += fmt::format(
      "  {}. Start it: systemctl enable --now bud-ip (it reads /etc/budstikke/ip/ip.toml), or\n"
      "     bud-ip run --config {}\n",
      step++, config_path);
  return out;
}

}  // namespace

Result<std::string> Enroll(const EnrollRequest& request) {
  BUD_ASSIGN_OR_RETURN(Orgnr org, Orgnr::Parse(request.orgnr));
  const std::string name =
      request.name.empty() ? fmt::format("Organisation {}", org.digits()) : request.name;
  BUD_RETURN_IF_ERROR(CheckRequest(request, name));
  BUD_ASSIGN_OR_RETURN(const EnrollPaths paths, PathsFor(request));

  BUD_ASSIGN_OR_RETURN(crypto::PKey sign, crypto::GenerateKey(request.signing_key_type));
  BUD_ASSIGN_OR_RETURN(crypto::PKey enc, crypto::GenerateKey(request.encryption_key_type));
  BUD_ASSIGN_OR_RETURN(std::string sign_pem, crypto::PrivateKeyToPem(sign.get()));
  BUD_ASSIGN_OR_RETURN(std::string enc_pem, crypto::PrivateKeyToPem(enc.get()));
  BUD_ASSIGN_OR_RETURN(std::string sign_csr_pem, MakeCsr(sign.get(), org, name, "signing",
                                                         KeyUsage(request.signing_key_type, true)));
  BUD_ASSIGN_OR_RETURN(
      std::string enc_csr_pem,
      MakeCsr(enc.get(), org, name, "encryption", KeyUsage(request.encryption_key_type, false)));

  Undo undo;
  BUD_RETURN_IF_ERROR(MakeDir(paths.dir, 0750, undo));
  BUD_RETURN_IF_ERROR(MakeDir(paths.keys, 0700, undo));
  BUD_RETURN_IF_ERROR(Write(paths.signing_key, sign_pem, 0600, undo));
  BUD_RETURN_IF_ERROR(Write(paths.signing_csr, sign_csr_pem, 0644, undo));
  BUD_RETURN_IF_ERROR(Write(paths.encryption_key, enc_pem, 0600, undo));
  BUD_RETURN_IF_ERROR(Write(paths.encryption_csr, enc_csr_pem, 0644, undo));
  BUD_ASSIGN_OR_RETURN(wire::CurveKeyPair curve, wire::WriteNewCurveKeyFile(paths.curve_key));
  undo.Add(paths.curve_key);
  BUD_RETURN_IF_ERROR(
      Write(paths.config, ConfigText(request, org, name, paths), 0640, undo));
  undo.Keep();
  return Summary(request, org, name, paths, sign_csr_pem, enc_csr_pem, curve.public_key);
}

}  // namespace bud::ip
