// ExperimentStore: a trial's lineage, the epochs of its latest attempt and of the attempts it
// resumed from, as series and folds, and PBT's exploit records. The contract is in
// experiment_store.h.

#include "coordinator/experiment_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "coordinator/metrics_json.h"
#include "coordinator/params_codec.h"
#include "coordinator/sqlite_statement.h"
#include "coordinator/store_rows.h"

namespace trellis::coordinator {

Status ExperimentStore::list_lineage(std::int64_t experiment_id, std::vector<LineageRecord>* out) {
  const std::string where = "list_lineage of experiment " + std::to_string(experiment_id);
  out->clear();
  Statement st;
  Status s = st.prepare(db_,
                        "SELECT l.trial_id, l.epoch, l.donor_id, l.donor_epoch, l.params_before, "
                        "l.params_after, l.reason, l.created_at FROM lineage l "
                        "JOIN trials t ON t.id = l.trial_id WHERE t.experiment_id = ?1 "
                        "ORDER BY l.trial_id, l.epoch");
  if (!s.ok()) return s.With(where);
  st.bind(1, experiment_id);
  while (st.next_row(&s)) {
    LineageRecord r;
    r.trial_id = st.i64(0);
    r.epoch = static_cast<std::int32_t>(st.i64(1));
    r.donor_id = st.i64(2);
    r.donor_epoch = static_cast<std::int32_t>(st.i64(3));
    if (Status ps = params_from_json(st.text(4), &r.params_before); !ps.ok()) return ps.With(where);
    if (Status ps = params_from_json(st.text(5), &r.params_after); !ps.ok()) return ps.With(where);
    r.reason = st.text(6);
    r.created_at = st.text(7);
    out->push_back(std::move(r));
  }
  return s.With(where);
}

Status ExperimentStore::read_lineage(const char* filter, std::int64_t key, bool series,
                                     const std::function<Status(std::int64_t, Lineage&&)>& visit) {
  Statement st;
  Status s = st.prepare(db_, statements_.get(),
                        std::string(kLineageRows) + filter + kLineageOrder);
  if (!s.ok()) return s;
  st.bind(1, key);
  struct Row {
    std::int32_t epoch;
    std::int32_t attempt;
    MetricMap metrics;
  };
  // Only the trial being read is held: rows arrive grouped by trial (the order is by number),
  // so a trial is complete when the next one starts.
  std::vector<Row> rows;
  std::int64_t trial = -1;
  Lineage current;
  // The series takes, per epoch, each metric from the newest attempt that reported it.
  const auto finish_trial = [&]() -> Status {
    if (trial < 0) return Status::Ok();
    if (series) {
      std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
        return a.epoch != b.epoch ? a.epoch < b.epoch : a.attempt < b.attempt;
      });
      MetricMap merged;
      for (std::size_t i = 0; i < rows.size();) {
        const std::int32_t epoch = rows[i].epoch;
        merged.clear();
        for (; i < rows.size() && rows[i].epoch == epoch; ++i) {
          for (auto& [name, value] : rows[i].metrics) merged[name] = value;
        }
        for (const auto& [name, value] : merged) current.series[name].emplace_back(epoch, value);
      }
      rows.clear();
    }
    Status v = visit(trial, std::move(current));
    current = Lineage();
    return v;
  };
  while (st.next_row(&s)) {
    const std::int64_t id = st.i64(0);
    if (id != trial) {
      if (Status v = finish_trial(); !v.ok()) return v;
      trial = id;
    }
    Row row{static_cast<std::int32_t>(st.i64(1)), static_cast<std::int32_t>(st.i64(2)), {}};
    if (Status d = decode_metrics(st.view(3), &row.metrics); !d.ok()) {
      return d.With("trial " + std::to_string(id) + " epoch " + std::to_string(row.epoch));
    }
    current.fold.add(row.epoch, row.attempt, row.metrics);
    if (series) rows.push_back(std::move(row));
  }
  if (!s.ok()) return s;
  return finish_trial();
}

Status ExperimentStore::metric_series(std::int64_t trial_id, MetricSeries* out) {
  const std::string where = "metric_series of trial " + std::to_string(trial_id);
  out->clear();
  Status s = read_lineage("t.id = ?1", trial_id, true, [&](std::int64_t, Lineage&& lineage) {
    *out = std::move(lineage.series);
    return Status::Ok();
  });
  return s.With(where);
}

Status ExperimentStore::for_each_series(
    std::int64_t experiment_id,
    const std::function<Status(std::int64_t trial_id, MetricSeries&& series)>& visit) {
  const std::string where = "metric series of experiment " + std::to_string(experiment_id);
  bool visitor_failed = false;
  Status s = read_lineage("t.experiment_id = ?1", experiment_id, true,
                          [&](std::int64_t id, Lineage&& lineage) {
                            // Reports without metrics leave no series: not a trial to visit.
                            if (lineage.series.empty()) return Status::Ok();
                            Status v = visit(id, std::move(lineage.series));
                            visitor_failed = !v.ok();
                            return v;
                          });
  // The visitor's error is the caller's own, returned as it came.
  return visitor_failed ? s : s.With(where);
}

}  // namespace trellis::coordinator
