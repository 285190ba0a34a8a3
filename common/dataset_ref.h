#pragma once
// DatasetRef: where a trial's data lives and how it is split. It travels inside Assign; every
// rank opens the files itself and reads only its own shard (see shard_plan.h).

#include <string>

namespace trellis {

struct DatasetRef {
  std::string name;    // e.g. "fashion-mnist"
  std::string format;  // "idx": the MNIST family, raw or gzip
  std::string path;    // a directory holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
  double validation_fraction = 0.1;  // of the training set, chosen row by row from the seed
};

}  // namespace trellis
