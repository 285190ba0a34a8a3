#include "coordinator/dashboard/report.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <limits>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "coordinator/dashboard/dashboard_page.h"
#include "coordinator/exporter.h"

namespace trellis::dashboard {
namespace {

using nlohmann::json;

Status answer(DashboardApi& api, const std::string& path, const Query& query, json* out) {
  const ApiResponse r = api.get(path, query);
  json body = json::parse(r.body, nullptr, false);
  if (r.http_status != 200 || body.is_discarded())
    return Status::Error(path + ": " + (body.is_object() ? body.value("error", r.body) : r.body));
  *out = std::move(body);
  return Status::Ok();
}

std::string now_utc() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return text;
}

// The trials whose documents go into the file: all of them, or the best kMaxReportTrials by
// the objective (then the rest by number). `table` is /api/trials' answer.
std::vector<std::int32_t> chosen_trials(const json& table) {
  const json& columns = table["columns"];
  const json& numbers = columns["number"];
  const std::string objective = "final." + table["experiment"]["metric"].get<std::string>();
  const bool max = table["experiment"]["mode"] == "max";
  std::vector<std::pair<double, std::int32_t>> ranked;  // (loss, number)
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    double loss = std::numeric_limits<double>::infinity();
    if (columns.contains(objective) && columns[objective][i].is_number())
      loss = max ? -columns[objective][i].get<double>() : columns[objective][i].get<double>();
    ranked.emplace_back(loss, numbers[i].get<std::int32_t>());
  }
  if (ranked.size() > kMaxReportTrials) std::stable_sort(ranked.begin(), ranked.end());
  ranked.resize(std::min(ranked.size(), kMaxReportTrials));
  std::vector<std::int32_t> out;
  for (const auto& [loss, number] : ranked) out.push_back(number);
  return out;
}

}  // namespace

Status write_report(DashboardApi& api, coordinator::ExperimentStore& store,
                    const std::string& experiment, const std::string& path,
                    ReportSummary* summary) {
  const Query of{{"experiment", experiment}};
  json responses = json::object();
  json table;
  if (Status s = answer(api, "/api/trials", of, &table); !s.ok()) return s;
  responses["/api/experiments"] = {{"experiments", json::array({table["experiment"]})}};
  for (const char* route : {"/api/story", "/api/importance"}) {
    if (Status s = answer(api, route, of, &responses[route]); !s.ok()) return s;
  }

  std::optional<coordinator::ExperimentRecord> record;
  if (Status s = store.find_experiment(experiment, &record); !s.ok()) return s;
  const std::vector<std::int32_t> numbers = chosen_trials(table);
  std::vector<json> documents;
  if (Status s = coordinator::trial_documents(store, *record, numbers, &documents); !s.ok())
    return s;
  json docs = json::object();
  for (std::size_t k = 0; k < numbers.size(); ++k) {
    json& doc = docs[std::to_string(numbers[k])] = std::move(documents[k]);
    doc["model"] = nullptr;  // the kept model's path means nothing where the report is read
  }
  const std::size_t count = table["count"].get<std::size_t>();
  responses["/api/trials"] = std::move(table);

  json data = {{"responses", std::move(responses)},
               {"docs", std::move(docs)},
               {"written_at", now_utc()},
               {"note", numbers.size() == count
                            ? "every trial"
                            : "the best " + std::to_string(numbers.size()) + " of " +
                                  std::to_string(count) + " trials"}};
  // Inside <script> a "</script>" in any string would end it; JSON allows \u003c for '<'.
  std::string text = data.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string escaped;
  escaped.reserve(text.size());
  for (char c : text) {
    if (c == '<') escaped += "\\u003c";
    else escaped += c;
  }

  std::string page(dashboard_page());
  const std::size_t slot = page.find(kStaticDataSlot);
  if (slot == std::string::npos) return Status::Error("the built-in page has no data slot");
  const std::string filled = std::string(kStaticDataSlot).replace(
      kStaticDataSlot.find(">null<") + 1, 4, escaped);
  page.replace(slot, kStaticDataSlot.size(), filled);
  if (Status s = write_file_atomically(path, page, "report " + path); !s.ok()) return s;
  summary->trials = count;
  summary->trial_documents = numbers.size();
  summary->bytes = page.size();
  return Status::Ok();
}

}  // namespace trellis::dashboard
