#pragma once

// Internal to the http module: the pieces of the plain readers that go in front of Beast's parser
// (request_parser.h, response_parser.h) for the plain heads nearly every peer sends. Beast's
// parser looks at each byte through several calls and table lookups (30-40 instructions a byte);
// these loops test one table entry a byte, or sixteen bytes at a time. A plain reader takes a head
// only when all of it is at hand and every line has a plain form (its start line, and field lines
// as scan_field reads them). On anything else (a head still arriving, folded lines, a byte out of
// place, framing fields it leaves alone) it takes nothing, and Beast's parser reads the message
// from its first byte as before. It never rejects: errors stay Beast's. So a head it takes is one
// Beast's parser would read the same way, which the request_parser and response_parser fuzz
// targets check.

#include <array>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <boost/system/error_code.hpp>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace infergate::http::head_scan {

namespace detail {

// RFC 9110 tchar: the characters of tokens such as field names.
constexpr std::array<bool, 256> make_token_chars() {
  std::array<bool, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) {
    table[static_cast<unsigned char>(c)] = true;
  }
  return table;
}

// Field values and reason phrases, as Beast's parser reads them: HTAB, SP, VCHAR and obs-text
// (every byte but the other control characters and DEL).
constexpr std::array<bool, 256> make_value_chars() {
  std::array<bool, 256> table{};
  for (int c = 0; c < 256; ++c) {
    table[static_cast<std::size_t>(c)] = c == '\t' || (c >= 0x20 && c != 0x7f);
  }
  return table;
}

inline constexpr std::array<bool, 256> kTokenChars = make_token_chars();
inline constexpr std::array<bool, 256> kValueChars = make_value_chars();

}  // namespace detail

// Past the value characters from `p` (at most `end`). Sixteen bytes at a time while there are
// as many: a head's values end at their CR, which the vector test finds with the first byte that
// is not a value character.
inline const char* skip_value_chars(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i max_control = _mm_set1_epi8(0x1f);
  const __m128i tab = _mm_set1_epi8('\t');
  const __m128i del = _mm_set1_epi8(0x7f);
  while (end - p >= 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i control = _mm_cmpeq_epi8(_mm_min_epu8(bytes, max_control), bytes);
    const __m128i other = _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(bytes, tab), control),
                                       _mm_cmpeq_epi8(bytes, del));
    if (const int mask = _mm_movemask_epi8(other)) {
      return p + __builtin_ctz(static_cast<unsigned>(mask));
    }
    p += 16;
  }
#endif
  while (p != end && detail::kValueChars[static_cast<unsigned char>(*p)]) ++p;
  return p;
}

// Past the token characters from `p` (at most `end`). Letters, digits and '-' (the characters of
// nearly every field name) sixteen at a time while there are as many, then one at a time.
inline const char* skip_token_chars(const char* p, const char* end) {
#if defined(__SSE2__)
  // Whether each byte is within [low, low + span] (unsigned).
  const auto within = [](__m128i bytes, char low, char span) {
    const __m128i offset = _mm_sub_epi8(bytes, _mm_set1_epi8(low));
    return _mm_cmpeq_epi8(_mm_min_epu8(offset, _mm_set1_epi8(span)), offset);
  };
  while (end - p >= 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i letters = within(_mm_or_si128(bytes, _mm_set1_epi8(0x20)), 'a', 'z' - 'a');
    const __m128i usual = _mm_or_si128(_mm_or_si128(letters, within(bytes, '0', 9)),
                                       _mm_cmpeq_epi8(bytes, _mm_set1_epi8('-')));
    const unsigned mask = ~static_cast<unsigned>(_mm_movemask_epi8(usual)) & 0xffffu;
    if (mask != 0) {
      p += __builtin_ctz(mask);
      break;
    }
    p += 16;
  }
#endif
  while (p != end && detail::kTokenChars[static_cast<unsigned char>(*p)]) ++p;
  return p;
}

// Past the request-target characters from `p` (at most `end`): every byte but controls, SP and
// DEL, as Beast's parser takes them. Sixteen at a time while there are as many.
inline const char* skip_target_chars(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i max_stop = _mm_set1_epi8(0x20);
  const __m128i del = _mm_set1_epi8(0x7f);
  while (end - p >= 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i stop = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(bytes, max_stop), bytes),
                                      _mm_cmpeq_epi8(bytes, del));
    if (const int mask = _mm_movemask_epi8(stop)) {
      return p + __builtin_ctz(static_cast<unsigned>(mask));
    }
    p += 16;
  }
#endif
  while (p != end && detail::kValueChars[static_cast<unsigned char>(*p)] && *p != ' ' &&
         *p != '\t') {
    ++p;
  }
  return p;
}

inline bool is_token(std::string_view text) {
  return !text.empty() &&
         skip_token_chars(text.data(), text.data() + text.size()) == text.data() + text.size();
}

// Whether a CRLF is at `p`.
inline bool at_crlf(const char* p, const char* end) {
  return end - p >= 2 && p[0] == '\r' && p[1] == '\n';
}

// One field line.
struct Field {
  std::string_view name;
  std::string_view value;  // without the blanks around it
};

// Reads the field line at `p`, `name ":" *(SP / HTAB) value CRLF` with a token name, value
// characters only and no folded line after it, and moves `p` past it: false (p unchanged) when
// the line is of another form or ends past `end`.
inline bool scan_field(const char*& p, const char* end, Field& field) {
  const char* const name_end = skip_token_chars(p, end);
  if (name_end == p || name_end == end || *name_end != ':') return false;
  const char* value = name_end + 1;
  while (value != end && (*value == ' ' || *value == '\t')) ++value;
  const char* const value_end = skip_value_chars(value, end);
  // The byte after the CRLF must be there and not begin a folded line (obs-fold).
  if (end - value_end < 3 || value_end[0] != '\r' || value_end[1] != '\n' || value_end[2] == ' ' ||
      value_end[2] == '\t') {
    return false;
  }
  const char* trimmed = value_end;
  while (trimmed != value && (trimmed[-1] == ' ' || trimmed[-1] == '\t')) --trimmed;
  field.name = std::string_view(p, static_cast<std::size_t>(name_end - p));
  field.value = std::string_view(value, static_cast<std::size_t>(trimmed - value));
  p = value_end + 2;
  return true;
}

// Reads a Content-Length value of digits only, as Beast's parser reads one (not empty, no list,
// no sign, no overflow): false otherwise. std::from_chars refuses an empty value by itself.
inline bool scan_length(std::string_view value, std::uint64_t& length) {
  const char* const end = value.data() + value.size();
  const auto [stop, error] = std::from_chars(value.data(), end, length);
  return error == std::errc() && stop == end;
}

// ASCII case-insensitive comparison with `lower`, a lower-case name of letters and '-'. Setting
// bit 0x20 of a byte makes an upper-case letter lower-case and maps no other byte but CR (to '-')
// onto a letter or '-'; CR is in no token or field value.
inline bool equals_lower(std::string_view text, std::string_view lower) {
  const std::size_t size = lower.size();
  if (text.size() != size) return false;
  if (size >= 8 && size <= 16) {  // two words, overlapping when size < 16
    constexpr std::uint64_t kLowerBits = 0x2020202020202020u;
    std::uint64_t first = 0;
    std::uint64_t last = 0;
    std::uint64_t lower_first = 0;
    std::uint64_t lower_last = 0;
    std::memcpy(&first, text.data(), 8);
    std::memcpy(&last, text.data() + size - 8, 8);
    std::memcpy(&lower_first, lower.data(), 8);
    std::memcpy(&lower_last, lower.data() + size - 8, 8);
    return (first | kLowerBits) == lower_first && (last | kLowerBits) == lower_last;
  }
  for (std::size_t i = 0; i < size; ++i) {
    if ((text[i] | 0x20) != lower[i]) return false;
  }
  return true;
}

// Which reader reads a message, decided by its first bytes: the plain reader when it takes the
// head, else Beast's parser (from the message's first byte).
enum class Reader { kUndecided, kPlain, kBeast };

// The put() of a parser with a plain reader in front of Beast's, from its steps:
// `take_head(bytes)` (the size of the plain head taken, or 0), `put_body(bytes, ec)` for the bytes
// after a plain head, `put_beast(ec)` for the bytes of a message left to Beast's parser.
template <typename TakeHead, typename PutBody, typename PutBeast>
std::size_t put_plain_first(Reader& reader, std::string_view bytes, boost::system::error_code& ec,
                            TakeHead&& take_head, PutBody&& put_body, PutBeast&& put_beast) {
  if (reader == Reader::kUndecided && !bytes.empty()) {
    if (const std::size_t used = take_head(bytes)) {
      reader = Reader::kPlain;
      ec = {};
      return used;
    }
    reader = Reader::kBeast;
  }
  if (reader == Reader::kPlain) return put_body(bytes, ec);
  return put_beast(ec);
}

// The framing fields of a plain head, as Beast's parser reads them (basic_parser::do_field), in
// the forms a plain reader takes: one Content-Length of digits and one Connection of a single
// token other than `upgrade`. Transfer-Encoding, Proxy-Connection, Upgrade and any other form of
// those two are left to Beast's parser.
class Framing {
 public:
  enum class Kind {
    kOther,       // not a framing field
    kConnection,  // the Connection field
    kLeave,       // a field the plain reader leaves to Beast's parser (with the whole head)
  };

  // Notes `field`, a field line of the head read in order.
  Kind note(const Field& field) {
    switch (field.name.size()) {
      case 7:
        return equals_lower(field.name, "upgrade") ? Kind::kLeave : Kind::kOther;
      case 16:
        return equals_lower(field.name, "proxy-connection") ? Kind::kLeave : Kind::kOther;
      case 17:
        return equals_lower(field.name, "transfer-encoding") ? Kind::kLeave : Kind::kOther;
      case 10:
        return equals_lower(field.name, "connection") ? note_connection(field.value) : Kind::kOther;
      case 14:
        if (!equals_lower(field.name, "content-length")) return Kind::kOther;
        if (has_content_length_ || !scan_length(field.value, content_length_)) {
          return Kind::kLeave;
        }
        has_content_length_ = true;
        return Kind::kOther;
      default:
        return Kind::kOther;
    }
  }

  bool has_content_length() const { return has_content_length_; }
  std::uint64_t content_length() const { return content_length_; }
  // Whether the connection stays open after the message, by its version and Connection field
  // (Beast's basic_parser::keep_alive for a message that does not end with the connection).
  bool keep_alive(unsigned version) const { return version >= 11 ? !close_ : keep_alive_; }

 private:
  Kind note_connection(std::string_view value) {
    if (has_connection_) return Kind::kLeave;
    keep_alive_ = equals_lower(value, "keep-alive");
    close_ = !keep_alive_ && equals_lower(value, "close");
    if (!keep_alive_ && !close_ && (!is_token(value) || equals_lower(value, "upgrade"))) {
      return Kind::kLeave;
    }
    has_connection_ = true;
    return Kind::kConnection;
  }

  bool has_content_length_ = false;
  bool has_connection_ = false;
  bool close_ = false;
  bool keep_alive_ = false;
  std::uint64_t content_length_ = 0;
};

// Reads the field lines from `p` up to and past the blank line that ends the head, noting each in
// `framing` and handing it to `on_field(field, kind)`: false as soon as a line is not plain or a
// framing field is one to leave to Beast's parser.
template <typename OnField>
bool scan_fields(const char*& p, const char* end, Framing& framing, OnField&& on_field) {
  while (!at_crlf(p, end)) {
    Field field;
    if (!scan_field(p, end, field)) return false;
    const Framing::Kind kind = framing.note(field);
    if (kind == Framing::Kind::kLeave) return false;
    on_field(field, kind);
  }
  p += 2;
  return true;
}

}  // namespace infergate::http::head_scan
