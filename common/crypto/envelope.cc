// Envelope sealing and opening with OpenSSL CMS and EVP signatures. See envelope.h.
#include "common/crypto/envelope.h"

#include <fmt/format.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <climits>

namespace bud::crypto {

namespace {

bool IsEd25519(EVP_PKEY* key) { return EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519; }

Result<std::string> BioContents(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  if (n < 0) return Status(Code::kInternal, "cannot read memory BIO");
  return std::string(data, static_cast<size_t>(n));
}

// The key wrap algorithm a key-agreement recipient info names (the parameter of its key
// encryption algorithm, RFC 5753), or NID_undef.
int KariWrapNid(CMS_RecipientInfo* ri) {
  X509_ALGOR* alg = nullptr;
  ASN1_OCTET_STRING* ukm = nullptr;
  if (CMS_RecipientInfo_kari_get0_alg(ri, &alg, &ukm) != 1 || alg == nullptr) return NID_undef;
  int ptype = V_ASN1_UNDEF;
  const void* pval = nullptr;
  X509_ALGOR_get0(nullptr, &ptype, &pval, alg);
  if (ptype != V_ASN1_SEQUENCE || pval == nullptr) return NID_undef;
  const auto* seq = static_cast<const ASN1_STRING*>(pval);
  const unsigned char* p = ASN1_STRING_get0_data(seq);
  X509_ALGOR* wrap = d2i_X509_ALGOR(nullptr, &p, ASN1_STRING_length(seq));
  if (wrap == nullptr) return NID_undef;
  const ASN1_OBJECT* oid = nullptr;
  X509_ALGOR_get0(&oid, nullptr, nullptr, wrap);
  int nid = OBJ_obj2nid(oid);
  X509_ALGOR_free(wrap);
  return nid;
}

// Only what CmsEncrypt makes reaches CMS_decrypt: at most kMaxRecipientInfos recipient infos,
// each key transport (RSA) or key agreement (EC) with AES key wrap (RFC 3394). AES key wrap
// *with padding* (RFC 5649) is refused: OpenSSL 3.0's CRYPTO_128_unwrap_pad wipes 8 bytes past
// its output buffer when an unwrap fails (a heap overwrite a sender could aim at a receiver,
// found by fuzz_envelope; openssl/openssl#30663), and no sender of ours uses it.
constexpr int kMaxRecipientInfos = 4;

Status CheckRecipientInfos(CMS_ContentInfo* cms) {
  STACK_OF(CMS_RecipientInfo)* ris = CMS_get0_RecipientInfos(cms);
  int n = ris == nullptr ? 0 : sk_CMS_RecipientInfo_num(ris);
  if (n < 1 || n > kMaxRecipientInfos) {
    return Status(Code::kDecryptFailed,
                  fmt::format("payload has {} recipient infos (1 to {} accepted)", n,
                              kMaxRecipientInfos));
  }
  for (int i = 0; i < n; ++i) {
    CMS_RecipientInfo* ri = sk_CMS_RecipientInfo_value(ris, i);
    int type = CMS_RecipientInfo_type(ri);
    if (type == CMS_RECIPINFO_TRANS) continue;
    if (type != CMS_RECIPINFO_AGREE) {
      return Status(Code::kDecryptFailed,
                    fmt::format("payload recipient info of type {} is not supported (key "
                                "transport or key agreement only)",
                                type));
    }
    int wrap = KariWrapNid(ri);
    if (wrap != NID_id_aes128_wrap && wrap != NID_id_aes192_wrap && wrap != NID_id_aes256_wrap) {
      ERR_clear_error();
      return Status(Code::kDecryptFailed,
                    fmt::format("payload key agreement uses key wrap {} (AES key wrap without "
                                "padding only)",
                                wrap == NID_undef ? std::string("(unreadable)")
                                                  : std::string(OBJ_nid2sn(wrap))));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> Sign(std::string_view data, EVP_PKEY* key) {
  MdCtx ctx(EVP_MD_CTX_new());
  const EVP_MD* md = IsEd25519(key) ? nullptr : EVP_sha256();
  size_t len = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
    return Status(Code::kBadKey, "cannot sign: " + DrainErrors());
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
    return Status(Code::kBadKey, "cannot sign: " + DrainErrors());
  }
  sig.resize(len);
  return sig;
}

Status VerifySignature(std::string_view data, std::string_view signature, X509* cert) {
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  if (pub == nullptr) {
    ERR_clear_error();
    return Status(Code::kBadSignature, "signer certificate has no usable public key");
  }
  MdCtx ctx(EVP_MD_CTX_new());
  const EVP_MD* md = IsEd25519(pub) ? nullptr : EVP_sha256();
  int rc = EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, pub);
  if (rc == 1) {
    rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                          data.size());
  }
  ERR_clear_error();
  if (rc != 1) return Status(Code::kBadSignature, "the signature over the header does not verify");
  return Status::Ok();
}

Result<std::string> CmsEncrypt(std::string_view plaintext, X509* recipient) {
  if (plaintext.size() > INT_MAX) return Status(Code::kInvalidArgument, "payload too large");
  CertStack recips(sk_X509_new_null());
  sk_X509_push(recips.get(), recipient);  // the stack borrows; sk_X509_free does not free certs
  Bio in(BIO_new_mem_buf(plaintext.data(), static_cast<int>(plaintext.size())));
  CmsContent cms(CMS_encrypt_ex(recips.get(), in.get(), EVP_aes_256_gcm(), CMS_BINARY, nullptr,
                                nullptr));
  if (!cms) return Status(Code::kBadCertificate, "cannot encrypt to certificate: " + DrainErrors());
  if (CMS_get0_type(cms.get()) == nullptr ||
      OBJ_obj2nid(CMS_get0_type(cms.get())) != NID_id_smime_ct_authEnvelopedData) {
    return Status(Code::kInternal, "CMS_encrypt did not produce AuthEnvelopedData");
  }
  Bio out(BIO_new(BIO_s_mem()));
  if (i2d_CMS_bio(out.get(), cms.get()) != 1) {
    return Status(Code::kInternal, "cannot encode CMS: " + DrainErrors());
  }
  return BioContents(out.get());
}

Result<std::string> CmsDecrypt(std::string_view der, EVP_PKEY* key, X509* cert) {
  if (der.size() > INT_MAX) return Status(Code::kMalformed, "CMS structure too large");
  Bio in(BIO_new_mem_buf(der.data(), static_cast<int>(der.size())));
  CmsContent cms(d2i_CMS_bio(in.get(), nullptr));
  if (!cms) {
    ERR_clear_error();
    return Status(Code::kDecryptFailed, "payload is not a CMS structure");
  }
  if (OBJ_obj2nid(CMS_get0_type(cms.get())) != NID_id_smime_ct_authEnvelopedData) {
    return Status(Code::kDecryptFailed, "payload is not CMS AuthEnvelopedData");
  }
  if (Status s = CheckRecipientInfos(cms.get()); !s.ok()) {
    ERR_clear_error();
    return s;
  }
  Bio out(BIO_new(BIO_s_mem()));
  if (CMS_decrypt(cms.get(), key, cert, nullptr, out.get(), CMS_BINARY) != 1) {
    ERR_clear_error();
    return Status(Code::kDecryptFailed,
                  "cannot decrypt the payload (wrong key, or the ciphertext or tag was altered)");
  }
  // CMS_decrypt tries every recipient info: one it could not unwrap (e.g. an RSA block of the
  // wrong length) leaves its errors queued even when another one succeeds.
  ERR_clear_error();
  return BioContents(out.get());
}

Result<std::string> Seal(wire::Header header, const wire::Payload& payload,
                         const SignerKeys& signer, X509* receiver_encryption_cert) {
  if (payload.message_id() != header.message_id() || payload.sender() != header.sender() ||
      payload.receiver() != header.receiver() ||
      payload.conversation_id() != header.conversation_id()) {
    return Status(Code::kInvalidArgument, "payload ids do not match the header");
  }
  std::string plain;
  if (!payload.SerializeToString(&plain)) return Status(Code::kInternal, "cannot encode payload");
  BUD_ASSIGN_OR_RETURN(std::string cms, CmsEncrypt(plain, receiver_encryption_cert));

  header.set_version(kEnvelopeVersion);
  header.set_payload_size(cms.size());
  header.set_payload_sha256(Sha256(cms));
  header.set_recipient_cert_sha256(CertFingerprint(receiver_encryption_cert));

  wire::Envelope env;
  if (!header.SerializeToString(env.mutable_header())) {
    return Status(Code::kInternal, "cannot encode header");
  }
  BUD_ASSIGN_OR_RETURN(std::string sig, Sign(env.header(), signer.signing_key));
  env.set_signature(std::move(sig));
  env.set_signer_cert_sha256(CertFingerprint(signer.signing_cert));
  env.set_payload(std::move(cms));
  std::string out;
  if (!env.SerializeToString(&out)) return Status(Code::kInternal, "cannot encode envelope");
  return out;
}

Result<wire::Envelope> ParseEnvelope(std::string_view bytes) {
  if (bytes.size() > kMaxEnvelopeBytes) {
    return Status(Code::kMalformed, fmt::format("envelope of {} bytes exceeds the limit of {}",
                                                bytes.size(), kMaxEnvelopeBytes));
  }
  wire::Envelope env;
  if (!env.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Status(Code::kMalformed, "envelope is not a valid protobuf Envelope");
  }
  if (env.header().empty() || env.signature().empty() || env.payload().empty()) {
    return Status(Code::kMalformed, "envelope lacks its header, signature or payload");
  }
  return env;
}

Result<wire::Header> ParseHeaderUnverified(const wire::Envelope& envelope) {
  wire::Header h;
  if (!h.ParseFromString(envelope.header())) {
    return Status(Code::kMalformed, "envelope header is not a valid protobuf Header");
  }
  if (h.version() != kEnvelopeVersion) {
    return Status(Code::kUnsupported,
                  fmt::format("envelope version {} is not supported (this build reads {})",
                              h.version(), kEnvelopeVersion));
  }
  return h;
}

Result<X509*> FindSignerCert(const wire::Envelope& envelope, const Orgnr& sender,
                             std::span<X509* const> sender_certs) {
  for (X509* c : sender_certs) {
    if (CertFingerprint(c) == envelope.signer_cert_sha256()) return c;
  }
  return Status(Code::kBadSignature,
                fmt::format("signed with certificate {} which is not a registered signing "
                            "certificate of {}",
                            Hex(envelope.signer_cert_sha256()), sender.wire()));
}

Status CheckAddressing(const wire::Header& h, const Orgnr& me, const Orgnr& sender) {
  if (h.sender() != sender.wire()) {
    return Status(Code::kBadSignature,
                  fmt::format("header names sender {} but was signed by {}", h.sender(),
                              sender.wire()));
  }
  if (h.receiver() != me.wire()) {
    return Status(Code::kWrongReceiver,
                  fmt::format("envelope is addressed to {}, not to {}", h.receiver(), me.wire()));
  }
  return Status::Ok();
}

Result<const DecryptionKey*> FindDecryptionKey(const wire::Header& h,
                                               std::span<const DecryptionKey> my_keys) {
  for (const auto& k : my_keys) {
    if (CertFingerprint(k.cert) == h.recipient_cert_sha256()) return &k;
  }
  return Status(Code::kDecryptFailed,
                fmt::format("encrypted to certificate {}, which is not one of ours",
                            Hex(h.recipient_cert_sha256())));
}

Result<Opened> Open(std::string_view envelope_bytes, const Orgnr& me, const Orgnr& sender,
                    std::span<X509* const> sender_certs, std::span<const DecryptionKey> my_keys) {
  BUD_ASSIGN_OR_RETURN(wire::Envelope env, ParseEnvelope(envelope_bytes));

  BUD_ASSIGN_OR_RETURN(X509 * signer, FindSignerCert(env, sender, sender_certs));
  BUD_RETURN_IF_ERROR(VerifySignature(env.header(), env.signature(), signer));

  BUD_ASSIGN_OR_RETURN(wire::Header h, ParseHeaderUnverified(env));
  BUD_RETURN_IF_ERROR(CheckAddressing(h, me, sender));
  if (h.payload_size() != env.payload().size() || h.payload_sha256() != Sha256(env.payload())) {
    return Status(Code::kDigestMismatch,
                  "the payload does not match the size and SHA-256 in the signed header");
  }
  BUD_ASSIGN_OR_RETURN(const DecryptionKey* key, FindDecryptionKey(h, my_keys));
  BUD_ASSIGN_OR_RETURN(std::string plain, CmsDecrypt(env.payload(), key->key, key->cert));

  Opened out;
  if (!out.payload.ParseFromString(plain)) {
    return Status(Code::kMalformed, "decrypted payload is not a valid protobuf Payload");
  }
  const wire::Payload& p = out.payload;
  if (p.message_id() != h.message_id() || p.sender() != h.sender() ||
      p.receiver() != h.receiver() || p.conversation_id() != h.conversation_id()) {
    return Status(Code::kPayloadMismatch,
                  fmt::format("the encrypted payload names sender {}, receiver {}, message {}, "
                              "but the signed header names {}, {}, {}",
                              p.sender(), p.receiver(), p.message_id(), h.sender(), h.receiver(),
                              h.message_id()));
  }
  out.header = std::move(h);
  out.signer_fingerprint = Hex(env.signer_cert_sha256());
  return out;
}

}  // namespace bud::crypto
