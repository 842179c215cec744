#pragma once

// Helpers shared by the fuzz targets that talk over loopback (http_server, http_client).

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace infergate::fuzz {

// Sends `writes` on `socket` one write each (stopping at a failed one: the other side may have
// closed once it had answered), ends the sending side, then reads until the other side closes;
// returns what was read.
inline boost::asio::awaitable<std::string> send_then_read_to_end(
    boost::asio::ip::tcp::socket& socket, std::vector<std::string_view> writes) {
  namespace asio = boost::asio;
  const auto as_tuple = asio::as_tuple(asio::use_awaitable);
  for (std::string_view piece : writes) {
    auto [ec, written] = co_await asio::async_write(socket, asio::buffer(piece), as_tuple);
    if (ec) break;
  }
  boost::system::error_code ignored;
  socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  std::string received;
  char chunk[4096];
  while (true) {
    auto [ec, bytes] = co_await socket.async_read_some(asio::buffer(chunk), as_tuple);
    if (ec) break;
    received.append(chunk, bytes);
  }
  co_return received;
}

}  // namespace infergate::fuzz
