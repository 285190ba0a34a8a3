#pragma once
// Where each rank of a worker group runs (hwloc): binding ranks to cores, sizing the compute
// thread pools to the cores a rank owns, and the per-rank topology summaries that go into the
// Hello and into each trial's provenance.
//
// Binding policy (`--bind none|auto`, `--cpu-slot i/n`):
//   1. Already bound by the launcher (mpirun --bind-to core, srun --cpu-bind, taskset: the
//      process's cpuset is smaller than what the machine allows us): respected, never changed.
//   2. `--bind none`: never bind.
//   3. `--bind auto` with `--cpu-slot i/n`: this group owns the i-th n-th of the node's cores
//      (0-based; `0/1` = the whole node, i.e. the node is exclusive to this group). The group's
//      cores are divided among its ranks on this node by node-local rank (from the shared-memory
//      communicator); each rank is bound to its own cores. Fewer cores than ranks: ranks share
//      cores evenly, never all on core 0.
//   4. `--bind auto` without a slot: not bound. Each mpirun sees only its own ranks, so two
//      groups sharing a node would both put rank 0 on core 0; without a slot we cannot know
//      we are alone, and an unbound rank is slower than a well-bound one but far faster than
//      two ranks fighting over one core.
// The local launcher, which starts G groups on one machine, passes `--cpu-slot g/G` to group g
// (and keeps `--bind-to none` on mpirun so Open MPI does not bind every group from core 0).
//
// In every case the rank's compute threads (Eigen, OpenBLAS when linked) are set to the number
// of cores it owns; an unbound rank gets its fair share (cores / ranks on this node).

#include <string>
#include <string_view>

#include "common/status.h"
#include "worker/collectives.h"

namespace trellis::worker {

enum class BindMode { kNone, kAuto };

// "none" | "auto".
[[nodiscard]] Status parse_bind_mode(std::string_view text, BindMode* out);

struct CpuSlot {
  int index = 0;
  int count = 0;  // 0: no slot given
  bool given() const { return count > 0; }
};

// "i/n" with 0 <= i < n, e.g. "1/2" = the second half of the node's cores.
[[nodiscard]] Status parse_cpu_slot(std::string_view text, CpuSlot* out);

struct BindOptions {
  BindMode mode = BindMode::kAuto;
  CpuSlot slot;
};

// The part `index` of `parts` of `total` items, as [begin, end). Parts are as even as
// possible; when total < parts each part still gets one item (parts share items evenly).
struct ItemRange {
  int begin = 0;
  int end = 0;
  int size() const { return end - begin; }
};
ItemRange share_of(int total, int index, int parts);

struct Binding {
  std::string cpus;   // the PUs this rank may run on, hwloc list syntax ("0-1,4")
  int cores = 1;      // cores it owns (its compute thread count), at least 1
  bool bound = false; // the rank runs on a subset of the machine (by us or by the launcher)
  std::string how;    // why: "launcher", "slot 1/2", "not bound (--bind none)", ...
};

// Binds the calling process per the policy above (not collective: it uses the group's
// node-local rank and size). An error leaves the process unbound.
[[nodiscard]] Status bind_rank(const GroupComm& group, const BindOptions& options,
                               Binding* out);

// Sets Eigen's and (when linked) OpenBLAS's thread count.
void set_compute_threads(int threads);

// One line for this rank: host, rank, packages, NUMA nodes, cores, PUs, binding, threads.
std::string rank_summary(const GroupComm& group, const Binding& binding);

// Collective over the group: rank 0 gets every rank's line, in rank order, joined by
// newlines, in *all; other ranks get an empty string.
[[nodiscard]] Status gather_summaries(const GroupComm& group, const std::string& mine,
                                      std::string* all);

}  // namespace trellis::worker
