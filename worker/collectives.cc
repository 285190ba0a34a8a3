#include "worker/collectives.h"

#include <algorithm>
#include <climits>

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

}  // namespace trellis::worker
