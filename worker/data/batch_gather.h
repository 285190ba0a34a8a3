#pragma once
// Gathering a shuffled batch: the step's columns, scattered through a shard far larger than
// the caches, copied side by side into the batch the GEMMs read.

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <span>

namespace trellis::worker {

// batch->col(j) = x.col(columns[j]) for every j; `batch` has x.rows() rows and at least
// columns.size() columns.
void gather_columns(const Eigen::MatrixXf& x, std::span<const std::int64_t> columns,
                    Eigen::MatrixXf* batch);

// Backs x's storage with 2 MB pages, now (madvise MADV_HUGEPAGE, then MADV_COLLAPSE, Linux 6.1):
// the gather's columns are scattered over the whole shard, and on 4 KB pages nearly every
// column is a TLB miss as well as a cache miss (Fashion-MNIST, one core: the gather from 8.2%
// to 5.4% of a step). Debian's default THP setting (madvise) backs nothing that is not asked
// for. Best effort: returns the bytes now on huge pages, 0 where the kernel has no THP or
// declines; the numbers computed are the same either way.
std::size_t back_with_huge_pages(Eigen::MatrixXf* x);

}  // namespace trellis::worker
