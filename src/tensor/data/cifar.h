// CIFAR-10's binary version (cifar-10-binary.tar.gz: data_batch_1.bin ...
// data_batch_5.bin, test_batch.bin).
//
// Each file is a sequence of 3073-byte records: one label byte (0-9), then
// the 3072 pixel bytes of a 32x32 colour image, the 1024 red values row by
// row, then the green, then the blue ones (channel-major, as models take
// them). https://www.cs.toronto.edu/~kriz/cifar.html ("Binary version").
//
//   DNND_ASSIGN_OR_RETURN(Dataset train, LoadCifar10Files(Cifar10TrainFiles(dir)));
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "tensor/data/dataset.h"
#include "tensor/data/source.h"

namespace dnnd::data {

inline constexpr int64_t kCifarPixels = 3 * 32 * 32;
inline constexpr int64_t kCifarRecord = 1 + kCifarPixels;

// <dir>/data_batch_1.bin ... <dir>/data_batch_5.bin.
std::vector<std::string> Cifar10TrainFiles(const std::string& dir);
// <dir>/test_batch.bin.
std::vector<std::string> Cifar10TestFiles(const std::string& dir);

// The records of `paths`, in order, as one classification dataset: samples
// [3, 32, 32] kept as uint8 (the raw bytes), 10 classes. Files may be
// gzipped. Errors name the file and the record (counted from 0 in that file):
// a file that is not a whole number of records (a record cut short), a label
// byte above 9, an empty file, a missing file. The total is checked against
// limits.max_bytes before the data is read (for plain files; gzipped ones as
// they inflate).
Result<Dataset> LoadCifar10Files(const std::vector<std::string>& paths,
                                 const DecodeLimits& limits = {});

}  // namespace dnnd::data
