#include "http/sse.h"

namespace infergate::http {

void SseParser::feed(std::string_view bytes,
                     const std::function<void(std::string_view data)>& on_event) {
  std::size_t position = 0;
  if (skip_line_feed_ && !bytes.empty()) {
    if (bytes.front() == '\n') {
      position = 1;
    }
    skip_line_feed_ = false;
  }
  while (position < bytes.size()) {
    const std::size_t line_end = bytes.find_first_of("\r\n", position);
    if (line_end == std::string_view::npos) {
      line_.append(bytes.substr(position));
      return;
    }
    const std::string_view piece = bytes.substr(position, line_end - position);
    if (line_.empty()) {
      process_line(piece, on_event);
    } else {
      line_.append(piece);
      process_line(line_, on_event);
      line_.clear();
    }
    position = line_end + 1;
    if (bytes[line_end] == '\r') {
      if (position == bytes.size()) {
        skip_line_feed_ = true;
      } else if (bytes[position] == '\n') {
        ++position;
      }
    }
  }
}

void SseParser::reset() {
  line_.clear();
  data_.clear();
  has_data_ = false;
  skip_line_feed_ = false;
}

void SseParser::process_line(std::string_view line,
                             const std::function<void(std::string_view data)>& on_event) {
  if (line.empty()) {
    if (has_data_) {
      has_data_ = false;  // data_ itself is cleared by the next event's first data line
      on_event(data_);
    }
    return;
  }
  if (line.front() == ':') {
    return;  // comment
  }
  const std::size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  if (field != "data") {
    return;
  }
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') {
      value.remove_prefix(1);
    }
  }
  if (has_data_) {
    data_.push_back('\n');
  } else {
    data_.clear();
  }
  data_.append(value);
  has_data_ = true;
}

std::string sse_event(std::string_view data) {
  std::string event;
  event.reserve(data.size() + 8);
  std::size_t position = 0;
  while (true) {
    const std::size_t line_end = data.find('\n', position);
    event.append("data: ");
    event.append(data.substr(position, line_end - position));
    event.push_back('\n');
    if (line_end == std::string_view::npos) {
      break;
    }
    position = line_end + 1;
  }
  event.push_back('\n');
  return event;
}

}  // namespace infergate::http
