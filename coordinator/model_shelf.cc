#include "coordinator/model_shelf.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "coordinator/params_codec.h"

namespace trellis::coordinator {
namespace fs = std::filesystem;
namespace {

constexpr std::string_view kPrefix = "trial-";
constexpr std::string_view kSuffix = ".model";

bool ranks_before(const ModelShelf::Entry& a, const ModelShelf::Entry& b) {
  if (a.loss != b.loss) return a.loss < b.loss;
  return a.number < b.number;
}

// The number N of a file named trial-N.model (or trial-N.model.tmp, a write cut short), or -1.
std::int64_t model_number(const std::string& name) {
  std::string_view rest(name);
  if (rest.substr(0, kPrefix.size()) != kPrefix) return -1;
  rest.remove_prefix(kPrefix.size());
  const std::size_t digits = rest.find_first_not_of("0123456789");
  if (digits == 0 || digits == std::string_view::npos || digits > 9) return -1;
  const std::string_view tail = rest.substr(digits);
  if (tail != kSuffix && tail != std::string(kSuffix) + ".tmp") return -1;
  return std::stoll(std::string(rest.substr(0, digits)));
}

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nullptr; }

}  // namespace

ModelShelf::ModelShelf(std::string dir, int keep)
    : dir_(std::move(dir)), keep_(static_cast<std::size_t>(std::max(keep, 0))) {}

std::string ModelShelf::model_path(std::int32_t number) const {
  return dir_ + "/" + std::string(kPrefix) + std::to_string(number) + std::string(kSuffix);
}

Status ModelShelf::restore(std::vector<Entry> completed) {
  kept_.clear();
  if (keep_ == 0) return Status::Ok();
  std::sort(completed.begin(), completed.end(), ranks_before);
  if (completed.size() > keep_) completed.resize(keep_);
  std::set<std::int64_t> numbers;
  std::error_code ec;
  for (Entry& e : completed) {
    e.has_model = fs::is_regular_file(model_path(e.number), ec);
    numbers.insert(e.number);
  }
  kept_ = std::move(completed);
  if (!fs::is_directory(dir_, ec)) return kept_.empty() ? Status::Ok() : write_index();
  for (const fs::directory_entry& file : fs::directory_iterator(dir_, ec)) {
    const std::string name = file.path().filename().string();
    const std::int64_t number = model_number(name);
    const bool leftover =
        number >= 0 && (numbers.count(number) == 0 || name.ends_with(".tmp"));
    if (leftover && !fs::remove(file.path(), ec) && ec)
      return Status::Error("model shelf " + dir_ + ": cannot remove " + name + ": " + ec.message());
  }
  if (ec) return Status::Error("model shelf " + dir_ + ": cannot list it: " + ec.message());
  return write_index();
}

Status ModelShelf::offer(Entry entry, const std::vector<std::uint8_t>& model) {
  if (keep_ == 0) return Status::Ok();
  kept_.erase(std::remove_if(kept_.begin(), kept_.end(),
                             [&](const Entry& e) { return e.trial == entry.trial; }),
              kept_.end());
  const auto at = std::upper_bound(kept_.begin(), kept_.end(), entry, ranks_before);
  if (static_cast<std::size_t>(at - kept_.begin()) >= keep_) return Status::Ok();
  entry.has_model = !model.empty();
  if (entry.has_model) {
    const std::string_view bytes(reinterpret_cast<const char*>(model.data()), model.size());
    if (Status s = write_file_atomically(model_path(entry.number), bytes,
                                         "the model of trial " + std::to_string(entry.number));
        !s.ok())
      return s;
  }
  kept_.insert(at, std::move(entry));
  if (kept_.size() > keep_) {
    std::error_code ec;
    fs::remove(model_path(kept_.back().number), ec);
    if (ec)
      return Status::Error("model shelf " + dir_ + ": cannot remove the model of trial " +
                           std::to_string(kept_.back().number) + ": " + ec.message());
    kept_.pop_back();
  }
  return write_index();
}

Status ModelShelf::write_index() const {
  nlohmann::json models = nlohmann::json::array();
  for (std::size_t i = 0; i < kept_.size(); ++i) {
    const Entry& e = kept_[i];
    nlohmann::json metrics = nlohmann::json::object();
    for (const auto& [name, value] : e.final_metrics) metrics[name] = number_or_null(value);
    models.push_back({{"rank", i + 1},
                      {"number", e.number},
                      {"trial_id", e.trial},
                      {"objective", number_or_null(e.objective)},
                      {"params", params_object(e.params)},
                      {"final_metrics", std::move(metrics)},
                      {"file", e.has_model ? nlohmann::json(fs::path(model_path(e.number))
                                                                .filename()
                                                                .string())
                                           : nlohmann::json(nullptr)}});
  }
  const nlohmann::json index = {{"keep", keep_}, {"models", std::move(models)}};
  const std::string path = dir_ + "/index.json";
  return write_file_atomically(path, index.dump(2) + "\n", "model shelf index " + path);
}

Status read_shelf_index(const std::string& dir, ShelfIndex* out) {
  const std::string path = dir + "/index.json";
  std::ifstream in(path);
  if (!in)
    return Status::Error("no model is kept in " + dir + " (" + path + " does not exist): the "
                         "experiment has no completed trial yet, or its spec says keep_models: 0");
  const nlohmann::json index = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.contains("models") || !index["models"].is_array())
    return Status::Error(path + ": not a model shelf index (unreadable JSON)");
  ShelfIndex shelf;
  shelf.keep = index.value("keep", 0);
  for (const nlohmann::json& m : index["models"]) {
    KeptModel k;
    k.rank = m.value("rank", 0);
    k.number = m.value("number", -1);
    if (Status s = params_from_object(m.value("params", nlohmann::json::object()), &k.params);
        !s.ok())
      return Status::Error(path + ": trial " + std::to_string(k.number) + "'s params: " +
                           s.message());
    if (m.contains("file") && m["file"].is_string())
      k.path = dir + "/" + m["file"].get<std::string>();
    shelf.models.push_back(std::move(k));
  }
  *out = std::move(shelf);
  return Status::Ok();
}

Status find_kept_model(const std::string& dir, std::int32_t number, KeptModel* out) {
  ShelfIndex shelf;
  if (Status s = read_shelf_index(dir, &shelf); !s.ok()) return s;
  const std::string keep = std::to_string(shelf.keep);
  if (shelf.models.empty())
    return Status::Error(dir + "/index.json: no model is kept yet (the best " + keep +
                         " completed trials' are, keep_models in the spec)");
  std::string numbers;
  for (KeptModel& k : shelf.models) {
    numbers += (numbers.empty() ? "" : ", ") + std::to_string(k.number);
    if (number >= 0 && k.number != number) continue;
    if (k.path.empty())
      return Status::Error("trial " + std::to_string(k.number) + " ranks " +
                           std::to_string(k.rank) + " of the best " + keep +
                           ", but its model was not kept: it did not arrive at the coordinator "
                           "(too large to send in one frame; the run's log names it)");
    *out = std::move(k);
    return Status::Ok();
  }
  return Status::Error("trial " + std::to_string(number) + "'s model was not kept: only the best " +
                       keep + " completed trials' models are (keep_models in the spec), and "
                       "those are trial(s) " + numbers);
}

}  // namespace trellis::coordinator
