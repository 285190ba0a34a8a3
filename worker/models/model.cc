#include "worker/models/model.h"

#include "worker/models/cnn.h"
#include "worker/models/mlp.h"

namespace trellis::worker {

Status make_model(const TrainConfig& config, int inputs, int classes, int max_batch,
                  int grad_tail, std::unique_ptr<Model>* out) {
  if (config.model == "cnn") {
    CnnShape shape;
    if (Status s = cnn_shape_from_config(config, inputs, classes, /*image_side=*/0, &shape); !s.ok())
      return s;
    *out = std::make_unique<Cnn>(shape, max_batch, grad_tail);
    return Status::Ok();
  }
  MlpShape shape;
  if (Status s = mlp_shape_from_config(config, inputs, classes, &shape); !s.ok()) return s;
  *out = std::make_unique<Mlp>(shape, max_batch, grad_tail);
  return Status::Ok();
}

}  // namespace trellis::worker
