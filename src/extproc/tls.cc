#include "extproc/tls.h"

#include <fmt/format.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <sstream>

namespace infergate::extproc {
namespace {

// RAII for the OpenSSL objects used here.
struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct BignumFree {
  void operator()(BIGNUM* number) const { BN_free(number); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using BignumPtr = std::unique_ptr<BIGNUM, BignumFree>;

// The oldest queued OpenSSL error, for messages (and the queue cleared).
std::string openssl_error() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

Status openssl_failure(std::string_view step) {
  return Status::internal(fmt::format("self-signed certificate: {}: {}", step, openssl_error()));
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return Status::bad_request(fmt::format("{}: cannot be read", path));
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

BioPtr memory_bio(std::string_view text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(size));
}

bool add_extension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str());
  if (extension == nullptr) return false;
  const bool added = X509_add_ext(cert, extension, -1) == 1;
  X509_EXTENSION_free(extension);
  return added;
}

}  // namespace

Result<TlsMaterial> load_tls_material(const std::string& cert_dir) {
  const std::string cert_path = cert_dir + "/tls.crt";
  const std::string key_path = cert_dir + "/tls.key";
  auto cert_text = read_file(cert_path);
  if (!cert_text) return cert_text.status();
  auto key_text = read_file(key_path);
  if (!key_text) return key_text.status();

  BioPtr cert_bio = memory_bio(*cert_text);
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    return Status::bad_request(
        fmt::format("{}: not a PEM certificate ({})", cert_path, openssl_error()));
  }
  BioPtr key_bio = memory_bio(*key_text);
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    return Status::bad_request(
        fmt::format("{}: not a PEM private key ({})", key_path, openssl_error()));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return Status::bad_request(fmt::format(
        "{} and {}: the private key does not match the certificate", key_path, cert_path));
  }
  return TlsMaterial{.certificate_pem = std::move(*cert_text),
                     .private_key_pem = std::move(*key_text)};
}

Result<TlsMaterial> generate_self_signed(const std::vector<std::string>& extra_dns_names) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return openssl_failure("generating the EC P-256 key");

  X509Ptr cert(X509_new());
  if (!cert) return openssl_failure("X509_new");
  if (X509_set_version(cert.get(), 2) != 1) return openssl_failure("setting the version");

  // A random positive 127-bit serial number (RFC 5280 allows up to 20 octets).
  BignumPtr serial(BN_new());
  if (!serial || BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return openssl_failure("drawing the serial number");
  }
  constexpr long kOneHourSeconds = 3600;
  constexpr long kTenYearsSeconds = 10L * 365 * 24 * 3600;
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kOneHourSeconds) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), kTenYearsSeconds) == nullptr) {
    return openssl_failure("setting the validity");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  const auto add_name_entry = [&](const char* field, const char* value) {
    return X509_NAME_add_entry_by_txt(name, field, MBSTRING_ASC,
                                      reinterpret_cast<const unsigned char*>(value), -1, -1,
                                      0) == 1;
  };
  if (!add_name_entry("O", "infergate") || !add_name_entry("CN", "infergate-epp") ||
      X509_set_issuer_name(cert.get(), name) != 1) {
    return openssl_failure("setting the subject");
  }
  if (X509_set_pubkey(cert.get(), key.get()) != 1) return openssl_failure("setting the key");

  std::string alt_names = "DNS:localhost,IP:127.0.0.1,IP:::1";
  for (const auto& dns_name : extra_dns_names) {
    if (!dns_name.empty() && dns_name != "localhost") alt_names += ",DNS:" + dns_name;
  }
  if (!add_extension(cert.get(), NID_key_usage, "critical,digitalSignature") ||
      !add_extension(cert.get(), NID_ext_key_usage, "serverAuth") ||
      !add_extension(cert.get(), NID_subject_key_identifier, "hash") ||
      !add_extension(cert.get(), NID_subject_alt_name, alt_names)) {
    return openssl_failure("adding the extensions");
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) return openssl_failure("signing");

  BioPtr cert_out(BIO_new(BIO_s_mem()));
  BioPtr key_out(BIO_new(BIO_s_mem()));
  if (!cert_out || !key_out || PEM_write_bio_X509(cert_out.get(), cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(key_out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
          1) {
    return openssl_failure("writing PEM");
  }
  return TlsMaterial{.certificate_pem = bio_text(cert_out.get()),
                     .private_key_pem = bio_text(key_out.get())};
}

std::shared_ptr<::grpc::ServerCredentials> tls_server_credentials(const TlsMaterial& material) {
  ::grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_key_cert_pairs.push_back(
      {.private_key = material.private_key_pem, .cert_chain = material.certificate_pem});
  return ::grpc::SslServerCredentials(options);
}

}  // namespace infergate::extproc
