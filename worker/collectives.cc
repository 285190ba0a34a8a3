#include "worker/collectives.h"

#include <algorithm>
#include <climits>
#include <utility>

namespace trellis::worker {

/*
 * The algorithms.
 *
 * flat: one MPI_Allreduce(MPI_IN_PLACE) over the whole group. The MPI library already picks
 * the best single-level algorithm for the size (recursive doubling for small buffers, ring /
 * Rabenseifner reduce-scatter + allgather for large ones) and uses shared memory between ranks
 * of one node, so on one node nothing we could write beats it.
 *
 * hierarchical: three steps over the communicators GroupComm built once.
 *   1. MPI_Reduce within the node onto its leader (local rank 0): shared-memory traffic only.
 *   2. MPI_Allreduce among the leaders: the only step that crosses the network, and it moves
 *      one buffer per node instead of one per rank.
 *   3. MPI_Bcast within the node from the leader.
 * The leaders' all-reduce leaves the same bits on every leader, and the broadcast copies them,
 * so every rank ends with identical bits. The sum is ((node partial sums) summed across
 * nodes), a different association than flat's, hence equal to flat only up to float rounding.
 * It pays only when the group spans several nodes and some node holds several ranks; with one
 * node it degenerates into reduce + broadcast (correct, slower than flat), and with one rank
 * per node into flat with two no-op steps.
 *
 * Buffers longer than INT_MAX floats go through in INT_MAX-sized pieces (MPI counts are int).
 */

namespace {

constexpr std::size_t kMaxChunk = static_cast<std::size_t>(INT_MAX);

Status mpi_status(int code, const char* what) {
  if (code == MPI_SUCCESS) return Status::Ok();
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  return Status::Error(std::string(what) + ": " + std::string(text, static_cast<std::size_t>(length)));
}

// Calls op(pointer, int count) over the buffer in pieces MPI can count.
template <typename Op>
Status for_each_chunk(float* data, std::size_t count, Op op) {
  for (std::size_t offset = 0; offset < count; offset += kMaxChunk) {
    const int n = static_cast<int>(std::min(kMaxChunk, count - offset));
    if (Status s = op(data + offset, n); !s.ok()) return s;
  }
  return Status::Ok();
}

Status check(const AllreduceOptions& options) {
  if (options.count > 0 && options.data == nullptr) {
    return Status::Error("allreduce: null buffer for " + std::to_string(options.count) + " floats");
  }
  return Status::Ok();
}

}  // namespace

Status parse_allreduce_algorithm(std::string_view text, AllreduceAlgorithm* out) {
  if (text == "auto") {
    *out = AllreduceAlgorithm::kAuto;
  } else if (text == "flat") {
    *out = AllreduceAlgorithm::kFlat;
  } else if (text == "hierarchical") {
    *out = AllreduceAlgorithm::kHierarchical;
  } else {
    return Status::Error("unknown allreduce algorithm '" + std::string(text) +
                         "' (expected auto, flat or hierarchical)");
  }
  return Status::Ok();
}

std::string_view to_string(AllreduceAlgorithm algorithm) {
  switch (algorithm) {
    case AllreduceAlgorithm::kAuto: return "auto";
    case AllreduceAlgorithm::kFlat: return "flat";
    case AllreduceAlgorithm::kHierarchical: return "hierarchical";
  }
  return "auto";
}

Status GroupComm::Create(MPI_Comm comm, const GroupCommOptions& options,
                         std::unique_ptr<GroupComm>* out) {
  std::unique_ptr<GroupComm> group(new GroupComm());
  if (Status s = mpi_status(MPI_Comm_dup(comm, &group->comm_), "MPI_Comm_dup"); !s.ok()) {
    return s.With("group communicator");
  }
  // Errors come back as codes we turn into a Status, instead of aborting the job from inside
  // a library call.
  MPI_Comm_set_errhandler(group->comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(group->comm_, &group->rank_);
  MPI_Comm_size(group->comm_, &group->size_);

  int code;
  if (options.simulated_ranks_per_node > 0) {
    code = MPI_Comm_split(group->comm_, group->rank_ / options.simulated_ranks_per_node,
                          group->rank_, &group->local_);
  } else {
    code = MPI_Comm_split_type(group->comm_, MPI_COMM_TYPE_SHARED, group->rank_, MPI_INFO_NULL,
                               &group->local_);
  }
  if (Status s = mpi_status(code, "splitting the node communicator"); !s.ok()) {
    return s.With("group communicator");
  }
  MPI_Comm_set_errhandler(group->local_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(group->local_, &group->local_rank_);
  MPI_Comm_size(group->local_, &group->local_size_);

  const bool leader = group->local_rank_ == 0;
  code = MPI_Comm_split(group->comm_, leader ? 0 : MPI_UNDEFINED, group->rank_, &group->leaders_);
  if (Status s = mpi_status(code, "splitting the leaders communicator"); !s.ok()) {
    return s.With("group communicator");
  }
  if (leader) MPI_Comm_set_errhandler(group->leaders_, MPI_ERRORS_RETURN);

  // Node count = number of leaders; max local size decides whether hierarchical can pay.
  const int is_leader = leader ? 1 : 0;
  int counts[2] = {0, 0};
  code = MPI_Allreduce(&is_leader, &counts[0], 1, MPI_INT, MPI_SUM, group->comm_);
  if (code == MPI_SUCCESS) {
    code = MPI_Allreduce(&group->local_size_, &counts[1], 1, MPI_INT, MPI_MAX, group->comm_);
  }
  if (Status s = mpi_status(code, "counting nodes"); !s.ok()) return s.With("group communicator");
  group->node_count_ = counts[0];
  group->max_local_size_ = counts[1];
  *out = std::move(group);
  return Status::Ok();
}

GroupComm::~GroupComm() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;  // MPI already released everything; freeing now would be an error
  for (MPI_Comm* c : {&leaders_, &local_, &comm_}) {
    if (*c != MPI_COMM_NULL) MPI_Comm_free(c);
  }
}

AllreduceAlgorithm GroupComm::resolve(AllreduceAlgorithm requested) const {
  if (requested != AllreduceAlgorithm::kAuto) return requested;
  return hierarchical_pays() ? AllreduceAlgorithm::kHierarchical : AllreduceAlgorithm::kFlat;
}

Status allreduce_flat(const GroupComm& group, const AllreduceOptions& options) {
  if (Status s = check(options); !s.ok()) return s;
  if (group.size() == 1) return Status::Ok();
  return for_each_chunk(options.data, options.count, [&](float* p, int n) {
    return mpi_status(MPI_Allreduce(MPI_IN_PLACE, p, n, MPI_FLOAT, MPI_SUM, group.comm()),
                      "allreduce (flat)");
  });
}

Status allreduce_hierarchical(const GroupComm& group, const AllreduceOptions& options) {
  if (Status s = check(options); !s.ok()) return s;
  if (group.size() == 1) return Status::Ok();
  const bool leader = group.local_rank() == 0;
  const bool several_local = group.local_size() > 1;
  return for_each_chunk(options.data, options.count, [&](float* p, int n) {
    if (several_local) {
      // MPI_IN_PLACE is only legal at the root of MPI_Reduce.
      const int code = MPI_Reduce(leader ? MPI_IN_PLACE : p, leader ? p : nullptr, n, MPI_FLOAT,
                                  MPI_SUM, 0, group.local());
      if (Status s = mpi_status(code, "allreduce (hierarchical): node reduce"); !s.ok()) return s;
    }
    if (leader && group.node_count() > 1) {
      const int code = MPI_Allreduce(MPI_IN_PLACE, p, n, MPI_FLOAT, MPI_SUM, group.leaders());
      if (Status s = mpi_status(code, "allreduce (hierarchical): leaders"); !s.ok()) return s;
    }
    if (several_local) {
      const int code = MPI_Bcast(p, n, MPI_FLOAT, 0, group.local());
      if (Status s = mpi_status(code, "allreduce (hierarchical): node broadcast"); !s.ok()) {
        return s;
      }
    }
    return Status::Ok();
  });
}

Status allreduce_gradients(const GroupComm& group, const AllreduceOptions& options) {
  switch (group.resolve(options.algorithm)) {
    case AllreduceAlgorithm::kHierarchical: return allreduce_hierarchical(group, options);
    case AllreduceAlgorithm::kFlat:
    case AllreduceAlgorithm::kAuto: break;
  }
  return allreduce_flat(group, options);
}

/*
 * Overlap. Why layer boundaries and kGradientBucketBytes:
 *
 * A bucket is worth starting early only if backward has real work left to hide it behind; in
 * an MLP the front layer (784 x 256 for Fashion-MNIST) is most of both the gradient and the
 * backward FLOPs, so the useful cut is "everything after layer 0" vs "layer 0". Each extra
 * bucket costs one more collective's latency, which a small layer cannot repay: measured on one
 * node, 2 ranks over shared memory, loaded machine (bench_allreduce, 5 repetitions): 1-4 KB
 * 0.7-1.5 us, 64 KB 13.6 us, 256 KB 67 us, 1 MB 360-380 us (spread up to +-15 %). 256 KiB
 * (64 Ki floats) groups the small back layers of the usual MLPs (128 x 256 + 10 x 128 + biases =
 * 34,186 floats for 784-256-128-10) into one bucket and leaves each large layer on its own:
 * for 784-256-128-10 two buckets (34,186 and 200,960 floats) plus the 2-float tail.
 * NOT YET MEASURED: the cross-node (test cluster, TCP) latencies and bench_allreduce's "steps"
 * section (a training step, fused vs caps 16 KiB..4 MiB) that should confirm the cap; until
 * then the cap is this layer-packing argument, not a measured optimum.
 *
 * One request per bucket on the group's own communicator (GroupComm duplicated it), started
 * in the same order on every rank: MPI matches non-blocking collectives by start order, and
 * for a given count and group the library's algorithm is fixed, so the bits are the same run
 * to run.
 */

std::vector<std::size_t> plan_gradient_buckets(std::span<const std::size_t> layer_begins,
                                               std::size_t count, std::size_t bucket_bytes) {
  const std::size_t cap = std::max<std::size_t>(1, bucket_bytes / sizeof(float));
  std::vector<std::size_t> begins;  // built from the end, reversed at the end
  std::size_t end = count;          // end of the bucket being filled
  std::size_t begin = count;        // its begin so far (== end: empty)
  for (std::size_t i = layer_begins.size(); i-- > 0;) {
    const std::size_t layer = layer_begins[i];
    if (layer >= begin) continue;  // an empty layer
    if (begin != end && end - layer > cap) {
      begins.push_back(begin);  // the next layer would overflow the bucket: close it
      end = begin;
    }
    begin = layer;
  }
  if (begin != end) begins.push_back(begin);
  std::reverse(begins.begin(), begins.end());
  if (begins.empty() || begins.front() != 0) begins.insert(begins.begin(), 0);
  // MPI counts are int: split anything longer.
  std::vector<std::size_t> split;
  for (std::size_t i = 0; i < begins.size(); ++i) {
    const std::size_t stop = i + 1 < begins.size() ? begins[i + 1] : count;
    std::size_t b = begins[i];
    do {
      split.push_back(b);
      b += std::min(kMaxChunk, stop - b);
    } while (b < stop);
  }
  return split;
}

BucketedAllreduce::BucketedAllreduce(const GroupComm& group, std::vector<std::size_t> bucket_begins,
                                     std::size_t count)
    : group_(group), begins_(std::move(bucket_begins)), count_(count) {
  requests_.reserve(begins_.size() + 1);
}

BucketedAllreduce::~BucketedAllreduce() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && !requests_.empty()) {
    MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
  }
}

void BucketedAllreduce::begin(float* data) {
  data_ = data;
  unstarted_ = begins_.size();
  requests_.clear();
}

Status BucketedAllreduce::start(float* p, std::size_t n) {
  if (n == 0 || group_.size() == 1) return Status::Ok();
  MPI_Request request = MPI_REQUEST_NULL;
  const int code = MPI_Iallreduce(MPI_IN_PLACE, p, static_cast<int>(n), MPI_FLOAT, MPI_SUM,
                                  group_.comm(), &request);
  if (Status s = mpi_status(code, "allreduce (overlapped): start"); !s.ok()) return s;
  requests_.push_back(request);
  return Status::Ok();
}

Status BucketedAllreduce::ready_from(std::size_t offset) {
  while (unstarted_ > 0 && begins_[unstarted_ - 1] >= offset) {
    const std::size_t b = begins_[unstarted_ - 1];
    const std::size_t e = unstarted_ < begins_.size() ? begins_[unstarted_] : count_;
    if (Status s = start(data_ + b, e - b); !s.ok()) return s;
    --unstarted_;
  }
  if (requests_.empty()) return Status::Ok();
  int done = 0;
  return mpi_status(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done,
                                MPI_STATUSES_IGNORE),
                    "allreduce (overlapped): progress");
}

Status BucketedAllreduce::finish(std::size_t tail) {
  if (Status s = ready_from(0); !s.ok()) return s;
  if (Status s = start(data_ + count_, tail); !s.ok()) return s;
  const int code = MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(),
                               MPI_STATUSES_IGNORE);
  requests_.clear();
  return mpi_status(code, "allreduce (overlapped): wait");
}

}  // namespace trellis::worker
