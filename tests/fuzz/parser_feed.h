#pragma once

// How the http module's readers feed a message parser (ours, or Beast's as the reference): the
// head through wire::parse_head with a head limit, then the bytes already buffered, one piece
// after another as reads bring them. Shared by the request_parser and response_parser targets.

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

#include "http/wire.h"

namespace infergate::fuzz {

// Feeds `pieces` to `parser`: the first error, no error once the message is whole, or nullopt
// when the pieces ran out before the message did (unparsed bytes stay buffered for the next
// piece, as in the readers).
template <typename Parser>
std::optional<boost::system::error_code> feed_pieces(Parser& parser,
                                                     const std::vector<std::string_view>& pieces,
                                                     std::size_t head_limit) {
  boost::beast::flat_buffer buffer;
  http::wire::HeadProgress head_progress;
  boost::system::error_code ec;
  for (std::string_view piece : pieces) {
    buffer.commit(
        boost::asio::buffer_copy(buffer.prepare(piece.size()), boost::asio::buffer(piece)));
    if (!http::wire::parse_head(parser, buffer, head_limit, head_progress, ec)) {
      if (ec) return ec;
      continue;
    }
    if (http::wire::parse_buffered(
            parser, buffer, [](const auto& p) { return p.is_done(); }, ec)) {
      return boost::system::error_code();
    }
    if (ec) return ec;
  }
  return std::nullopt;
}

}  // namespace infergate::fuzz
