#pragma once
// Gradient all-reduce for a worker group, and the communicators it needs.
//
// A GroupComm is built once per group (collective, at worker start) and reused for every step:
// communicator creation is a synchronising collective far more expensive than one all-reduce.
//
// Each algorithm is a free function taking the group and an AllreduceOptions (Gloo style);
// allreduce_gradients picks one. Every algorithm sums `count` floats in place and leaves the
// bit-identical result on every rank of the group, so optimizer steps never diverge. Two
// algorithms may differ from each other only by float summation order.
//
// All functions here are collective over the group: every rank calls them with the same count
// and algorithm, in the same order. A failure is returned as a Status on the ranks that see it;
// MPI errors inside a collective are rarely recoverable, so callers should treat it as fatal
// for the trial.

#include <mpi.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace trellis::worker {

enum class AllreduceAlgorithm {
  kAuto,          // hierarchical when it can pay (see GroupComm::hierarchical_pays), else flat
  kFlat,          // one MPI_Allreduce over the whole group
  kHierarchical,  // reduce within each node, all-reduce among node leaders, broadcast back
};

// "auto" | "flat" | "hierarchical" (the spec's `allreduce:` key). Unknown text is an error
// that lists the accepted values.
[[nodiscard]] Status parse_allreduce_algorithm(std::string_view text, AllreduceAlgorithm* out);
std::string_view to_string(AllreduceAlgorithm algorithm);

struct GroupCommOptions {
  // 0: nodes are found with MPI_Comm_split_type(MPI_COMM_TYPE_SHARED). N > 0: pretend every
  // N consecutive ranks form a node, so tests and benchmarks on one machine can exercise the
  // multi-node path. Never set it in production.
  int simulated_ranks_per_node = 0;
};

// The group's communicators: a private duplicate of the group's communicator (so our
// collectives never match someone else's messages), the ranks sharing this node, and the
// node leaders (local rank 0 of each node). Owns and frees them. Not copyable.
class GroupComm {
 public:
  // Collective over `comm`, which must outlive nothing: it is duplicated.
  [[nodiscard]] static Status Create(MPI_Comm comm, const GroupCommOptions& options,
                                     std::unique_ptr<GroupComm>* out);
  ~GroupComm();
  GroupComm(const GroupComm&) = delete;
  GroupComm& operator=(const GroupComm&) = delete;

  MPI_Comm comm() const { return comm_; }          // the whole group
  MPI_Comm local() const { return local_; }        // ranks on this node
  MPI_Comm leaders() const { return leaders_; }    // MPI_COMM_NULL unless local_rank() == 0
  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  int node_count() const { return node_count_; }
  int max_local_size() const { return max_local_size_; }

  // More than one node AND some node with more than one rank: only then does reducing inside
  // the node first save inter-node traffic. Otherwise hierarchical is flat with extra steps.
  bool hierarchical_pays() const { return node_count_ > 1 && max_local_size_ > 1; }
  // The algorithm kAuto resolves to on this group.
  AllreduceAlgorithm resolve(AllreduceAlgorithm requested) const;

 private:
  GroupComm() = default;

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm local_ = MPI_COMM_NULL;
  MPI_Comm leaders_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  int node_count_ = 1;
  int max_local_size_ = 1;
};

struct AllreduceOptions {
  float* data = nullptr;  // summed in place; any count, including more than INT_MAX
  std::size_t count = 0;
  AllreduceAlgorithm algorithm = AllreduceAlgorithm::kAuto;
};

// Picks the algorithm (options.algorithm, kAuto resolved by the group) and runs it.
[[nodiscard]] Status allreduce_gradients(const GroupComm& group, const AllreduceOptions& options);
// options.algorithm is ignored by these two.
[[nodiscard]] Status allreduce_flat(const GroupComm& group, const AllreduceOptions& options);
[[nodiscard]] Status allreduce_hierarchical(const GroupComm& group,
                                            const AllreduceOptions& options);

// ---- Overlapped (bucketed, non-blocking) flat all-reduce of a gradient ----
//
// The gradient is cut at layer boundaries into buckets; backward finishes the last layer
// first, so buckets complete from the END of the buffer, and each one's MPI_Iallreduce starts
// as soon as it is complete, overlapping the reduction with the backward of earlier layers
// (as PyTorch DDP and Horovod do). The buckets are a pure function of the layer sizes and
// kGradientBucketBytes, never of a timing, so a model always reduces on the same boundaries and
// the same node computes the same bits every run. Against allreduce_flat on the whole buffer
// the sums may differ only by float summation order (the MPI library may pick another
// algorithm for another count).

// Upper bound of one bucket, in bytes. Layers are packed from the last one backwards until the
// next layer would overflow it; a layer larger than it is a bucket on its own. See
// collectives.cc for the reasoning and the measurements so far.
inline constexpr std::size_t kGradientBucketBytes = std::size_t{256} << 10;

// Bucket begin offsets, ascending (the first is 0), for a gradient of `count` floats whose
// layers begin at `layer_begins` (ascending, the first 0). Bucket i is [begins[i],
// begins[i+1]) and the last one ends at `count`. A bucket is never more than INT_MAX floats.
[[nodiscard]] std::vector<std::size_t> plan_gradient_buckets(
    std::span<const std::size_t> layer_begins, std::size_t count,
    std::size_t bucket_bytes = kGradientBucketBytes);

// One step's overlapped reduction: begin(), then ready_from() as backward finishes layers,
// then finish(). Flat only (one communicator, so a bucket is one request that progresses on
// its own); the hierarchical algorithm's three dependent stages stay blocking. Collective:
// every rank makes the same calls with the same offsets in the same order. Not copyable.
class BucketedAllreduce {
 public:
  // `bucket_begins` as plan_gradient_buckets returns them for a gradient of `count` floats.
  BucketedAllreduce(const GroupComm& group, std::vector<std::size_t> bucket_begins,
                    std::size_t count);
  ~BucketedAllreduce();  // waits for requests still in flight (a failed step's)
  BucketedAllreduce(const BucketedAllreduce&) = delete;
  BucketedAllreduce& operator=(const BucketedAllreduce&) = delete;

  std::size_t buckets() const { return begins_.size(); }
  // A new step summing `data` (count floats, then the tail finish() names) in place.
  void begin(float* data);
  // [offset, count) is final: starts every bucket inside it not yet started, then lets MPI
  // progress the ones in flight (with OpenMPI over TCP a non-blocking collective advances only
  // inside MPI calls).
  [[nodiscard]] Status ready_from(std::size_t offset);
  // Starts what is left and `tail` floats after the gradient (side values such as the loss,
  // one more request), then waits for all. Afterwards data holds the group's sums.
  [[nodiscard]] Status finish(std::size_t tail);

 private:
  Status start(float* p, std::size_t n);

  const GroupComm& group_;
  std::vector<std::size_t> begins_;
  std::size_t count_;
  float* data_ = nullptr;
  std::size_t unstarted_ = 0;  // buckets [0, unstarted_) not started yet (they start from the end)
  std::vector<MPI_Request> requests_;
};

}  // namespace trellis::worker
