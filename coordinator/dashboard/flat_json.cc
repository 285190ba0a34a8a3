#include "coordinator/dashboard/flat_json.h"

namespace trellis::dashboard {
namespace {

bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// From the opening quote at `i`: sets `i` past the closing one.
bool skip_string(std::string_view text, std::size_t* i) {
  for (std::size_t k = *i + 1; k < text.size(); ++k) {
    if (text[k] == '\\') {
      ++k;
    } else if (text[k] == '"') {
      *i = k + 1;
      return true;
    }
  }
  return false;
}

}  // namespace

bool scan_flat_object(std::string_view text,
                      std::vector<std::pair<std::string_view, std::string_view>>* out) {
  out->clear();
  std::size_t i = 0;
  auto skip_space = [&] {
    while (i < text.size() && space(text[i])) ++i;
  };
  skip_space();
  if (i >= text.size() || text[i] != '{') return false;
  ++i;
  skip_space();
  if (i < text.size() && text[i] == '}') {
    ++i;
    skip_space();
    return i == text.size();
  }
  for (;;) {
    skip_space();
    if (i >= text.size() || text[i] != '"') return false;
    const std::size_t name_start = i + 1;
    if (!skip_string(text, &i)) return false;
    const std::string_view name = text.substr(name_start, i - 1 - name_start);
    skip_space();
    if (i >= text.size() || text[i] != ':') return false;
    ++i;
    skip_space();
    const std::size_t value_start = i;
    if (i < text.size() && text[i] == '"') {
      if (!skip_string(text, &i)) return false;
    } else {
      while (i < text.size() && text[i] != ',' && text[i] != '}' && !space(text[i])) {
        if (text[i] == '{' || text[i] == '[' || text[i] == '"') return false;
        ++i;
      }
      if (i == value_start) return false;
    }
    out->emplace_back(name, text.substr(value_start, i - value_start));
    skip_space();
    if (i >= text.size()) return false;
    if (text[i] == '}') {
      ++i;
      skip_space();
      return i == text.size();
    }
    if (text[i] != ',') return false;
    ++i;
  }
}

}  // namespace trellis::dashboard
