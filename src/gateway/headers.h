#pragma once

// Header handling of the standalone gateway, pure: what the director sees of a client request,
// what is forwarded to the model server, and what of the model server's response goes back to the
// client. Thread-safe (no state).
//
// Removed on the way in (never seen by the director, never forwarded):
//   - the picker's control headers a client must not set: x-gateway-destination-endpoint (a client
//     could otherwise steer traffic, epp-protocol §12.3), -served, -subset, and the conformance
//     test header test-epp-endpoint-selection.
// Removed from what is forwarded upstream, in addition:
//   - hop-by-hop headers (RFC 9110 §7.6.1: Connection and the fields it names, Keep-Alive,
//     Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Authorization,
//     Proxy-Authenticate), Host and Content-Length (the client connection sets both for the
//     upstream), Expect (the gateway already has the whole body), and every director control
//     header (director/protocol.h: objective, rewrite, fairness, destination keys).
// Removed from the response relayed to the client:
//   - hop-by-hop headers, Content-Length (the gateway frames the body itself), Content-Type (passed
//     separately), Server (the gateway's own) and the control headers.
//
// With an external Endpoint Picker (`--epp`) the request goes to the EPP as Envoy sends it
// (epp_request_headers): the same minus the destination keys, but with the conformance header
// test-epp-endpoint-selection kept, since that EPP, not the gateway, honours it. What the EPP
// returns (its header mutation applied) is forwarded upstream by copy_mutated_headers, with the
// same removals as copy_forwarded_headers.

#include <string>
#include <string_view>

#include "director/director.h"
#include "http/message.h"

namespace infergate::gateway {

// The endpoint that served the request, reported to the client with --emit-endpoint-scores (the
// name of the EPP protocol's served-endpoint metadata key).
inline constexpr std::string_view kServedHeader = "x-gateway-destination-endpoint-served";

// True for the hop-by-hop header names listed above; `lower_case_name` must be lower case.
bool is_hop_by_hop(std::string_view lower_case_name);

// The request as the director reads it: ":method", ":path" (the request target, query included)
// and ":authority" (Host) first, then every header field with its name lower-cased, in arrival
// order, minus the control headers a client must not set (see above).
director::Headers director_headers(const http::Request& request);

// The request as an external EPP reads it (ext_proc request_headers): ":method", ":path",
// ":authority", ":scheme" ("http"), then every field lower-cased, minus the destination keys a
// client must not set; test-epp-endpoint-selection is kept.
director::Headers epp_request_headers(const http::Request& request);

// Copies the fields of `headers` (lower-case, as an EPP's mutation left them) that may be
// forwarded into `upstream`: no pseudo-headers, hop-by-hop fields, Host, Expect, Content-Length
// or control headers (see above), nor test-epp-endpoint-selection.
void copy_mutated_headers(const director::Headers& headers, http::Request& upstream);

// `headers` without pseudo-headers (":status"...), as http::Headers for relayed_response_headers.
http::Headers without_pseudo_headers(const director::Headers& headers);

// Replaces (or, with an empty value, removes) header `lower_case_name` in `headers`.
void set_director_header(director::Headers& headers, std::string_view lower_case_name,
                         std::string value);

// Copies the client's header fields that may be forwarded (see above) into `upstream`, keeping
// their spelling and order.
void copy_forwarded_headers(const http::Request& client, http::Request& upstream);

// The upstream response header fields to relay to the client (see above), spelling kept. The
// second form reuses the fields' storage (`upstream` is left unspecified).
http::Headers relayed_response_headers(const http::Headers& upstream);
http::Headers relayed_response_headers(http::Headers&& upstream);

// The response head as the director reads it: ":status", then every field lower-cased.
director::Headers director_response_headers(const http::ResponseHead& head);

// True when `content_type` is text/event-stream (parameters and case ignored).
bool is_event_stream(std::string_view content_type);

}  // namespace infergate::gateway
