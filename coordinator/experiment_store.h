#pragma once
// ExperimentStore: the durable record of experiments, trials and their metrics, in one SQLite
// file. Only the coordinator writes it; read-only commands (trials, export) open it too.
//
// Every write is its own transaction, committed and fsynced (synchronous = FULL) before the
// call returns, so whatever the coordinator acknowledges is on disk and survives power loss --
// unless the caller opened a batch (begin_batch / Batch): then every write until
// commit_batch() joins one transaction, and nothing of it is durable or visible to another
// connection before commit_batch() returns OK. That is group commit: the coordinator handles
// the messages it has, commits once (one fsync), and only then sends the Acks and Assigns.
// On a local filesystem the store runs WAL, and the WAL is copied back into the file by a
// thread of its own (wal_checkpointer.h), so no commit waits for that; on a network one it
// runs a rollback journal (store_filesystem.h). One thread uses a store at a time.
//
// Reports are idempotent: one row per (trial, attempt, epoch), metrics as JSON text
// (metrics_json.h), and a duplicate report changes nothing. Rows are appended in arrival order
// (only a small index is keyed by trial), so a commit of a thousand reports from a thousand
// running trials writes a few pages rather than one per trial. When a trial ends, its latest
// metrics are kept with it, so listing 100,000 trials reads no reports.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/param_value.h"
#include "common/status.h"
#include "coordinator/metric_fold.h"
#include "coordinator/store_filesystem.h"
#include "coordinator/trial_state.h"

struct sqlite3;

namespace trellis::coordinator {

struct ExperimentRecord {
  std::int64_t id = 0;
  std::string name;
  std::string spec_yaml;  // the spec file as given, for reproduction
  std::string spec_hash;
  std::string metric;        // the metric the sweep optimises, e.g. "val_acc"
  std::string mode = "max";  // "max" | "min"
  std::uint64_t seed = 0;
  // "running" | "completed" | "failed" (stopped on its dataset: the `sweep_stopped` event
  // says why; serving it again resumes it)
  std::string state = "running";
  std::string created_at;         // ISO 8601 UTC, set by the store
};

struct TrialRecord {
  std::int64_t id = 0;             // store-wide id (what Assign carries)
  std::int64_t experiment_id = 0;
  std::int32_t number = 0;         // 0, 1, 2... within the experiment, in proposal order
  TrialState state = TrialState::kPending;
  ParamMap params;
  std::uint64_t seed = 0;
  std::int32_t attempt = 0;  // 0 until first started; incremented at each start
  std::string group;         // worker group of the last attempt
  std::string error;         // why it failed, was pruned, or is paused
  std::string started_at;
  std::string finished_at;
  std::int32_t checkpoint_epoch = 0;  // last epoch with a durable checkpoint
  std::int32_t failures = 0;          // attempts lost with their worker group
  std::int32_t target_epoch = 0;      // the scheduler's budget: train through it (0: to the end)
  std::string warm_start;             // PBT: the next attempt starts from this checkpoint
  std::string provenance;             // JSON text of the latest attempt: hosts, topology...
  MetricMap final_metrics;
};

struct StartedAttempt {
  std::int32_t attempt = 0;
  std::int32_t resume_epoch = 0;  // epochs the checkpoint completed (0: none)
  bool resume = false;            // a checkpoint exists: continue from it, not from scratch
  std::string warm_start;         // PBT: continue from this checkpoint of another trial
};

// One PBT exploit: at `epoch` the trial took `donor_id`'s weights after `donor_epoch`.
struct LineageRecord {
  std::int64_t trial_id = 0;
  std::int32_t epoch = 0;
  std::int64_t donor_id = 0;
  std::int32_t donor_epoch = 0;
  ParamMap params_before;
  ParamMap params_after;
  std::string reason;
  std::string created_at;
};

// Why a running trial goes back to pending.
enum class Requeue {
  kLost,                     // its group vanished: counts toward max_failures
  kPreemptedWithCheckpoint,  // SIGTERM, state saved: resume from it, no failure counted
  kNotTheTrialsFault,        // coordinator restart, a group restarted: no failure counted
};

using MetricSeries = std::map<std::string, std::vector<std::pair<std::int32_t, double>>>;

// One step of a sweep's story (store_schema.h, kEventsSchema). Kinds and their bodies are
// listed in docs/ARCHITECTURE.md ("Events").
struct EventRecord {
  std::int64_t seq = 0;
  std::int64_t experiment_id = 0;
  std::string kind;
  std::int64_t trial_id = -1;  // -1: an event of the experiment or of a group
  std::string group;
  std::string body = "{}";      // a JSON object
  std::int64_t after_report = 0;  // the newest reports.id committed before it
  std::string created_at;
};

// One stored report, as it arrived.
struct ReportRecord {
  std::int64_t id = 0;  // arrival order across the store
  std::int64_t trial_id = 0;
  std::int32_t attempt = 0;
  std::int32_t epoch = 0;
  MetricMap metrics;
};

// What a listing of many trials shows of each, read without its metric series.
struct TrialSummary {
  std::int64_t id = 0;
  std::int32_t number = 0;
  TrialState state = TrialState::kPending;
  ParamMap params;
  MetricMap final_metrics;
  MetricMap last_metrics;       // each metric's value at the last epoch of the lineage that has it
  std::int32_t epochs_run = 0;  // the highest epoch of the lineage
  std::string error;            // why it failed, was pruned, or is paused
};

// The same as a TrialSummary with its parameters and metrics left as the JSON text the store
// holds (objects: params_codec.h, metrics_json.h), for a reader that passes them on as JSON:
// the dashboard lists 100,000 trials without parsing them.
struct TrialListing {
  std::int64_t id = 0;
  std::int32_t number = 0;
  TrialState state = TrialState::kPending;
  std::string params = "{}";
  std::string final_metrics = "{}";
  std::string last_metrics = "{}";
  std::int32_t epochs_run = 0;
  std::string error;
};

class StatementCache;
class WalCheckpointer;

struct StoreOptions {
  bool read_only = false;  // open without creating or writing
  // The filesystem to assume, by name ("nfs", "ext4"; see store_filesystem.h); empty: detect.
  std::string filesystem;
};

// What delete_experiment removed: rows per table, in the order they went.
struct DeletedRows {
  std::vector<std::pair<std::string, std::int64_t>> tables;
  std::int64_t total() const {
    std::int64_t n = 0;
    for (const auto& [table, rows] : tables) n += rows;
    return n;
  }
};

// How commits reach the disk, as the connection runs it (PRAGMA journal_mode, synchronous).
struct Durability {
  std::string journal_mode;  // "wal" on a local filesystem, "delete" on a network one
  int synchronous = 0;       // 2: FULL, a commit is fsynced before it returns
  StoreFilesystem filesystem;
};

class ExperimentStore {
 public:
  // Opens (creating if needed) the store at `path`. `read_only` opens without creating.
  [[nodiscard]] static Status Open(const std::string& path, bool read_only,
                                   std::unique_ptr<ExperimentStore>* out);
  [[nodiscard]] static Status Open(const std::string& path, const StoreOptions& options,
                                   std::unique_ptr<ExperimentStore>* out);
  ~ExperimentStore();
  ExperimentStore(const ExperimentStore&) = delete;
  ExperimentStore& operator=(const ExperimentStore&) = delete;

  // The file this store was opened from, for messages ("no experiments in PATH").
  std::string path() const;
  // What the connection runs with, read back from SQLite rather than remembered.
  [[nodiscard]] Status durability(Durability* out);

  // Group commit (see the top of this file). Batches do not nest; a failed commit_batch()
  // has rolled the batch back, and so has rollback_batch(). A call that fails inside a batch
  // leaves nothing behind, as alone, or, when it failed half-way (an I/O error between two of
  // its writes), makes commit_batch() fail.
  [[nodiscard]] Status begin_batch();
  [[nodiscard]] Status commit_batch();
  void rollback_batch();
  bool in_batch() const { return batch_open_; }

  // A batch that rolls back when it goes out of scope uncommitted (an early return).
  class Batch {
   public:
    explicit Batch(ExperimentStore* store) : store_(store) {}
    ~Batch() {
      if (open_) store_->rollback_batch();
    }
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;
    [[nodiscard]] Status begin() {
      Status s = store_->begin_batch();
      open_ = s.ok();
      return s;
    }
    [[nodiscard]] Status commit() {
      open_ = false;
      return store_->commit_batch();
    }

   private:
    ExperimentStore* store_;
    bool open_ = false;
  };

  [[nodiscard]] Status find_experiment(const std::string& name,
                                       std::optional<ExperimentRecord>* out);
  // The most recently created experiment, if any.
  [[nodiscard]] Status latest_experiment(std::optional<ExperimentRecord>* out);
  [[nodiscard]] Status list_experiments(std::vector<ExperimentRecord>* out);
  // Fills record->id and record->created_at. Fails if the name exists.
  [[nodiscard]] Status create_experiment(ExperimentRecord* record);
  [[nodiscard]] Status set_experiment_state(std::int64_t experiment_id, const std::string& state);

  // Removes the experiment and every row of it, in every table (those keyed by experiment_id,
  // trial_id or donor_id, found from the schema, so a table added later goes too), in one
  // transaction: all of it or nothing. Not in a batch.
  [[nodiscard]] Status delete_experiment(std::int64_t experiment_id, DeletedRows* out);

  // For readers following a sweep (sweep_status.h): the experiment's newest event of `kind`
  // (none: *out empty); how many of its reports have an id above `after_id`; and the highest
  // epoch (trial, attempt) has reported (0: none).
  [[nodiscard]] Status last_event(std::int64_t experiment_id, const std::string& kind,
                                  std::optional<EventRecord>* out);
  [[nodiscard]] Status count_reports(std::int64_t experiment_id, std::int64_t after_id,
                                     std::int64_t* out);
  [[nodiscard]] Status last_epoch(std::int64_t trial_id, std::int32_t attempt, std::int32_t* out);

  // Inserts a pending trial; fills record->id.
  [[nodiscard]] Status add_trial(TrialRecord* record);
  [[nodiscard]] Status list_trials(std::int64_t experiment_id, std::vector<TrialRecord>* out);
  // Every trial of the experiment in number order, as TrialSummary: one pass over the trials
  // and their final metrics; only trials that have not ended read their reports.
  [[nodiscard]] Status trial_summaries(std::int64_t experiment_id, std::vector<TrialSummary>* out);
  [[nodiscard]] Status trial_listing(std::int64_t experiment_id, std::vector<TrialListing>* out);
  [[nodiscard]] Status get_trial(std::int64_t trial_id, TrialRecord* out);
  // The experiment's trial numbered `number` (none: *out empty). For a message naming a missing
  // one: how many trials the experiment has and its lowest and highest numbers ({0, 0}: none).
  [[nodiscard]] Status find_trial(std::int64_t experiment_id, std::int32_t number,
                                  std::optional<TrialRecord>* out);
  [[nodiscard]] Status trial_number_range(std::int64_t experiment_id,
                                          std::pair<std::int32_t, std::int32_t>* range,
                                          std::int64_t* count);

  // pending -> running with attempt + 1, resuming from the trial's last checkpoint epoch;
  // records the attempt with its provenance (JSON text).
  [[nodiscard]] Status start_trial(std::int64_t trial_id, const std::string& group,
                                   const std::string& provenance, StartedAttempt* started);
  // The same without provenance, returning only the attempt number.
  [[nodiscard]] Status start_trial(std::int64_t trial_id, const std::string& group,
                                   std::int32_t* attempt);
  // The group an attempt was started on and the CURVE key in its provenance (empty without
  // CURVE, or for attempts started before keys were recorded). Error if there is no such
  // attempt.
  [[nodiscard]] Status attempt_owner(std::int64_t trial_id, std::int32_t attempt,
                                     std::string* group, std::string* key);
  // Adds a worker's JSON object (protocol.h: Done::provenance) to an attempt's provenance. A
  // key the attempt already holds keeps its value: the coordinator's own (group, key, split...)
  // are not the worker's to change. Error if the text is not a JSON object or no such attempt.
  [[nodiscard]] Status merge_provenance(std::int64_t trial_id, std::int32_t attempt,
                                        const std::string& worker_object);
  // Idempotent on (trial, attempt, epoch): a second report of the same epoch is ignored. A
  // report that arrives after its trial ended still counts (it refreshes the trial's latest
  // metrics if it belongs to the lineage).
  // `checkpointed`: the worker durably checkpointed this epoch, so a later attempt resumes
  // after it.
  [[nodiscard]] Status append_report(std::int64_t trial_id, std::int32_t attempt,
                                     std::int32_t epoch, const MetricMap& metrics,
                                     bool checkpointed = false);
  // running -> paused | completed | pruned | failed, with final metrics and reason, in one
  // transaction.
  [[nodiscard]] Status finish_trial(std::int64_t trial_id, std::int32_t attempt, TrialState state,
                                    const std::string& error, const MetricMap& final_metrics);
  // running -> pending, keeping `reason` as the trial's error text. kLost counts a failure
  // and, at `max_failures`, fails the trial instead (*failed tells which, when not null).
  [[nodiscard]] Status requeue_trial(std::int64_t trial_id, const std::string& reason,
                                     Requeue why = Requeue::kNotTheTrialsFault,
                                     std::int32_t max_failures = 3, bool* failed = nullptr);

  // paused -> pending with a new target epoch (an ASHA promotion, a PBT continuation).
  [[nodiscard]] Status continue_trial(std::int64_t trial_id, std::int32_t target_epoch);
  // paused -> pending with the exploit's new parameters, continuing from `warm_start` (the
  // donor's checkpoint after donor_epoch) up to target_epoch; records the lineage row.
  [[nodiscard]] Status exploit_trial(const LineageRecord& exploit, std::int32_t target_epoch,
                                     const std::string& warm_start);
  // paused -> pruned | failed | completed with the reason (end of the sweep, a missing
  // checkpoint); its metrics stay.
  [[nodiscard]] Status end_paused_trial(std::int64_t trial_id, TrialState state,
                                        const std::string& reason);
  [[nodiscard]] Status list_lineage(std::int64_t experiment_id, std::vector<LineageRecord>* out);

  // Appends an event (in the open batch, if any); fills seq, after_report and created_at.
  [[nodiscard]] Status append_event(EventRecord* event);
  // The experiment's events with seq > after_seq, in order: all of them, or what a reader
  // that has seen up to after_seq has not.
  [[nodiscard]] Status list_events(std::int64_t experiment_id, std::int64_t after_seq,
                                   std::vector<EventRecord>* out, std::size_t limit = 0);
  // The experiment's reports with id > after_id in arrival (id) order, at most `limit`
  // (0: all): with the events' after_report, the other half of a sweep's story, paged so a
  // restart never holds all of it.
  [[nodiscard]] Status list_reports(std::int64_t experiment_id, std::int64_t after_id,
                                    std::size_t limit, std::vector<ReportRecord>* out);

  // Every metric of every epoch of the trial's lineage (the latest attempt, and the earlier
  // attempts it resumed from, up to its resume epoch), by name, in epoch order.
  [[nodiscard]] Status metric_series(std::int64_t trial_id, MetricSeries* out);
  // The same for every trial of an experiment, one trial at a time in number order, so only
  // one trial's reports are in memory (a restart replays 100,000 trials). Trials without a
  // metric in their lineage (never started, or no report yet) are skipped, not visited empty.
  // A visit that fails stops the scan, and its Status is returned unchanged. The visitor may
  // read the store, but must not write it: the scan is still open.
  [[nodiscard]] Status for_each_series(
      std::int64_t experiment_id,
      const std::function<Status(std::int64_t trial_id, MetricSeries&& series)>& visit);
  // All of for_each_series at once, keyed by trial id (export, tests).
  [[nodiscard]] Status experiment_metrics(std::int64_t experiment_id,
                                          std::map<std::int64_t, MetricSeries>* out);

  // SQLite's data_version: it changes whenever another connection commits to the file, so a
  // reader (the dashboard) knows when to read again. Opaque: compare it, do not order it.
  [[nodiscard]] Status data_version(std::int64_t* out);

 private:
  explicit ExperimentStore(sqlite3* db);
  // Schema 1 kept one row per metric; moves them into reports and fills the trials' latest
  // metrics, in one transaction.
  [[nodiscard]] Status upgrade_from_schema_1();
  // last_report_id_ from the file (at open, and after a rollback).
  [[nodiscard]] Status read_last_report_id();
  // A trial's latest metrics: its live fold if that is of `attempt`, else folded from its
  // lineage in the store.
  [[nodiscard]] Status fold_of(std::int64_t trial_id, std::int32_t attempt, MetricFold* out);
  // Writes them as the trial's last_metrics and epochs_run (when it ends otherwise than by
  // finish_trial, or a report comes after its end).
  [[nodiscard]] Status refresh_summary(std::int64_t trial_id, std::int32_t attempt);
  // The lineage (see metric_series) of every trial `filter` (SQL on trials t, with ?1 = key)
  // selects, folded per trial into its series (when `series`) and its latest values, and
  // handed to `visit` trial by trial in number order; trials without reports are not visited.
  // A failed visit stops the scan and is returned.
  struct Lineage;
  [[nodiscard]] Status read_lineage(const char* filter, std::int64_t key, bool series,
                                    const std::function<Status(std::int64_t, Lineage&&)>& visit);

  sqlite3* db_;
  StoreFilesystem filesystem_;
  std::unique_ptr<StatementCache> statements_;
  std::unique_ptr<WalCheckpointer> checkpointer_;  // writable stores only
  std::int64_t last_report_id_ = 0;  // the newest reports.id this connection wrote or saw
  bool batch_open_ = false;
  bool batch_failed_ = false;  // a call in the batch failed half-way (see Transaction)
  // The fold of each running trial's current attempt, when that attempt started from scratch
  // (so its reports are its whole lineage), kept as reports are written: ending a trial then
  // writes its latest metrics without reading its reports back. Bounded by the running trials;
  // cleared when a batch rolls back. A trial not here is folded from the store.
  struct LiveFold {
    std::int32_t attempt = 0;
    MetricFold fold;
  };
  std::unordered_map<std::int64_t, LiveFold> live_folds_;
};

// The experiment a read-only command means: `name`, or the latest one when `name` is empty.
// Unknown names fail with the list of experiments that exist, so a typo is easy to fix.
[[nodiscard]] Status resolve_experiment(ExperimentStore& store, const std::string& name,
                                        ExperimentRecord* out);

}  // namespace trellis::coordinator
