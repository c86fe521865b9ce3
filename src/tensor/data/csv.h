// Numeric CSV datasets: one sample per row, one column holding the class label
// (the Kaggle MNIST layout "label,pixel0,...,pixel783" by default). A header
// row is skipped when present. When every feature is an integer in [0, 255],
// the samples are kept as uint8 images (normalised like IDX data).
#pragma once

#include <string>

#include "core/status.h"
#include "tensor/data/dataset.h"
#include "tensor/data/source.h"

namespace dnnd::data {

struct CsvOptions {
  int label_column = 0;  // index, or -1 for the last column
  bool header = true;    // the first row holds column names
};

// The text (after decompression) and the samples parsed from it (4 bytes a
// feature while parsing) are each held to limits.max_bytes.
Result<Dataset> ParseCsvDataset(const std::string& text, const CsvOptions& options,
                                const std::string& what, const DecodeLimits& limits = {});
Result<Dataset> LoadCsvDataset(const std::string& path, const CsvOptions& options,
                               const DecodeLimits& limits = {});

}  // namespace dnnd::data
