#include "tensor/data/csv.h"

#include <cmath>
#include <cstdlib>

#include "tensor/data/idx.h"

namespace dnnd::data {

Result<Dataset> ParseCsvDataset(const std::string& text, const CsvOptions& options,
                                const std::string& what, const DecodeLimits& limits) {
  std::vector<float> values;
  std::vector<int32_t> labels;
  int64_t width = -1;  // columns per row
  int64_t row = 0;
  size_t pos = 0;
  bool all_bytes = true;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++row;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (row == 1 && options.header) continue;
    std::vector<double> cells;
    size_t start = 0;
    for (int64_t col = 1;; ++col) {
      size_t comma = line.find(',', start);
      std::string cell =
          line.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      const char* b = cell.c_str();
      char* end = nullptr;
      double v = std::strtod(b, &end);
      while (end && (*end == ' ' || *end == '\t')) ++end;
      if (cell.empty() || end == b || *end != '\0' || !std::isfinite(v))
        return InvalidArgument(what + ":" + std::to_string(row) + ":" + std::to_string(col) +
                               ": not a number: '" + cell + "'");
      cells.push_back(v);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (width < 0) width = static_cast<int64_t>(cells.size());
    if (static_cast<int64_t>(cells.size()) != width)
      return InvalidArgument(what + ":" + std::to_string(row) + ": " +
                             std::to_string(cells.size()) + " columns, but earlier rows have " +
                             std::to_string(width));
    if (width < 2) return InvalidArgument(what + ": needs a label column and at least one feature");
    const int64_t lc = options.label_column < 0 ? width - 1 : options.label_column;
    if (lc >= width)
      return InvalidArgument(what + ": label column " + std::to_string(lc) + " but rows have " +
                             std::to_string(width) + " columns");
    const double l = cells[lc];
    if (l != std::floor(l) || l < 0 || l > 65535)
      return InvalidArgument(what + ":" + std::to_string(row) + ":" + std::to_string(lc + 1) +
                             ": label " + std::to_string(l) + " is not an integer in [0, 65535]");
    // Samples become float32 while parsing (uint8 at the end): 4 bytes a feature.
    DNND_RETURN_IF_ERROR(limits.CheckBytes(4 * (values.size() + static_cast<size_t>(width)),
                                           what + ": row " + std::to_string(row) + "'s samples"));
    labels.push_back(static_cast<int32_t>(l));
    for (int64_t c = 0; c < width; ++c) {
      if (c == lc) continue;
      const double v = cells[c];
      all_bytes &= v == std::floor(v) && v >= 0 && v <= 255;
      values.push_back(static_cast<float>(v));
    }
  }
  if (labels.empty()) return InvalidArgument(what + ": no data rows");
  Dataset d;
  d.sample_shape = {width - 1};
  if (all_bytes) {
    d.type = SampleType::kUint8;
    d.u8.assign(values.begin(), values.end());
  } else {
    d.type = SampleType::kFloat32;
    d.f32 = std::move(values);
  }
  d.labels = std::move(labels);
  for (int32_t l : d.labels) d.num_classes = std::max(d.num_classes, l + 1);
  return d;
}

Result<Dataset> LoadCsvDataset(const std::string& path, const CsvOptions& options,
                               const DecodeLimits& limits) {
  DNND_ASSIGN_OR_RETURN(std::string text, ReadMaybeGzipped(path, limits));
  return ParseCsvDataset(text, options, path, limits);
}

}  // namespace dnnd::data
