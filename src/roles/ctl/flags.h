// The command-line flags of `dnnd ctl`: every verb declares its flags in one
// table (name, what it takes, help), and both the check of a command line
// and the usage text come from that table, so they cannot disagree.
//
//   const std::vector<Flag> kFlags = {{"epochs", "N", "passes over the training set"},
//                                     {"follow", "", "show progress until the job ends", 'f'}};
//   DNND_ASSIGN_OR_RETURN(FlagValues v, ParseFlags(args, kFlags));
//   // `--epoch 3` -> InvalidArgument("unknown flag --epoch (did you mean --epochs?)")
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace dnnd::ctl {

struct Flag {
  std::string_view name;   // "epochs", spelled --epochs
  std::string_view value;  // what it takes, for the usage ("N", "sync|async|kavg"); "" = a switch
  std::string_view help;   // one line
  char short_name = 0;     // 'f' for -f; 0 for none
};

// A command line taken apart.
struct FlagValues {
  std::vector<std::string>
      positional;  // the words that are neither flags nor their values, in order
  std::map<std::string, std::string, std::less<>>
      values;  // by flag name; a switch's value is "true"
  // Flags not in the table, as spelled ("--epoch"); filled only by a lenient parse.
  std::vector<std::string> unknown;

  bool has(std::string_view name) const { return values.find(name) != values.end(); }
  // The flag's value, or "" when it was not given.
  std::string get(std::string_view name) const;
};

// Takes `args` apart against `flags`: "--name value", "--name=value",
// "-x value" (x a short name), a switch alone; "--" makes every later word
// positional, and so is a lone "-". Errors are InvalidArgument naming the
// flag as given: unknown (with the nearest known flag as a did-you-mean, see
// core/did_you_mean.h), a value missing, a value given to a switch, a flag
// given twice. With `lenient` nothing is an error: an unknown flag is recorded
// in `unknown` (and takes no value); the positional words are what matter,
// for finding the verb before its table is known.
Result<FlagValues> ParseFlags(const std::vector<std::string>& args, const std::vector<Flag>& flags,
                              bool lenient = false);

// The flags as aligned usage lines: "  -f, --follow        show progress ...".
std::string FlagUsage(const std::vector<Flag>& flags);

}  // namespace dnnd::ctl
