#include "core/config_schema.h"

namespace dnnd {

const std::vector<ConfigKey>& ConfigSchema() {
  using T = ConfigType;
  const std::string fm = "/usr/share/datasets/fashion-mnist/";
  static const std::vector<ConfigKey> schema = {
      {"node.name", T::kString, "\"dnnd\"", 0, 0, {}, "node name in logs and metrics"},
      {"node.threads", T::kInt, "0", 0, 1024, {}, "threads for BLAS and kernels together; 0 = all cores"},
      {"log.level", T::kEnum, "\"info\"", 0, 0, {"debug", "info", "warn", "error"}, "minimum level logged"},
      {"log.format", T::kEnum, "\"text\"", 0, 0, {"text", "json"}, "text lines or JSON lines"},
      {"data.format", T::kEnum, "\"idx\"", 0, 0, {"idx", "npy", "npz", "csv"}, "dataset file format"},
      {"data.test_format", T::kEnum, "\"same\"", 0, 0, {"same", "idx", "npy", "npz", "csv"}, "format of the test set when it differs from data.format (an NPZ shard trained on, the IDX test set evaluated on)"},
      {"data.train_file", T::kString, "\"\"", 0, 0, {}, "npz/csv: the training file"},
      {"data.test_file", T::kString, "\"\"", 0, 0, {}, "npz/csv: the test file; empty = no evaluation"},
      {"data.x_key", T::kString, "\"x\"", 0, 0, {}, "npz: the samples array"},
      {"data.y_key", T::kString, "\"y\"", 0, 0, {}, "npz: the labels array"},
      {"data.csv_label_column", T::kInt, "0", -1, 1e6, {}, "csv: label column index; -1 = last"},
      {"data.csv_header", T::kBool, "true", 0, 0, {}, "csv: the first row holds column names"},
      {"data.builtin", T::kEnum, "\"none\"", 0, 0, {"none", "xor"}, "use a built-in dataset instead of files"},
      {"data.train_images", T::kString, "\"" + fm + "train-images-idx3-ubyte.gz\"", 0, 0, {}, "idx/npy: training images (gzip ok)"},
      {"data.train_labels", T::kString, "\"" + fm + "train-labels-idx1-ubyte.gz\"", 0, 0, {}, "idx/npy: training labels"},
      {"data.test_images", T::kString, "\"" + fm + "t10k-images-idx3-ubyte.gz\"", 0, 0, {}, "idx/npy: test images; empty = no evaluation"},
      {"data.test_labels", T::kString, "\"" + fm + "t10k-labels-idx1-ubyte.gz\"", 0, 0, {}, "idx/npy: test labels"},
      {"data.normalize_mean", T::kFloat, "0.0", -1e6, 1e6, {}, "x' = (x/255 - mean) / std for uint8 images"},
      {"data.normalize_std", T::kFloat, "1.0", 1e-12, 1e6, {}, "see normalize_mean"},
      {"data.limit_train", T::kInt, "0", 0, 1e12, {}, "use only the first N training samples; 0 = all"},
      {"data.limit_test", T::kInt, "0", 0, 1e12, {}, "use only the first N test samples; 0 = all"},
      {"transport.token", T::kString, "\"\"", 0, 0, {}, "shared secret proven in the HELLO handshake (prefer token_file or DNND_TRANSPORT__TOKEN)"},
      {"transport.token_file", T::kString, "\"\"", 0, 0, {}, "file holding the token (a mounted Secret); overrides token"},
      {"transport.max_frame_bytes", T::kInt, "2147483648", 1024, 1.1e12, {}, "largest frame accepted (header + body)"},
      {"transport.max_metadata_bytes", T::kInt, "1048576", 64, 4294967295.0, {}, "largest metadata section accepted"},
      {"transport.max_tensor_bytes", T::kInt, "1073741824", 0, 1.1e12, {}, "largest single tensor accepted (decoded bytes)"},
      {"transport.max_tensors", T::kInt, "65536", 0, 4294967295.0, {}, "most tensors in one frame"},
      {"transport.hello_timeout_ms", T::kInt, "5000", 1, 3.6e6, {}, "time a peer has to complete the handshake"},
      {"transport.request_timeout_ms", T::kInt, "60000", 1, 8.64e7, {}, "default deadline of an RPC"},
      {"transport.connections_per_peer", T::kInt, "1", 1, 64, {}, "TCP connections a client opens to each server"},
      {"transport.max_inflight_bytes", T::kInt, "268435456", 1024, 1.1e12, {}, "client back-pressure: request bytes awaiting responses"},
      {"transport.io_threads", T::kInt, "2", 1, 64, {}, "threads running socket I/O (and inline handlers)"},
      {"transport.handler_threads", T::kInt, "2", 1, 256, {}, "threads running request handlers"},
      {"transport.zstd_level", T::kInt, "1", -7, 19, {}, "zstd level for the zstd codec"},
      {"ps.listen", T::kString, "\"0.0.0.0:7000\"", 0, 0, {}, "parameter-server: host:port to serve workers on"},
      {"ps.index", T::kInt, "0", 0, 1024, {}, "parameter-server: this server's index in [0, servers)"},
      {"ps.servers", T::kInt, "1", 1, 1024, {}, "parameter servers in the job (the partition depends on it)"},
      {"ps.mode", T::kEnum, "\"sync\"", 0, 0, {"sync", "async", "kavg"}, "sync: average every step; async: apply each push; kavg: average weights every kavg_steps"},
      {"ps.workers", T::kInt, "1", 1, 100000, {}, "sync/kavg: workers a step waits for until one drops out"},
      {"ps.staleness", T::kInt, "4", 0, 1e9, {}, "async: largest accepted lag (in versions) of a pushed gradient"},
      {"ps.kavg_steps", T::kInt, "8", 1, 1e9, {}, "kavg: local steps between weight averages"},
      {"ps.heartbeat_timeout_ms", T::kInt, "5000", 100, 3.6e6, {}, "a worker silent this long is dropped from the barrier"},
      {"ps.checkpoint_dir", T::kString, "\"\"", 0, 0, {}, "where this server checkpoints its shard; empty = none"},
      {"ps.resume", T::kBool, "true", 0, 0, {}, "continue from the checkpoint in checkpoint_dir on start (a restarted server)"},
      {"ps.checkpoint_every_steps", T::kInt, "100", 0, 1e12, {}, "checkpoint every N versions (and on shutdown); 0 = only on shutdown"},
      {"worker.parameter_servers", T::kStringArray, "[]", 0, 0, {}, "host:port of every parameter server, in index order; empty = train locally"},
      {"worker.index", T::kInt, "0", 0, 100000, {}, "this worker's index: it trains on part index of count of the data"},
      {"worker.count", T::kInt, "1", 1, 100000, {}, "workers in the job"},
      {"worker.gradient_codec", T::kEnum, "\"none\"", 0, 0, {"none", "zstd", "bf16", "f16"}, "how gradients go to the servers: raw, shuffle+zstd (lossless), or down-cast to bf16/f16"},
      {"worker.heartbeat_ms", T::kInt, "1000", 10, 3.6e6, {}, "how often a worker tells the servers it is alive"},
      {"splitter.shards", T::kInt, "3", 1, 100000, {}, "splitter: shards to cut the [data] training set into"},
      {"splitter.strategy", T::kEnum, "\"iid\"", 0, 0, {"iid", "stratified", "dirichlet"}, "iid: seeded shuffle, equal sizes; stratified: every class spread evenly; dirichlet: non-iid label skew (alpha)"},
      {"splitter.alpha", T::kFloat, "0.5", 1e-3, 1e6, {}, "dirichlet: concentration; small = each shard dominated by few classes, large = close to iid"},
      {"splitter.min_shard_samples", T::kInt, "1", 0, 1e12, {}, "dirichlet: redraw the proportions until every shard has at least this many samples"},
      {"splitter.seed", T::kInt, "42", 0, 9.2e18, {}, "splitter: seed of the shuffle and the Dirichlet draws (same seed, same shards, byte for byte)"},
      {"splitter.output_dir", T::kString, "\"runs/shards\"", 0, 0, {}, "splitter: where shard-NNN.npz and manifest.json go"},
      {"splitter.overwrite", T::kBool, "false", 0, 0, {}, "splitter: replace existing shards and manifest (refused otherwise)"},
      {"standalone.servers", T::kInt, "2", 1, 64, {}, "standalone: parameter servers (threads)"},
      {"standalone.workers", T::kInt, "2", 1, 64, {}, "standalone: workers (threads)"},
      {"http.listen", T::kString, "\"\"", 0, 0, {}, "host:port of the health/metrics HTTP endpoint; empty = off"},
      {"http.max_body_bytes", T::kInt, "1048576", 0, 1.1e12, {}, "largest HTTP request body accepted"},
      {"train.epochs", T::kInt, "5", 0, 1000000, {}, "passes over the training set"},
      {"train.iterations", T::kInt, "0", 0, 1e12, {}, "> 0: full-batch steps instead of epochs"},
      {"train.batch_size", T::kInt, "128", 1, 1048576, {}, "samples per step"},
      {"train.seed", T::kInt, "42", 0, 9.2e18, {}, "seed for init, shuffling and dropout"},
      {"train.shuffle", T::kBool, "true", 0, 0, {}, "reshuffle the training set every epoch"},
      {"train.lr_schedule", T::kEnum, "\"constant\"", 0, 0, {"constant", "cosine", "step"}, "learning-rate schedule over epochs"},
      {"train.lr_step_epochs", T::kInt, "1", 1, 1000000, {}, "step schedule: epochs between decays"},
      {"train.lr_gamma", T::kFloat, "0.1", 0, 1, {}, "step schedule: decay factor"},
      {"train.checkpoint_dir", T::kString, "\"runs/local\"", 0, 0, {}, "where checkpoints go; empty = none"},
      {"train.checkpoint_every_steps", T::kInt, "0", 0, 1e12, {}, "also checkpoint every N steps; 0 = only at the end"},
      {"train.max_steps", T::kInt, "0", 0, 1e12, {}, "stop with a checkpoint after N steps in total; 0 = no limit"},
      {"train.resume", T::kBool, "true", 0, 0, {}, "continue from checkpoint_dir when it holds a checkpoint"},
      {"train.progress", T::kEnum, "\"auto\"", 0, 0, {"auto", "bar", "log", "none"}, "progress display"},
      {"train.eval_every_epochs", T::kInt, "1", 0, 1000000, {}, "evaluate on the test set every N epochs; 0 = never"},
  };
  return schema;
}

const std::vector<std::string>& OpaqueSections() {
  static const std::vector<std::string> sections = {"model"};
  return sections;
}

}  // namespace dnnd
