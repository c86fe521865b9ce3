// The controller's datasets area, and the datasets it keeps loaded:
//
//   PUT    /api/v1/datasets/{name}/files/{part}  raw file body, streamed to
//          <data_dir>/uploads/<name>/<part> (part: train-images, train-labels,
//          test-images, test-labels for idx/npy; train, test for npz/csv)
//   POST   /api/v1/datasets {"name","format"[,"classes":[...]]}  validates the
//          staged files with the engine's readers and moves them to
//          <data_dir>/datasets/<name>; "classes" names the labels 0, 1, ... (one
//          name per class, stored with the dataset, written into its jobs' models)
//   GET    /api/v1/datasets[/{name}]   DELETE /api/v1/datasets/{name}
//
// Load() serves the job runner's normalisation and the shard service: every
// worker of a job asks for its part at the same moment, so the last two
// datasets loaded stay in memory.
//
// Thread-safe. Locks: registration_mu_ before loaded_mu_ (DeleteDataset
// holds both); neither is held while calling out of this class except into
// the store.
#pragma once

#include <boost/json/object.hpp>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/thread_annotations.h"
#include "roles/controller/context.h"
#include "tensor/data/from_config.h"

namespace dnnd {

class WorkQueue;

struct LoadedDataset {
  data::Dataset train;
  std::optional<data::Dataset> test;
};

class DatasetsApi {
 public:
  // `ctx` must outlive this object.
  DatasetsApi(const ControllerContext& ctx, data::DecodeLimits limits);

  // The routes above; validation runs on `heavy`.
  void AddRoutes(HttpRouter& r, std::shared_ptr<WorkQueue> heavy);

  // The registered dataset `name`, read once per version of its files: keyed
  // by what the name holds now, not by the name (a dataset deleted and
  // registered again under its name is another dataset).
  Result<std::shared_ptr<const LoadedDataset>> Load(const std::string& name) EXCLUDES(loaded_mu_);

  // A [data] section reading `files` (part -> file name) from `dir` in `format`.
  static Result<Config> DataConfig(const std::string& format, const std::string& dir,
                                   const boost::json::object& files);

 private:
  Result<HttpResponse> StageFile(const HttpRequest& r);
  Result<HttpResponse> Create(const HttpRequest& r) EXCLUDES(registration_mu_);
  Result<HttpResponse> List(const HttpRequest& r);
  Result<HttpResponse> Get(const HttpRequest& r);
  Result<HttpResponse> Delete(const HttpRequest& r) EXCLUDES(registration_mu_, loaded_mu_);

  const ControllerContext& ctx_;
  const data::DecodeLimits limits_;  // controller.max_dataset_bytes, .max_dataset_members

  // One registration or deletion at a time: the staged directory's rename
  // and the store's row go together.
  Mutex registration_mu_ ACQUIRED_BEFORE(loaded_mu_);
  Mutex loaded_mu_;
  // Load()'s key -> the dataset, newest first, two at most.
  std::vector<std::pair<std::string, std::shared_ptr<LoadedDataset>>> loaded_
      GUARDED_BY(loaded_mu_);
};

}  // namespace dnnd
