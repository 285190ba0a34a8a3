// `trellis predict` and `trellis export-model`: a kept model (coordinator/model_shelf.h) put
// to use, on new rows or as ONNX. Both read the store read-only, only for the experiment's name
// and spec (the dataset's label column); the model itself comes from the shelf beside it, so
// they work on a login node that never saw the workers' scratch.

#include <charconv>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/atomic_file.h"
#include "common/sweep_spec.h"
#include "coordinator/cli/command.h"
#include "coordinator/model_shelf.h"
#include "worker/inference/input_rows.h"
#include "worker/inference/onnx_export.h"
#include "worker/inference/predictor.h"

namespace trellis::cli {
namespace {

using coordinator::ExperimentRecord;
using coordinator::ExperimentStore;

struct ModelArgs {
  std::string experiment;
  std::string trial = "best";
  std::string output;
  // predict only
  std::string input;
  std::string format;
};

// "best" -> -1, else a trial number.
Status parse_trial(const std::string& text, std::int32_t* number) {
  if (text == "best") {
    *number = -1;
    return Status::Ok();
  }
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, *number);
  if (ec != std::errc() || ptr != end || *number < 0)
    return Status::Error("--trial '" + text + "': expected a trial number or best");
  return Status::Ok();
}

// The experiment, its kept model and the model read back.
Status load(const CommonArgs& common, ExperimentStore& store, const ModelArgs& args,
            ExperimentRecord* experiment, coordinator::KeptModel* kept,
            worker::TrainedModel* model) {
  std::int32_t number = -1;
  if (Status s = parse_trial(args.trial, &number); !s.ok()) return s;
  if (Status s = coordinator::resolve_experiment(store, args.experiment, experiment); !s.ok())
    return s;
  const std::string dir = model_dir(common.store) + "/" + experiment->name;
  if (Status s = coordinator::find_kept_model(dir, number, kept); !s.ok())
    return Status::Error("experiment '" + experiment->name + "': " + s.message());
  return worker::load_trained_model(kept->path, kept->params, model);
}

// The csv column training read as the target: what predict ignores in an input.
std::string label_column(const ExperimentRecord& experiment) {
  SweepSpec spec;
  if (parse_sweep_spec(experiment.spec_yaml, "experiment " + experiment.name, &spec,
                       DatasetCheck::kOnTheWorkers)
          .ok())
    return spec.dataset.label;
  return DatasetRef{}.label;
}

std::string what(const coordinator::KeptModel& kept) {
  return "trial " + std::to_string(kept.number) + " (rank " + std::to_string(kept.rank) + ")";
}

int cmd_predict(const CommonArgs& common, ExperimentStore& store, const ModelArgs& args) {
  ExperimentRecord experiment;
  coordinator::KeptModel kept;
  worker::TrainedModel model;
  if (Status s = load(common, store, args, &experiment, &kept, &model); !s.ok()) return fail(s);
  worker::InputFormat format;
  if (Status s = worker::input_format(args.format, args.input, &format); !s.ok()) return fail(s);
  Eigen::MatrixXf x;
  if (Status s = worker::read_input_rows(args.input, format, label_column(experiment),
                                         model.shape.inputs, &x);
      !s.ok())
    return fail(s);
  const worker::Predictions p = worker::predict(model, x);
  std::ostringstream csv;
  worker::write_predictions_csv(model, p, csv);
  if (Status s = write_file_atomically(args.output, csv.str(), "predictions " + args.output);
      !s.ok())
    return fail(s);
  std::cout << "predicted " << x.cols() << " row(s) of " << args.input << " with "
            << what(kept) << " of '" << experiment.name << "' into " << args.output << "\n";
  return 0;
}

int cmd_export(const CommonArgs& common, ExperimentStore& store, const ModelArgs& args) {
  ExperimentRecord experiment;
  coordinator::KeptModel kept;
  worker::TrainedModel model;
  if (Status s = load(common, store, args, &experiment, &kept, &model); !s.ok()) return fail(s);
  const std::string name = experiment.name + " trial " + std::to_string(kept.number);
  if (Status s = worker::export_onnx(model, name, args.output); !s.ok()) return fail(s);
  std::cout << "exported " << what(kept) << " of '" << experiment.name << "' to " << args.output
            << "\n";
  return 0;
}

void add_model_options(CLI::App* cmd, ModelArgs* args) {
  cmd->add_option("experiment", args->experiment, "experiment name")->required();
  cmd->add_option("--trial", args->trial, "a kept trial's number, or best")->capture_default_str();
  cmd->add_option("-o,--output", args->output, "where to write")->required();
}

}  // namespace

std::vector<Command> add_model_commands(CLI::App& app, const CommonArgs& common) {
  auto predict = std::make_shared<ModelArgs>();
  auto* predict_cmd = app.add_subcommand(
      "predict", "a kept trial's model on new rows (csv, libsvm or idx): a CSV of each row's "
                 "class and class probabilities, or its value for regression");
  add_model_options(predict_cmd, predict.get());
  predict_cmd->add_option("--input", predict->input, "rows to predict on")->required();
  predict_cmd->add_option("--format", predict->format,
                          "csv|libsvm|idx (default: from the input's name)");

  auto exported = std::make_shared<ModelArgs>();
  auto* export_cmd = app.add_subcommand(
      "export-model", "a kept trial's model as ONNX, input scaling included");
  add_model_options(export_cmd, exported.get());

  return {{predict_cmd,
           [&common, predict] {
             return with_store(common,
                               [&](ExperimentStore& s) { return cmd_predict(common, s, *predict); });
           }},
          {export_cmd, [&common, exported] {
             return with_store(common,
                               [&](ExperimentStore& s) { return cmd_export(common, s, *exported); });
           }}};
}

}  // namespace trellis::cli
