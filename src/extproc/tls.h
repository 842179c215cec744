#pragma once

// TLS material for the ext_proc server (--secure-serving, --cert-path; api-types facts §8).
//
// With --cert-path DIR the server presents DIR/tls.crt (PEM certificate chain) and DIR/tls.key
// (PEM private key), the layout of a Kubernetes TLS Secret mounted as a volume. Without it a
// self-signed certificate is generated at start-up. The reference EPP generates RSA-4096; infergate
// generates an EC P-256 key (ECDSA with SHA-256), which every gateway's TLS stack accepts and which
// takes a millisecond instead of seconds. Gateways connect to the EPP with certificate validation
// disabled (GIE's Envoy config), so only the key type differs. ALPN (h2) is negotiated by gRPC.
//
// Start-up only; errors are 400/500 Statuses naming the file or the OpenSSL step. Thread-safe.

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace grpc {
class ServerCredentials;
}

namespace infergate::extproc {

struct TlsMaterial {
  std::string certificate_pem;  // the certificate chain, leaf first
  std::string private_key_pem;
};

// Reads DIR/tls.crt and DIR/tls.key and checks that they parse as PEM and belong together.
Result<TlsMaterial> load_tls_material(const std::string& cert_dir);

// A new EC P-256 key and a self-signed X.509 v3 certificate for it: subject and issuer
// CN=infergate-epp, O=infergate, valid from one hour ago for ten years (as GIE's), serverAuth,
// subjectAltName DNS:localhost, IP:127.0.0.1, IP:::1 plus `extra_dns_names` (e.g. the host name).
Result<TlsMaterial> generate_self_signed(const std::vector<std::string>& extra_dns_names = {});

// Server credentials presenting `material` (no client certificate requested).
std::shared_ptr<::grpc::ServerCredentials> tls_server_credentials(const TlsMaterial& material);

}  // namespace infergate::extproc
