#pragma once
// The store's tables and their versions: creating them in a new file, checking an existing
// file is a Trellis store this build can read, and (ExperimentStore::upgrade_from_schema_1)
// migrating older ones in place.

#include <sqlite3.h>

#include <string>

#include "common/status.h"

namespace trellis::coordinator {

// Bump when the schema changes; a store written by a newer Trellis is refused rather than
// misread, and an older one is migrated by open_schema() when opened for writing.
//   1: one metrics row per (trial, attempt, epoch, name), keyed by trial.
//   2: one reports row per (trial, attempt, epoch) in arrival order; trials keep their latest
//      metrics once they end; paused trials, the scheduler's target epoch, PBT warm starts and
//      the lineage of exploits.
//   3: an events table: the story of each sweep (proposals, attempts, pauses, promotions,
//      exploits, requeues, ends, groups joining and lost), in one sequence with the reports.
inline constexpr int kSchemaVersion = 3;
inline constexpr const char* kApplication = "trellis-experiment-store";

inline constexpr const char* kSchema = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE experiments (
  id         INTEGER PRIMARY KEY,
  name       TEXT NOT NULL UNIQUE,
  spec_yaml  TEXT NOT NULL,
  spec_hash  TEXT NOT NULL,
  metric     TEXT NOT NULL,
  mode       TEXT NOT NULL CHECK (mode IN ('max', 'min')),
  seed       INTEGER NOT NULL,
  state      TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE trials (
  id            INTEGER PRIMARY KEY,
  experiment_id INTEGER NOT NULL REFERENCES experiments(id),
  number        INTEGER NOT NULL,
  state         TEXT NOT NULL
                CHECK (state IN ('pending', 'running', 'paused', 'completed', 'pruned', 'failed')),
  params        TEXT NOT NULL,
  seed          INTEGER NOT NULL,
  attempt       INTEGER NOT NULL DEFAULT 0,
  grp           TEXT NOT NULL DEFAULT '',
  error         TEXT NOT NULL DEFAULT '',
  started_at    TEXT NOT NULL DEFAULT '',
  finished_at   TEXT NOT NULL DEFAULT '',
  -- The last epoch with a durable checkpoint: the next attempt resumes after it. `resumable`:
  -- a checkpoint exists (also one taken mid-epoch at preemption, which holds more than that).
  checkpoint_epoch INTEGER NOT NULL DEFAULT 0,
  resumable        INTEGER NOT NULL DEFAULT 0,
  -- Attempts lost with their worker group; at max_failures the trial fails.
  failures         INTEGER NOT NULL DEFAULT 0,
  -- Set when the trial ends: each metric's latest value in its lineage (JSON) and the highest
  -- epoch, so a listing of many trials reads no reports.
  last_metrics     TEXT NOT NULL DEFAULT '{}',
  epochs_run       INTEGER NOT NULL DEFAULT 0,
  -- The scheduler's budget for the trial: train through this epoch, then pause (0: to the end).
  target_epoch     INTEGER NOT NULL DEFAULT 0,
  -- PBT: the next attempt starts from this checkpoint of another trial (see lineage).
  warm_start       TEXT NOT NULL DEFAULT '',
  UNIQUE (experiment_id, number)
);
-- One row per start of a trial: where it resumed and what ran it.
CREATE TABLE attempts (
  trial_id     INTEGER NOT NULL REFERENCES trials(id),
  attempt      INTEGER NOT NULL,
  resume_epoch INTEGER NOT NULL,
  grp          TEXT NOT NULL,
  provenance   TEXT NOT NULL,
  started_at   TEXT NOT NULL,
  PRIMARY KEY (trial_id, attempt)
) WITHOUT ROWID;
-- PBT exploits: at `epoch`, the trial took the weights of `donor_id` after `donor_epoch` and
-- changed its hyperparameters from params_before to params_after.
CREATE TABLE lineage (
  trial_id      INTEGER NOT NULL REFERENCES trials(id),
  epoch         INTEGER NOT NULL,
  donor_id      INTEGER NOT NULL REFERENCES trials(id),
  donor_epoch   INTEGER NOT NULL,
  params_before TEXT NOT NULL,
  params_after  TEXT NOT NULL,
  reason        TEXT NOT NULL,
  created_at    TEXT NOT NULL,
  PRIMARY KEY (trial_id, epoch)
) WITHOUT ROWID;
CREATE TABLE finals (
  trial_id INTEGER NOT NULL REFERENCES trials(id),
  name     TEXT NOT NULL,
  value    REAL,
  PRIMARY KEY (trial_id, name)
) WITHOUT ROWID;
)sql";

// Schema 2's reports, also what migrating from 1 creates. Rows go in arrival order (rowid);
// only the narrow index is keyed by trial. metrics: JSON (metrics_json.h), NaN as null.
inline constexpr const char* kReportsSchema = R"sql(
CREATE TABLE reports (
  id       INTEGER PRIMARY KEY,
  trial_id INTEGER NOT NULL REFERENCES trials(id),
  attempt  INTEGER NOT NULL,
  epoch    INTEGER NOT NULL,
  metrics  TEXT NOT NULL
);
CREATE UNIQUE INDEX reports_by_trial ON reports (trial_id, attempt, epoch);
-- Schema 1's table, as a view, for whoever reads the file with sqlite3.
CREATE VIEW metrics AS
  SELECT r.trial_id AS trial_id, r.attempt AS attempt, r.epoch AS epoch, j.key AS name,
         j.value AS value
  FROM reports r, json_each(r.metrics) j;
)sql";

// Creates the schema in an empty file, or checks that an existing file is a Trellis store this
// build can read; *version is the file's schema version (kSchemaVersion for a new file).
// Schema 3's events: what the coordinator decided and saw, in order (`seq`), written in the
// same transaction as the state change it explains. `after_report`: the newest reports.id
// committed before the event, so reports and events merge into one sequence. `body`: JSON.
inline constexpr const char* kEventsSchema = R"sql(
CREATE TABLE events (
  seq           INTEGER PRIMARY KEY,
  experiment_id INTEGER NOT NULL REFERENCES experiments(id),
  kind          TEXT NOT NULL,
  trial_id      INTEGER REFERENCES trials(id),
  grp           TEXT NOT NULL DEFAULT '',
  body          TEXT NOT NULL DEFAULT '{}',
  after_report  INTEGER NOT NULL DEFAULT 0,
  created_at    TEXT NOT NULL
);
CREATE INDEX events_by_experiment ON events (experiment_id, seq);
)sql";

// Schema 2 -> 3 in place: adds the events table (empty: the story of older sweeps starts at
// the upgrade). One transaction.
[[nodiscard]] Status upgrade_from_schema_2(sqlite3* db);

// The store's meta table: application name and schema version.
[[nodiscard]] Status put_meta(sqlite3* db, const std::string& key, const std::string& value);

[[nodiscard]] Status open_schema(sqlite3* db, bool read_only, int* version);

}  // namespace trellis::coordinator
