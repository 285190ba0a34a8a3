#pragma once
// What decides a trial's numbers besides its parameters, as the worker that ran it sees it:
// the bytes of the dataset files it read, the build (git revision, dirty tree, compiler, flags)
// and the run time (BLAS library, the kernel it picked, its and Eigen's thread counts, how the
// group's ranks sit on nodes). Rank 0 sends it in each Done; the coordinator merges it into the
// attempt's provenance (coordinator.h: on_done). Two trials that differ here may differ in their
// last digits (another kernel or thread count sums in another order) or in anything (another
// dataset).
//
// The dataset hash is CRC-32 (zlib's, already linked for .gz files) over each file's bytes as
// stored, chained over the files in the order the readers opened them. It detects any change
// (not an adversary's) and runs at memory speed, so it is taken afresh on every attempt: no
// cache keyed by path, size and mtime, whose timestamp granularity would miss a same-size rewrite
// within one tick, for some tens of milliseconds per attempt on Fashion-MNIST's 30 MB.

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/collectives.h"

namespace trellis::worker {

struct DatasetDigest {
  std::string hash;       // "crc32:" and 8 hex digits
  std::int64_t bytes = 0;  // of all the files
  int files = 0;
};

// Reads every file whole. An error names the file that cannot be read.
[[nodiscard]] Status digest_files(const std::vector<std::string>& paths, DatasetDigest* out);

// The provenance object as JSON text: "dataset_hash", "dataset_bytes", "dataset_files" (when
// `dataset` is given), "build", "blas", "eigen_threads", "rank_layout" (README, JSON export).
std::string run_provenance(const GroupComm& group, const DatasetDigest* dataset);

}  // namespace trellis::worker
