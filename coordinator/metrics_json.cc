#include "coordinator/metrics_json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace trellis::coordinator {
namespace {

// Finite doubles need at most 24 characters in shortest form ("-2.2250738585072014e-308").
constexpr std::size_t kNumberChars = 32;
constexpr const char* kPlusInfinity = "1e999";
constexpr const char* kMinusInfinity = "-1e999";

void append_string(std::string* out, const std::string& text) {
  out->push_back('"');
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out->append(buf);
    } else {
      out->push_back(c);  // UTF-8 goes through as it came
    }
  }
  out->push_back('"');
}

void append_number(std::string* out, double v) {
  if (std::isnan(v)) {
    out->append("null");
  } else if (std::isinf(v)) {
    out->append(v > 0 ? kPlusInfinity : kMinusInfinity);
  } else {
    char buf[kNumberChars];
    const auto result = std::to_chars(buf, buf + sizeof buf, v);
    out->append(buf, result.ptr);
  }
}

class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  bool at_end() {
    skip_space();
    return pos_ == text_.size();
  }
  bool consume(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool string(std::string* out) {
    out->clear();
    if (!consume('"')) return false;
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') return true;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) return false;
      const char e = text_[pos_++];
      switch (e) {
        case '"': case '\\': case '/': out->push_back(e); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          unsigned code = 0;
          if (pos_ + 4 > text_.size()) return false;
          const auto r = std::from_chars(text_.data() + pos_, text_.data() + pos_ + 4, code, 16);
          if (r.ptr != text_.data() + pos_ + 4) return false;
          pos_ += 4;
          append_utf8(code, out);
          break;
        }
        default: return false;
      }
    }
    return false;
  }
  bool number(double* out) {
    skip_space();
    if (text_.substr(pos_, 4) == "null") {
      pos_ += 4;
      *out = std::numeric_limits<double>::quiet_NaN();
      return true;
    }
    const char* begin = text_.data() + pos_;
    const char* end = text_.data() + text_.size();
    const auto r = std::from_chars(begin, end, *out);
    if (r.ec == std::errc::result_out_of_range) {
      // 1e999 and friends: strtod says what they overflow (or underflow) to.
      const std::string copy(begin, r.ptr);
      *out = std::strtod(copy.c_str(), nullptr);
    } else if (r.ec != std::errc()) {
      return false;
    }
    pos_ = static_cast<std::size_t>(r.ptr - text_.data());
    return true;
  }

 private:
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\t' || text_[pos_] == '\r'))
      ++pos_;
  }
  // Surrogate pairs are not joined: the encoder never writes \u escapes above 0x1f.
  static void append_utf8(unsigned code, std::string* out) {
    if (code < 0x80) {
      out->push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out->push_back(static_cast<char>(0xc0 | (code >> 6)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xe0 | (code >> 12)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    }
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

}  // namespace

std::string encode_metrics(const MetricMap& metrics) {
  std::string out;
  out.reserve(2 + metrics.size() * 32);
  out.push_back('{');
  for (const auto& [name, value] : metrics) {
    if (out.size() > 1) out.push_back(',');
    append_string(&out, name);
    out.push_back(':');
    append_number(&out, value);
  }
  out.push_back('}');
  return out;
}

Status decode_metrics(std::string_view text, MetricMap* out) {
  out->clear();
  Reader r(text);
  const auto bad = [&] {
    return Status::Error("metrics are not a JSON object of numbers: " +
                         std::string(text.substr(0, 200)));
  };
  if (!r.consume('{')) return bad();
  if (r.consume('}')) return r.at_end() ? Status::Ok() : bad();
  std::string name;
  for (;;) {
    double value = 0;
    if (!r.string(&name) || !r.consume(':') || !r.number(&value)) return bad();
    (*out)[name] = value;
    if (r.consume(',')) continue;
    if (r.consume('}') && r.at_end()) return Status::Ok();
    return bad();
  }
}

}  // namespace trellis::coordinator
